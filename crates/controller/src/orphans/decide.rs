//! Which disks and files are orphans, and which of them are due: pure functions over one pass's
//! inputs, so every rule that protects live data is unit-tested without an RDS or a cluster.
//!
//! The rules are deliberately narrow, because a wrong "orphan" is live data deleted: only
//! `pvc-` slots of type `file` and `pvc-….img` files, only under a backend's allowed paths, only
//! when no PersistentVolume maps to the slot and no disk uses the file, and only after the
//! candidate has been seen on an earlier pass and for longer than the grace period.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use routeros::{Disk, FileEntry, FilePath, Slot};
use serde::Serialize;

use vocab::volume_id::{SLOT_PREFIX, VolumeId};

/// What one backend holds, as listed in one pass.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub backend: String,
    /// The only directories whose contents may ever be candidates.
    pub allowed_paths: Vec<FilePath>,
    /// Every disk listed (the driver's `pvc-` slots and `snap-` snapshots): a file any of them
    /// uses is never a candidate.
    pub disks: Vec<Disk>,
    /// Files under the allowed paths.
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Disk,
    File,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Disk => "disk",
            Kind::File => "file",
        }
    }
}

/// Identity of a candidate across passes: the same disk slot (or file path) on the same backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub backend: String,
    pub kind: Kind,
    /// The slot for a disk, the path for a file.
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: Key,
    /// The slot (a file's slot is its name without `.img`).
    pub slot: String,
    /// The backing file (a disk's `file-path`, or the file itself).
    pub path: String,
    /// The disk as printed this pass; deletion re-prints and compares against it.
    pub disk: Option<Disk>,
}

/// `(backend, slot)` of every PV handle that is one of this driver's volume ids. Handles that
/// do not parse cannot name a slot we would consider, so they protect nothing and need nothing.
pub fn live_volumes(handles: &[String], default_backend: &str) -> BTreeSet<(String, String)> {
    handles
        .iter()
        .filter_map(|h| VolumeId::parse(h, default_backend).ok())
        .map(|id| (id.backend, id.slot.as_str().to_string()))
        .collect()
}

fn under_allowed(path: &str, allowed: &[FilePath]) -> bool {
    FilePath::new(path).is_ok_and(|p| allowed.iter().any(|base| p.is_under(base)))
}

fn basename(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// The orphan candidates of one backend.
pub fn candidates(inv: &Inventory, live: &BTreeSet<(String, String)>) -> Vec<Candidate> {
    let is_live = |slot: &str| live.contains(&(inv.backend.clone(), slot.to_string()));
    let mut out = Vec::new();
    for d in &inv.disks {
        let Some(path) = d.file_path.as_deref() else {
            continue;
        };
        if !d.slot.starts_with(SLOT_PREFIX)
            || d.kind.as_deref() != Some("file")
            || !under_allowed(path, &inv.allowed_paths)
            || is_live(&d.slot)
        {
            continue;
        }
        out.push(Candidate {
            key: Key {
                backend: inv.backend.clone(),
                kind: Kind::Disk,
                name: d.slot.clone(),
            },
            slot: d.slot.clone(),
            path: path.to_string(),
            disk: Some(d.clone()),
        });
    }
    for f in &inv.files {
        let path = f.name.as_str();
        let Some(slot) = vocab::ownership::slot_of_file(basename(path)) else {
            continue;
        };
        let is_dir = f.kind.as_deref().is_some_and(|k| k.contains("directory"));
        let used = inv
            .disks
            .iter()
            .any(|d| d.file_path.as_deref() == Some(path) || d.slot == slot);
        if is_dir
            || !slot.starts_with(SLOT_PREFIX)
            || Slot::new(slot).is_err()
            || !under_allowed(path, &inv.allowed_paths)
            || used
            || is_live(slot)
        {
            continue;
        }
        out.push(Candidate {
            key: Key {
                backend: inv.backend.clone(),
                kind: Kind::File,
                name: path.to_string(),
            },
            slot: slot.to_string(),
            path: path.to_string(),
            disk: None,
        });
    }
    out
}

/// A candidate with the age the tracker gives it.
#[derive(Debug, Clone)]
pub struct Aged {
    pub candidate: Candidate,
    pub first_seen: SystemTime,
    pub age: Duration,
    /// Seen on an earlier pass and for at least the grace period.
    pub due: bool,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    at: SystemTime,
    pass: u64,
}

/// First-seen times across passes, in memory. RouterOS gives disks no creation time, so age is
/// measured from when this process first saw a candidate; a restart therefore starts every
/// clock again, which only ever delays a deletion.
#[derive(Debug, Default)]
pub struct Tracker {
    pass: u64,
    seen: HashMap<Key, Seen>,
}

impl Tracker {
    /// Successful passes so far.
    pub fn passes(&self) -> u64 {
        self.pass
    }

    /// Records one complete pass. A candidate missing from `found` is forgotten, so one that
    /// disappears and comes back starts its grace period over.
    pub fn observe(
        &mut self,
        now: SystemTime,
        grace: Duration,
        found: Vec<Candidate>,
    ) -> Vec<Aged> {
        self.pass += 1;
        let pass = self.pass;
        let keys: BTreeSet<Key> = found.iter().map(|c| c.key.clone()).collect();
        self.seen.retain(|k, _| keys.contains(k));
        let mut out: Vec<Aged> = found
            .into_iter()
            .map(|c| {
                let seen = *self
                    .seen
                    .entry(c.key.clone())
                    .or_insert(Seen { at: now, pass });
                // A clock that went backwards gives age 0: waiting longer is the safe error.
                let age = now.duration_since(seen.at).unwrap_or_default();
                Aged {
                    due: seen.pass < pass && age >= grace,
                    first_seen: seen.at,
                    age,
                    candidate: c,
                }
            })
            .collect();
        out.sort_by(|a, b| a.candidate.key.cmp(&b.candidate.key));
        out
    }

    /// Forgets a candidate that was deleted (or turned out not to be one).
    pub fn forget(&mut self, key: &Key) {
        self.seen.remove(key);
    }
}

/// What the reconciler does with a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Within the grace period, or first seen on this pass.
    Waiting,
    /// Due, but deletion is off (dry-run).
    WouldDelete,
    /// Due and deletion is on: the reconciler confirms and deletes.
    Delete,
    Deleted,
    DeleteFailed,
    /// At the last check before deletion it no longer matched (a PV appeared, the disk
    /// changed): left alone.
    Kept,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Waiting => "waiting",
            Action::WouldDelete => "would-delete",
            Action::Delete => "delete",
            Action::Deleted => "deleted",
            Action::DeleteFailed => "delete-failed",
            Action::Kept => "kept",
        }
    }
}

pub fn plan(aged: &Aged, delete_enabled: bool) -> Action {
    match (aged.due, delete_enabled) {
        (false, _) => Action::Waiting,
        (true, false) => Action::WouldDelete,
        (true, true) => Action::Delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const LIVE: &str = "pvc-11111111-1111-1111-1111-111111111111";
    const ORPHAN: &str = "pvc-22222222-2222-2222-2222-222222222222";
    const BASE: &str = "/storage-pool/metal-csi";

    fn disk(slot: &str, path: &str) -> Disk {
        Disk {
            slot: slot.into(),
            kind: Some("file".into()),
            file_path: Some(path.into()),
            size_bytes: Some(1 << 30),
            file_size_bytes: None,
            nvme_export: true,
            nvme_port: Some(4420),
            nvme_nqn: None,
            allow_host: None,
            status: None,
            creation_time: None,
            record: Default::default(),
        }
    }

    fn file(path: &str) -> FileEntry {
        FileEntry {
            name: path.into(),
            kind: Some(".img file".into()),
            size_bytes: Some(1 << 30),
            last_modified: None,
            creation_time: None,
        }
    }

    fn inv(disks: Vec<Disk>, files: Vec<FileEntry>) -> Inventory {
        Inventory {
            backend: "default".into(),
            allowed_paths: vec![FilePath::new(BASE).unwrap()],
            disks,
            files,
        }
    }

    fn img(slot: &str) -> String {
        format!("{BASE}/{slot}.img")
    }

    fn names(c: &[Candidate]) -> Vec<(Kind, String)> {
        c.iter().map(|c| (c.key.kind, c.key.name.clone())).collect()
    }

    #[test]
    fn a_disk_with_a_pv_is_not_a_candidate_and_one_without_is() {
        let live = live_volumes(&[format!("default:{LIVE}")], "default");
        let i = inv(
            vec![disk(LIVE, &img(LIVE)), disk(ORPHAN, &img(ORPHAN))],
            vec![],
        );
        assert_eq!(
            names(&candidates(&i, &live)),
            [(Kind::Disk, ORPHAN.to_string())]
        );
    }

    #[test]
    fn bare_legacy_handles_protect_the_default_backend_only() {
        let live = live_volumes(&[LIVE.to_string()], "default");
        let i = inv(vec![disk(LIVE, &img(LIVE))], vec![]);
        assert!(candidates(&i, &live).is_empty());
        let other = Inventory {
            backend: "rds2".into(),
            ..i
        };
        assert_eq!(candidates(&other, &live).len(), 1);
    }

    #[test]
    fn a_file_used_by_a_disk_or_named_by_a_pv_is_not_a_candidate() {
        let live = live_volumes(&[format!("default:{LIVE}")], "default");
        let i = inv(
            vec![disk(ORPHAN, &img(ORPHAN))],
            vec![file(&img(ORPHAN)), file(&img(LIVE))],
        );
        // The disk is a candidate; its file is not (deleting the disk removes it).
        assert_eq!(
            names(&candidates(&i, &live)),
            [(Kind::Disk, ORPHAN.to_string())]
        );
    }

    #[test]
    fn a_leftover_file_without_disk_or_pv_is_a_candidate() {
        let i = inv(vec![], vec![file(&img(ORPHAN))]);
        let c = candidates(&i, &BTreeSet::new());
        assert_eq!(names(&c), [(Kind::File, img(ORPHAN))]);
        assert_eq!(c[0].slot, ORPHAN);
    }

    #[test]
    fn snapshots_are_never_candidates() {
        let snap = "snap-33333333-3333-3333-3333-333333333333";
        let i = inv(
            vec![disk(snap, &img(snap))],
            vec![file(&img(snap)), file(&format!("{BASE}/snap-other.img"))],
        );
        assert!(candidates(&i, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn nothing_outside_the_allowed_paths_is_a_candidate() {
        let outside = [
            format!("/storage-pool/metal-csi-evil/{ORPHAN}.img"),
            format!("/storage-pool/{ORPHAN}.img"),
            format!("/other-pool/metal-csi/{ORPHAN}.img"),
        ];
        let i = inv(
            outside.iter().map(|p| disk(ORPHAN, p)).collect(),
            outside.iter().map(|p| file(p)).collect(),
        );
        assert!(candidates(&i, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn only_pvc_img_files_and_file_disks_qualify() {
        let mut block = disk(ORPHAN, &img(ORPHAN));
        block.kind = Some("nvme".into());
        let mut dir = file(&format!("{BASE}/pvc-dir.img"));
        dir.kind = Some("directory".into());
        let i = inv(
            vec![block],
            vec![
                dir,
                file(&format!("{BASE}/{ORPHAN}.raw")),
                file(&format!("{BASE}/manual.img")),
            ],
        );
        // The nvme-type disk still uses the .img file, which keeps that file too.
        assert!(candidates(&i, &BTreeSet::new()).is_empty());
    }

    fn orphan_disk() -> Vec<Candidate> {
        candidates(
            &inv(vec![disk(ORPHAN, &img(ORPHAN))], vec![]),
            &BTreeSet::new(),
        )
    }

    #[test]
    fn never_due_on_the_first_pass_even_with_no_grace() {
        let mut t = Tracker::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = t.observe(now, Duration::ZERO, orphan_disk());
        assert!(!first[0].due);
        assert_eq!(plan(&first[0], true), Action::Waiting);
        let second = t.observe(now, Duration::ZERO, orphan_disk());
        assert!(second[0].due);
    }

    #[test]
    fn due_only_after_the_grace_period_counted_from_first_sight() {
        let grace = Duration::from_secs(3600);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut t = Tracker::default();
        t.observe(t0, grace, orphan_disk());
        let early = t.observe(t0 + grace - Duration::from_secs(1), grace, orphan_disk());
        assert!(!early[0].due);
        assert_eq!(early[0].age, grace - Duration::from_secs(1));
        let late = t.observe(t0 + grace, grace, orphan_disk());
        assert!(late[0].due);
        assert_eq!(late[0].first_seen, t0);
    }

    #[test]
    fn a_candidate_that_disappears_starts_over() {
        let grace = Duration::from_secs(60);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut t = Tracker::default();
        t.observe(t0, grace, orphan_disk());
        t.observe(t0 + grace, grace, vec![]);
        let back = t.observe(t0 + grace * 2, grace, orphan_disk());
        assert!(!back[0].due);
        assert_eq!(back[0].first_seen, t0 + grace * 2);
    }

    #[test]
    fn a_clock_going_backwards_delays_rather_than_deletes() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut t = Tracker::default();
        t.observe(t0, Duration::from_secs(1), orphan_disk());
        let back = t.observe(
            t0 - Duration::from_secs(10),
            Duration::from_secs(1),
            orphan_disk(),
        );
        assert_eq!(back[0].age, Duration::ZERO);
        assert!(!back[0].due);
    }

    #[test]
    fn dry_run_reports_due_candidates_without_deleting() {
        let mut t = Tracker::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        t.observe(now, Duration::ZERO, orphan_disk());
        let due = t.observe(now, Duration::ZERO, orphan_disk());
        assert_eq!(plan(&due[0], false), Action::WouldDelete);
        assert_eq!(plan(&due[0], true), Action::Delete);
    }
}
