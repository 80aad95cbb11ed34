//! The orphan reconciler over the real stack: rds-sim behind the production SSH client, PVs in
//! an in-memory cluster, time moved by a manual clock. Backing files left after `/disk remove`
//! (as RouterOS leaves them) are the orphan files.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use controller::orphans::{Action, Kind, OrphanConfig, OrphanReconciler, Report};
use fencing::MemoryCluster;
use fencing::clock::ManualClock;
use sandbox::{SandboxOptions, start_sim};
use vocab::Backends;
use vocab::config::build_backend;

const LIVE: &str = "pvc-11111111-1111-1111-1111-111111111111";
const LEGACY: &str = "pvc-44444444-4444-4444-4444-444444444444";
const ORPHAN_DISK: &str = "pvc-22222222-2222-2222-2222-222222222222";
const ORPHAN_FILE: &str = "pvc-33333333-3333-3333-3333-333333333333";
const OUTSIDE: &str = "pvc-55555555-5555-5555-5555-555555555555";
const SNAP: &str = "snap-66666666-6666-6666-6666-666666666666";
const BASE: &str = "/storage-pool/metal-csi";
const GRACE: Duration = Duration::from_secs(3600);

fn add_disk(sim: &rds_sim::Sim, slot: &str, path: &str) {
    sim.run_local(&format!(
        "/disk add type=file file-path={path} file-size=1G slot={slot}"
    ))
    .unwrap();
}

struct Stack {
    sim: rds_sim::Sim,
    backends: Arc<Backends>,
    cluster: Arc<MemoryCluster>,
    _dir: tempfile::TempDir,
}

/// A sim holding live volumes (one by `<backend>:<slot>`, one by a bare legacy handle), a
/// snapshot, an orphan disk, a leftover file, and a disk and a file outside the volume paths.
async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let s = start_sim(dir.path(), "default", &SandboxOptions::default())
        .await
        .unwrap();
    let sim = s.sim;
    for slot in [LIVE, LEGACY, ORPHAN_DISK, ORPHAN_FILE, SNAP] {
        add_disk(&sim, slot, &format!("{BASE}/{slot}.img"));
    }
    add_disk(
        &sim,
        OUTSIDE,
        &format!("/storage-pool/elsewhere/{OUTSIDE}.img"),
    );
    // RouterOS keeps the backing file after `/disk remove`.
    sim.run_local(&format!("/disk remove [find slot={ORPHAN_FILE}]"))
        .unwrap();
    sim.run_local(&format!("/disk remove [find slot={OUTSIDE}]"))
        .unwrap();
    sim.clear_commands();
    let backend = build_backend(&s.settings, None).unwrap();
    let backends = Arc::new(Backends::new("default", vec![backend]).unwrap());
    let cluster = Arc::new(MemoryCluster::new());
    cluster.add_pv("pv-live", &format!("default:{LIVE}"), None);
    cluster.add_pv("pv-legacy", LEGACY, None);
    Stack {
        sim,
        backends,
        cluster,
        _dir: dir,
    }
}

fn reconciler(s: &Stack, delete: bool, clock: Arc<ManualClock>) -> OrphanReconciler {
    let config = OrphanConfig {
        grace_period: GRACE,
        delete,
        ..OrphanConfig::default()
    };
    OrphanReconciler::new(s.backends.clone(), s.cluster.clone(), config, true).with_clock(clock)
}

fn findings(r: &Report) -> Vec<(Kind, String, Action)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.slot.clone(), f.action))
        .collect()
}

fn slots(sim: &rds_sim::Sim) -> Vec<String> {
    let mut v: Vec<String> = sim.disks().into_iter().map(|d| d.slot).collect();
    v.sort();
    v
}

fn files(sim: &rds_sim::Sim) -> Vec<String> {
    let mut v: Vec<String> = sim.files().into_iter().map(|f| f.path).collect();
    v.sort();
    v
}

#[tokio::test]
async fn dry_run_reports_the_orphans_and_deletes_nothing() {
    let s = stack().await;
    let (disks, files_before) = (slots(&s.sim), files(&s.sim));
    let clock = Arc::new(ManualClock::default());
    let r = reconciler(&s, false, clock.clone());

    let first = r.run_once().await;
    assert_eq!(first.error, None);
    assert_eq!(
        findings(&first),
        [
            (Kind::Disk, ORPHAN_DISK.to_string(), Action::Waiting),
            (Kind::File, ORPHAN_FILE.to_string(), Action::Waiting),
        ]
    );
    clock.advance(GRACE);
    let due = r.run_once().await;
    assert_eq!(
        findings(&due),
        [
            (Kind::Disk, ORPHAN_DISK.to_string(), Action::WouldDelete),
            (Kind::File, ORPHAN_FILE.to_string(), Action::WouldDelete),
        ]
    );
    assert_eq!(due.findings[0].age_secs, GRACE.as_secs());
    assert!(due.dry_run);
    assert_eq!(slots(&s.sim), disks);
    assert_eq!(files(&s.sim), files_before);
    assert!(
        !s.sim.commands().iter().any(|c| c.contains("remove")),
        "{:?}",
        s.sim.commands()
    );
    let stats = r.stats();
    assert_eq!((stats.passes, stats.disks, stats.files), (2, 1, 1));
    assert_eq!(stats.disks_deleted + stats.files_deleted, 0);
    s.sim.shutdown().await;
}

#[tokio::test]
async fn with_deletion_on_exactly_the_orphans_go_after_the_grace_period() {
    let s = stack().await;
    let clock = Arc::new(ManualClock::default());
    let r = reconciler(&s, true, clock.clone());

    r.run_once().await;
    clock.advance(GRACE - Duration::from_secs(1));
    let early = r.run_once().await;
    assert!(early.findings.iter().all(|f| f.action == Action::Waiting));
    assert_eq!(r.stats().disks_deleted, 0);

    clock.advance(Duration::from_secs(1));
    let due = r.run_once().await;
    assert_eq!(
        findings(&due),
        [
            (Kind::Disk, ORPHAN_DISK.to_string(), Action::Deleted),
            (Kind::File, ORPHAN_FILE.to_string(), Action::Deleted),
        ]
    );
    assert_eq!(slots(&s.sim), [LIVE, LEGACY, SNAP]);
    assert_eq!(
        files(&s.sim),
        [
            format!("/storage-pool/elsewhere/{OUTSIDE}.img"),
            format!("{BASE}/{LIVE}.img"),
            format!("{BASE}/{LEGACY}.img"),
            format!("{BASE}/{SNAP}.img"),
        ]
    );
    let stats = r.stats();
    assert_eq!((stats.disks_deleted, stats.files_deleted), (1, 1));

    // Nothing is left to find.
    clock.advance(GRACE);
    assert!(r.run_once().await.findings.is_empty());
    s.sim.shutdown().await;
}

#[tokio::test]
async fn a_pv_that_appears_before_the_grace_ends_saves_the_volume() {
    let s = stack().await;
    let clock = Arc::new(ManualClock::default());
    let r = reconciler(&s, true, clock.clone());
    r.run_once().await;
    // The provisioner made the PV late (a slow CreateVolume): the disk is live now.
    s.cluster
        .add_pv("pv-late", &format!("default:{ORPHAN_DISK}"), None);
    clock.advance(GRACE);
    let due = r.run_once().await;
    assert_eq!(
        findings(&due),
        [(Kind::File, ORPHAN_FILE.to_string(), Action::Deleted)]
    );
    assert!(slots(&s.sim).contains(&ORPHAN_DISK.to_string()));
    s.sim.shutdown().await;
}

#[tokio::test]
async fn an_rds_failure_mid_pass_deletes_nothing() {
    let s = stack().await;
    let clock = Arc::new(ManualClock::default());
    let r = reconciler(&s, true, clock.clone());
    r.run_once().await;
    clock.advance(GRACE);
    // The file listing (the third command of a pass) is refused by the RDS.
    s.sim
        .faults()
        .fail_nth(3, "failure: simulated file listing error");
    let failed = r.run_once().await;
    assert!(failed.error.is_some(), "{failed:?}");
    assert!(slots(&s.sim).contains(&ORPHAN_DISK.to_string()));
    assert!(files(&s.sim).contains(&format!("{BASE}/{ORPHAN_FILE}.img")));
    assert_eq!(r.stats().failed_passes, 1);
    s.sim.shutdown().await;
}
