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

/// A controller whose default backend has two storage addresses (multipath).
async fn start_two_paths() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let o = SandboxOptions::default();
    let sim = sandbox::start_sim(dir.path(), "default", &o).await.unwrap();
    let mut settings = sim.settings.clone();
    settings.nvme_addresses = Some(vec![
        "10.0.1.2".parse().unwrap(),
        "10.0.2.2".parse().unwrap(),
    ]);
    Sandbox::serve(dir, vec![sim], &[settings], None)
        .await
        .unwrap()
}

fn paths_of(ctx: &HashMap<String, String>) -> (&str, &str) {
    (ctx["nvme_addresses"].as_str(), ctx["nvme_address"].as_str())
}

#[tokio::test]
async fn publish_sends_nodes_only_to_storage_addresses_the_operator_configured() {
    let mut h = start_two_paths().await;
    let rwo = cap(Mode::SingleNodeWriter, false);
    let v = create(&mut h, rwo.clone()).await;
    assert_eq!(
        v.volume_context[params::C_NVME_ADDRESSES],
        "10.0.1.2,10.0.2.2"
    );
    assert_eq!(v.volume_context[params::C_NVME_ADDRESS], "10.0.1.2");
    h.cluster
        .add_pv("pv-data", &v.volume_id, Some(("apps", "data")));
    let mut publish_with = async |ctx: HashMap<String, String>| {
        let mut req = publish(&v, "node-a", rwo.clone());
        req.volume_context = ctx;
        h.controller
            .controller_publish_volume(req)
            .await
            .map(|r| r.into_inner().publish_context)
    };
    let set = |kv: &[(&str, &str)]| {
        let mut ctx = v.volume_context.clone();
        ctx.remove(params::C_NVME_ADDRESSES);
        ctx.remove(params::C_NVME_ADDRESS);
        for (k, val) in kv {
            ctx.insert(k.to_string(), val.to_string());
        }
        ctx
    };

    // What CreateVolume wrote: both paths, the port from the RDS's record of the export.
    let got = publish_with(v.volume_context.clone()).await.unwrap();
    assert_eq!(paths_of(&got), ("10.0.1.2,10.0.2.2", "10.0.1.2"));
    assert_eq!(got["nvme_port"], v.volume_context[params::C_NVME_PORT]);
    // A PV written by hand cannot add an address; nothing configured left: the backend's.
    let forged = set(&[
        ("nvmeAddresses", "10.0.2.2,192.0.2.66"),
        ("nvmeAddress", "10.0.2.2"),
    ]);
    let got = publish_with(forged).await.unwrap();
    assert_eq!(paths_of(&got), ("10.0.2.2", "10.0.2.2"));
    let elsewhere = set(&[
        ("nvmeAddresses", "192.0.2.66"),
        ("nvmeAddress", "192.0.2.66"),
    ]);
    let got = publish_with(elsewhere).await.unwrap();
    assert_eq!(paths_of(&got), ("10.0.1.2,10.0.2.2", "10.0.1.2"));
    // A volume from before multipath (nvmeAddress and nvmePort, no list) keeps its address
    // first and gains the backend's other path; a forged old one gets the backend's.
    let old = set(&[("nvmeAddress", "10.0.2.2")]);
    let got = publish_with(old).await.unwrap();
    assert_eq!(paths_of(&got), ("10.0.2.2,10.0.1.2", "10.0.2.2"));
    let old_forged = set(&[("nvmeAddress", "192.0.2.66")]);
    let got = publish_with(old_forged).await.unwrap();
    assert_eq!(paths_of(&got), ("10.0.1.2,10.0.2.2", "10.0.1.2"));
    // Malformed: refused, naming the key.
    let bad = set(&[("nvmeAddresses", "10.0.1.2,rds.example")]);
    let e = publish_with(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(e.message().contains("nvmeAddresses"), "{}", e.message());
    h.stop().await;
}

#[tokio::test]
async fn a_class_picks_a_subset_of_the_backends_paths_and_only_those() {
    let mut h = start_two_paths().await;
    let rwo = cap(Mode::SingleNodeWriter, false);
    let request = |addresses: &str| pb::CreateVolumeRequest {
        name: format!("pvc-{}", uuid::Uuid::new_v4()),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![rwo.clone()],
        parameters: HashMap::from([(params::P_NVME_ADDRESSES.to_string(), addresses.to_string())]),
        ..Default::default()
    };
    let v = h
        .controller
        .create_volume(request("10.0.2.2"))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_context[params::C_NVME_ADDRESSES], "10.0.2.2");
    assert_eq!(v.volume_context[params::C_NVME_ADDRESS], "10.0.2.2");
    h.cluster.add_pv("pv-sub", &v.volume_id, None);
    let got = h
        .controller
        .controller_publish_volume(publish(&v, "node-a", rwo.clone()))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(paths_of(&got), ("10.0.2.2", "10.0.2.2"));

    let e = h
        .controller
        .create_volume(request("10.0.2.2,10.0.3.2"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains("10.0.3.2") && e.message().contains("10.0.1.2,10.0.2.2"),
        "names the address and the backend's list: {}",
        e.message()
    );
    h.stop().await;
}
