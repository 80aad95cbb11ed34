#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use nvme::{
    ConnectOutcome, ConnectParams, ErrorClass, FabricsDevice, Health, Initiator, NvmeError,
    OrphanReason, RepairOutcome, TargetAddress,
};
use support::*;

/// Records what a connect would have sent and answers like the kernel.
struct ScriptedFabrics {
    path: std::path::PathBuf,
    sent: Mutex<Vec<String>>,
}

impl FabricsDevice for ScriptedFabrics {
    fn path(&self) -> &std::path::Path {
        &self.path
    }
    fn submit(&self, options: &str) -> nvme::Result<String> {
        self.sent.lock().unwrap().push(options.to_string());
        Ok("instance=4,cntlid=2\n".into())
    }
}

fn initiator(s: &FakeSys) -> (Initiator, Arc<ScriptedFabrics>) {
    let fab = Arc::new(ScriptedFabrics {
        path: s.dir.path().join("nvme-fabrics"),
        sent: Mutex::new(Vec::new()),
    });
    (Initiator::with_fabrics(config(s), host(), fab.clone()), fab)
}

fn params(n: &str) -> ConnectParams {
    ConnectParams::new(nqn(n), TargetAddress::parse("10.0.0.1", "4420").unwrap())
}

#[tokio::test]
async fn healthy_recovering_and_orphaned_are_told_apart() {
    let s = FakeSys::new();
    // healthy
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    // reconnecting after an outage: device still there
    s.add_subsystem(1, VOL2);
    s.add_controller(1, 1, VOL2, "connecting", "10.0.0.1", 4420);
    s.add_multipath_ns(1, 1, 1, &[1], 1);
    let (ini, _) = initiator(&s);

    assert_eq!(ini.health(&nqn(VOL1)).await.unwrap(), Some(Health::Healthy));
    assert!(matches!(
        ini.health(&nqn(VOL2)).await.unwrap(),
        Some(Health::Recovering { .. })
    ));
    assert_eq!(
        ini.health(&nqn("nqn.2000-02.com.mikrotik:pvc-absent"))
            .await
            .unwrap(),
        None
    );
    assert!(ini.orphans().await.unwrap().is_empty());
}

#[tokio::test]
async fn orphan_without_block_device_is_reported_with_details() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    let (ini, _) = initiator(&s);
    let orphans = ini.orphans().await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].subsystem.nqn, VOL1);
    match &orphans[0].health {
        Health::Orphaned(OrphanReason::NoBlockDevice { controllers }) => {
            assert_eq!(controllers.len(), 1);
            assert_eq!(controllers[0].0, "nvme0");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn orphan_with_only_dead_controllers_or_none() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "deleting", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    // subsystem kept alive by an open head device, controller already gone
    s.add_subsystem(1, VOL2);
    s.add_multipath_ns(1, 1, 1, &[], 1);
    let (ini, _) = initiator(&s);

    let h1 = ini.health(&nqn(VOL1)).await.unwrap().unwrap();
    let Health::Orphaned(reason) = &h1 else {
        panic!("not orphaned: {h1:?}");
    };
    assert!(matches!(reason, OrphanReason::AllControllersDead { .. }));
    assert!(reason.to_string().contains("nvme0=deleting"), "{reason}");
    let h2 = ini.health(&nqn(VOL2)).await.unwrap().unwrap();
    assert_eq!(h2, Health::Orphaned(OrphanReason::NoControllers));
}

#[tokio::test]
async fn enumeration_and_cleanup_never_touch_unmanaged_subsystems() {
    let s = FakeSys::new();
    // The host's root disk over NVMe-oF: orphan-looking, but not ours.
    s.add_subsystem(0, BOOT);
    s.add_controller(0, 0, BOOT, "live", "10.0.0.1", 4420);
    // A managed orphan.
    s.add_subsystem(1, VOL1);
    s.add_controller(1, 1, VOL1, "live", "10.0.0.1", 4420);
    // A managed healthy volume.
    s.add_subsystem(2, VOL2);
    s.add_controller(2, 2, VOL2, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(2, 1, 1, &[2], 2);
    let (ini, _) = initiator(&s);

    let managed: Vec<String> = ini
        .managed_subsystems()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.subsystem.nqn)
        .collect();
    assert_eq!(managed, [VOL1, VOL2]);

    let results = ini.cleanup_orphans().await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].nqn, VOL1);
    assert_eq!(
        results[0].outcome.as_ref().unwrap().deleted,
        ["nvme1".to_string()]
    );
    assert_eq!(s.delete_written(1), "1");
    assert_eq!(s.delete_written(0), "", "boot controller was touched");
    assert_eq!(s.delete_written(2), "", "healthy controller was touched");
}

#[tokio::test]
async fn disconnect_refuses_unmanaged_nqn() {
    let s = FakeSys::new();
    s.add_subsystem(0, BOOT);
    s.add_controller(0, 0, BOOT, "live", "10.0.0.1", 4420);
    let (ini, _) = initiator(&s);
    let err = ini.disconnect(&nqn(BOOT)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotManaged);
    assert_eq!(s.delete_written(0), "");
}

#[tokio::test]
async fn disconnect_deletes_every_controller_of_the_nqn_only() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_controller(1, 0, VOL1, "connecting", "10.0.0.9", 4420);
    s.add_subsystem(1, VOL2);
    s.add_controller(2, 1, VOL2, "live", "10.0.0.1", 4420);
    let (ini, _) = initiator(&s);
    let out = ini.disconnect(&nqn(VOL1)).await.unwrap();
    assert_eq!(out.deleted, ["nvme0", "nvme1"]);
    assert_eq!(s.delete_written(2), "");
    // not connected at all: idempotent no-op
    let none = ini
        .disconnect(&nqn("nqn.2000-02.com.mikrotik:pvc-gone"))
        .await
        .unwrap();
    assert!(none.deleted.is_empty());
}

#[tokio::test]
async fn repair_disconnects_and_reconnects_an_orphan() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "dead", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    let (ini, fab) = initiator(&s);
    let out = ini.repair(&params(VOL1)).await.unwrap();
    match out {
        RepairOutcome::Repaired {
            was,
            disconnected,
            connected,
        } => {
            assert!(was.is_orphaned());
            assert_eq!(disconnected.deleted, ["nvme0"]);
            assert_eq!(
                connected,
                ConnectOutcome::Connected {
                    controller: Some("nvme4".into())
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(s.delete_written(0), "1");
    let sent = fab.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains(&format!("nqn={VOL1},")));
}

#[tokio::test]
async fn repair_leaves_healthy_recovering_and_unmanaged_alone() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "resetting", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    s.add_subsystem(1, BOOT);
    s.add_controller(1, 1, BOOT, "dead", "10.0.0.1", 4420);
    let (ini, fab) = initiator(&s);

    let out = ini.repair(&params(VOL1)).await.unwrap();
    assert!(matches!(
        out,
        RepairOutcome::NotNeeded(Some(Health::Recovering { .. }))
    ));
    let err = ini.repair(&params(BOOT)).await.unwrap_err();
    assert!(matches!(err, NvmeError::NotManaged { .. }));
    assert_eq!(s.delete_written(0), "");
    assert_eq!(s.delete_written(1), "");
    assert!(fab.sent.lock().unwrap().is_empty());
}
