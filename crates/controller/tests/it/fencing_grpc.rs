//! ControllerPublish/Unpublish over the real stack: gRPC on a unix socket → controller → SSH →
//! rds-sim, with the sandbox's in-memory cluster standing in for Kubernetes.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use csi::v1 as pb;
use csi::v1::volume_capability::access_mode::Mode;
use fencing::annotations as ann;
use fencing::cluster::{ClusterError, EventKind};
use sandbox::{Sandbox, SandboxOptions};
use tonic::Code;
use vocab::params;

fn cap(mode: Mode, block: bool) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(if block {
            pb::volume_capability::AccessType::Block(pb::volume_capability::BlockVolume {})
        } else {
            pb::volume_capability::AccessType::Mount(pb::volume_capability::MountVolume {
                fs_type: "xfs".into(),
                ..Default::default()
            })
        }),
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

async fn start() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).await.unwrap()
}

/// Creates a 1 GiB volume for PVC apps/data and returns it.
async fn create(h: &mut Sandbox, c: pb::VolumeCapability) -> pb::Volume {
    let mut parameters = HashMap::new();
    parameters.insert(params::PVC_NAMESPACE.to_string(), "apps".to_string());
    parameters.insert(params::PVC_NAME.to_string(), "data".to_string());
    h.controller
        .create_volume(pb::CreateVolumeRequest {
            name: format!("pvc-{}", uuid::Uuid::new_v4()),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![c],
            parameters,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

fn publish(
    v: &pb::Volume,
    node: &str,
    c: pb::VolumeCapability,
) -> pb::ControllerPublishVolumeRequest {
    pb::ControllerPublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(c),
        volume_context: v.volume_context.clone(),
        ..Default::default()
    }
}

fn unpublish(v: &pb::Volume, node: &str) -> pb::ControllerUnpublishVolumeRequest {
    pb::ControllerUnpublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        ..Default::default()
    }
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn publish_fences_a_single_node_volume_over_grpc() {
    let mut h = start().await;
    let rwo = cap(Mode::SingleNodeWriter, false);
    let v = create(&mut h, rwo.clone()).await;
    h.cluster
        .add_pv("pv-data", &v.volume_id, Some(("apps", "data")));

    let first = h
        .controller
        .controller_publish_volume(publish(&v, "node-a", rwo.clone()))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(
        first["nvme_address"],
        v.volume_context[params::C_NVME_ADDRESS]
    );
    assert_eq!(first["nvme_port"], v.volume_context[params::C_NVME_PORT]);
    assert_eq!(first["nvme_nqn"], v.volume_context[params::C_NQN]);
    assert_eq!(first["fs_type"], "xfs");
    let again = h
        .controller
        .controller_publish_volume(publish(&v, "node-a", rwo.clone()))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(again, first, "a retried publish answers the same context");
    assert_eq!(
        h.cluster.pv("pv-data").unwrap().annotations[ann::ATTACHED_NODE],
        "node-a"
    );

    let err = h
        .controller
        .controller_publish_volume(publish(&v, "node-b", rwo.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("node-a") && err.message().contains("node-b"),
        "{}",
        err.message()
    );
    let conflict = h.cluster.events_with_reason("AttachmentConflict");
    assert_eq!(conflict.len(), 1);
    assert_eq!(conflict[0].kind, EventKind::Warning);
    assert_eq!(
        conflict[0].pvc,
        Some(("apps".into(), "data".into())),
        "CreateVolume copied the PVC identity into the volume_context"
    );

    // Unpublish of the wrong node changes nothing; of the holder frees the volume at once.
    h.controller
        .controller_unpublish_volume(unpublish(&v, "node-b"))
        .await
        .unwrap();
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), vec!["node-a"]);
    for _ in 0..2 {
        h.controller
            .controller_unpublish_volume(unpublish(&v, "node-a"))
            .await
            .unwrap();
    }
    assert!(
        !h.cluster
            .pv("pv-data")
            .unwrap()
            .annotations
            .contains_key(ann::ATTACHED_NODE)
    );
    h.controller
        .controller_publish_volume(publish(&v, "node-b", rwo))
        .await
        .unwrap();
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), vec!["node-b"]);
    let s = h.fencing.stats();
    assert_eq!(
        (s.attaches_total, s.detaches_total, s.conflicts_total),
        (2, 1, 1)
    );
    h.stop().await;
}

#[tokio::test]
async fn multi_node_block_volumes_take_two_nodes_over_grpc() {
    let mut h = start().await;
    let rwx = cap(Mode::MultiNodeMultiWriter, true);
    let v = create(&mut h, rwx.clone()).await;
    let ctx = h
        .controller
        .controller_publish_volume(publish(&v, "node-a", rwx.clone()))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert!(
        !ctx.contains_key("fs_type"),
        "raw block has no filesystem: {ctx:?}"
    );
    h.controller
        .controller_publish_volume(publish(&v, "node-b", rwx.clone()))
        .await
        .unwrap();
    let err = h
        .controller
        .controller_publish_volume(publish(&v, "node-c", rwx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(h.fencing.stats().migrations_in_flight, 1);
    h.controller
        .controller_unpublish_volume(unpublish(&v, "node-a"))
        .await
        .unwrap();
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), vec!["node-b"]);
    h.stop().await;
}

#[tokio::test]
async fn publish_and_unpublish_answer_the_right_codes() {
    let mut h = start().await;
    let rwo = cap(Mode::SingleNodeWriter, false);
    let v = create(&mut h, rwo.clone()).await;
    let c = &mut h.controller;

    let mut no_volume = publish(&v, "node-a", rwo.clone());
    no_volume.volume_id.clear();
    assert_eq!(
        code(c.controller_publish_volume(no_volume).await),
        Code::InvalidArgument
    );
    let no_node = publish(&v, "", rwo.clone());
    assert_eq!(
        code(c.controller_publish_volume(no_node).await),
        Code::InvalidArgument
    );
    let mut no_cap = publish(&v, "node-a", rwo.clone());
    no_cap.volume_capability = None;
    let err = c.controller_publish_volume(no_cap).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("capability"), "{}", err.message());
    // Two nodes writing one filesystem would corrupt it.
    let rwx_fs = publish(&v, "node-a", cap(Mode::MultiNodeMultiWriter, false));
    let err = c.controller_publish_volume(rwx_fs).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("Block"), "{}", err.message());

    let mut missing = publish(&v, "node-a", rwo.clone());
    missing.volume_id = format!("default:pvc-{}", uuid::Uuid::new_v4());
    assert_eq!(
        code(c.controller_publish_volume(missing).await),
        Code::NotFound
    );
    let mut foreign = publish(&v, "node-a", rwo.clone());
    foreign.volume_id = "default:system-disk".into();
    assert_eq!(
        code(c.controller_publish_volume(foreign).await),
        Code::NotFound
    );

    let mut empty = unpublish(&v, "node-a");
    empty.volume_id.clear();
    assert_eq!(
        code(c.controller_unpublish_volume(empty).await),
        Code::InvalidArgument
    );
    let mut never = unpublish(&v, "node-a");
    never.volume_id = format!("default:pvc-{}", uuid::Uuid::new_v4());
    assert_eq!(code(c.controller_unpublish_volume(never).await), Code::Ok);
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn outages_fail_publish_closed() {
    let mut h = start().await;
    let rwo = cap(Mode::SingleNodeWriter, false);
    let v = create(&mut h, rwo.clone()).await;
    h.cluster.add_pv("pv-data", &v.volume_id, None);

    h.cluster
        .fail_pv_lookups(Some(ClusterError::Unavailable("apiserver down".into())));
    let err = h
        .controller
        .controller_publish_volume(publish(&v, "node-a", rwo.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("apiserver down"),
        "{}",
        err.message()
    );
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    h.cluster.fail_pv_lookups(None);

    // An RDS outage is UNAVAILABLE, never NOT_FOUND, and fences nothing.
    let sims = std::mem::take(&mut h.sims);
    for s in sims {
        s.sim.shutdown().await;
    }
    let err = h
        .controller
        .controller_publish_volume(publish(&v, "node-a", rwo))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    // Unpublish needs no RDS.
    h.controller
        .controller_unpublish_volume(unpublish(&v, "node-a"))
        .await
        .unwrap();
    h.stop().await;
}
