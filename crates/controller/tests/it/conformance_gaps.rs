//! csi-sanity controller cases that no other suite proved yet (see docs/conformance.md for the
//! whole map). Each test is named after the sanity case it stands for and runs the real stack:
//! gRPC on a unix socket → controller → SSH → rds-sim.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use csi::v1 as pb;
use csi::v1::volume_capability::access_mode::Mode;
use tonic::Code;

/// csi-sanity's `MaxNameLength`: the longest name a CO may send.
const MAX_NAME_LEN: usize = 128;

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

async fn list_ids(h: &mut Sandbox) -> Vec<String> {
    h.controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.volume.unwrap().volume_id)
        .collect()
}

/// Sanity: CreateVolume "should return appropriate values SingleNodeWriter NoCapacity" and the
/// ListVolumes case, which create without any capacity_range.
#[tokio::test]
async fn create_without_a_capacity_range_gets_the_minimum_size() {
    let mut h = start().await;
    let mut req = create_req(&pvc_name(), 1);
    req.capacity_range = None;
    let v = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, GIB, "no range means the 1 GiB minimum");
    let disk = h
        .sim()
        .disks()
        .into_iter()
        .find(|d| v.volume_id.ends_with(&d.slot))
        .unwrap();
    assert_eq!(disk.size as i64, v.capacity_bytes);
    h.stop().await;
}

/// Sanity: CreateVolume "should not fail when creating volume with maximum-length name".
#[tokio::test]
async fn create_with_a_maximum_length_name_succeeds_and_is_idempotent() {
    let mut h = start().await;
    let prefix = "sanity-controller-create-maxlen-";
    let name = format!("{prefix}{}", "x".repeat(MAX_NAME_LEN - prefix.len()));
    assert_eq!(name.len(), MAX_NAME_LEN);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let v = created(&mut h.controller, create_req(&name, 1)).await;
        assert!(v.capacity_bytes >= GIB);
        ids.push(v.volume_id);
    }
    assert_eq!(ids[0], ids[1]);
    assert!(ids[0].starts_with("default:pvc-"), "{}", ids[0]);
    h.stop().await;
}

/// Sanity: ListVolumes "check the presence of new volumes and absence of deleted ones in the
/// volume list".
#[tokio::test]
async fn list_shows_a_new_volume_and_drops_it_once_deleted() {
    let mut h = start().await;
    let before = list_ids(&mut h).await;
    let mut req = create_req("sanity", 1);
    req.capacity_range = None;
    let v = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let with = list_ids(&mut h).await;
    assert_eq!(with.len(), before.len() + 1);
    assert!(with.contains(&v.volume_id));
    h.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = list_ids(&mut h).await;
    assert_eq!(after, before);
    assert!(!after.contains(&v.volume_id));
    h.stop().await;
}

/// Sanity: ListVolumes "pagination should detect volumes added between pages and accept tokens
/// when the last volume from a page is deleted", plus the cost: a whole paged walk reads the RDS
/// listing once, not once per page.
#[tokio::test]
async fn a_paged_walk_reads_the_rds_once_and_survives_changes_between_pages() {
    let mut h = start().await;
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(
            created(&mut h.controller, create_req(&pvc_name(), 1))
                .await
                .volume_id,
        );
    }
    made.sort();
    let prints_before = disk_prints(&h);
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let r = h
            .controller
            .list_volumes(pb::ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(r.entries.into_iter().map(|e| e.volume.unwrap().volume_id));
        pages += 1;
        if pages == 1 {
            // The last volume of the page goes, a new one comes.
            let gone = seen.last().unwrap().clone();
            h.controller
                .delete_volume(pb::DeleteVolumeRequest {
                    volume_id: gone,
                    ..Default::default()
                })
                .await
                .unwrap();
            created(&mut h.controller, create_req(&pvc_name(), 1)).await;
        }
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, made, "each volume of the walk's start once, in order");
    // The delete and the create between pages print once each (their own lookups).
    assert_eq!(
        disk_prints(&h) - prints_before,
        1 + 2,
        "{:?}",
        h.sim().commands()
    );
    h.stop().await;
}

fn disk_prints(h: &Sandbox) -> usize {
    h.sim()
        .commands()
        .iter()
        .filter(|c| c.starts_with("/disk print"))
        .count()
}

/// Sanity generates ids that are valid-looking but unknown (`IDGen`); every RPC that must find
/// the volume answers NOT_FOUND for them (ValidateVolumeCapabilities and ControllerPublishVolume
/// "should fail when the requested volume does not exist"), and DeleteVolume succeeds.
#[tokio::test]
async fn ids_sanity_generates_are_not_found_and_delete_succeeds() {
    let mut h = start().await;
    let before = h.sim().disks();
    for id in [
        "fake-vol-id-0123456789".to_string(),
        format!("default:pvc-{}", uuid::Uuid::new_v4()),
        format!("pvc-{}", uuid::Uuid::new_v4()),
    ] {
        let c = &mut h.controller;
        let validate = pb::ValidateVolumeCapabilitiesRequest {
            volume_id: id.clone(),
            volume_capabilities: vec![rwo()],
            ..Default::default()
        };
        assert_eq!(
            code(c.validate_volume_capabilities(validate).await),
            Code::NotFound,
            "validate {id}"
        );
        let publish = pb::ControllerPublishVolumeRequest {
            volume_id: id.clone(),
            node_id: "fake-node-id".into(),
            volume_capability: Some(rwo()),
            ..Default::default()
        };
        assert_eq!(
            code(c.controller_publish_volume(publish).await),
            Code::NotFound,
            "publish {id}"
        );
        let get = pb::ControllerGetVolumeRequest {
            volume_id: id.clone(),
        };
        assert_eq!(
            code(c.controller_get_volume(get).await),
            Code::NotFound,
            "get {id}"
        );
        let expand = pb::ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            code(c.controller_expand_volume(expand).await),
            Code::NotFound,
            "expand {id}"
        );
        let delete = pb::DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        };
        assert_eq!(code(c.delete_volume(delete).await), Code::Ok, "delete {id}");
    }
    assert_eq!(h.sim().disks(), before, "unknown ids touched the RDS");
    h.stop().await;
}

/// Sanity: ExpandVolume "should fail if no capacity range is given" sends neither an id nor a
/// range; the answer is INVALID_ARGUMENT (not NOT_FOUND for the empty id).
#[tokio::test]
async fn expand_with_neither_id_nor_range_is_invalid_argument() {
    let mut h = start().await;
    let r = h
        .controller
        .controller_expand_volume(pb::ControllerExpandVolumeRequest::default())
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
    h.stop().await;
}

/// Sanity: "volume lifecycle should be idempotent" (IdempotentCount) and the spec's rule that a
/// CO may repeat any call: every controller RPC of a volume's life, each sent three times in a
/// row, answers the same thing and leaves one disk, then none.
#[tokio::test]
async fn every_controller_call_repeated_answers_the_same() {
    const REPEAT: usize = 3;
    let mut h = start().await;
    let name = pvc_name();
    let mut created = Vec::new();
    for _ in 0..REPEAT {
        created.push(
            h.controller
                .create_volume(create_req(&name, 1))
                .await
                .unwrap()
                .into_inner()
                .volume
                .unwrap(),
        );
    }
    assert!(created.windows(2).all(|w| w[0] == w[1]), "{created:?}");
    let v = created.remove(0);
    let disks = |h: &Sandbox| h.sim().disks().iter().filter(|d| d.slot == name).count();
    assert_eq!(disks(&h), 1);

    let publish = pb::ControllerPublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: "node-1".into(),
        volume_capability: Some(rwo()),
        volume_context: v.volume_context.clone(),
        ..Default::default()
    };
    let mut contexts = Vec::new();
    for _ in 0..REPEAT {
        contexts.push(
            h.controller
                .controller_publish_volume(publish.clone())
                .await
                .unwrap()
                .into_inner()
                .publish_context,
        );
    }
    assert!(contexts.windows(2).all(|w| w[0] == w[1]), "{contexts:?}");
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), vec!["node-1"]);

    let validate = pb::ValidateVolumeCapabilitiesRequest {
        volume_id: v.volume_id.clone(),
        volume_capabilities: vec![rwo()],
        ..Default::default()
    };
    for _ in 0..REPEAT {
        let r = h
            .controller
            .validate_volume_capabilities(validate.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(r.confirmed.is_some(), "{}", r.message);
    }

    let expand = pb::ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: 2 * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(rwo()),
        ..Default::default()
    };
    for _ in 0..REPEAT {
        let r = h
            .controller
            .controller_expand_volume(expand.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.capacity_bytes, 2 * GIB);
    }
    let disk = h
        .sim()
        .disks()
        .into_iter()
        .find(|d| d.slot == name)
        .unwrap();
    assert_eq!(disk.size, 2 << 30);

    let unpublish = pb::ControllerUnpublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: "node-1".into(),
        ..Default::default()
    };
    for _ in 0..REPEAT {
        h.controller
            .controller_unpublish_volume(unpublish.clone())
            .await
            .unwrap();
    }
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());

    let delete = pb::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    };
    for _ in 0..REPEAT {
        h.controller.delete_volume(delete.clone()).await.unwrap();
    }
    assert_eq!(disks(&h), 0);
    let path = &v.volume_context["volumePath"];
    assert!(h.sim().files().iter().all(|f| &f.path != path));
    h.stop().await;
}

/// Sanity: ControllerPublishVolume for a single-node volume already attached elsewhere. The spec
/// says FAILED_PRECONDITION; asserted here with the sanity request shape (no PV in the cluster,
/// plain SINGLE_NODE_WRITER mount), which fencing_grpc covers only with a PV present.
#[tokio::test]
async fn single_node_volume_published_elsewhere_is_failed_precondition() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let req = |node: &str| pb::ControllerPublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
        volume_context: v.volume_context.clone(),
        ..Default::default()
    };
    h.controller
        .controller_publish_volume(req("node-a"))
        .await
        .unwrap();
    let r = h.controller.controller_publish_volume(req("node-b")).await;
    assert_eq!(code(r), Code::FailedPrecondition);
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), vec!["node-a"]);
    h.stop().await;
}
