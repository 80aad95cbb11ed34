//! KubeVirt VMI serialization through the attachment manager: publishes of one VMI's volumes
//! run one at a time, other publishes stay parallel, and nothing the grouper does ever fails a
//! publish.
//!
//! Concurrency is observed, not timed: the cluster's PV write is a gate the test opens by hand,
//! so "the second publish is still waiting" is read from the grouper's queue and the gate's count
//! while the first publish is provably inside.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fencing::cluster::{
    Cluster, ClusterError, NodeState, PvInfo, VolumeAttachmentInfo, VolumeEvent,
};
use fencing::serialize::PublishSerializer;
use fencing::{
    AttachmentManager, FencingConfig, MemoryCluster, MemoryVmiLookup, PodInfo, PublishOutcome,
    PublishRequest, Sharing, VmiGrouper, VmiGrouperConfig,
};
use tokio::sync::Semaphore;
use vocab::params;

/// A cluster whose PV writes wait at a gate: `inside` counts publishes in their write step.
struct Gated {
    inner: Arc<MemoryCluster>,
    inside: AtomicUsize,
    most_inside: AtomicUsize,
    open: Semaphore,
}

impl Gated {
    fn new(inner: Arc<MemoryCluster>) -> Self {
        Gated {
            inner,
            inside: AtomicUsize::new(0),
            most_inside: AtomicUsize::new(0),
            open: Semaphore::new(0),
        }
    }

    fn inside(&self) -> usize {
        self.inside.load(Ordering::SeqCst)
    }

    fn release(&self, n: usize) {
        self.open.add_permits(n);
    }
}

#[async_trait::async_trait]
impl Cluster for Gated {
    async fn pv_by_handle(&self, h: &str) -> Result<Option<PvInfo>, ClusterError> {
        self.inner.pv_by_handle(h).await
    }
    async fn list_pvs(&self) -> Result<Vec<PvInfo>, ClusterError> {
        self.inner.list_pvs().await
    }
    async fn patch_pv_annotations(
        &self,
        pv: &str,
        rv: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<PvInfo, ClusterError> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        self.open.acquire().await.unwrap().forget();
        self.inside.fetch_sub(1, Ordering::SeqCst);
        self.inner.patch_pv_annotations(pv, rv, changes).await
    }
    async fn list_volume_attachments(&self) -> Result<Vec<VolumeAttachmentInfo>, ClusterError> {
        self.inner.list_volume_attachments().await
    }
    async fn node_state(&self, node: &str) -> Result<NodeState, ClusterError> {
        self.inner.node_state(node).await
    }
    async fn post_event(&self, event: VolumeEvent) {
        self.inner.post_event(event).await
    }
}

const NS: &str = "vms";

struct World {
    gate: Arc<Gated>,
    lookup: Arc<MemoryVmiLookup>,
    grouper: Arc<VmiGrouper>,
    fencing: Arc<AttachmentManager>,
}

/// Volumes `vol-<pvc>` bound to PVCs in `vms`: vm1 has a root disk and a hotplugged disk, vm2 a
/// root disk, and `web-data` belongs to an ordinary pod.
async fn world() -> World {
    let memory = Arc::new(MemoryCluster::new());
    for pvc in ["vm1-root", "vm1-hot", "vm2-root", "web-data", "static"] {
        memory.add_pv(&format!("pv-{pvc}"), &volume(pvc), Some((NS, pvc)));
    }
    let lookup = Arc::new(MemoryVmiLookup::new());
    lookup.add_pod(
        NS,
        MemoryVmiLookup::virt_launcher("virt-launcher-vm1-aaaaa", "vm1", &["vm1-root", "static"]),
    );
    lookup.add_pod(
        NS,
        MemoryVmiLookup::hotplug("hp-volume-bbbbb", "virt-launcher-vm1-aaaaa", &["vm1-hot"]),
    );
    lookup.add_pod(
        NS,
        MemoryVmiLookup::virt_launcher("virt-launcher-vm2-ccccc", "vm2", &["vm2-root"]),
    );
    lookup.add_pod(
        NS,
        PodInfo {
            name: "web-0".into(),
            claims: vec!["web-data".into()],
            ..PodInfo::default()
        },
    );
    let gate = Arc::new(Gated::new(memory.clone()));
    let grouper = Arc::new(
        VmiGrouper::new(lookup.clone(), VmiGrouperConfig::default()).with_claim_lookup(memory),
    );
    let fencing = Arc::new(
        AttachmentManager::new(gate.clone(), FencingConfig::default())
            .with_serializer(grouper.clone() as Arc<dyn PublishSerializer>),
    );
    fencing.rebuild().await.unwrap();
    World {
        gate,
        lookup,
        grouper,
        fencing,
    }
}

fn volume(pvc: &str) -> String {
    format!("default:pvc-{pvc}")
}

fn publish(pvc: &str, node: &str, with_context: bool) -> PublishRequest {
    let mut ctx = HashMap::new();
    if with_context {
        ctx.insert(params::PVC_NAMESPACE.to_string(), NS.to_string());
        ctx.insert(params::PVC_NAME.to_string(), pvc.to_string());
    }
    PublishRequest {
        volume_id: volume(pvc),
        node: node.to_string(),
        sharing: Sharing::SingleNode,
        volume_context: ctx,
    }
}

fn spawn(
    w: &World,
    req: PublishRequest,
) -> tokio::task::JoinHandle<Result<PublishOutcome, vocab::DriverError>> {
    let fencing = w.fencing.clone();
    tokio::spawn(async move { fencing.publish(&req).await })
}

/// Polls a condition another task settles; the bound only turns a hang into a failure.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..5_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("gave up waiting for {what}");
}

async fn done(
    task: tokio::task::JoinHandle<Result<PublishOutcome, vocab::DriverError>>,
) -> Result<PublishOutcome, vocab::DriverError> {
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
}

/// Starts publishes of `a` and `b` and reports whether both were inside their PV write at once
/// (parallel) or `b` queued behind `a` on the VMI lock (serialized); then lets both finish.
async fn race(w: &World, a: PublishRequest, b: PublishRequest, vmi: Option<&str>) -> bool {
    let first = spawn(w, a);
    until("the first publish to reach its PV write", || {
        w.gate.inside() == 1
    })
    .await;
    let second = spawn(w, b);
    let parallel = match vmi {
        Some(vmi) => {
            until("the second publish to queue on the VMI lock", || {
                w.grouper.users(NS, vmi) == 2
            })
            .await;
            assert_eq!(w.gate.inside(), 1, "queued, so not inside");
            assert!(!second.is_finished());
            false
        }
        None => {
            until("both publishes inside their PV write", || {
                w.gate.inside() == 2
            })
            .await;
            true
        }
    };
    w.gate.release(2);
    assert_eq!(done(first).await.unwrap(), PublishOutcome::Attached);
    assert_eq!(done(second).await.unwrap(), PublishOutcome::Attached);
    parallel
}

#[tokio::test]
async fn two_volumes_of_one_vmi_are_published_one_at_a_time() {
    let w = world().await;
    let parallel = race(
        &w,
        publish("vm1-root", "node-a", true),
        publish("vm1-hot", "node-a", true),
        Some("vm1"),
    )
    .await;
    assert!(!parallel);
    assert_eq!(w.gate.most_inside.load(Ordering::SeqCst), 1);
    assert_eq!(w.grouper.stats().serialized, 2);
    assert_eq!(w.grouper.users(NS, "vm1"), 0, "released after the publish");
    assert_eq!(w.fencing.attached_nodes(&volume("vm1-hot")), vec!["node-a"]);
}

#[tokio::test]
async fn volumes_of_two_vmis_are_published_in_parallel() {
    let w = world().await;
    let parallel = race(
        &w,
        publish("vm1-root", "node-a", true),
        publish("vm2-root", "node-b", true),
        None,
    )
    .await;
    assert!(parallel);
    assert_eq!(w.grouper.stats().serialized, 2);
}

#[tokio::test]
async fn a_pvc_of_no_vmi_is_not_serialized() {
    let w = world().await;
    // web-data belongs to an ordinary pod; it runs alongside a VM's publish.
    let parallel = race(
        &w,
        publish("vm1-root", "node-a", true),
        publish("web-data", "node-b", true),
        None,
    )
    .await;
    assert!(parallel);
    assert_eq!(w.grouper.stats().unresolved, 1);
}

#[tokio::test]
async fn a_failing_pod_lookup_never_fails_the_publish() {
    let w = world().await;
    w.lookup
        .fail_with(Some(ClusterError::Forbidden("pods is forbidden".into())));
    // Both belong to vm1, but the grouper cannot tell: published unserialized, successfully.
    let parallel = race(
        &w,
        publish("vm1-root", "node-a", true),
        publish("vm1-hot", "node-a", true),
        None,
    )
    .await;
    assert!(parallel);
    assert_eq!(w.grouper.stats().serialized, 0);
    assert!(w.grouper.stats().lookup_errors >= 1);
}

#[tokio::test]
async fn without_pvc_keys_in_the_volume_context_the_claim_ref_groups_the_volume() {
    let w = world().await;
    // `static` is a statically provisioned PV: its volume_context has no PVC keys.
    let parallel = race(
        &w,
        publish("vm1-root", "node-a", true),
        publish("static", "node-a", false),
        Some("vm1"),
    )
    .await;
    assert!(!parallel);
}

/// Unpublish takes the same VMI guard: detaching one disk of a VM waits while another disk of
/// the same VM is being attached (KubeVirt's hotplug replaces attachment pods, so both happen).
#[tokio::test]
async fn unpublish_of_a_vmi_volume_waits_for_a_publish_of_the_same_vmi() {
    let w = world().await;
    // vm1-root attached first (gate opened for its one write).
    let first = spawn(&w, publish("vm1-root", "node-a", true));
    until("the first publish to reach its PV write", || {
        w.gate.inside() == 1
    })
    .await;
    w.gate.release(1);
    assert_eq!(done(first).await.unwrap(), PublishOutcome::Attached);

    // Now a publish of vm1-hot holds the VMI guard inside its PV write...
    let hot = spawn(&w, publish("vm1-hot", "node-a", true));
    until("the hotplug publish to reach its PV write", || {
        w.gate.inside() == 1
    })
    .await;
    // ...and an unpublish of vm1-root must queue on the VMI lock, not write alongside.
    let fencing = w.fencing.clone();
    let root = volume("vm1-root");
    let unpublish = tokio::spawn(async move { fencing.unpublish(&root, Some("node-a")).await });
    until("the unpublish to queue on the VMI lock", || {
        w.grouper.users(NS, "vm1") == 2
    })
    .await;
    assert_eq!(
        w.gate.inside(),
        1,
        "the unpublish must not write while the publish does"
    );
    assert!(!unpublish.is_finished());
    w.gate.release(2);
    assert_eq!(done(hot).await.unwrap(), PublishOutcome::Attached);
    tokio::time::timeout(Duration::from_secs(30), unpublish)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(w.fencing.attached_nodes(&volume("vm1-root")).is_empty());
    assert_eq!(w.grouper.users(NS, "vm1"), 0);
}
