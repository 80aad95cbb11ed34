//! Fencing end to end against a real kube-apiserver (scripts/test-kube starts one): the
//! `AttachmentManager` on `KubeCluster`, acting as the controller ServiceAccount under the
//! shipped RBAC, with PVs, PVCs, Nodes and VolumeAttachments created as Kubernetes would.

#![allow(clippy::unwrap_used)]

#[path = "kube_common.rs"]
mod kube_common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use fencing::annotations;
use fencing::cluster::Cluster;
use fencing::{
    AttachmentManager, FencingConfig, PublishOutcome, PublishRequest, Sharing, UnpublishOutcome,
};
use k8s::KubeCluster;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use kube_common::*;
use tokio::sync::RwLock;
use tonic::Code;
use vocab::params;

/// The outage test stops the API server, which every other test here needs: it takes this
/// exclusively, the others share it.
static API_SERVER: RwLock<()> = RwLock::const_new(());

struct Fixture {
    env: KubeEnv,
    driver: String,
    ns: String,
    cluster: Arc<KubeCluster>,
}

/// RBAC applied, a driver name and namespace of the test's own, and a `Cluster` acting as the
/// controller ServiceAccount (so the shipped RBAC is what these tests run under).
async fn fixture(test: &str) -> Option<Fixture> {
    let env = env(test).await?;
    apply_rbac(&env).await;
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    let cluster = Arc::new(KubeCluster::new(env.controller.clone(), driver.clone()));
    Some(Fixture {
        env,
        driver,
        ns,
        cluster,
    })
}

struct Volume {
    id: String,
    pv: String,
    pvc: String,
}

impl Fixture {
    async fn volume(&self) -> Volume {
        let id = format!("default:{}", unique("pvc"));
        let (pv, pvc, _) = create_bound_volume(&self.env.admin, &self.ns, &self.driver, &id).await;
        Volume { id, pv, pvc }
    }

    /// A controller as it starts: manager rebuilt from Kubernetes before serving.
    async fn controller(&self) -> AttachmentManager {
        let m = AttachmentManager::new(self.cluster.clone(), FencingConfig::default());
        m.rebuild().await.unwrap();
        m
    }

    fn publish(&self, v: &Volume, node: &str) -> PublishRequest {
        PublishRequest {
            volume_id: v.id.clone(),
            node: node.to_string(),
            sharing: Sharing::SingleNode,
            volume_context: HashMap::from([
                (params::PVC_NAMESPACE.to_string(), self.ns.clone()),
                (params::PVC_NAME.to_string(), v.pvc.clone()),
            ]),
        }
    }

    /// The nodes the PV's annotations record, read back through the API as admin.
    async fn recorded_nodes(&self, v: &Volume) -> Vec<String> {
        let api: Api<PersistentVolume> = Api::all(self.env.admin.clone());
        let pv = api.get(&v.pv).await.unwrap();
        let ann = pv.metadata.annotations.unwrap_or_default();
        annotations::read(&ann)
            .nodes
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// (reason, message) of the events on the volume's PVC, in its namespace, once every event
    /// queued so far was posted (events leave the request path through a queue).
    async fn events(&self, v: &Volume) -> Vec<(String, String)> {
        self.cluster.events().flushed().await;
        events_about(&self.env.admin, &self.ns, &v.pvc)
            .await
            .into_iter()
            .map(|e| {
                assert_eq!(e.metadata.namespace.as_deref(), Some(self.ns.as_str()));
                (e.reason.unwrap_or_default(), e.message.unwrap_or_default())
            })
            .collect()
    }
}

// Two worker threads, so the two publishes really run at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_for_one_rwo_volume_exactly_one_wins_every_round() {
    let _shared = API_SERVER.read().await;
    let Some(fx) =
        fixture("two_nodes_racing_for_one_rwo_volume_exactly_one_wins_every_round").await
    else {
        return;
    };
    let (a, b) = (unique("node"), unique("node"));
    create_node(&fx.env.admin, &a, &[]).await;
    create_node(&fx.env.admin, &b, &[]).await;
    let v = fx.volume().await;
    let manager = Arc::new(fx.controller().await);

    let mut wins = HashMap::new();
    for round in 0..100 {
        let race = |node: String| {
            let (m, req) = (manager.clone(), fx.publish(&v, &node));
            tokio::spawn(async move { (node, m.publish(&req).await) })
        };
        let (ra, rb) = (race(a.clone()), race(b.clone()));
        let mut winners = Vec::new();
        for r in [ra.await.unwrap(), rb.await.unwrap()] {
            match r {
                (node, Ok(PublishOutcome::Attached)) => winners.push(node),
                (_, Err(e)) => assert_eq!(e.code(), Code::FailedPrecondition, "round {round}: {e}"),
                (node, Ok(other)) => panic!("round {round}: {node} got {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let winner = winners.remove(0);
        assert_eq!(
            fx.recorded_nodes(&v).await,
            std::slice::from_ref(&winner),
            "round {round}"
        );
        assert_eq!(manager.attached_nodes(&v.id), std::slice::from_ref(&winner));
        *wins.entry(winner.clone()).or_insert(0) += 1;

        assert_eq!(
            manager.unpublish(&v.id, Some(&winner)).await.unwrap(),
            UnpublishOutcome::Detached
        );
        assert!(fx.recorded_nodes(&v).await.is_empty(), "round {round}");
    }
    eprintln!("wins per node over 100 rounds: {wins:?}");

    // The losers were told, on the PVC.
    let events = fx.events(&v).await;
    let conflict = events
        .iter()
        .find(|(reason, _)| reason == "AttachmentConflict")
        .unwrap();
    assert!(
        conflict
            .1
            .starts_with(&format!("[{}]: Attachment to node ", v.id)),
        "{}",
        conflict.1
    );
    assert!(events.iter().any(|(r, _)| r == "VolumeAttached"));
    assert!(events.iter().any(|(r, _)| r == "VolumeDetached"));
}

#[tokio::test]
async fn a_restarted_controller_keeps_refusing_conflicts() {
    let _shared = API_SERVER.read().await;
    let Some(fx) = fixture("a_restarted_controller_keeps_refusing_conflicts").await else {
        return;
    };
    let (a, b) = (unique("node"), unique("node"));
    create_node(&fx.env.admin, &a, &[]).await;
    create_node(&fx.env.admin, &b, &[]).await;
    // `recorded`: the attacher marked the VolumeAttachment attached. `unrecorded`: the
    // controller stopped after publish succeeded but before the attacher recorded it.
    let (recorded, unrecorded) = (fx.volume().await, fx.volume().await);
    {
        let first = fx.controller().await;
        for v in [&recorded, &unrecorded] {
            // The attacher creates the VolumeAttachment, then calls ControllerPublish.
            create_va(&fx.env.admin, &unique("csi"), &fx.driver, &a, &v.pv, &[]).await;
            assert_eq!(
                first.publish(&fx.publish(v, &a)).await.unwrap(),
                PublishOutcome::Attached
            );
        }
        // Only the first is marked attached.
        let vas = fx.cluster.list_volume_attachments().await.unwrap();
        let va = vas
            .iter()
            .find(|x| x.pv_name.as_deref() == Some(recorded.pv.as_str()))
            .unwrap();
        set_va_attached(&fx.env.admin, &va.name, true).await;
    } // the controller is gone; its memory with it

    let second = fx.controller().await;
    for v in [&recorded, &unrecorded] {
        assert_eq!(
            second.attached_nodes(&v.id),
            std::slice::from_ref(&a),
            "{}",
            v.id
        );
        let refused = second.publish(&fx.publish(v, &b)).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
        assert_eq!(fx.recorded_nodes(v).await, std::slice::from_ref(&a));
    }

    // Unpublish on the restarted controller releases the volume, and only then B gets it.
    assert_eq!(
        second.unpublish(&recorded.id, Some(&a)).await.unwrap(),
        UnpublishOutcome::Detached
    );
    assert_eq!(
        second.publish(&fx.publish(&recorded, &b)).await.unwrap(),
        PublishOutcome::Attached
    );
    assert_eq!(fx.recorded_nodes(&recorded).await, std::slice::from_ref(&b));
    // A late unpublish for A must not drop B's fence.
    assert_eq!(
        second.unpublish(&recorded.id, Some(&a)).await.unwrap(),
        UnpublishOutcome::NotAttached
    );
    assert_eq!(fx.recorded_nodes(&recorded).await, [b]);
}

#[tokio::test]
async fn a_deleted_node_releases_its_fences() {
    let _shared = API_SERVER.read().await;
    let Some(fx) = fixture("a_deleted_node_releases_its_fences").await else {
        return;
    };
    let (a, b, c) = (unique("node"), unique("node"), unique("node"));
    for n in [&a, &b, &c] {
        create_node(&fx.env.admin, n, &[]).await;
    }
    let (on_publish, on_reconcile) = (fx.volume().await, fx.volume().await);
    let manager = fx.controller().await;
    manager.publish(&fx.publish(&on_publish, &a)).await.unwrap();
    manager
        .publish(&fx.publish(&on_reconcile, &c))
        .await
        .unwrap();
    let refused = manager
        .publish(&fx.publish(&on_publish, &b))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // A publish elsewhere finds the holder's Node gone and takes over.
    delete_node(&fx.env.admin, &a).await;
    assert_eq!(
        manager.publish(&fx.publish(&on_publish, &b)).await.unwrap(),
        PublishOutcome::Attached
    );
    assert_eq!(
        fx.recorded_nodes(&on_publish).await,
        std::slice::from_ref(&b)
    );
    let events = fx.events(&on_publish).await;
    assert!(
        events.contains(&(
            "StaleAttachmentCleared".to_string(),
            format!(
                "[{}]: Cleared stale attachment from deleted node {a}",
                on_publish.id
            )
        )),
        "{events:?}"
    );

    // The reconciler clears a deleted node's fence with no publish needed.
    delete_node(&fx.env.admin, &c).await;
    let report = manager.reconcile_once().await;
    assert_eq!(report.cleared, [(on_reconcile.id.clone(), c.clone())]);
    assert!(manager.attached_nodes(&on_reconcile.id).is_empty());
    assert!(fx.recorded_nodes(&on_reconcile).await.is_empty());
    // B still holds its volume: its node exists.
    assert_eq!(manager.attached_nodes(&on_publish.id), [b]);
}

#[tokio::test]
async fn an_out_of_service_node_is_released_by_the_reconciler() {
    let _shared = API_SERVER.read().await;
    let Some(fx) = fixture("an_out_of_service_node_is_released_by_the_reconciler").await else {
        return;
    };
    let (down, up) = (unique("node"), unique("node"));
    create_node(&fx.env.admin, &down, &[(OUT_OF_SERVICE, "NoExecute")]).await;
    create_node(&fx.env.admin, &up, &[]).await;
    let (v1, v2) = (fx.volume().await, fx.volume().await);
    let manager = fx.controller().await;
    manager.publish(&fx.publish(&v1, &down)).await.unwrap();
    manager.publish(&fx.publish(&v2, &up)).await.unwrap();
    let report = manager.reconcile_once().await;
    assert_eq!(report.cleared, [(v1.id.clone(), down)]);
    assert!(fx.recorded_nodes(&v1).await.is_empty());
    assert_eq!(fx.recorded_nodes(&v2).await, [up]);
}

#[tokio::test]
async fn publish_fails_closed_while_the_api_server_is_down_and_recovers_after() {
    let _exclusive = API_SERVER.write().await;
    let Some(fx) =
        fixture("publish_fails_closed_while_the_api_server_is_down_and_recovers_after").await
    else {
        return;
    };
    let (a, b) = (unique("node"), unique("node"));
    create_node(&fx.env.admin, &a, &[]).await;
    create_node(&fx.env.admin, &b, &[]).await;
    let (held, fresh) = (fx.volume().await, fx.volume().await);
    let manager = Arc::new(fx.controller().await);
    manager.publish(&fx.publish(&held, &a)).await.unwrap();

    apiserver(&fx.env.scripts, &fx.env.state, "stop");
    let (m, cluster) = (manager.clone(), fx.cluster.clone());
    let (steal, first_use) = (fx.publish(&held, &b), fx.publish(&fresh, &b));
    let fresh_id = fresh.id.clone();
    // In a task so that a failed assertion still lets the server be restarted below.
    let outage = tokio::spawn(async move {
        // The holder cannot be verified: refuse, never guess it is gone.
        let e = m.publish(&steal).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
        // A free volume cannot be recorded on its PV: refuse rather than fence in memory only.
        let e = m.publish(&first_use).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
        assert!(m.attached_nodes(&fresh_id).is_empty());
        // A restarting controller cannot rebuild, so it must not serve.
        let restarted = AttachmentManager::new(cluster, FencingConfig::default());
        let e = restarted.rebuild().await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
        assert!(!restarted.is_ready());
        let e = restarted.publish(&first_use).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
    })
    .await;
    apiserver(&fx.env.scripts, &fx.env.state, "start");
    outage.unwrap();

    // Back: the fence still holds, and a free volume attaches.
    let e = manager.publish(&fx.publish(&held, &b)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert_eq!(
        manager.publish(&fx.publish(&fresh, &b)).await.unwrap(),
        PublishOutcome::Attached
    );
    assert_eq!(fx.recorded_nodes(&fresh).await, [b]);
    assert_eq!(fx.recorded_nodes(&held).await, [a]);
}

/// A PV named after its slot, as the external-provisioner makes one, bound to a PVC.
async fn provisioned(fx: &Fixture) -> Volume {
    let slot = format!("pvc-{}", uuid::Uuid::new_v4());
    let id = format!("default:{slot}");
    let pvc = unique("pvc");
    let made = create_pvc(&fx.env.admin, &fx.ns, &pvc, &slot).await;
    let uid = made.metadata.uid.unwrap();
    create_pv(
        &fx.env.admin,
        &slot,
        &fx.driver,
        &id,
        Some((&fx.ns, &pvc, &uid)),
    )
    .await;
    Volume { id, pv: slot, pvc }
}

#[tokio::test]
async fn publish_and_unpublish_read_one_pv_and_write_it_once_whatever_the_pv_count() {
    let _shared = API_SERVER.read().await;
    let Some(fx) =
        fixture("publish_and_unpublish_read_one_pv_and_write_it_once_whatever_the_pv_count").await
    else {
        return;
    };
    for _ in 0..20 {
        fx.volume().await; // other PVs of the driver, which a listing would read
    }
    let node = unique("node");
    create_node(&fx.env.admin, &node, &[]).await;
    let (client, log) = counting_controller_client().await;
    let cluster = KubeCluster::new(client, fx.driver.clone());
    let manager = AttachmentManager::new(Arc::new(cluster.clone()), FencingConfig::default());
    manager.rebuild().await.unwrap();

    // Provisioned (PV named after the slot), before the index runs: one GET, one PATCH.
    let v = provisioned(&fx).await;
    log.lock().unwrap().clear();
    manager.publish(&fx.publish(&v, &node)).await.unwrap();
    let get = format!("GET /api/v1/persistentvolumes/{}", v.pv);
    let patch = format!("PATCH /api/v1/persistentvolumes/{}", v.pv);
    let post = format!("POST /api/v1/namespaces/{}/events", fx.ns);
    // On the request path: the Node and its CSINode (node exists, attach limit), the PV's GET
    // and the PATCH conditional on its resourceVersion. The VolumeAttached event follows from
    // the queue as one POST on the PVC, whose uid the PV's claimRef gave: nothing read again.
    cluster.events().flushed().await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("GET /api/v1/nodes/{node}"),
            format!("GET /apis/storage.k8s.io/v1/csinodes/{node}"),
            get.clone(),
            patch.clone(),
            post.clone(),
        ]
    );
    log.lock().unwrap().clear();
    manager.unpublish(&v.id, Some(&node)).await.unwrap();
    cluster.events().flushed().await;
    assert_eq!(*log.lock().unwrap(), [get, patch, post]);
    assert!(fx.recorded_nodes(&v).await.is_empty());
    assert_eq!(cluster.events().dropped_events(), 0);

    // With the node cache, the node is admitted without a request: a publish is the PV's GET
    // and PATCH, nothing else.
    let nodes = cluster.start_node_cache();
    wait_until("the node cache to be ready", || async {
        cluster.node_cache_ready()
    })
    .await;
    let w = provisioned(&fx).await;
    log.lock().unwrap().clear();
    manager.publish(&fx.publish(&w, &node)).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("GET /api/v1/persistentvolumes/{}", w.pv),
            format!("PATCH /api/v1/persistentvolumes/{}", w.pv),
        ]
    );
    cluster.events().flushed().await;
    manager.unpublish(&w.id, Some(&node)).await.unwrap();
    // A node the cache has not seen (its watch is stopped here, so none is) is read, not
    // refused.
    nodes.abort();
    let late = unique("node");
    create_node(&fx.env.admin, &late, &[]).await;
    log.lock().unwrap().clear();
    manager.publish(&fx.publish(&w, &late)).await.unwrap();
    assert!(
        log.lock()
            .unwrap()
            .contains(&format!("GET /api/v1/nodes/{late}")),
        "{:?}",
        log.lock().unwrap()
    );
    manager.unpublish(&w.id, Some(&late)).await.unwrap();

    // A static PV (any name): found through the index, again without a listing.
    let index = cluster.start_pv_index();
    wait_until("the PV index to be ready", || async {
        cluster.pv_index_ready()
    })
    .await;
    let s = fx.volume().await;
    wait_until("the index to learn the new PV", || async {
        cluster.indexed_pv_names(&s.id) == Some(vec![s.pv.clone()])
    })
    .await;
    log.lock().unwrap().clear();
    manager.publish(&fx.publish(&s, &node)).await.unwrap();
    assert_eq!(
        pv_requests(&log),
        [
            format!("GET /api/v1/persistentvolumes/{}", s.pv),
            format!("PATCH /api/v1/persistentvolumes/{}", s.pv)
        ]
    );
    assert_eq!(fx.recorded_nodes(&s).await, [node]);
    // A handle no PV has: answered by the index, no request.
    log.lock().unwrap().clear();
    let none = format!("default:{}", unique("pvc"));
    assert_eq!(cluster.pv_by_handle(&none).await.unwrap(), None);
    assert!(
        pv_requests(&log)
            .iter()
            .all(|r| !r.starts_with("GET /api/v1/persistentvolumes?")),
        "{:?}",
        pv_requests(&log)
    );
    index.abort();
}

/// Node deleted, then a node tainted out-of-service, alternately: the watch releases each
/// node's volume with no reconciler pass (none runs here). Prints p50 and max for the docs.
#[tokio::test]
async fn a_node_deleted_or_out_of_service_is_released_by_the_node_watch() {
    let _shared = API_SERVER.read().await;
    let Some(fx) = fixture("a_node_deleted_or_out_of_service_is_released_by_the_node_watch").await
    else {
        return;
    };
    let trials: usize = std::env::var("RDS_CSI_WATCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let manager = Arc::new(fx.controller().await);
    let watch = k8s::watch_nodes(
        fx.env.controller.clone(),
        manager.clone(),
        std::time::Duration::from_secs(15),
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(fx.env.admin.clone());
    let mut took = Vec::new();
    for trial in 0..trials {
        let node = unique("node");
        create_node(&fx.env.admin, &node, &[]).await;
        let v = fx.volume().await;
        manager.publish(&fx.publish(&v, &node)).await.unwrap();
        let started = std::time::Instant::now();
        if trial % 2 == 0 {
            delete_node(&fx.env.admin, &node).await;
        } else {
            let taint = serde_json::json!({"spec": {"taints": [
                {"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}
            ]}});
            nodes
                .patch(
                    &node,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&taint),
                )
                .await
                .unwrap();
        }
        wait_until(&format!("trial {trial}: {node} released"), || async {
            manager.attached_nodes(&v.id).is_empty()
        })
        .await;
        took.push(started.elapsed());
        assert!(fx.recorded_nodes(&v).await.is_empty(), "trial {trial}");
    }
    watch.abort();
    took.sort();
    eprintln!(
        "node watch release over {trials} trials: p50 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

/// A VolumeAttachment stuck in deletion (the external-attacher's finalizer still on it) whose
/// Node is gone is finished by a reconciler pass: the attachment released and only the
/// attacher's finalizer taken off, so Kubernetes can delete it. One whose node exists is only
/// reported.
#[tokio::test]
async fn a_volume_attachment_stuck_for_a_deleted_node_is_finished() {
    use k8s_openapi::api::storage::v1::VolumeAttachment;
    let _shared = API_SERVER.read().await;
    let Some(fx) = fixture("a_volume_attachment_stuck_for_a_deleted_node_is_finished").await else {
        return;
    };
    let (gone, alive) = (unique("node"), unique("node"));
    create_node(&fx.env.admin, &gone, &[]).await;
    create_node(&fx.env.admin, &alive, &[]).await;
    let (v, w) = (fx.volume().await, fx.volume().await);
    let m = AttachmentManager::new(
        fx.cluster.clone(),
        FencingConfig {
            stuck_detach_after: std::time::Duration::ZERO,
            ..FencingConfig::default()
        },
    );
    m.rebuild().await.unwrap();
    m.publish(&fx.publish(&v, &gone)).await.unwrap();
    m.publish(&fx.publish(&w, &alive)).await.unwrap();
    // The test drivers' names hold only lowercase letters, digits, '-' and '.'.
    let finalizer = format!("external-attacher/{}", fx.driver.replace('.', "-"));
    let other = "example.com/another-controller";
    let (va_gone, va_alive) = (unique("csi"), unique("csi"));
    create_va(
        &fx.env.admin,
        &va_gone,
        &fx.driver,
        &gone,
        &v.pv,
        &[&finalizer, other],
    )
    .await;
    create_va(
        &fx.env.admin,
        &va_alive,
        &fx.driver,
        &alive,
        &w.pv,
        &[&finalizer],
    )
    .await;
    let vas: Api<VolumeAttachment> = Api::all(fx.env.admin.clone());
    for va in [&va_gone, &va_alive] {
        vas.delete(va, &Default::default()).await.unwrap();
    }
    delete_node(&fx.env.admin, &gone).await;

    let report = m.reconcile_once().await;
    assert_eq!(
        report.finished_volume_attachments,
        std::slice::from_ref(&va_gone)
    );
    assert_eq!(
        report.stuck_volume_attachments,
        std::slice::from_ref(&va_alive)
    );
    let finalizers = |va: VolumeAttachment| va.metadata.finalizers.unwrap_or_default();
    assert_eq!(finalizers(vas.get(&va_gone).await.unwrap()), [other]);
    assert_eq!(finalizers(vas.get(&va_alive).await.unwrap()), [finalizer]);
    assert!(m.attached_nodes(&v.id).is_empty());
    assert!(fx.recorded_nodes(&v).await.is_empty());
    assert_eq!(m.attached_nodes(&w.id), [alive]);
    let events = fx.events(&v).await;
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "VolumeAttachmentFinished"
                && message.contains(&va_gone)),
        "{events:?}"
    );

    // Let the API server delete both.
    let clear = serde_json::json!({"metadata": {"finalizers": null}});
    for va in [&va_gone, &va_alive] {
        vas.patch(
            va,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&clear),
        )
        .await
        .unwrap();
    }
}

/// The VolumeAttachment watch finishes a VolumeAttachment that was already in deletion when
/// its Node went away (the order a dead node's VolumeAttachments usually take), without any
/// reconciler pass, and leaves one whose Node still exists alone.
#[tokio::test]
async fn a_volume_attachment_whose_node_goes_away_while_it_is_deleting_is_finished_by_the_watch() {
    use k8s_openapi::api::storage::v1::VolumeAttachment;
    let _shared = API_SERVER.read().await;
    let Some(fx) = fixture(
        "a_volume_attachment_whose_node_goes_away_while_it_is_deleting_is_finished_by_the_watch",
    )
    .await
    else {
        return;
    };
    let (gone, alive) = (unique("node"), unique("node"));
    create_node(&fx.env.admin, &gone, &[]).await;
    create_node(&fx.env.admin, &alive, &[]).await;
    let (v, w) = (fx.volume().await, fx.volume().await);
    let m = Arc::new(fx.controller().await);
    m.publish(&fx.publish(&v, &gone)).await.unwrap();
    m.publish(&fx.publish(&w, &alive)).await.unwrap();
    let finalizer = format!("external-attacher/{}", fx.driver.replace('.', "-"));
    let (va_gone, va_alive) = (unique("csi"), unique("csi"));
    create_va(
        &fx.env.admin,
        &va_gone,
        &fx.driver,
        &gone,
        &v.pv,
        &[&finalizer],
    )
    .await;
    create_va(
        &fx.env.admin,
        &va_alive,
        &fx.driver,
        &alive,
        &w.pv,
        &[&finalizer],
    )
    .await;
    let watch = k8s::watch_volume_attachments(
        fx.env.controller.clone(),
        fx.driver.clone(),
        m.clone(),
        std::time::Duration::from_secs(15),
        std::time::Duration::ZERO,
    );
    let vas: Api<VolumeAttachment> = Api::all(fx.env.admin.clone());
    for va in [&va_gone, &va_alive] {
        vas.delete(va, &Default::default()).await.unwrap();
    }
    // Both are checked at once (no grace) while both nodes exist: nothing may happen.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(vas.get_opt(&va_gone).await.unwrap().is_some());
    assert_eq!(m.attached_nodes(&v.id), std::slice::from_ref(&gone));
    delete_node(&fx.env.admin, &gone).await;
    let node_deleted = std::time::Instant::now();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while vas.get_opt(&va_gone).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch did not finish {va_gone} within 30 s of its node's deletion"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "TIMING va-watch.node-deleted-to-va-gone-ms {:.0}",
        node_deleted.elapsed().as_secs_f64() * 1000.0
    );
    assert!(m.attached_nodes(&v.id).is_empty());
    assert!(fx.recorded_nodes(&v).await.is_empty());
    let finalizers = |va: VolumeAttachment| va.metadata.finalizers.unwrap_or_default();
    assert_eq!(finalizers(vas.get(&va_alive).await.unwrap()), [finalizer]);
    assert_eq!(m.attached_nodes(&w.id), [alive]);
    watch.abort();

    let clear = serde_json::json!({"metadata": {"finalizers": null}});
    vas.patch(
        &va_alive,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&clear),
    )
    .await
    .unwrap();
}

fn apiserver(scripts: &Path, state: &Path, action: &str) {
    let status = std::process::Command::new(scripts.join("apiserver.sh"))
        .arg(state)
        .arg(action)
        .status()
        .unwrap();
    assert!(status.success(), "apiserver.sh {action}: {status}");
}

/// A publish names a node Kubernetes knows (a Node object) with room under its CSINode attach
/// limit for this driver; the refusals record nothing, and a retry of a held volume still
/// succeeds at the limit.
#[tokio::test]
async fn publish_needs_an_existing_node_with_room_under_its_csinode_limit() {
    use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, VolumeNodeResources};
    let _shared = API_SERVER.read().await;
    let Some(fx) =
        fixture("publish_needs_an_existing_node_with_room_under_its_csinode_limit").await
    else {
        return;
    };
    let m = fx.controller().await;
    let (v1, v2) = (fx.volume().await, fx.volume().await);
    let ghost = unique("node");
    let err = m.publish(&fx.publish(&v1, &ghost)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(fx.recorded_nodes(&v1).await.is_empty());

    let a = unique("node");
    create_node(&fx.env.admin, &a, &[]).await;
    let csinode = CSINode {
        metadata: kube::api::ObjectMeta {
            name: Some(a.clone()),
            ..Default::default()
        },
        spec: CSINodeSpec {
            drivers: vec![CSINodeDriver {
                name: fx.driver.clone(),
                node_id: a.clone(),
                allocatable: Some(VolumeNodeResources { count: Some(1) }),
                topology_keys: None,
            }],
        },
    };
    Api::<CSINode>::all(fx.env.admin.clone())
        .create(&Default::default(), &csinode)
        .await
        .unwrap();
    assert_eq!(
        m.publish(&fx.publish(&v1, &a)).await.unwrap(),
        PublishOutcome::Attached
    );
    let err = m.publish(&fx.publish(&v2, &a)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(fx.recorded_nodes(&v2).await.is_empty());
    assert_eq!(
        m.publish(&fx.publish(&v1, &a)).await.unwrap(),
        PublishOutcome::AlreadyAttached
    );
    m.unpublish(&v1.id, Some(&a)).await.unwrap();
    assert_eq!(
        m.publish(&fx.publish(&v2, &a)).await.unwrap(),
        PublishOutcome::Attached
    );
}
