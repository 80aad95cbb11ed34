//! Controller behaviour under RDS faults, over the real stack (gRPC → controller → SSH →
//! rds-sim): every case checks the gRPC code, that no volume is lost, duplicated or half-made,
//! and that service resumes.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use tonic::Code;

fn disks_named(h: &Sandbox, slot: &str) -> usize {
    h.sim().disks().iter().filter(|d| d.slot == slot).count()
}

fn files_named(h: &Sandbox, slot: &str) -> usize {
    h.sim()
        .files()
        .iter()
        .filter(|f| f.path.contains(slot))
        .count()
}

#[tokio::test]
async fn a_disk_that_fails_verification_is_removed_with_its_file() {
    let mut h = start().await;
    let name = pvc_name();
    // The RDS accepts the add but silently drops the export flag: the verifying print shows a
    // disk that is not what was asked for.
    h.sim()
        .faults()
        .rewrite_next("/disk add", "nvme-tcp-export=yes", "nvme-tcp-export=no");
    let err = h
        .controller
        .create_volume(create_req(&name, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{}", err.message());
    assert_eq!(disks_named(&h, &name), 0, "half-made disk left behind");
    assert_eq!(
        files_named(&h, &name),
        0,
        "backing file of the half-made disk left behind"
    );
    // A retry makes the volume properly.
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    assert_eq!(disks_named(&h, &name), 1);
    assert!(v.volume_context.contains_key("nqn"));
    h.stop().await;
}

#[tokio::test]
async fn connection_dropped_after_the_add_was_applied_yields_one_volume() {
    let mut h = start().await;
    let name = pvc_name();
    h.sim().faults().drop_next("/disk add!");
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    assert_eq!(v.capacity_bytes, GIB);
    assert_eq!(disks_named(&h, &name), 1);
    let adds = h
        .sim()
        .commands()
        .iter()
        .filter(|c| c.starts_with("/disk add"))
        .count();
    assert_eq!(
        adds,
        1,
        "an applied add must not be sent again: {:?}",
        h.sim().commands()
    );
    h.stop().await;
}

#[tokio::test]
async fn connection_dropped_before_the_add_was_applied_is_retried() {
    let mut h = start().await;
    let name = pvc_name();
    h.sim().faults().drop_next("/disk add");
    h.controller
        .create_volume(create_req(&name, 1))
        .await
        .unwrap();
    assert_eq!(disks_named(&h, &name), 1);
    h.stop().await;
}

#[tokio::test]
async fn service_resumes_after_an_rds_restart() {
    let mut h = start().await;
    let a = pvc_name();
    h.controller.create_volume(create_req(&a, 1)).await.unwrap();
    h.sim().restart().await;
    let b = pvc_name();
    h.controller.create_volume(create_req(&b, 1)).await.unwrap();
    let list = h
        .controller
        .list_volumes(csi::v1::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.entries.len(),
        2,
        "state survives the restart and both volumes are listed"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failing_command_is_internal_and_leaves_nothing() {
    let mut h = start().await;
    let name = pvc_name();
    h.sim().faults().fail_nth(1, "failure: execution error");
    let err = h
        .controller
        .create_volume(create_req(&name, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{}", err.message());
    assert!(
        err.message().contains("execution error"),
        "{}",
        err.message()
    );
    assert_eq!(disks_named(&h, &name), 0);
    h.stop().await;
}

#[tokio::test]
async fn errors_printed_on_stderr_are_classified_too() {
    let mut h = start().await;
    h.sim().faults().errors_on_stderr(true);
    h.sim().faults().disk_full(true);
    let err = h
        .controller
        .create_volume(create_req(&pvc_name(), 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    h.stop().await;
}
