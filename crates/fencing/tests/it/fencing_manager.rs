//! Every fencing rule against the in-memory cluster: publish/unpublish decisions, persistence
//! and its failure modes, rebuild after a restart, the reconciler and the concurrency guarantee.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fencing::annotations as ann;
use fencing::clock::{Clock, ManualClock, format_rfc3339};
use fencing::cluster::{Cluster, ClusterError, EventKind, NodeState, VolumeAttachmentInfo};
use fencing::{
    AttachmentManager, FencingConfig, MemoryCluster, PublishOutcome, PublishRequest, Sharing,
    UnpublishOutcome,
};
use tonic::Code;
use vocab::DriverError;
use vocab::params;

const V: &str = "default:pvc-0b9e3c0e-1f0a-4c6e-9d55-6a1c2f3e4d5a";
const PV: &str = "pv-data";

struct World {
    cluster: Arc<MemoryCluster>,
    clock: Arc<ManualClock>,
    fencing: Arc<AttachmentManager>,
}

async fn world_with(config: FencingConfig) -> World {
    let cluster = Arc::new(MemoryCluster::new());
    let clock = Arc::new(ManualClock::default());
    let fencing =
        Arc::new(AttachmentManager::new(cluster.clone(), config).with_clock(clock.clone()));
    fencing.rebuild().await.unwrap();
    World {
        cluster,
        clock,
        fencing,
    }
}

/// A ready manager, with a PV (bound to PVC apps/data) for volume `V`.
async fn world() -> World {
    let w = world_with(FencingConfig::default()).await;
    w.cluster.add_pv(PV, V, Some(("apps", "data")));
    w
}

fn ctx() -> HashMap<String, String> {
    let mut c = HashMap::new();
    c.insert(params::PVC_NAMESPACE.to_string(), "apps".to_string());
    c.insert(params::PVC_NAME.to_string(), "data".to_string());
    c
}

fn rwo(volume: &str, node: &str) -> PublishRequest {
    PublishRequest {
        volume_id: volume.to_string(),
        node: node.to_string(),
        sharing: Sharing::SingleNode,
        volume_context: ctx(),
    }
}

fn rwx(volume: &str, node: &str) -> PublishRequest {
    PublishRequest {
        sharing: Sharing::MultiNode,
        ..rwo(volume, node)
    }
}

fn annotations(w: &World) -> BTreeMap<String, String> {
    w.cluster.pv(PV).unwrap().annotations
}

// ---------------------------------------------------------------- publish

#[tokio::test]
async fn publishing_to_the_same_node_twice_is_ok_and_writes_once() {
    let w = world().await;
    assert_eq!(
        w.fencing.publish(&rwo(V, "node-a")).await.unwrap(),
        PublishOutcome::Attached
    );
    assert_eq!(
        w.fencing.publish(&rwo(V, "node-a")).await.unwrap(),
        PublishOutcome::AlreadyAttached
    );
    assert_eq!(w.cluster.patch_count(), 1);
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a"]);
    assert_eq!(w.cluster.events_with_reason("VolumeAttached").len(), 1);
    let a = annotations(&w);
    assert_eq!(a[ann::ATTACHED_NODE], "node-a");
    assert_eq!(a[ann::ATTACHED_AT], format_rfc3339(w.clock.now()));
    assert_eq!(a[ann::ACCESS_MODE], "single-node");
    assert!(!a.contains_key(ann::MIGRATION_STARTED_AT));
}

#[tokio::test]
async fn a_second_node_is_refused_with_both_names_and_a_warning_on_the_pvc() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    let err = w.fencing.publish(&rwo(V, "node-b")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("node-a") && msg.contains("node-b"), "{msg}");
    let events = w.cluster.events_with_reason("AttachmentConflict");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Warning);
    assert_eq!(events[0].pvc, Some(("apps".into(), "data".into())));
    assert!(events[0].message.contains("node-a") && events[0].message.contains("node-b"));
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a"]);
    assert_eq!(w.fencing.stats().conflicts_total, 1);
    assert_eq!(annotations(&w)[ann::ATTACHED_NODE], "node-a");
}

#[tokio::test]
async fn multi_node_block_takes_two_nodes_and_refuses_a_third() {
    let w = world().await;
    assert_eq!(
        w.fencing.publish(&rwx(V, "node-a")).await.unwrap(),
        PublishOutcome::Attached
    );
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(
        w.fencing.publish(&rwx(V, "node-b")).await.unwrap(),
        PublishOutcome::MigrationStarted
    );
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a", "node-b"]);
    let a = annotations(&w);
    assert_eq!(a[ann::ATTACHED_NODE], "node-a");
    assert!(a[ann::ATTACHED_NODES].starts_with("node-a="), "{a:?}");
    assert!(a[ann::ATTACHED_NODES].contains(",node-b="), "{a:?}");
    assert_eq!(a[ann::ACCESS_MODE], "multi-node");
    assert_eq!(a[ann::MIGRATION_STARTED_AT], format_rfc3339(w.clock.now()));
    assert_eq!(a[ann::MIGRATION_TIMEOUT], "300");
    assert_eq!(w.cluster.events_with_reason("MigrationStarted").len(), 1);
    assert_eq!(w.fencing.stats().migrations_in_flight, 1);

    let err = w.fencing.publish(&rwx(V, "node-c")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let msg = err.to_string();
    assert!(
        msg.contains("node-a") && msg.contains("node-b") && msg.contains("node-c"),
        "{msg}"
    );
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a", "node-b"]);
}

#[tokio::test]
async fn single_node_and_multi_node_requests_never_share_a_volume() {
    let w = world().await;
    w.fencing.publish(&rwx(V, "node-a")).await.unwrap();
    let err = w.fencing.publish(&rwo(V, "node-b")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let other = "default:pvc-other";
    w.fencing.publish(&rwo(other, "node-a")).await.unwrap();
    let err = w.fencing.publish(&rwx(other, "node-b")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("single-node"), "{err}");
}

#[tokio::test]
async fn a_holder_whose_node_was_deleted_is_cleared_and_the_publish_proceeds() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    w.cluster.remove_node("node-a");
    assert_eq!(
        w.fencing.publish(&rwo(V, "node-b")).await.unwrap(),
        PublishOutcome::Attached
    );
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-b"]);
    let cleared = w.cluster.events_with_reason("StaleAttachmentCleared");
    assert_eq!(cleared.len(), 1);
    assert!(cleared[0].message.contains("node-a"));
    assert_eq!(w.fencing.stats().stale_cleared_total, 1);
    assert_eq!(annotations(&w)[ann::ATTACHED_NODE], "node-b");
}

#[tokio::test]
async fn an_api_error_while_checking_the_holder_fails_closed() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    w.cluster
        .fail_node_lookups(Some(ClusterError::Unavailable("connection refused".into())));
    let err = w.fencing.publish(&rwo(V, "node-b")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a"]);
}

#[tokio::test]
async fn a_kubernetes_error_on_publish_fails_closed() {
    let w = world().await;
    w.cluster
        .fail_pv_lookups(Some(ClusterError::Unavailable("apiserver down".into())));
    let err = w.fencing.publish(&rwo(V, "node-a")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.to_string().contains("apiserver down"), "{err}");
    assert!(w.fencing.attached_nodes(V).is_empty());
}

#[tokio::test]
async fn a_volume_without_a_pv_is_fenced_in_memory_only() {
    let w = world_with(FencingConfig::default()).await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    let err = w.fencing.publish(&rwo(V, "node-b")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(w.fencing.stats().unpersisted_total, 1);
    assert_eq!(w.cluster.patch_count(), 0);
}

// ---------------------------------------------------------------- unpublish

#[tokio::test]
async fn unpublish_removes_only_the_named_node() {
    let w = world().await;
    w.fencing.publish(&rwx(V, "node-a")).await.unwrap();
    w.fencing.publish(&rwx(V, "node-b")).await.unwrap();
    w.clock.advance(Duration::from_secs(42));
    assert_eq!(
        w.fencing.unpublish(V, Some("node-a")).await.unwrap(),
        UnpublishOutcome::StillAttached
    );
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-b"]);
    let a = annotations(&w);
    assert_eq!(a[ann::ATTACHED_NODE], "node-b");
    assert!(!a.contains_key(ann::MIGRATION_STARTED_AT), "{a:?}");
    let done = w.cluster.events_with_reason("MigrationCompleted");
    assert_eq!(done.len(), 1);
    assert!(done[0].message.contains("42s"), "{}", done[0].message);
    assert_eq!(w.fencing.stats().migrations_in_flight, 0);
    assert_eq!(w.fencing.stats().migrations_completed_total, 1);

    // A late unpublish for a node that no longer holds the volume leaves the holder fenced.
    let other = "default:pvc-late";
    w.fencing.publish(&rwo(other, "node-x")).await.unwrap();
    assert_eq!(
        w.fencing.unpublish(other, Some("node-y")).await.unwrap(),
        UnpublishOutcome::NotAttached
    );
    assert_eq!(w.fencing.attached_nodes(other), vec!["node-x"]);
}

#[tokio::test]
async fn unpublish_is_idempotent() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    assert_eq!(
        w.fencing.unpublish(V, Some("node-a")).await.unwrap(),
        UnpublishOutcome::Detached
    );
    let patches = w.cluster.patch_count();
    assert_eq!(
        w.fencing.unpublish(V, Some("node-a")).await.unwrap(),
        UnpublishOutcome::NotAttached
    );
    assert_eq!(
        w.fencing
            .unpublish("default:pvc-never", Some("node-a"))
            .await
            .unwrap(),
        UnpublishOutcome::NotAttached
    );
    assert_eq!(w.cluster.patch_count(), patches);
    assert!(
        ann::ALL.iter().all(|k| !annotations(&w).contains_key(*k)),
        "{:?}",
        annotations(&w)
    );
    assert_eq!(w.cluster.events_with_reason("VolumeDetached").len(), 1);
    assert_eq!(w.fencing.stats().detaches_total, 1);
}

#[tokio::test]
async fn unpublish_without_a_node_detaches_every_node() {
    let w = world().await;
    w.fencing.publish(&rwx(V, "node-a")).await.unwrap();
    w.fencing.publish(&rwx(V, "node-b")).await.unwrap();
    assert_eq!(
        w.fencing.unpublish(V, None).await.unwrap(),
        UnpublishOutcome::Detached
    );
    assert!(w.fencing.attached_nodes(V).is_empty());
}

#[tokio::test]
async fn a_detached_volume_is_free_for_another_node_at_once() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    w.fencing.unpublish(V, Some("node-a")).await.unwrap();
    assert_eq!(
        w.fencing.publish(&rwo(V, "node-b")).await.unwrap(),
        PublishOutcome::Attached
    );
    // And the new holder is fenced as firmly as the first (no grace window to steal in).
    let err = w.fencing.publish(&rwo(V, "node-c")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-b"]);
}

// ---------------------------------------------------------------- persistence

#[tokio::test]
async fn a_failed_pv_write_rolls_the_change_back() {
    let w = world().await;
    w.cluster
        .fail_patches([ClusterError::Unavailable("etcd timeout".into())]);
    let err = w.fencing.publish(&rwo(V, "node-a")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.to_string().contains("etcd timeout"), "{err}");
    assert!(w.fencing.attached_nodes(V).is_empty());
    assert_eq!(w.fencing.stats().attaches_total, 0);
    assert_eq!(w.fencing.stats().persist_failures_total, 1);
    assert!(w.cluster.events_with_reason("VolumeAttached").is_empty());
    // The refused node holds nothing, so another node may have the volume.
    w.fencing.publish(&rwo(V, "node-b")).await.unwrap();

    // A failed write on unpublish keeps the fence (the CO retries the detach).
    w.cluster
        .fail_patches([ClusterError::Unavailable("etcd timeout".into())]);
    let err = w.fencing.unpublish(V, Some("node-b")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-b"]);
    assert_eq!(annotations(&w)[ann::ATTACHED_NODE], "node-b");
}

#[tokio::test]
async fn rbac_refusal_is_internal_not_retried_as_unavailable() {
    let w = world().await;
    w.cluster.fail_patches([ClusterError::Forbidden(
        "cannot patch persistentvolumes".into(),
    )]);
    let err = w.fencing.publish(&rwo(V, "node-a")).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.to_string().contains("persistentvolumes"), "{err}");
}

#[tokio::test]
async fn resource_version_conflicts_are_retried_then_given_up() {
    let w = world().await;
    w.cluster.concurrent_writes(2);
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    assert_eq!(annotations(&w)[ann::ATTACHED_NODE], "node-a");

    let other = "default:pvc-busy";
    w.cluster.add_pv("pv-busy", other, None);
    w.cluster.concurrent_writes(50);
    let err = w.fencing.publish(&rwo(other, "node-a")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.to_string().contains("5 attempts"), "{err}");
    assert!(w.fencing.attached_nodes(other).is_empty());
    assert!(
        !w.cluster
            .pv("pv-busy")
            .unwrap()
            .annotations
            .contains_key(ann::ATTACHED_NODE)
    );
}

#[tokio::test]
async fn events_fall_back_to_the_pvs_claim() {
    let w = world().await;
    let mut req = rwo(V, "node-a");
    req.volume_context.clear();
    w.fencing.publish(&req).await.unwrap();
    let e = &w.cluster.events_with_reason("VolumeAttached")[0];
    assert_eq!(e.pvc, Some(("apps".into(), "data".into())));
    assert_eq!(e.pv_name.as_deref(), Some(PV));
}

// ---------------------------------------------------------------- rebuild

fn va(name: &str, pv: &str, node: &str, attached: bool) -> VolumeAttachmentInfo {
    VolumeAttachmentInfo {
        name: name.to_string(),
        pv_name: Some(pv.to_string()),
        node: node.to_string(),
        attached,
        deleting_for_secs: None,
    }
}

#[tokio::test]
async fn rebuild_restores_state_from_volume_attachments_and_annotations() {
    let cluster = Arc::new(MemoryCluster::new());
    let clock = Arc::new(ManualClock::default());
    // Written by a previous controller: one single-node volume and one in mid-migration.
    let before = world_with(FencingConfig::default()).await;
    before
        .cluster
        .add_pv("pv-one", "default:pvc-one", Some(("apps", "one")));
    before.cluster.add_pv("pv-two", "default:pvc-two", None);
    before
        .fencing
        .publish(&rwo("default:pvc-one", "node-a"))
        .await
        .unwrap();
    let mut slow = rwx("default:pvc-two", "node-b");
    slow.volume_context
        .insert(params::C_MIGRATION_TIMEOUT.into(), "120".into());
    before.fencing.publish(&slow).await.unwrap();
    slow.node = "node-c".into();
    before.fencing.publish(&slow).await.unwrap();
    for name in ["pv-one", "pv-two"] {
        let pv = before.cluster.pv(name).unwrap();
        cluster.add_pv(
            name,
            &pv.volume_handle,
            pv.claim.as_ref().map(|(n, c)| (n.as_str(), c.as_str())),
        );
        cluster.set_pv_annotations(name, pv.annotations.clone());
    }
    // Stale annotations with no VolumeAttachment behind them: must not fence anything.
    cluster.add_pv("pv-stale", "default:pvc-stale", None);
    let mut stale = BTreeMap::new();
    stale.insert(ann::ATTACHED_NODE.to_string(), "node-z".to_string());
    cluster.set_pv_annotations("pv-stale", stale);
    // Published, but the attacher had not yet recorded it: counts (annotations name the node).
    // A VA not attached and not recorded is a publish that never happened: does not count.
    cluster.add_pv("pv-fresh", "default:pvc-fresh", None);
    cluster.add_volume_attachment(va("csi-1", "pv-one", "node-a", true));
    cluster.add_volume_attachment(va("csi-2", "pv-two", "node-b", true));
    cluster.add_volume_attachment(va("csi-3", "pv-two", "node-c", true));
    cluster.add_volume_attachment(va("csi-4", "pv-fresh", "node-q", false));
    cluster.add_volume_attachment(va("csi-5", "pv-gone", "node-a", true));

    let m =
        AttachmentManager::new(cluster.clone(), FencingConfig::default()).with_clock(clock.clone());
    assert!(!m.is_ready());
    let report = m.rebuild().await.unwrap();
    assert!(m.is_ready());
    assert_eq!(report.volumes, 2, "{report:?}");
    assert_eq!(report.attachments, 3, "{report:?}");
    assert_eq!(report.stale_annotations, 1, "{report:?}");
    assert_eq!(report.unresolved, 1, "{report:?}");

    let one = m.attachment("default:pvc-one").unwrap();
    assert_eq!(one.node_names(), vec!["node-a"]);
    assert_eq!(one.sharing, Sharing::SingleNode);
    assert_eq!(one.nodes[0].attached_at, before.clock.now());
    assert_eq!(one.target.pvc, Some(("apps".into(), "one".into())));
    let two = m.attachment("default:pvc-two").unwrap();
    assert_eq!(two.node_names(), vec!["node-b", "node-c"]);
    assert_eq!(two.sharing, Sharing::MultiNode);
    assert_eq!(
        two.migration.as_ref().unwrap().timeout,
        Duration::from_secs(120),
        "the migration window survives a restart"
    );
    assert!(m.attachment("default:pvc-stale").is_none());
    assert!(m.attachment("default:pvc-fresh").is_none());

    // The restored fence holds.
    let err = m
        .publish(&rwo("default:pvc-one", "node-b"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    m.publish(&rwo("default:pvc-stale", "node-b"))
        .await
        .unwrap();
}

#[tokio::test]
async fn rebuild_counts_a_recorded_publish_the_attacher_had_not_confirmed() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.add_pv("pv-x", "default:pvc-x", None);
    let mut rec = BTreeMap::new();
    rec.insert(ann::ATTACHED_NODE.to_string(), "node-a".to_string());
    cluster.set_pv_annotations("pv-x", rec);
    cluster.add_volume_attachment(va("csi-x", "pv-x", "node-a", false));
    let m = AttachmentManager::new(cluster, FencingConfig::default());
    m.rebuild().await.unwrap();
    assert_eq!(m.attached_nodes("default:pvc-x"), vec!["node-a"]);
}

#[tokio::test]
async fn without_a_rebuild_nothing_is_decided() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.fail_lists(Some(ClusterError::Unavailable("no route to host".into())));
    let m = AttachmentManager::new(cluster.clone(), FencingConfig::default());
    let err = m.rebuild().await.unwrap_err();
    assert!(err.to_string().contains("no route to host"), "{err}");
    assert!(!m.is_ready());
    let err = m.publish(&rwo(V, "node-a")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let err = m.unpublish(V, Some("node-a")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    cluster.fail_lists(None);
    m.rebuild().await.unwrap();
    m.publish(&rwo(V, "node-a")).await.unwrap();
}

// ---------------------------------------------------------------- reconciler

#[tokio::test]
async fn the_reconciler_clears_deleted_and_out_of_service_nodes() {
    let w = world().await;
    let other = "default:pvc-two";
    w.cluster.add_pv("pv-two", other, None);
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    w.fencing.publish(&rwo(other, "node-b")).await.unwrap();
    w.fencing
        .publish(&rwo("default:pvc-3", "node-c"))
        .await
        .unwrap();
    w.cluster.set_node(
        "node-a",
        NodeState::Present {
            out_of_service: true,
        },
    );
    w.cluster.remove_node("node-b");
    let r = w.fencing.reconcile_once().await;
    let mut cleared = r.cleared.clone();
    cleared.sort();
    assert_eq!(
        cleared,
        vec![
            (V.to_string(), "node-a".to_string()),
            (other.to_string(), "node-b".to_string())
        ]
    );
    assert!(w.fencing.attachment(V).is_none());
    assert!(w.fencing.attachment(other).is_none());
    assert_eq!(w.fencing.attached_nodes("default:pvc-3"), vec!["node-c"]);
    assert!(!annotations(&w).contains_key(ann::ATTACHED_NODE));
    assert_eq!(w.fencing.stats().stale_cleared_total, 2);
    assert_eq!(
        w.cluster.events_with_reason("StaleAttachmentCleared").len(),
        2
    );
    // The freed volume is available to a healthy node.
    w.fencing.publish(&rwo(V, "node-d")).await.unwrap();
}

#[tokio::test]
async fn the_reconciler_fails_open_on_api_errors() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    w.cluster
        .fail_node_lookups(Some(ClusterError::Unavailable("timeout".into())));
    let r = w.fencing.reconcile_once().await;
    assert!(r.cleared.is_empty());
    assert!(r.errors >= 1, "{r:?}");
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a"]);

    // The node is gone but the PV write fails: the attachment stays until a write succeeds.
    w.cluster.fail_node_lookups(None);
    w.cluster.remove_node("node-a");
    w.cluster
        .fail_patches([ClusterError::Unavailable("etcd timeout".into())]);
    let r = w.fencing.reconcile_once().await;
    assert!(r.cleared.is_empty(), "{r:?}");
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a"]);
    let r = w.fencing.reconcile_once().await;
    assert_eq!(r.cleared, vec![(V.to_string(), "node-a".to_string())]);
    assert!(w.fencing.stats().reconcile_errors_total >= 2);
}

#[tokio::test]
async fn an_overdue_migration_is_reported_once_and_never_detached() {
    let w = world().await;
    let mut req = rwx(V, "node-a");
    req.volume_context
        .insert(params::C_MIGRATION_TIMEOUT.into(), "60".into());
    w.fencing.publish(&req).await.unwrap();
    req.node = "node-b".into();
    w.fencing.publish(&req).await.unwrap();

    w.clock.advance(Duration::from_secs(60));
    let r = w.fencing.reconcile_once().await;
    assert!(r.overdue_migrations.is_empty(), "not overdue yet: {r:?}");

    w.clock.advance(Duration::from_secs(1));
    let r = w.fencing.reconcile_once().await;
    assert_eq!(r.overdue_migrations, vec![V.to_string()]);
    let events = w.cluster.events_with_reason("MigrationTimeout");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Warning);
    assert!(events[0].message.contains("node-a") && events[0].message.contains("node-b"));
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a", "node-b"]);
    assert_eq!(w.fencing.stats().migration_timeouts_total, 1);

    let r = w.fencing.reconcile_once().await;
    assert!(r.overdue_migrations.is_empty());
    assert_eq!(w.fencing.stats().migration_timeouts_total, 1);
    // A third node is still refused, and the refusal says the migration is overdue.
    req.node = "node-c".into();
    let err = w.fencing.publish(&req).await.unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
}

#[tokio::test]
async fn volume_attachments_stuck_in_deletion_are_reported_once() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    let mut stuck = va("csi-stuck", PV, "node-a", true);
    stuck.deleting_for_secs = Some(3600);
    w.cluster.add_volume_attachment(stuck);
    let mut young = va("csi-young", "pv-other", "node-b", true);
    young.deleting_for_secs = Some(5);
    w.cluster.add_volume_attachment(young);

    let r = w.fencing.reconcile_once().await;
    assert_eq!(r.stuck_volume_attachments, vec!["csi-stuck".to_string()]);
    let events = w.cluster.events_with_reason("VolumeAttachmentStuck");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Warning);
    assert_eq!(events[0].pvc, Some(("apps".into(), "data".into())));
    assert!(events[0].message.contains("csi-stuck"));
    let r = w.fencing.reconcile_once().await;
    assert!(r.stuck_volume_attachments.is_empty());
    assert_eq!(w.fencing.stats().stale_volume_attachment_reports_total, 1);
    // Reporting never detaches anything.
    assert_eq!(w.fencing.attached_nodes(V), vec!["node-a"]);
}

#[tokio::test]
async fn a_volume_attachment_stuck_in_deletion_for_a_deleted_node_is_finished() {
    let w = world().await;
    w.fencing.publish(&rwo(V, "node-a")).await.unwrap();
    let mut gone = va("csi-gone", PV, "node-a", true);
    gone.deleting_for_secs = Some(3600);
    w.cluster.add_volume_attachment(gone);
    // Stuck too, but its node exists: only reported.
    let mut alive = va("csi-alive", "pv-other", "node-b", true);
    alive.deleting_for_secs = Some(3600);
    w.cluster.add_volume_attachment(alive);
    w.cluster.remove_node("node-a");

    let r = w.fencing.reconcile_once().await;
    assert_eq!(r.finished_volume_attachments, vec!["csi-gone".to_string()]);
    assert_eq!(r.stuck_volume_attachments, vec!["csi-alive".to_string()]);
    assert!(w.fencing.attached_nodes(V).is_empty());
    let left: Vec<String> = w
        .cluster
        .list_volume_attachments()
        .await
        .unwrap()
        .into_iter()
        .map(|va| va.name)
        .collect();
    assert_eq!(left, ["csi-alive"]);
    let events = w.cluster.events_with_reason("VolumeAttachmentFinished");
    assert_eq!(events.len(), 1);
    assert!(
        events[0].message.contains("csi-gone"),
        "{}",
        events[0].message
    );
    assert_eq!(events[0].pv_name.as_deref(), Some(PV));
}

// ---------------------------------------------------------------- concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_from_two_nodes_have_exactly_one_winner() {
    let w = world().await;
    for round in 0..100 {
        let volume = format!("default:pvc-race-{round}");
        w.cluster
            .add_pv(&format!("pv-race-{round}"), &volume, Some(("apps", "race")));
        let a = {
            let (f, v) = (w.fencing.clone(), volume.clone());
            tokio::spawn(async move { f.publish(&rwo(&v, "node-a")).await })
        };
        let b = {
            let (f, v) = (w.fencing.clone(), volume.clone());
            tokio::spawn(async move { f.publish(&rwo(&v, "node-b")).await })
        };
        let results: Vec<Result<PublishOutcome, DriverError>> =
            vec![a.await.unwrap(), b.await.unwrap()];
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = &results[1 - winners[0]];
        assert_eq!(
            loser.as_ref().unwrap_err().code(),
            Code::FailedPrecondition,
            "round {round}"
        );
        let winner = ["node-a", "node-b"][winners[0]];
        assert_eq!(
            w.fencing.attached_nodes(&volume),
            vec![winner],
            "round {round}"
        );
        let recorded = w
            .cluster
            .pv(&format!("pv-race-{round}"))
            .unwrap()
            .annotations;
        assert_eq!(recorded[ann::ATTACHED_NODE], winner, "round {round}");
    }
    let s = w.fencing.stats();
    assert_eq!(s.attaches_total, 100);
    assert_eq!(s.conflicts_total, 100);
    assert_eq!(s.attached_volumes, 100);
}
