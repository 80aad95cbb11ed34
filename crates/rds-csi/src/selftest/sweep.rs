//! Finding and removing selftest disks and files, and nothing else.
//!
//! Used twice: before a run, for what an earlier run left (crash, SIGKILL, lost connection),
//! and after a run, on every exit path, for what this run made. Only items with the exact
//! selftest shape are ever removed; a disk whose slot has the prefix but whose backing file is
//! elsewhere, or a foreign file in the scratch directory, makes the selftest refuse to start.

use std::time::Duration;

use rds::RdsClient;
use routeros::{Disk, FileEntry, FilePath, Slot};

use super::names::{self, PREFIX, RunId};

/// What the RDS holds under the selftest's names, sorted into ours and not ours.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Disks with the selftest shape, with the run that made them.
    pub disks: Vec<(RunId, Disk)>,
    /// Image files in the scratch directory with the selftest shape.
    pub files: Vec<(RunId, FilePath)>,
    /// Things that share the prefix or the directory but were not made by a selftest.
    pub foreign: Vec<String>,
}

impl Inventory {
    pub fn is_empty(&self) -> bool {
        self.disks.is_empty() && self.files.is_empty() && self.foreign.is_empty()
    }

    /// Runs that started less than `grace` before `now`: maybe still in progress elsewhere.
    pub fn young_runs(&self, now: u64, grace: Duration) -> Vec<String> {
        let mut runs: Vec<String> = self
            .disks
            .iter()
            .map(|(r, _)| r)
            .chain(self.files.iter().map(|(r, _)| r))
            .filter(|r| r.started.saturating_add(grace.as_secs()) > now)
            .map(RunId::label)
            .collect();
        runs.sort();
        runs.dedup();
        runs
    }

    /// Keeps only what `keep` says belongs to the run being cleaned.
    pub fn only(self, keep: impl Fn(&RunId) -> bool) -> Inventory {
        Inventory {
            disks: self.disks.into_iter().filter(|(r, _)| keep(r)).collect(),
            files: self.files.into_iter().filter(|(r, _)| keep(r)).collect(),
            foreign: Vec::new(),
        }
    }

    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .disks
            .iter()
            .map(|(_, d)| format!("disk {}", d.slot))
            .collect();
        parts.extend(
            self.files
                .iter()
                .map(|(_, f)| format!("file {}", f.as_str())),
        );
        parts.extend(self.foreign.iter().cloned());
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Lists disks by the selftest prefix and files in the scratch directory (two prints).
pub async fn inventory(client: &RdsClient, scratch: &FilePath) -> Result<Inventory, rds::RdsError> {
    let prefix = Slot::new(PREFIX)?;
    let disks = client.list_disks(&prefix).await?;
    let files = client.list_files(scratch).await?;
    let mut inv = Inventory::default();
    for d in disks {
        match names::parse_slot(&d.slot) {
            Some((run, _)) if is_our_file(scratch, &d.slot, d.file_path.as_deref()) => {
                inv.disks.push((run, d))
            }
            _ => inv.foreign.push(format!(
                "disk {} (file {})",
                d.slot,
                d.file_path.as_deref().unwrap_or("none")
            )),
        }
    }
    for f in files {
        match our_image(scratch, &f) {
            Some((run, path)) => inv.files.push((run, path)),
            None => inv.foreign.push(format!(
                "{} {}",
                f.kind.as_deref().unwrap_or("file"),
                f.name
            )),
        }
    }
    Ok(inv)
}

fn is_our_file(scratch: &FilePath, slot: &str, file: Option<&str>) -> bool {
    let Ok(slot) = Slot::new(slot) else {
        return false;
    };
    names::image_path(scratch, &slot).is_ok_and(|p| Some(p.as_str()) == file)
}

fn our_image(scratch: &FilePath, f: &FileEntry) -> Option<(RunId, FilePath)> {
    if f.kind.as_deref().is_some_and(|k| k.contains("directory")) {
        return None;
    }
    let base = f.name.strip_prefix(scratch.as_str())?.strip_prefix('/')?;
    let slot = base.strip_suffix(".img")?;
    let (run, _) = names::parse_slot(slot)?;
    let path = FilePath::new(&f.name).ok()?;
    (names::image_path(scratch, &Slot::new(slot).ok()?).ok()? == path).then_some((run, path))
}

/// What a removal did; `left` names what is still there.
#[derive(Debug, Default)]
pub struct Removal {
    pub removed: Vec<String>,
    pub left: Vec<String>,
}

/// Removes the disks (each with its backing file) and files in `inv`, then the scratch
/// directory when nothing else is in it. Goes on after a failure so one stuck item does not
/// keep the others on the RDS.
pub async fn remove(client: &RdsClient, scratch: &FilePath, inv: &Inventory) -> Removal {
    let mut out = Removal::default();
    for (_, disk) in &inv.disks {
        match client.delete_found_disk(disk).await {
            Ok(outcome) => {
                out.removed.push(format!("disk {}", disk.slot));
                if let Some(file) = outcome.leftover_file {
                    out.left.push(format!("file {file}"));
                }
            }
            Err(e) => out.left.push(format!("disk {} ({e})", disk.slot)),
        }
    }
    let disk_files: Vec<&str> = inv
        .disks
        .iter()
        .filter_map(|(_, d)| d.file_path.as_deref())
        .collect();
    for (_, path) in inv
        .files
        .iter()
        .filter(|(_, p)| !disk_files.contains(&p.as_str()))
    {
        match client.remove_file(path).await {
            Ok(()) => out.removed.push(format!("file {}", path.as_str())),
            Err(e) => out.left.push(format!("file {} ({e})", path.as_str())),
        }
    }
    // The directory goes only when the RDS shows nothing in it any more: files left by a
    // failed removal above, or anything not ours, keep it.
    match client.list_files(scratch).await {
        Ok(rest) if rest.is_empty() => {
            if let Err(e) = client.remove_file(scratch).await {
                out.left
                    .push(format!("directory {} ({e})", scratch.as_str()));
            }
        }
        Ok(rest) => {
            for f in rest {
                let what = format!("file {}", f.name);
                if !out.left.iter().any(|l| l.starts_with(&what)) {
                    out.left.push(what);
                }
            }
        }
        Err(e) => out
            .left
            .push(format!("directory {} (not listed: {e})", scratch.as_str())),
    }
    out
}
