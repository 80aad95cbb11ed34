//! KubeVirt VMI serialization against a real kube-apiserver (scripts/test-kube starts one):
//! `KubeVmiLookup` reads virt-launcher and hotplug pods as KubeVirt creates them, the attachment
//! manager serializes publishes of one VMI's volumes, and the opt-in RBAC in
//! `deploy/kubernetes/rbac/kubevirt` is what lets the controller's ServiceAccount do it (without
//! it the grouper fails open).
//!
//! Pods are created without a scheduler or kubelet: they stay Pending, which is all the lookup
//! reads. Concurrency is observed through a gate on the PV write, never timed.
//!
//! Run: `scripts/test-kube cargo test -p k8s --test kube_vmi`.

#![allow(clippy::unwrap_used)]

#[path = "kube_common.rs"]
mod kube_common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fencing::cluster::{
    Cluster, ClusterError, NodeState, PvInfo, VolumeAttachmentInfo, VolumeEvent,
};
use fencing::serialize::PublishSerializer;
use fencing::{
    AttachmentManager, FencingConfig, PublishOutcome, PublishRequest, Sharing, VmiGrouper,
    VmiGrouperConfig, VmiLookup,
};
use k8s::{KubeCluster, KubeVmiLookup};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Volume,
};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_common::*;
use serde_json::Value;
use tokio::sync::Semaphore;
use vocab::params;

/// A pod mounting `claims`, owned by `owner` (apiVersion, kind, name, uid).
async fn create_pod(
    admin: &kube::Client,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    owner: Option<(&str, &str, &str, &str)>,
    claims: &[&str],
) -> Pod {
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>()
        })
    };
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: map(labels),
            annotations: map(annotations),
            owner_references: owner.map(|(api_version, kind, name, uid)| {
                vec![OwnerReference {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    name: name.into(),
                    uid: uid.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "compute".into(),
                image: Some("registry.invalid/never-pulled:1".into()),
                ..Container::default()
            }],
            volumes: Some(
                claims
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Volume {
                        name: format!("disk{i}"),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: (*c).into(),
                            ..PersistentVolumeClaimVolumeSource::default()
                        }),
                        ..Volume::default()
                    })
                    .collect(),
            ),
            ..PodSpec::default()
        }),
        status: None,
    };
    let api: Api<Pod> = Api::namespaced(admin.clone(), ns);
    api.create(&PostParams::default(), &pod).await.unwrap()
}

/// A virt-launcher pod of `vmi` as KubeVirt makes it; returns its name and uid (hotplug pods
/// are owned by it).
async fn virt_launcher(
    admin: &kube::Client,
    ns: &str,
    vmi: &str,
    claims: &[&str],
) -> (String, String) {
    let name = unique(&format!("virt-launcher-{vmi}"));
    let vmi_uid = uuid::Uuid::new_v4().to_string();
    let pod = create_pod(
        admin,
        ns,
        &name,
        &[
            ("kubevirt.io", "virt-launcher"),
            ("vm.kubevirt.io/name", vmi),
        ],
        &[("kubevirt.io/domain", vmi)],
        Some(("kubevirt.io/v1", "VirtualMachineInstance", vmi, &vmi_uid)),
        claims,
    )
    .await;
    (name, pod.metadata.uid.unwrap())
}

async fn hotplug_pod(admin: &kube::Client, ns: &str, launcher: &(String, String), claims: &[&str]) {
    create_pod(
        admin,
        ns,
        &unique("hp-volume"),
        &[("kubevirt.io", "hotplug-disk")],
        &[],
        Some(("v1", "Pod", &launcher.0, &launcher.1)),
        claims,
    )
    .await;
}

#[tokio::test]
async fn the_lookup_resolves_virt_launcher_and_hotplug_pods_to_their_vmi() {
    let Some(env) = env("the_lookup_resolves_virt_launcher_and_hotplug_pods_to_their_vmi").await
    else {
        return;
    };
    let ns = create_namespace(&env.admin).await;
    for pvc in ["vm1-root", "vm1-hot", "web-data"] {
        create_pvc(&env.admin, &ns, pvc, &unique("pv")).await;
    }
    let launcher = virt_launcher(&env.admin, &ns, "vm1", &["vm1-root"]).await;
    hotplug_pod(&env.admin, &ns, &launcher, &["vm1-hot"]).await;
    create_pod(&env.admin, &ns, "web-0", &[], &[], None, &["web-data"]).await;

    let lookup = KubeVmiLookup::new(env.admin.clone());
    let pods = lookup.pods_in_namespace(&ns).await.unwrap();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let l = pods.iter().find(|p| p.name == launcher.0).unwrap();
    assert_eq!(l.claims, vec!["vm1-root".to_string()]);
    assert_eq!(
        l.owners,
        vec![("VirtualMachineInstance".to_string(), "vm1".to_string())]
    );
    assert!(!l.finished, "a Pending pod is not finished");

    let grouper = VmiGrouper::new(Arc::new(lookup), VmiGrouperConfig::default());
    assert_eq!(
        grouper.vmi_of(&ns, "vm1-root").await.as_deref(),
        Some("vm1")
    );
    assert_eq!(
        grouper.vmi_of(&ns, "vm1-hot").await.as_deref(),
        Some("vm1"),
        "the hotplug pod is followed to its virt-launcher pod"
    );
    assert_eq!(grouper.vmi_of(&ns, "web-data").await, None);
    assert_eq!(grouper.vmi_of(&ns, "no-such-claim").await, None);
    assert_eq!(grouper.vmi_of(&unique("no-such-ns"), "x").await, None);
    assert_eq!(
        grouper.stats().lookup_errors,
        0,
        "an empty namespace is no error"
    );
}

/// A cluster whose PV writes wait at a gate the test opens: `inside` counts publishes in their
/// write step.
struct Gated {
    inner: KubeCluster,
    inside: AtomicUsize,
    most_inside: AtomicUsize,
    open: Semaphore,
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

fn request(handle: &str, ns: &str, pvc: &str, node: &str) -> PublishRequest {
    PublishRequest {
        volume_id: handle.into(),
        node: node.into(),
        sharing: Sharing::SingleNode,
        volume_context: HashMap::from([
            (params::PVC_NAMESPACE.to_string(), ns.to_string()),
            (params::PVC_NAME.to_string(), pvc.to_string()),
        ]),
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..5_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test]
async fn publishes_of_one_vmi_run_one_at_a_time_and_of_two_vmis_in_parallel() {
    let Some(env) = env("publishes_of_one_vmi_run_one_at_a_time_and_of_two_vmis_in_parallel").await
    else {
        return;
    };
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    let mut volumes = Vec::new();
    for _ in 0..3 {
        let handle = format!("default:{}", unique("pvc"));
        let (_, pvc, _) = create_bound_volume(&env.admin, &ns, &driver, &handle).await;
        volumes.push((handle, pvc));
    }
    let [(root, root_pvc), (hot, hot_pvc), (other, other_pvc)] = &volumes[..] else {
        unreachable!()
    };
    for node in ["n1", "n2"] {
        create_node(&env.admin, &format!("{node}-{ns}"), &[]).await;
    }
    let launcher = virt_launcher(&env.admin, &ns, "vm1", &[root_pvc]).await;
    hotplug_pod(&env.admin, &ns, &launcher, &[hot_pvc]).await;
    virt_launcher(&env.admin, &ns, "vm2", &[other_pvc]).await;

    let gate = Arc::new(Gated {
        inner: KubeCluster::new(env.admin.clone(), driver.clone()),
        inside: AtomicUsize::new(0),
        most_inside: AtomicUsize::new(0),
        open: Semaphore::new(0),
    });
    let grouper = Arc::new(VmiGrouper::new(
        Arc::new(KubeVmiLookup::new(env.admin.clone())),
        VmiGrouperConfig::default(),
    ));
    let fencing = Arc::new(
        AttachmentManager::new(gate.clone(), FencingConfig::default())
            .with_serializer(grouper.clone() as Arc<dyn PublishSerializer>),
    );
    fencing.rebuild().await.unwrap();
    let spawn = |req: PublishRequest| {
        let fencing = fencing.clone();
        tokio::spawn(async move { fencing.publish(&req).await })
    };
    let n1 = format!("n1-{ns}");

    // vm1's root disk is inside its PV write; its hotplugged disk queues on the VMI lock.
    let first = spawn(request(root, &ns, root_pvc, &n1));
    until("the root disk's PV write", || {
        gate.inside.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = spawn(request(hot, &ns, hot_pvc, &n1));
    until("the hotplugged disk to queue behind it", || {
        grouper.users(&ns, "vm1") == 2
    })
    .await;
    assert_eq!(gate.inside.load(Ordering::SeqCst), 1);
    assert!(!second.is_finished());
    // vm2's disk is not held up by vm1.
    let third = spawn(request(other, &ns, other_pvc, &format!("n2-{ns}")));
    until("vm2's disk to reach its PV write alongside vm1's", || {
        gate.inside.load(Ordering::SeqCst) == 2
    })
    .await;
    gate.open.add_permits(3);
    for task in [first, second, third] {
        let outcome = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(outcome, PublishOutcome::Attached);
    }
    assert_eq!(gate.most_inside.load(Ordering::SeqCst), 2);
    assert_eq!(grouper.stats().serialized, 3);
    assert_eq!(grouper.users(&ns, "vm1"), 0);
    // The fences reached the PVs as usual.
    let fenced = gate.inner.pv_by_handle(hot).await.unwrap().unwrap();
    assert_eq!(
        fenced.annotations.get("rds.csi.srvlab.io/attached-node"),
        Some(&n1)
    );
}

/// The opt-in manifests, one JSON value per YAML document.
fn kubevirt_manifests() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes/rbac/kubevirt/kubevirt.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// One test, not several: it binds and unbinds the controller's pod access, which no other test
/// in this binary uses (they act as admin).
///
/// The external-resizer's upstream rules (bound to the same ServiceAccount) also grant pods
/// list; the driver does not rely on a sidecar's rules, so the "without" case removes every
/// binding that grants it.
#[tokio::test]
async fn the_kubevirt_rbac_lets_the_controller_resolve_vmis_and_without_it_publish_is_unserialized()
{
    let Some(env) = env(
        "the_kubevirt_rbac_lets_the_controller_resolve_vmis_and_without_it_publish_is_unserialized",
    )
    .await
    else {
        return;
    };
    // The default RBAC (whose driver roles stay free of pod access) plus the opt-in file.
    let defaults = apply_rbac(&env).await;
    let manifests = kubevirt_manifests();
    let role = manifests.iter().find(|m| is_role(m)).unwrap();
    let granted = grants(role);
    assert_eq!(
        granted,
        vec![Grant {
            group: String::new(),
            resource: "pods".into(),
            verb: "list".into(),
            namespace: "default".into(),
        }],
        "the opt-in role grants exactly pods/list"
    );
    for d in defaults
        .iter()
        .filter(|m| is_role(m) && is_driver_object(m))
    {
        assert!(
            grants(d).iter().all(|g| g.resource != "pods"),
            "the driver's default roles must not read pods: {}",
            d["metadata"]["name"]
        );
    }
    for m in &manifests {
        apply(&env.admin, m).await;
    }
    let pods_list = granted[0].clone();
    wait_until("the controller to list pods", || async {
        allowed(&env, CONTROLLER_SA, &pods_list).await
    })
    .await;

    let ns = create_namespace(&env.admin).await;
    create_pvc(&env.admin, &ns, "disk", &unique("pv")).await;
    virt_launcher(&env.admin, &ns, "vm-a", &["disk"]).await;
    let as_controller = || {
        VmiGrouper::new(
            Arc::new(KubeVmiLookup::new(env.controller.clone())),
            VmiGrouperConfig::default(),
        )
    };
    let pvc = (ns.clone(), "disk".to_string());
    let grouper = as_controller();
    assert_eq!(grouper.vmi_of(&ns, "disk").await.as_deref(), Some("vm-a"));
    assert!(grouper.enter("default:pvc-a", Some(&pvc)).await.is_some());

    // Without any binding that grants pods: Forbidden, and the grouper gives no guard instead of
    // an error.
    let pod_roles: Vec<&str> = defaults
        .iter()
        .chain(&manifests)
        .filter(|m| is_role(m) && grants(m).iter().any(|g| g.resource == "pods"))
        .map(|m| m["metadata"]["name"].as_str().unwrap())
        .collect();
    let pod_bindings: Vec<&Value> = defaults
        .iter()
        .chain(&manifests)
        .filter(|m| m["kind"] == "ClusterRoleBinding")
        .filter(|m| pod_roles.contains(&m["roleRef"]["name"].as_str().unwrap()))
        .collect();
    assert!(
        pod_bindings.iter().any(|b| manifests.contains(b)),
        "the opt-in binding is among them"
    );
    let bindings: Api<ClusterRoleBinding> = Api::all(env.admin.clone());
    for b in &pod_bindings {
        bindings
            .delete(
                b["metadata"]["name"].as_str().unwrap(),
                &DeleteParams::default(),
            )
            .await
            .unwrap();
    }
    wait_until("the controller to lose pod access", || async {
        !allowed(&env, CONTROLLER_SA, &pods_list).await
    })
    .await;
    let denied = KubeVmiLookup::new(env.controller.clone())
        .pods_in_namespace(&ns)
        .await
        .unwrap_err();
    assert!(matches!(denied, ClusterError::Forbidden(_)), "{denied:?}");
    let grouper = as_controller();
    assert!(grouper.enter("default:pvc-a", Some(&pvc)).await.is_none());
    assert_eq!(grouper.stats().lookup_errors, 1);

    for b in &pod_bindings {
        apply(&env.admin, b).await;
    }
    wait_until("the controller to regain pod access", || async {
        allowed(&env, CONTROLLER_SA, &pods_list).await
    })
    .await;
}
