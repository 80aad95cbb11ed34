//! Shared setup for the kube_* suites: clients for the three identities that
//! `scripts/test-kube` provisions, object builders that do what the sidecars and kubelet would,
//! and applying `deploy/kubernetes/rbac/*.yaml`.
//!
//! Included by the suites with `#[path]`; as its own test target it holds no tests.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s::{ClientSettings, client};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Event, Namespace, Node, NodeSpec, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec, ServiceAccount, Taint,
    VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::{
    VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::Value;

pub struct KubeEnv {
    pub admin: kube::Client,
    pub controller: kube::Client,
    pub node: kube::Client,
    /// The STATEDIR of scripts/kube-apiserver/start.sh, for stopping/starting the API server.
    pub state: PathBuf,
    pub scripts: PathBuf,
}

/// The servers `scripts/test-kube` started, or `None` (after saying so loudly) when there are
/// none. Under `CI=true` a missing server is a failure: CI must never pass by skipping.
pub async fn env(test: &str) -> Option<KubeEnv> {
    let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let (Some(admin), Some(controller), Some(node), Some(state), Some(scripts)) = (
        var("RDS_CSI_KUBECONFIG_ADMIN"),
        var("RDS_CSI_KUBECONFIG_CONTROLLER"),
        var("RDS_CSI_KUBECONFIG_NODE"),
        var("RDS_CSI_KUBE_STATE"),
        var("RDS_CSI_KUBE_SCRIPTS"),
    ) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{test}: CI=true but no kube-apiserver: run the suite through scripts/test-kube"
            );
        }
        record_skip(
            test,
            "no kube-apiserver (RDS_CSI_KUBECONFIG_* unset); run scripts/test-kube to test \
             against a real API server",
        );
        return None;
    };
    let connect = |path: PathBuf| async move {
        client(&ClientSettings {
            kubeconfig: Some(path),
            ..ClientSettings::default()
        })
        .await
        .unwrap()
    };
    Some(KubeEnv {
        admin: connect(admin).await,
        controller: connect(controller).await,
        node: connect(node).await,
        state,
        scripts,
    })
}

/// The requests a client sent, as "METHOD /path?query", in order.
pub type RequestLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A client for the controller's identity that records every request it sends (a tower layer
/// in the client's own stack, so the count is what reached the wire, not what the code says).
pub async fn counting_controller_client() -> (kube::Client, RequestLog) {
    let path = std::env::var_os("RDS_CSI_KUBECONFIG_CONTROLLER").unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(PathBuf::from(path)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let log = RequestLog::default();
    let sink = log.clone();
    let record =
        tower::util::MapRequestLayer::new(move |req: hyper::Request<kube::client::Body>| {
            let uri = req.uri();
            let query = uri
                .query()
                .filter(|q| !q.is_empty())
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            sink.lock()
                .unwrap()
                .push(format!("{} {}{query}", req.method(), uri.path()));
            req
        });
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&record)
        .build();
    (client, log)
}

/// The requests in `log` about PersistentVolumes (the resource path, not events about them).
pub fn pv_requests(log: &RequestLog) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.contains("/api/v1/persistentvolumes"))
        .cloned()
        .collect()
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

/// A driver name of its own per test, so list results see only that test's objects.
pub fn test_driver() -> String {
    format!("{}.csi.test", unique("rds"))
}

pub async fn create_namespace(admin: &kube::Client) -> String {
    let name = unique("ns");
    let api: Api<Namespace> = Api::all(admin.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns).await.unwrap();
    name
}

/// A PV as the external-provisioner makes it: CSI source with driver and handle, bound to
/// `claim` (namespace, name, uid) when given.
pub async fn create_pv(
    admin: &kube::Client,
    name: &str,
    driver: &str,
    handle: &str,
    claim: Option<(&str, &str, &str)>,
) -> PersistentVolume {
    let api: Api<PersistentVolume> = Api::all(admin.clone());
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            csi: Some(CSIPersistentVolumeSource {
                driver: driver.into(),
                volume_handle: handle.into(),
                ..CSIPersistentVolumeSource::default()
            }),
            claim_ref: claim.map(|(ns, n, uid)| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns.into()),
                name: Some(n.into()),
                uid: Some(uid.into()),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    api.create(&PostParams::default(), &pv).await.unwrap()
}

pub async fn create_pvc(
    admin: &kube::Client,
    namespace: &str,
    name: &str,
    volume_name: &str,
) -> PersistentVolumeClaim {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), namespace);
    let pvc = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                ..VolumeResourceRequirements::default()
            }),
            volume_name: Some(volume_name.into()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    api.create(&PostParams::default(), &pvc).await.unwrap()
}

/// A PVC in `namespace` and its bound PV of `driver` with volume handle `handle`.
/// Returns (pv name, pvc name, pvc uid).
pub async fn create_bound_volume(
    admin: &kube::Client,
    namespace: &str,
    driver: &str,
    handle: &str,
) -> (String, String, String) {
    let pv_name = unique("pv");
    let pvc_name = unique("pvc");
    let pvc = create_pvc(admin, namespace, &pvc_name, &pv_name).await;
    let uid = pvc.metadata.uid.unwrap();
    create_pv(
        admin,
        &pv_name,
        driver,
        handle,
        Some((namespace, &pvc_name, &uid)),
    )
    .await;
    (pv_name, pvc_name, uid)
}

pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

pub async fn create_node(admin: &kube::Client, name: &str, taints: &[(&str, &str)]) {
    let api: Api<Node> = Api::all(admin.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(key, effect)| Taint {
                        key: (*key).into(),
                        value: Some("nodeshutdown".into()),
                        effect: (*effect).into(),
                        ..Taint::default()
                    })
                    .collect(),
            ),
            ..NodeSpec::default()
        }),
        status: None,
    };
    api.create(&PostParams::default(), &node).await.unwrap();
}

pub async fn delete_node(admin: &kube::Client, name: &str) {
    let api: Api<Node> = Api::all(admin.clone());
    api.delete(name, &Default::default()).await.unwrap();
}

/// A VolumeAttachment as the external-attacher's controller (kube-controller-manager) makes it.
pub async fn create_va(
    admin: &kube::Client,
    name: &str,
    attacher: &str,
    node: &str,
    pv: &str,
    finalizers: &[&str],
) -> VolumeAttachment {
    let api: Api<VolumeAttachment> = Api::all(admin.clone());
    let va = VolumeAttachment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| (*f).to_string()).collect()),
            ..ObjectMeta::default()
        },
        spec: VolumeAttachmentSpec {
            attacher: attacher.into(),
            node_name: node.into(),
            source: VolumeAttachmentSource {
                persistent_volume_name: Some(pv.into()),
                ..VolumeAttachmentSource::default()
            },
        },
        status: None,
    };
    api.create(&PostParams::default(), &va).await.unwrap()
}

/// What the external-attacher does after ControllerPublish succeeds: the status subresource.
pub async fn set_va_attached(admin: &kube::Client, name: &str, attached: bool) {
    let api: Api<VolumeAttachment> = Api::all(admin.clone());
    let patch = serde_json::json!({"status": {"attached": attached}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Events in `namespace` about the object named `involved`, oldest first.
pub async fn events_about(admin: &kube::Client, namespace: &str, involved: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(admin.clone(), namespace);
    let lp = ListParams::default().fields(&format!("involvedObject.name={involved}"));
    api.list(&lp).await.unwrap().items
}

/// The RBAC manifests the project ships (the files `deploy/kubernetes/rbac/kustomization.yaml`
/// lists, which is what a deployment renders), as JSON values, one per YAML document.
///
/// Parsed with serde-saphyr: it is already in the dependency tree (kube reads kubeconfigs with
/// it), so no new YAML crate; serde_yaml is unmaintained.
pub fn rbac_manifests() -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/rbac");
    let yaml = |name: &str| -> Vec<Value> {
        let path = dir.join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_saphyr::from_multiple::<Value>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .into_iter()
            .filter(|v| !v.is_null())
            .collect()
    };
    let kustomization = yaml("kustomization.yaml").remove(0);
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    // A manifest not listed would ship to nobody yet look tested: refuse.
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    present.sort();
    assert_eq!(
        listed, present,
        "kustomization.yaml must list every manifest"
    );
    listed.iter().flat_map(|f| yaml(f)).collect()
}

/// Applies one manifest object (server-side apply, forced: the test owns the fields).
pub async fn apply(admin: &kube::Client, obj: &Value) {
    let kind = obj["kind"].as_str().unwrap();
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
    let pp = PatchParams::apply("rds-csi-tests").force();
    macro_rules! ssa {
        ($ty:ty, $api:expr) => {{
            let typed: $ty = serde_json::from_value(obj.clone())
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            let api: Api<$ty> = $api;
            api.patch(&name, &pp, &Patch::Apply(&typed)).await.unwrap();
        }};
    }
    let namespaced = |ns: &Option<String>| ns.clone().unwrap_or_else(|| "default".into());
    match kind {
        "ClusterRole" => ssa!(ClusterRole, Api::all(admin.clone())),
        "ClusterRoleBinding" => ssa!(ClusterRoleBinding, Api::all(admin.clone())),
        "Role" => ssa!(Role, Api::namespaced(admin.clone(), &namespaced(&ns))),
        "RoleBinding" => ssa!(
            RoleBinding,
            Api::namespaced(admin.clone(), &namespaced(&ns))
        ),
        "ServiceAccount" => ssa!(
            ServiceAccount,
            Api::namespaced(admin.clone(), &namespaced(&ns))
        ),
        other => panic!("unexpected kind {other} in the RBAC manifests"),
    }
}

/// Polls `check` until it holds; for state another component settles (RBAC caches).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

pub const CONTROLLER_SA: &str = "system:serviceaccount:kube-system:rds-csi-controller";
pub const NODE_SA: &str = "system:serviceaccount:kube-system:rds-csi-node";

/// Whether the API server's authorizer lets `user` do `verb` on `resource`, asked through a
/// SubjectAccessReview (the same authorizer real requests meet).
pub async fn allowed(env: &KubeEnv, user: &str, grant: &Grant) -> bool {
    // "volumeattachments/status" is resource + subresource in a review.
    let (resource, subresource) = match grant.resource.split_once('/') {
        Some((r, sub)) => (r, Some(sub.to_string())),
        None => (grant.resource.as_str(), None),
    };
    let api: Api<SubjectAccessReview> = Api::all(env.admin.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(grant.group.clone()),
                resource: Some(resource.into()),
                subresource,
                verb: Some(grant.verb.clone()),
                namespace: Some(grant.namespace.clone()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let out = api.create(&PostParams::default(), &review).await.unwrap();
    out.status.is_some_and(|s| s.allowed)
}

/// One verb on one resource, as a role grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub group: String,
    pub resource: String,
    pub verb: String,
    /// Where to ask about it: the Role's namespace, any for a ClusterRole.
    pub namespace: String,
}

/// Every verb a (Cluster)Role manifest grants.
pub fn grants(role: &Value) -> Vec<Grant> {
    let namespace = role["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let mut out = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    out.push(Grant {
                        group: g.as_str().unwrap().into(),
                        resource: r.as_str().unwrap().into(),
                        verb: v.as_str().unwrap().into(),
                        namespace: namespace.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Roles and bindings of the driver itself (`*-driver`), as opposed to its sidecars'.
pub fn is_driver_object(m: &Value) -> bool {
    m["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n.ends_with("-driver"))
}

pub fn is_role(m: &Value) -> bool {
    m["kind"] == "ClusterRole" || m["kind"] == "Role"
}

pub fn is_binding(m: &Value) -> bool {
    m["kind"] == "ClusterRoleBinding" || m["kind"] == "RoleBinding"
}

/// The ServiceAccount a role manifest is for, by its name.
pub fn user_of(role: &Value) -> (String, bool, &'static str) {
    let name = role["metadata"]["name"].as_str().unwrap().to_string();
    let as_controller = name.contains("controller");
    (
        name,
        as_controller,
        if as_controller {
            CONTROLLER_SA
        } else {
            NODE_SA
        },
    )
}

/// Applies the shipped RBAC and waits until every grant is in effect (RBAC reaches the
/// authorizer through a cache). Returns the manifests.
pub async fn apply_rbac(env: &KubeEnv) -> Vec<Value> {
    let manifests = rbac_manifests();
    for m in &manifests {
        apply(&env.admin, m).await;
    }
    for role in manifests.iter().filter(|m| is_role(m)) {
        // Sidecar roles are all bound to the controller's ServiceAccount.
        let user = if is_driver_object(role) {
            user_of(role).2
        } else {
            CONTROLLER_SA
        };
        for grant in grants(role) {
            wait_until(&format!("{user} to get {grant:?}"), || async {
                allowed(env, user, &grant).await
            })
            .await;
        }
    }
    manifests
}

/// A skip must be seen: straight to the stderr handle (libtest captures the print macros on a
/// pass) and appended to `$RDS_CSI_SKIP_LOG`, which `scripts/test` counts in its summary.
fn record_skip(what: &str, why: &str) {
    use std::io::Write as _;
    let line = format!("SKIPPED {what}: {why}");
    let _ = writeln!(std::io::stderr(), "\n*** {line} ***\n");
    if let Some(path) = std::env::var_os("RDS_CSI_SKIP_LOG") {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path);
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{line}");
        }
    }
}
