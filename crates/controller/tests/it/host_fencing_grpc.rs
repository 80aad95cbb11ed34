//! Host fencing over the real stack: gRPC on a unix socket → controller → SSH → rds-sim, with
//! the sandbox's in-memory cluster standing in for Kubernetes. The ACL is read back from the
//! simulator's own state and from `/disk print detail`, as an operator would check it.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use csi::v1 as pb;
use csi::v1::volume_capability::access_mode::Mode;
use fencing::annotations as ann;
use sandbox::{Sandbox, SandboxOptions};
use tonic::Code;
use vocab::params;

const NQN_A: &str = "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e";
const NQN_B: &str = "nqn.2014-08.org.nvmexpress:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae7";

fn node_a() -> String {
    format!("node-a/{NQN_A}")
}
fn node_b() -> String {
    format!("node-b/{NQN_B}")
}

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

fn rwo() -> pb::VolumeCapability {
    cap(Mode::SingleNodeWriter, false)
}

async fn start() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).await.unwrap()
}

/// A 1 GiB volume for PVC apps/data, with `hostFencing` as given (absent when `None`), and its PV.
async fn create(h: &mut Sandbox, fencing: Option<&str>, c: pb::VolumeCapability) -> pb::Volume {
    let mut parameters = HashMap::new();
    parameters.insert(params::PVC_NAMESPACE.to_string(), "apps".to_string());
    parameters.insert(params::PVC_NAME.to_string(), "data".to_string());
    if let Some(f) = fencing {
        parameters.insert(params::P_HOST_FENCING.to_string(), f.to_string());
    }
    let v = h
        .controller
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
        .unwrap();
    let pv = format!("pv-{}", &v.volume_id[v.volume_id.len() - 8..]);
    h.cluster.add_pv(&pv, &v.volume_id, Some(("apps", "data")));
    v
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

fn slot(v: &pb::Volume) -> String {
    v.volume_id.split_once(':').unwrap().1.to_string()
}

/// The ACL as the simulator holds it.
fn acl(h: &Sandbox, v: &pb::Volume) -> String {
    let slot = slot(v);
    h.sim()
        .disks()
        .into_iter()
        .find(|d| d.slot == slot)
        .unwrap()
        .allow_host
}

/// The ACL as `/disk print detail where slot=…` shows it, parsed by the driver's own parser.
fn printed_acl(h: &Sandbox, v: &pb::Volume) -> String {
    let out = h
        .sim()
        .run_local(&format!("/disk print detail where slot={}", slot(v)))
        .unwrap();
    let disks = routeros::disk::parse_disks(&out).unwrap();
    disks[0].allow_host.clone().unwrap()
}

fn acl_sets(h: &Sandbox) -> usize {
    h.sim()
        .commands()
        .iter()
        .filter(|c| c.contains("nvme-tcp-server-allow-host-name"))
        .count()
}

#[tokio::test]
async fn publish_restricts_the_export_to_the_node_and_unpublish_opens_it() {
    let mut h = start().await;
    let v = create(&mut h, Some("true"), rwo()).await;
    assert_eq!(v.volume_context[params::C_HOST_FENCING], "true");
    assert_eq!(acl(&h, &v), "");

    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_A);
    assert_eq!(
        printed_acl(&h, &v),
        NQN_A,
        "the long NQN survives the 80-column wrap"
    );
    // Fencing, annotations and VolumeAttachments speak node names, not node ids.
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), ["node-a"]);
    let pv = format!("pv-{}", &v.volume_id[v.volume_id.len() - 8..]);
    assert_eq!(
        h.cluster.pv(&pv).unwrap().annotations[ann::ATTACHED_NODE],
        "node-a"
    );

    // A retried publish is OK and leaves the same ACL.
    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_A);

    h.controller
        .controller_unpublish_volume(unpublish(&v, &node_a()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), "");
    assert_eq!(printed_acl(&h, &v), "");
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    // A retried unpublish is OK and asks the RDS nothing.
    let before = h.sim().commands().len();
    h.controller
        .controller_unpublish_volume(unpublish(&v, &node_a()))
        .await
        .unwrap();
    assert_eq!(h.sim().commands().len(), before);
    h.stop().await;
}

#[tokio::test]
async fn publishing_elsewhere_swaps_the_allowed_host_and_a_refused_publish_changes_nothing() {
    let mut h = start().await;
    let v = create(&mut h, Some("true"), rwo()).await;
    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap();
    // Node B while A holds it: the fence refuses, and the ACL still names A.
    let err = h
        .controller
        .controller_publish_volume(publish(&v, &node_b(), rwo()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert_eq!(acl(&h, &v), NQN_A);

    h.controller
        .controller_unpublish_volume(unpublish(&v, &node_a()))
        .await
        .unwrap();
    h.controller
        .controller_publish_volume(publish(&v, &node_b(), rwo()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_B);
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), ["node-b"]);

    // A late unpublish for A (already gone) must not open B's export.
    h.controller
        .controller_unpublish_volume(unpublish(&v, &node_a()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_B);
    h.stop().await;
}

#[tokio::test]
async fn without_host_fencing_the_acl_is_never_touched() {
    let mut h = start().await;
    for fencing in [None, Some("false")] {
        let v = create(&mut h, fencing, rwo()).await;
        assert!(!v.volume_context.contains_key(params::C_HOST_FENCING));
        // An operator's own ACL on the disk stays as it is.
        h.sim()
            .run_local(&format!(
                "/disk set [find slot={}] nvme-tcp-server-allow-host-name=\"{NQN_B}\"",
                slot(&v)
            ))
            .unwrap();
        h.sim().clear_commands();
        h.controller
            .controller_publish_volume(publish(&v, &node_a(), rwo()))
            .await
            .unwrap();
        // Old-format node ids keep working for these volumes.
        h.controller
            .controller_unpublish_volume(unpublish(&v, "node-a"))
            .await
            .unwrap();
        assert_eq!(acl(&h, &v), NQN_B, "{fencing:?}");
        assert_eq!(acl_sets(&h), 0, "{fencing:?}: {:?}", h.sim().commands());
        h.controller
            .controller_publish_volume(publish(&v, "node-a", rwo()))
            .await
            .unwrap();
        h.controller
            .controller_unpublish_volume(unpublish(&v, "node-a"))
            .await
            .unwrap();
    }
    // A StorageClass typo fails CreateVolume loudly.
    let mut parameters = HashMap::new();
    parameters.insert(params::P_HOST_FENCING.to_string(), "yes".to_string());
    let err = h
        .controller
        .create_volume(pb::CreateVolumeRequest {
            name: "typo".into(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![rwo()],
            parameters,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("hostFencing"), "{}", err.message());
    h.stop().await;
}

#[tokio::test]
async fn an_acl_the_rds_refuses_or_ignores_fails_the_publish_and_records_nothing() {
    let mut h = start().await;
    let v = create(&mut h, Some("true"), rwo()).await;
    let pv = format!("pv-{}", &v.volume_id[v.volume_id.len() - 8..]);

    // The RDS refuses the set (publish runs: print, then set).
    h.sim().clear_commands();
    h.sim()
        .faults()
        .fail_nth(2, "failure: could not update disk");
    let err = h
        .controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(
        err.message().contains("could not update disk") && err.message().contains(NQN_A),
        "{}",
        err.message()
    );
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    assert!(
        !h.cluster
            .pv(&pv)
            .unwrap()
            .annotations
            .contains_key(ann::ATTACHED_NODE)
    );
    assert_eq!(acl(&h, &v), "");

    // Firmware that accepts the set but ignores the value: caught by the verifying print.
    h.sim().faults().rewrite_next("/disk set", NQN_A, "");
    let err = h
        .controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(
        err.message().contains("allow-host-name"),
        "{}",
        err.message()
    );
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());

    // Once the RDS behaves, the retry attaches and fences.
    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_A);
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), ["node-a"]);

    // A failure on a retry (node already holds it) keeps the attachment: the earlier publish
    // succeeded, and dropping it would let another node in.
    h.sim().clear_commands();
    h.sim()
        .faults()
        .fail_nth(2, "failure: could not update disk");
    let err = h
        .controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), ["node-a"]);
    h.stop().await;
}

#[tokio::test]
async fn node_ids_without_a_host_nqn_cannot_publish_fenced_volumes() {
    let mut h = start().await;
    let v = create(&mut h, Some("true"), rwo()).await;
    h.sim().clear_commands();
    let err = h
        .controller
        .controller_publish_volume(publish(&v, "node-a", rwo()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("upgrade the rds-csi node plugin"),
        "{}",
        err.message()
    );
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    assert_eq!(acl_sets(&h), 0);

    for bad in [
        "node-a/",
        "node-a/not-an-nqn",
        "/nqn.2014-08.org.nvmexpress:uuid:x",
    ] {
        let err = h
            .controller
            .controller_publish_volume(publish(&v, bad, rwo()))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{bad:?}: {}",
            err.message()
        );
        let err = h
            .controller
            .controller_unpublish_volume(unpublish(&v, bad))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{bad:?}: {}",
            err.message()
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn a_live_migration_opens_the_export_and_its_end_narrows_it_to_the_target() {
    let mut h = start().await;
    let rwx = cap(Mode::MultiNodeMultiWriter, true);
    let v = create(&mut h, Some("true"), rwx.clone()).await;
    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwx.clone()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_A);
    h.controller
        .controller_publish_volume(publish(&v, &node_b(), rwx.clone()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), "", "both nodes must be able to connect");
    let suspended = h.cluster.events_with_reason("HostFencingSuspended");
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].pvc, Some(("apps".into(), "data".into())));
    // A retry during the migration keeps it open.
    h.controller
        .controller_publish_volume(publish(&v, &node_b(), rwx.clone()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), "");

    // The source detaches: only the target may connect now.
    h.controller
        .controller_unpublish_volume(unpublish(&v, &node_a()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_B);
    h.controller
        .controller_unpublish_volume(unpublish(&v, &node_b()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), "");
    h.stop().await;
}

#[tokio::test]
async fn a_force_detach_opens_the_export() {
    let mut h = start().await;
    let v = create(&mut h, Some("true"), rwo()).await;
    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap();
    h.controller
        .controller_unpublish_volume(unpublish(&v, ""))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), "");
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn unpublish_succeeds_during_an_rds_outage_and_the_next_publish_sets_the_acl() {
    let mut h = Sandbox::start(SandboxOptions {
        read_timeout: Duration::from_secs(2),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let v = create(&mut h, Some("true"), rwo()).await;
    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap();
    // Every attempt of the client's retried print hangs.
    for _ in 0..4 {
        h.sim().faults().hang_next("/disk print");
    }
    let started = Instant::now();
    h.controller
        .controller_unpublish_volume(unpublish(&v, &node_a()))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(h.fencing.attached_nodes(&v.volume_id).is_empty());
    assert_eq!(
        h.cluster.events_with_reason("HostFencingNotUpdated").len(),
        1
    );
    // The ACL still names the departed node (narrower than open) until the next publish.
    assert_eq!(acl(&h, &v), NQN_A);
    h.controller
        .controller_publish_volume(publish(&v, &node_b(), rwo()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_B);
    h.stop().await;
}

/// A second controller that never saw the publishes (a restart, or a new HA leader): it
/// rebuilds the attachments from Kubernetes, learns from the disk itself whether the volume is
/// fenced, opens a fenced volume's ACL on unpublish and leaves an open one alone.
#[tokio::test]
async fn a_controller_that_did_not_set_the_acl_still_follows_the_attachment() {
    use fencing::cluster::VolumeAttachmentInfo;

    let mut h = start().await;
    let fenced = create(&mut h, Some("true"), rwo()).await;
    let plain = create(&mut h, None, rwo()).await;
    for (v, node, name) in [(&fenced, node_a(), "node-a"), (&plain, node_b(), "node-b")] {
        h.controller
            .controller_publish_volume(publish(v, &node, rwo()))
            .await
            .unwrap();
        h.cluster.add_volume_attachment(VolumeAttachmentInfo {
            name: format!("va-{name}"),
            pv_name: Some(format!("pv-{}", &v.volume_id[v.volume_id.len() - 8..])),
            node: name.into(),
            attached: true,
            deleting_for_secs: None,
        });
    }
    assert_eq!(acl(&h, &fenced), NQN_A);

    let settings: Vec<_> = h.sims.iter().map(|s| s.settings.clone()).collect();
    let opts = SandboxOptions {
        cluster: h.cluster.clone(),
        ..SandboxOptions::default()
    };
    let mut second = Sandbox::serve_with(tempfile::tempdir().unwrap(), vec![], &settings, &opts)
        .await
        .unwrap();
    assert_eq!(second.fencing.attached_nodes(&fenced.volume_id), ["node-a"]);
    assert_eq!(second.fencing.attached_nodes(&plain.volume_id), ["node-b"]);
    h.sim().clear_commands();
    second
        .controller
        .controller_unpublish_volume(unpublish(&fenced, &node_a()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &fenced), "");
    assert!(second.fencing.attached_nodes(&fenced.volume_id).is_empty());

    h.sim().clear_commands();
    second
        .controller
        .controller_unpublish_volume(unpublish(&plain, &node_b()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &plain), "");
    assert_eq!(acl_sets(&h), 0, "{:?}", h.sim().commands());
    assert!(second.fencing.attached_nodes(&plain.volume_id).is_empty());
    second.stop().await;
    h.stop().await;
}

/// A node whose host identity changed (its state directory was lost) keeps its attachment, and
/// the CO's next publish points the ACL at the new NQN instead of locking the node out.
#[tokio::test]
async fn a_node_that_changed_its_host_nqn_gets_the_acl_on_its_next_publish() {
    let mut h = start().await;
    let v = create(&mut h, Some("true"), rwo()).await;
    h.controller
        .controller_publish_volume(publish(&v, &node_a(), rwo()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_A);
    let renamed = format!("node-a/{NQN_B}");
    h.controller
        .controller_publish_volume(publish(&v, &renamed, rwo()))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), NQN_B);
    assert_eq!(h.fencing.attached_nodes(&v.volume_id), ["node-a"]);
    h.controller
        .controller_unpublish_volume(unpublish(&v, &renamed))
        .await
        .unwrap();
    assert_eq!(acl(&h, &v), "");
    h.stop().await;
}
