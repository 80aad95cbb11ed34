//! The guarantees that must not depend on what a caller sends, over the real stack (gRPC on a
//! unix socket → controller → SSH → rds-sim): which disks the driver acts on, where a volume's
//! fencing mode comes from, which retries conflict, which ids are malformed and which mount
//! options are confirmed.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;

use common::*;
use csi::v1 as pb;
use tonic::Code;
use vocab::params;

const NQN_A: &str = "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e";
const BASE: &str = "/storage-pool/metal-csi";

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// A disk made by hand on the RDS, exported like a volume would be.
fn hand_made(sim: &rds_sim::Sim, slot: &str, path: &str) {
    sim.run_local(&format!(
        "/disk add type=file file-path={path} file-size=1G slot={slot} nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:{slot}"
    ))
    .unwrap();
}

fn size_of(sim: &rds_sim::Sim, slot: &str) -> u64 {
    sim.disks()
        .into_iter()
        .find(|d| d.slot == slot)
        .unwrap()
        .size
}

#[tokio::test]
async fn foreign_disks_are_never_acted_on_reported_or_adopted() {
    let mut h = start().await;
    // Provisioner-shaped slots, so a CreateVolume of the same name maps onto them.
    let outside = "pvc-0a0a0a0a-0000-4000-8000-000000000001";
    let evil = "pvc-0a0a0a0a-0000-4000-8000-000000000002";
    hand_made(h.sim(), outside, &format!("/storage-pool/{outside}.img"));
    hand_made(
        h.sim(),
        evil,
        &format!("/storage-pool/metal-csi-evil/{evil}.img"),
    );
    let ours = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    for slot in [outside, evil] {
        let id = format!("default:{slot}");
        h.sim().clear_commands();
        let expand = h
            .controller
            .controller_expand_volume(pb::ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: 2 * GIB,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(expand.code(), Code::FailedPrecondition, "{id}: {expand:?}");
        assert!(
            expand
                .message()
                .contains("not one of this driver's volumes")
        );
        assert_eq!(size_of(h.sim(), slot), GIB as u64, "{id} was resized");
        assert!(
            h.sim()
                .commands()
                .iter()
                .all(|l| !l.starts_with("/disk set")),
            "{id}: {:?}",
            h.sim().commands()
        );
        let get = h
            .controller
            .controller_get_volume(pb::ControllerGetVolumeRequest {
                volume_id: id.clone(),
            })
            .await;
        assert_eq!(code(get), Code::NotFound, "get {id}");
        let validate = h
            .controller
            .validate_volume_capabilities(pb::ValidateVolumeCapabilitiesRequest {
                volume_id: id.clone(),
                volume_capabilities: vec![rwo()],
                ..Default::default()
            })
            .await;
        assert_eq!(code(validate), Code::NotFound, "validate {id}");
        let publish = h
            .controller
            .controller_publish_volume(pb::ControllerPublishVolumeRequest {
                volume_id: id.clone(),
                node_id: format!("node-a/{NQN_A}"),
                volume_capability: Some(rwo()),
                ..Default::default()
            })
            .await;
        assert_eq!(code(publish), Code::FailedPrecondition, "publish {id}");
        assert!(h.fencing.attachment(&id).is_none());
        let snap = h
            .controller
            .create_snapshot(pb::CreateSnapshotRequest {
                name: format!("snap-of-{slot}"),
                source_volume_id: id.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(snap), Code::FailedPrecondition, "snapshot {id}");
        let delete = h
            .controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(delete), Code::FailedPrecondition, "delete {id}");
        // CreateVolume whose name maps to the foreign slot must not adopt the disk.
        let adopt = h.controller.create_volume(create_req(slot, 1)).await;
        assert!(matches!(code(adopt), Code::AlreadyExists), "create {id}");
    }
    let listed: Vec<String> = h
        .controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.volume.unwrap().volume_id)
        .collect();
    assert_eq!(listed, vec![ours.volume_id]);
    assert_eq!(h.sim().disks().len(), 3, "a foreign disk was removed");
    h.stop().await;
}

#[tokio::test]
async fn malformed_ids_are_invalid_argument_and_unknown_ones_not_found() {
    let mut h = start().await;
    let c = &mut h.controller;
    for (id, want) in [
        ("default:pvc-a;b", Code::InvalidArgument),
        ("UP:pvc-1", Code::InvalidArgument),
        ("a:b:c", Code::InvalidArgument),
        ("pvc-a b", Code::InvalidArgument),
        ("fake-vol-id-0123", Code::NotFound),
    ] {
        let get = c
            .controller_get_volume(pb::ControllerGetVolumeRequest {
                volume_id: id.into(),
            })
            .await;
        assert_eq!(code(get), want, "get {id}");
        let validate = c
            .validate_volume_capabilities(pb::ValidateVolumeCapabilitiesRequest {
                volume_id: id.into(),
                volume_capabilities: vec![rwo()],
                ..Default::default()
            })
            .await;
        assert_eq!(code(validate), want, "validate {id}");
        let expand = c
            .controller_expand_volume(pb::ControllerExpandVolumeRequest {
                volume_id: id.into(),
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: 2 * GIB,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await;
        assert_eq!(code(expand), want, "expand {id}");
    }
    h.stop().await;
}

fn with_params(name: &str, pairs: &[(&str, &str)]) -> pb::CreateVolumeRequest {
    let mut req = create_req(name, 1);
    req.parameters = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    req
}

#[tokio::test]
async fn retries_asking_for_something_else_conflict_and_the_same_retry_succeeds() {
    let mut h = start().await;
    let c = &mut h.controller;
    let name = pvc_name();
    let first = created(c, with_params(&name, &[(params::P_HOST_FENCING, "true")])).await;
    let same = created(c, with_params(&name, &[(params::P_HOST_FENCING, "true")])).await;
    assert_eq!(same.volume_id, first.volume_id);
    let mut other_fs = with_params(&name, &[(params::P_HOST_FENCING, "true")]);
    other_fs.volume_capabilities = vec![mount_cap_fs("xfs")];
    let mut other_source = with_params(&name, &[(params::P_HOST_FENCING, "true")]);
    other_source.volume_content_source = Some(pb::VolumeContentSource {
        r#type: Some(pb::volume_content_source::Type::Volume(
            pb::volume_content_source::VolumeSource {
                volume_id: first.volume_id.clone(),
            },
        )),
    });
    for (what, req) in [
        ("no hostFencing", with_params(&name, &[])),
        (
            "hostFencing false",
            with_params(&name, &[(params::P_HOST_FENCING, "false")]),
        ),
        (
            "another parameter",
            with_params(
                &name,
                &[
                    (params::P_HOST_FENCING, "true"),
                    (params::P_CTRL_LOSS_TMO, "60"),
                ],
            ),
        ),
        ("another fsType", other_fs),
        ("a content source", other_source),
    ] {
        let err = c.create_volume(req).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{what}: {err:?}");
    }
    assert_eq!(h.sim().disks().len(), 1);
    h.stop().await;
}

fn mount_cap_fs(fs: &str) -> pb::VolumeCapability {
    let mut cap = rwo();
    if let Some(pb::volume_capability::AccessType::Mount(m)) = &mut cap.access_type {
        m.fs_type = fs.into();
    }
    cap
}

#[tokio::test]
async fn host_fencing_is_the_volumes_own_mode_not_the_requests() {
    let mut h = start().await;
    let c = &mut h.controller;
    let fenced = created(
        c,
        with_params(&pvc_name(), &[(params::P_HOST_FENCING, "true")]),
    )
    .await;
    let plain = created(c, with_params(&pvc_name(), &[])).await;
    let slot = |v: &pb::Volume| v.volume_id.split_once(':').unwrap().1.to_string();
    let acl = |h: &Sandbox, s: &str| {
        h.sim()
            .disks()
            .into_iter()
            .find(|d| d.slot == s)
            .unwrap()
            .allow_host
    };
    let publish =
        |v: &pb::Volume, ctx: HashMap<String, String>| pb::ControllerPublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            node_id: format!("node-a/{NQN_A}"),
            volume_capability: Some(rwo()),
            volume_context: ctx,
            ..Default::default()
        };
    // An empty volume_context does not open a fenced volume.
    c.controller_publish_volume(publish(&fenced, HashMap::new()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &slot(&fenced)), NQN_A);
    // A forged hostFencing=true does not fence a plain one.
    let forged = HashMap::from([(params::C_HOST_FENCING.to_string(), "true".to_string())]);
    let c = &mut h.controller;
    c.controller_publish_volume(publish(&plain, forged))
        .await
        .unwrap();
    assert_eq!(acl(&h, &slot(&plain)), "");
    // A static volume (plain `<slot>.img`, made by hand) is not host fenced.
    let manual = pvc_name();
    hand_made(h.sim(), &manual, &format!("{BASE}/{manual}.img"));
    let forged = HashMap::from([(params::C_HOST_FENCING.to_string(), "true".to_string())]);
    let manual_vol = pb::Volume {
        volume_id: format!("default:{manual}"),
        ..Default::default()
    };
    h.controller
        .controller_publish_volume(publish(&manual_vol, forged))
        .await
        .unwrap();
    assert_eq!(acl(&h, &manual), "");
    h.stop().await;
}

#[tokio::test]
async fn validate_refuses_the_mount_options_the_node_refuses() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    // Junk under the request bounds reaches the option rules; over them the boundary refuses it.
    let junk = "x".repeat(2 * 1024);
    for (opt, confirmed) in [
        ("noatime", true),
        ("errors=remount-ro", true),
        ("suid", false),
        ("dev", false),
        ("errors=panic", false),
        (junk.as_str(), false),
    ] {
        let mut cap = rwo();
        if let Some(pb::volume_capability::AccessType::Mount(m)) = &mut cap.access_type {
            m.mount_flags = vec![opt.to_string()];
        }
        let r = h
            .controller
            .validate_volume_capabilities(pb::ValidateVolumeCapabilitiesRequest {
                volume_id: v.volume_id.clone(),
                volume_capabilities: vec![cap],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let shown = &opt[..opt.len().min(20)];
        assert_eq!(r.confirmed.is_some(), confirmed, "{shown}: {}", r.message);
        assert!(r.message.len() < 1024, "{shown}: message echoes the junk");
    }
    let mut cap = rwo();
    if let Some(pb::volume_capability::AccessType::Mount(m)) = &mut cap.access_type {
        m.mount_flags = vec!["x".repeat(5 * 1024)];
    }
    let err = h
        .controller
        .validate_volume_capabilities(pb::ValidateVolumeCapabilitiesRequest {
            volume_id: v.volume_id.clone(),
            volume_capabilities: vec![cap],
            ..Default::default()
        })
        .await
        .expect_err("5 KiB of mount flags is over the request bounds");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().len() < 1024, "the refusal echoes the junk");
    h.stop().await;
}

fn publish_req(v: &pb::Volume, node: &str) -> pb::ControllerPublishVolumeRequest {
    pb::ControllerPublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(rwo()),
        ..Default::default()
    }
}

#[tokio::test]
async fn delete_of_an_attached_volume_is_refused_until_it_is_unpublished() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    h.controller
        .controller_publish_volume(publish_req(&v, "node-a"))
        .await
        .unwrap();
    let delete = pb::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    };
    let err = h
        .controller
        .delete_volume(delete.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("node-a"), "{}", err.message());
    assert_eq!(h.sim().disks().len(), 1, "the attached disk was removed");
    h.controller
        .controller_unpublish_volume(pb::ControllerUnpublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            node_id: "node-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    h.controller.delete_volume(delete).await.unwrap();
    assert!(h.sim().disks().is_empty());
    h.stop().await;
}

/// A DeleteVolume arriving while a ControllerPublish of the same volume is between its
/// existence check and its attachment record waits for it (one lock per volume), so it never
/// removes a disk that ends up attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_publish_never_removes_an_attached_disk() {
    let h = start().await;
    let mut c = h.controller.clone();
    let v = created(&mut c, create_req(&pvc_name(), 1)).await;
    h.sim()
        .faults()
        .set_latency(std::time::Duration::from_millis(300));
    let mut pc = h.controller.clone();
    let req = publish_req(&v, "node-a");
    let publish = tokio::spawn(async move { pc.controller_publish_volume(req).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut dc = h.controller.clone();
    let delete = dc
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await;
    let publish = publish.await.unwrap();
    h.sim().faults().set_latency(std::time::Duration::ZERO);
    let attached = h.fencing.attachment(&v.volume_id).is_some();
    let exists = !h.sim().disks().is_empty();
    assert!(publish.is_ok(), "{publish:?}");
    assert_eq!(code(delete), Code::FailedPrecondition);
    assert!(
        attached && exists,
        "attached {attached}, disk exists {exists}"
    );
    h.stop().await;
}

/// The trial mode's in-memory cluster has no node registry: every node exists unless it is
/// removed, and a removed node is NOT_FOUND with nothing recorded.
#[tokio::test]
async fn publish_to_a_node_that_does_not_exist_is_not_found() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    h.cluster.remove_node("node-gone");
    let err = h
        .controller
        .controller_publish_volume(publish_req(&v, "node-gone"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(h.fencing.attachment(&v.volume_id).is_none());
    h.stop().await;
}

#[tokio::test]
async fn publish_beyond_the_nodes_attach_limit_is_resource_exhausted() {
    let mut h = start().await;
    let a = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let b = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    h.cluster.set_attach_limit("node-a", 1);
    h.controller
        .controller_publish_volume(publish_req(&a, "node-a"))
        .await
        .unwrap();
    let err = h
        .controller
        .controller_publish_volume(publish_req(&b, "node-a"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(h.fencing.attachment(&b.volume_id).is_none());
    // A retry of the volume the node holds is not a new attachment.
    h.controller
        .controller_publish_volume(publish_req(&a, "node-a"))
        .await
        .unwrap();
    h.stop().await;
}

/// A second publish to the node that holds a volume, asking for another access mode, is not a
/// retry of the first (CSI: ALREADY_EXISTS) and changes nothing.
#[tokio::test]
async fn publish_again_to_the_same_node_with_another_access_mode_is_already_exists() {
    use pb::volume_capability::access_mode::Mode;
    let mut h = start().await;
    let mut req = create_req(&pvc_name(), 1);
    req.volume_capabilities = vec![block_cap(Mode::MultiNodeMultiWriter)];
    let v = created(&mut h.controller, req).await;
    let mut first = publish_req(&v, "node-a");
    first.volume_capability = Some(block_cap(Mode::MultiNodeMultiWriter));
    h.controller
        .controller_publish_volume(first.clone())
        .await
        .unwrap();
    let mut other = first.clone();
    other.volume_capability = Some(block_cap(Mode::SingleNodeWriter));
    let err = h
        .controller
        .controller_publish_volume(other)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    h.controller.controller_publish_volume(first).await.unwrap();
    h.stop().await;
}
