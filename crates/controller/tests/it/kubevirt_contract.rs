//! What KubeVirt relies on from the controller side, over the real stack (gRPC on a unix socket
//! → controller → SSH → rds-sim, the sandbox's in-memory cluster standing in for Kubernetes).
//! The node side of the same contract (a second NodePublish of one staged volume, the old
//! target unpublished under a running writer, NodeUnstage refused while a process holds the
//! device and retried after) runs on the real kernel in tests/vm/scenarios.d/40-kubevirt.sh.
//!
//! - A hot-plug puts the old and the new attachment pod on the same node: the attacher publishes
//!   again for that node, and it must succeed with the same context and no conflict.
//! - Live migration of a VM with block disks: the volume is published to the source and the
//!   target node at once (MULTI_NODE_MULTI_WRITER + block only), never to a third, and one
//!   migration's end is the start of the next.
//! - Everything else stays single-node: an RWO block disk is never on two nodes.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use csi::v1 as pb;
use csi::v1::volume_capability::access_mode::Mode;
use fencing::annotations as ann;
use sandbox::{Sandbox, SandboxOptions};
use tonic::Code;
use vocab::params;

fn cap(mode: Mode, block: bool) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(if block {
            pb::volume_capability::AccessType::Block(pb::volume_capability::BlockVolume {})
        } else {
            pb::volume_capability::AccessType::Mount(pb::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            })
        }),
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

async fn create(h: &mut Sandbox, c: &pb::VolumeCapability, pvc: &str) -> pb::Volume {
    let mut parameters = HashMap::new();
    parameters.insert(params::PVC_NAMESPACE.to_string(), "vms".to_string());
    parameters.insert(params::PVC_NAME.to_string(), pvc.to_string());
    h.controller
        .create_volume(pb::CreateVolumeRequest {
            name: format!("pvc-{}", uuid::Uuid::new_v4()),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![c.clone()],
            parameters,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

async fn publish(
    h: &mut Sandbox,
    v: &pb::Volume,
    node: &str,
    c: &pb::VolumeCapability,
) -> Result<HashMap<String, String>, tonic::Status> {
    h.controller
        .controller_publish_volume(pb::ControllerPublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            node_id: node.into(),
            volume_capability: Some(c.clone()),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().publish_context)
}

async fn unpublish(h: &mut Sandbox, v: &pb::Volume, node: &str) {
    h.controller
        .controller_unpublish_volume(pb::ControllerUnpublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            node_id: node.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_publish_of_an_rwo_volume_on_the_same_node_succeeds() {
    let mut h = Sandbox::start(SandboxOptions::default()).await.unwrap();
    for (i, (mode, block)) in [
        (Mode::SingleNodeWriter, true),
        (Mode::SingleNodeWriter, false),
        (Mode::SingleNodeMultiWriter, true),
    ]
    .into_iter()
    .enumerate()
    {
        let c = cap(mode, block);
        let pvc = format!("hotplug-{i}");
        let v = create(&mut h, &c, &pvc).await;
        h.cluster
            .add_pv(&format!("pv-{i}"), &v.volume_id, Some(("vms", &pvc)));
        let before = h.fencing.stats();
        // The old attachment pod's publish, then the new one's on the same node.
        let old = publish(&mut h, &v, "node-1", &c).await.unwrap();
        let new = publish(&mut h, &v, "node-1", &c).await.unwrap();
        assert_eq!(
            old, new,
            "{mode:?} block={block}: same context for the same node"
        );
        let after = h.fencing.stats();
        assert_eq!(
            (
                after.attaches_total - before.attaches_total,
                after.conflicts_total - before.conflicts_total
            ),
            (1, 0),
            "{mode:?} block={block}: one attachment, no conflict"
        );
        assert_eq!(h.fencing.attached_nodes(&v.volume_id), vec!["node-1"]);
        assert_eq!(
            h.cluster.pv(&format!("pv-{i}")).unwrap().annotations[ann::ATTACHED_NODE],
            "node-1"
        );
        unpublish(&mut h, &v, "node-1").await;
        assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    }
    assert!(
        h.cluster
            .events_with_reason("AttachmentConflict")
            .is_empty()
    );
    h.stop().await;
}

#[tokio::test]
async fn block_live_migration_takes_source_and_target_and_never_a_third() {
    let mut h = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let rwx = cap(Mode::MultiNodeMultiWriter, true);
    let v = create(&mut h, &rwx, "vm-disk").await;
    h.cluster
        .add_pv("pv-vm-disk", &v.volume_id, Some(("vms", "vm-disk")));

    publish(&mut h, &v, "node-1", &rwx).await.unwrap();
    // virt-handler on the target node: the attacher publishes there while the source runs.
    publish(&mut h, &v, "node-2", &rwx).await.unwrap();
    assert_eq!(h.fencing.stats().migrations_in_flight, 1);
    assert_eq!(h.cluster.events_with_reason("MigrationStarted").len(), 1);
    let err = publish(&mut h, &v, "node-3", &rwx).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    // Retries of either side during the migration are fine.
    publish(&mut h, &v, "node-1", &rwx).await.unwrap();
    publish(&mut h, &v, "node-2", &rwx).await.unwrap();

    // The source is released: migration over, the target holds the volume alone.
    unpublish(&mut h, &v, "node-1").await;
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), vec!["node-2"]);
    assert_eq!(h.fencing.stats().migrations_in_flight, 0);
    assert_eq!(h.cluster.events_with_reason("MigrationCompleted").len(), 1);

    // And the VM can migrate on from there.
    publish(&mut h, &v, "node-3", &rwx).await.unwrap();
    let mut nodes = h.fencing.attached_nodes(&v.volume_id);
    nodes.sort();
    assert_eq!(nodes, vec!["node-2", "node-3"]);
    let s = h.fencing.stats();
    assert_eq!((s.migrations_started_total, s.conflicts_total), (2, 1));
    h.stop().await;
}

#[tokio::test]
async fn single_node_block_disks_never_land_on_two_nodes() {
    let mut h = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let rwo = cap(Mode::SingleNodeWriter, true);
    let v = create(&mut h, &rwo, "vm-root").await;
    h.cluster
        .add_pv("pv-vm-root", &v.volume_id, Some(("vms", "vm-root")));
    publish(&mut h, &v, "node-1", &rwo).await.unwrap();
    let err = publish(&mut h, &v, "node-2", &rwo).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("node-1") && err.message().contains("node-2"),
        "{}",
        err.message()
    );
    assert_eq!(h.fencing.stats().migrations_in_flight, 0);

    // RWX is block only: a filesystem cannot be written from two nodes, so it is refused at
    // creation rather than at migration time.
    let err = h
        .controller
        .create_volume(pb::CreateVolumeRequest {
            name: "pvc-rwx-fs".into(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap(Mode::MultiNodeMultiWriter, false)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    h.stop().await;
}
