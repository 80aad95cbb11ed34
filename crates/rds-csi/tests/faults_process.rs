//! Faults only a real process can have: the controller SIGKILLed in the middle of making (or
//! deleting) a volume, then a new controller process taking over the provisioner's retry.
//!
//! The RDS is an rds-sim inside the test (so it can hold a command and show its disks and files);
//! the controller is the `rds-csi` binary, killed with SIGKILL (no drain, no SSH goodbye).

#![allow(clippy::unwrap_used)]

mod procsim;

use std::time::Duration;

use csi::v1 as pb;
use procsim::*;
use tonic::Code;

fn pvc_name() -> String {
    format!("pvc-{}", uuid::Uuid::new_v4())
}

/// Killed after `/disk add` was applied and while its verifying print is held by the RDS: the
/// disk exists but no controller ever verified it. The provisioner's retry through a new
/// controller process answers OK with the same id, leaving exactly one disk and one file, and
/// DeleteVolume then leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_between_disk_add_and_its_verification() {
    let rig = Rig::start(1 << 40).await;
    // A long read deadline so the held print is still pending when the process dies.
    let mut first = rig.controller("first", &["--rds-read-timeout", "60s"]);
    let (_, mut c) = first.clients().await;
    let name = pvc_name();
    let verify = format!("/disk print detail where slot={name}");
    rig.sim.faults().hang_next(&verify);
    let n = name.clone();
    let call = tokio::spawn(async move { c.create_volume(create_req(&n, 1)).await });
    let sim = &rig.sim;
    wait_for(
        "the add to be applied and its verifying print to be held",
        Duration::from_secs(20),
        || {
            let cmds = sim.commands();
            let add = cmds
                .iter()
                .position(|l| l.starts_with("/disk add") && l.contains(&name));
            add.is_some_and(|i| cmds[i..].contains(&verify)) && sim.commands_running() == 1
        },
    )
    .await;
    assert_eq!(disks_named(&rig.sim, &name), 1, "the add was applied");
    first.sigkill();
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "the caller of the killed controller sees a transport error: {err:?}"
    );
    // The dead process's connection goes away with it.
    wait_for(
        "the killed controller's SSH connection to close",
        Duration::from_secs(10),
        || rig.sim.connection_count() == 0 && rig.sim.sessions_open() == 0,
    )
    .await;
    assert_eq!(
        (disks_named(&rig.sim, &name), files_named(&rig.sim, &name)),
        (1, 1)
    );

    // Kubernetes restarts the pod; the provisioner retries the same CreateVolume.
    let mut second = rig.controller("second", &[]);
    let (_, mut c) = second.clients().await;
    let v = c
        .create_volume(create_req(&name, 1))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, format!("default:{name}"));
    assert_eq!(v.capacity_bytes, GIB);
    assert!(
        v.volume_context.contains_key("nqn"),
        "{:?}",
        v.volume_context
    );
    assert_eq!(
        (disks_named(&rig.sim, &name), files_named(&rig.sim, &name)),
        (1, 1),
        "the retry must find the volume, not make a second one"
    );
    let disk = rig
        .sim
        .disks()
        .into_iter()
        .find(|d| d.slot == name)
        .unwrap();
    assert!(disk.nvme_export, "the found volume is the exported one");

    c.delete_volume(pb::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        rig.sim.disks().is_empty() && rig.sim.files().is_empty(),
        "disks {:?} files {:?}",
        rig.sim.disks(),
        rig.sim.files()
    );
}

/// Killed while `/disk add` itself is held before the RDS applied it: nothing exists, and the
/// new controller's retry makes the volume exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_while_its_disk_add_is_not_yet_applied() {
    let rig = Rig::start(1 << 40).await;
    let mut first = rig.controller("first", &["--rds-write-timeout", "60s"]);
    let (_, mut c) = first.clients().await;
    let name = pvc_name();
    rig.sim.faults().hang_next("/disk add");
    let n = name.clone();
    let call = tokio::spawn(async move { c.create_volume(create_req(&n, 1)).await });
    let sim = &rig.sim;
    wait_for("the add to be held", Duration::from_secs(20), || {
        sim.commands()
            .iter()
            .any(|l| l.starts_with("/disk add") && l.contains(&name))
    })
    .await;
    first.sigkill();
    assert!(call.await.unwrap().is_err());
    assert_eq!(
        (disks_named(&rig.sim, &name), files_named(&rig.sim, &name)),
        (0, 0),
        "a held add must not have been applied"
    );

    let mut second = rig.controller("second", &[]);
    let (_, mut c) = second.clients().await;
    let v = c
        .create_volume(create_req(&name, 1))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, format!("default:{name}"));
    assert_eq!(
        (disks_named(&rig.sim, &name), files_named(&rig.sim, &name)),
        (1, 1)
    );
    c.delete_volume(pb::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(rig.sim.disks().is_empty() && rig.sim.files().is_empty());
}

/// Killed after `/disk set` grew the disk but before its answer arrived (the RDS holds the reply):
/// the retried ControllerExpandVolume through a new controller answers the new size, with one
/// disk and one file at that size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_after_disk_set_was_applied_before_its_answer() {
    let rig = Rig::start(1 << 40).await;
    let mut first = rig.controller("first", &["--rds-write-timeout", "60s"]);
    let (_, mut c) = first.clients().await;
    let name = pvc_name();
    let v = c
        .create_volume(create_req(&name, 1))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let grow = pb::ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: 3 * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(mount_cap()),
        ..Default::default()
    };
    rig.sim.faults().hang_next("/disk set!");
    let req = grow.clone();
    let call = tokio::spawn(async move { c.controller_expand_volume(req).await });
    let sim = &rig.sim;
    wait_for("the set to be applied", Duration::from_secs(20), || {
        sim.disks()
            .iter()
            .any(|d| d.slot == name && d.size == 3 << 30)
            && sim.commands_running() == 1
    })
    .await;
    first.sigkill();
    assert!(call.await.unwrap().is_err());

    let mut second = rig.controller("second", &[]);
    let (_, mut c) = second.clients().await;
    let r = c.controller_expand_volume(grow).await.unwrap().into_inner();
    assert_eq!(r.capacity_bytes, 3 * GIB);
    let disk = rig
        .sim
        .disks()
        .into_iter()
        .find(|d| d.slot == name)
        .unwrap();
    assert_eq!(disk.size, 3 << 30);
    let file = rig
        .sim
        .files()
        .into_iter()
        .find(|f| f.path.ends_with(&format!("/{name}.img")))
        .unwrap();
    assert_eq!(file.size, 3 << 30);
    assert_eq!(
        (disks_named(&rig.sim, &name), files_named(&rig.sim, &name)),
        (1, 1)
    );
}

/// Killed in the middle of a burst of creates (some adds applied, some verified, some not yet
/// sent): the provisioner's retries through a new controller make each volume exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_mid_burst_leaves_each_volume_once_after_retries() {
    let rig = Rig::start(1 << 40).await;
    let mut first = rig.controller("first", &[]);
    let (_, c) = first.clients().await;
    rig.sim.faults().set_latency(Duration::from_millis(300));
    let names: Vec<String> = (0..8).map(|_| pvc_name()).collect();
    let mut calls = Vec::new();
    for n in &names {
        let mut c = c.clone();
        let req = create_req(n, 1);
        calls.push(tokio::spawn(async move { c.create_volume(req).await }));
    }
    let sim = &rig.sim;
    wait_for("some adds to be applied", Duration::from_secs(20), || {
        sim.disks().len() >= 2
    })
    .await;
    first.sigkill();
    for call in calls {
        let _ = call.await.unwrap();
    }
    let made = rig.sim.disks().len();
    assert!(
        made < names.len(),
        "the kill came too late to interrupt anything"
    );
    rig.sim.faults().set_latency(Duration::ZERO);

    let mut second = rig.controller("second", &[]);
    let (_, mut c) = second.clients().await;
    for n in &names {
        let v = c
            .create_volume(create_req(n, 1))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(v.volume_id, format!("default:{n}"));
    }
    for n in &names {
        assert_eq!(
            (disks_named(&rig.sim, n), files_named(&rig.sim, n)),
            (1, 1),
            "{n}"
        );
    }
    assert_eq!(rig.sim.disks().len(), names.len());
    assert_eq!(rig.sim.files().len(), names.len());
}

/// Killed after `/disk remove` was applied and while `/file remove` is held: the retried
/// DeleteVolume through a new controller must leave neither the disk nor its backing file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_between_disk_remove_and_file_remove() {
    let rig = Rig::start(1 << 40).await;
    let mut first = rig.controller("first", &["--rds-write-timeout", "60s"]);
    let (_, mut c) = first.clients().await;
    let name = pvc_name();
    let v = c
        .create_volume(create_req(&name, 1))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    rig.sim.faults().hang_next("/file remove");
    let id = v.volume_id.clone();
    let call = tokio::spawn(async move {
        c.delete_volume(pb::DeleteVolumeRequest {
            volume_id: id,
            ..Default::default()
        })
        .await
    });
    let sim = &rig.sim;
    wait_for(
        "the file remove to be held",
        Duration::from_secs(20),
        || sim.commands().iter().any(|l| l.starts_with("/file remove")),
    )
    .await;
    assert_eq!(
        disks_named(&rig.sim, &name),
        0,
        "the disk remove was applied"
    );
    first.sigkill();
    assert!(call.await.unwrap().is_err());
    assert_eq!(files_named(&rig.sim, &name), 1);

    let mut second = rig.controller("second", &[]);
    let (_, mut c) = second.clients().await;
    c.delete_volume(pb::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        (disks_named(&rig.sim, &name), files_named(&rig.sim, &name)),
        (0, 0),
        "files: {:?}",
        rig.sim.files()
    );
}
