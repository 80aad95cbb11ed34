//! `rds-csi hotplug-guard` registered as a real validating webhook on a real kube-apiserver
//! (`scripts/test-kube`): a VirtualMachineInstance CRD with a minimal schema, KubeVirt-shaped
//! virt-launcher and attachment pods (status written through the status subresource, as
//! kubelet and virt-handler would), and pod deletions sent through the API. Proves: deletion of
//! the old attachment pod is denied during an unfinished handoff with a message saying what it
//! waits for, allowed once the handoff completes, allowed after the handoff timeout (with a
//! Warning event on the VMI and the metric), and allowed while the guard is down
//! (failurePolicy Ignore).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use support::*;

const HANDOFF_TIMEOUT_S: u64 = 20;
const DOC: &str = include_str!("../../../docs/metrics.md");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A CA and a serving certificate for 127.0.0.1 signed by it: (ca pem, cert pem, key pem).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn start_guard(dir: &Path, kc: &str, port: u16, metrics_port: u16) -> Proc {
    let child = Command::new(BIN)
        .args([
            "hotplug-guard",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--handoff-timeout",
            &format!("{HANDOFF_TIMEOUT_S}s"),
            "--lookup-timeout",
            "3s",
            "--kubeconfig",
            kc,
            "--log-level",
            "info",
        ])
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(metrics_port, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "guard never served /healthz");
        std::thread::sleep(Duration::from_millis(100));
    }
    Proc(child)
}

/// The guard runs with exactly the RBAC of deploy/kubernetes/hotplug-guard/rbac.yaml: the
/// admin credentials impersonating its ServiceAccount (kubeconfig `as`), so a missing verb shows
/// up as a failed lookup (fail open: no denial) or a missing event.
fn guard_kubeconfig(admin: &str, dir: &Path) -> String {
    let (ok, _) = kubectl(admin, &["get", "namespace", "rds-csi", "-o", "name"], None);
    if !ok {
        let (ok, out) = kubectl(admin, &["create", "namespace", "rds-csi"], None);
        assert!(ok || out.contains("AlreadyExists"), "{out}");
    }
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes/hotplug-guard/rbac.yaml");
    let (ok, out) = kubectl(admin, &["apply", "-f", rbac.to_str().unwrap()], None);
    assert!(ok, "{out}");
    let (ok, text) = kubectl(
        admin,
        &["config", "view", "--raw", "--minify", "-o", "json"],
        None,
    );
    assert!(ok, "{text}");
    let mut kc: Value = serde_json::from_str(&text).unwrap();
    let user = &mut kc["users"][0]["user"];
    user["as"] = json!("system:serviceaccount:rds-csi:rds-csi-hotplug-guard");
    user["as-groups"] = json!([
        "system:serviceaccounts",
        "system:serviceaccounts:rds-csi",
        "system:authenticated"
    ]);
    let path = dir.join("guard.kubeconfig");
    std::fs::write(&path, kc.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

struct World {
    ns: String,
    pods: Api<DynamicObject>,
    vmis: Api<DynamicObject>,
    events: Api<DynamicObject>,
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

impl World {
    async fn create(&self, api: &Api<DynamicObject>, v: Value) -> DynamicObject {
        let obj: DynamicObject = serde_json::from_value(v).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap()
    }

    async fn status(&self, api: &Api<DynamicObject>, name: &str, status: Value) {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
    }

    /// An attachment pod as KubeVirt renders it, owned by the launcher; returns its uid.
    async fn attachment_pod(&self, name: &str, launcher_uid: &str, volumes: &[&str]) -> String {
        let mut vols: Vec<Value> = volumes
            .iter()
            .map(|v| json!({"name": v, "persistentVolumeClaim": {"claimName": format!("pvc-{v}")}}))
            .collect();
        vols.push(json!({"name": "hotplug-disks", "emptyDir": {}}));
        let pod = self
            .create(
                &self.pods,
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "name": name, "namespace": self.ns,
                        "labels": {"kubevirt.io": "hotplug-disk"},
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                            "name": "virt-launcher-vm1-abcde", "uid": launcher_uid,
                            "controller": true, "blockOwnerDeletion": true}]
                    },
                    "spec": {"containers": [{"name": "hotplug-disk", "image": "virt-launcher"}],
                             "volumes": vols}
                }),
            )
            .await;
        self.status(&self.pods, name, json!({"phase": "Pending"}))
            .await;
        pod.metadata.uid.unwrap()
    }

    async fn pod_phase(&self, name: &str, phase: &str) {
        self.status(&self.pods, name, json!({"phase": phase})).await;
    }

    /// Sets the VMI's volumeStatus: (volume, phase, attach pod name, attach pod uid).
    async fn volume_status(&self, entries: &[(&str, &str, &str, &str)]) {
        let vs: Vec<Value> = entries
            .iter()
            .map(|(n, phase, pod, uid)| {
                json!({"name": n, "target": "", "phase": phase,
                    "hotplugVolume": {"attachPodName": pod, "attachPodUID": uid},
                    "persistentVolumeClaimInfo": {"claimName": format!("pvc-{n}")}})
            })
            .collect();
        self.status(
            &self.vmis,
            "vm1",
            json!({"phase": "Running", "volumeStatus": vs}),
        )
        .await;
    }

    /// DELETE of a pod through the API: `Ok` if it was accepted, `Err(message)` if refused.
    async fn delete(&self, name: &str, dry_run: bool) -> Result<(), String> {
        let dp = DeleteParams {
            dry_run,
            ..DeleteParams::default()
        };
        match self.pods.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) => Err(format!("{} ({})", s.message, s.code)),
            Err(e) => panic!("deleting {name}: {e}"),
        }
    }

    async fn exists(&self, name: &str) -> bool {
        self.pods.get_opt(name).await.unwrap().is_some()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_holds_an_unfinished_handoff_and_lets_everything_else_through() {
    let Some((admin, _)) = kubeconfigs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let suffix = rand_suffix();
    let ns = format!("hg-{suffix}");
    let client = k8s::client(&k8s::ClientSettings {
        kubeconfig: Some(admin.clone().into()),
        ..k8s::ClientSettings::default()
    })
    .await
    .unwrap();

    // The VMI CRD: minimal schema, status subresource, as KubeVirt registers the kind.
    apply(
        &admin,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "virtualmachineinstances.kubevirt.io"},
            "spec": {"group": "kubevirt.io", "scope": "Namespaced",
                "names": {"plural": "virtualmachineinstances", "singular": "virtualmachineinstance",
                          "kind": "VirtualMachineInstance", "shortNames": ["vmi", "vmis"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                    "subresources": {"status": {}}}]}
        }),
    );
    let (ok, out) = kubectl(
        &admin,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/virtualmachineinstances.kubevirt.io",
        ],
        None,
    );
    assert!(ok, "{out}");
    apply(
        &admin,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": ns, "labels": {"rds-csi-hotplug-guard-test": ns}}}),
    );

    let (ca, cert, key) = certificates();
    std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let guard_kc = guard_kubeconfig(&admin, dir.path());
    let mut guard = start_guard(dir.path(), &guard_kc, port, metrics_port);

    // Registered only for this namespace, so nothing else in the shared API server is touched.
    let webhook_name = format!("rds-csi-hotplug-guard-test-{suffix}");
    apply(
        &admin,
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": webhook_name},
            "webhooks": [{
                "name": "hotplug-guard.rds.csi.srvlab.io",
                "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate"),
                                 "caBundle": b64(ca.as_bytes())},
                "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"], "scope": "Namespaced"}],
                "objectSelector": {"matchLabels": {"kubevirt.io": "hotplug-disk"}},
                "namespaceSelector": {"matchLabels": {"rds-csi-hotplug-guard-test": ns}},
                "failurePolicy": "Ignore", "sideEffects": "None", "timeoutSeconds": 5,
                "admissionReviewVersions": ["v1"]
            }]
        }),
    );

    let pod_res = resource("", "v1", "Pod", "pods");
    let vmi_res = resource(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    let ev_res = resource("", "v1", "Event", "events");
    let w = World {
        ns: ns.clone(),
        pods: Api::namespaced_with(client.clone(), &ns, &pod_res),
        vmis: Api::namespaced_with(client.clone(), &ns, &vmi_res),
        events: Api::namespaced_with(client.clone(), &ns, &ev_res),
    };

    // VMI with two hotplugged disks in its spec, and its virt-launcher pod.
    let vmi = w
        .create(
            &w.vmis,
            json!({
                "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": {"name": "vm1", "namespace": ns},
                "spec": {"domain": {"devices": {}}, "volumes": [
                    {"name": "rootdisk", "persistentVolumeClaim": {"claimName": "vm1-root"}},
                    {"name": "disk-a", "persistentVolumeClaim": {"claimName": "pvc-disk-a", "hotpluggable": true}},
                    {"name": "disk-b", "persistentVolumeClaim": {"claimName": "pvc-disk-b", "hotpluggable": true}}
                ]}
            }),
        )
        .await;
    let vmi_uid = vmi.metadata.uid.unwrap();
    let launcher = w
        .create(
            &w.pods,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "virt-launcher-vm1-abcde", "namespace": ns,
                    "labels": {"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": "vm1"},
                    "annotations": {"kubevirt.io/domain": "vm1"},
                    "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                        "name": "vm1", "uid": vmi_uid, "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"containers": [{"name": "compute", "image": "virt-launcher"}]}
            }),
        )
        .await;
    let launcher_uid = launcher.metadata.uid.unwrap();
    w.pod_phase("virt-launcher-vm1-abcde", "Running").await;

    // The first attachment pod holds disk-a.
    let old_uid = w
        .attachment_pod("hp-volume-old01", &launcher_uid, &["disk-a"])
        .await;
    w.pod_phase("hp-volume-old01", "Running").await;
    w.volume_status(&[("disk-a", "Ready", "hp-volume-old01", &old_uid)])
        .await;

    // Until the API server has picked up the webhook, deletions pass without asking the guard;
    // a dry-run delete of the only attachment pod is allowed either way, and the guard's counter
    // tells when it was really asked.
    let only =
        r#"rds_csi_hotplug_guard_decisions_total{decision="allowed",reason="only-attachment-pod"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(w.delete("hp-volume-old01", true).await, Ok(()));
        let text = http_get(metrics_port, "/metrics").unwrap_or_default();
        if sample(&text, only) >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guard never allowed the only attachment pod's deletion (webhook not called, or its lookups fail: RBAC?):\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // disk-b is hot-plugged: KubeVirt creates a replacement pod carrying both disks.
    let new_uid = w
        .attachment_pod("hp-volume-new02", &launcher_uid, &["disk-a", "disk-b"])
        .await;
    w.volume_status(&[
        ("disk-a", "Ready", "hp-volume-old01", &old_uid),
        ("disk-b", "Pending", "hp-volume-new02", &new_uid),
    ])
    .await;
    let refused = w.delete("hp-volume-old01", false).await.unwrap_err();
    for want in [
        "(403)",
        "hotplug handoff of VirtualMachineInstance",
        "attachment pod hp-volume-old01 still serves volumes disk-a",
        "replacement pod hp-volume-new02",
        "pod hp-volume-new02 is Pending, not Running",
        "volumes not Ready: disk-b (Pending)",
        "attachPodUID not yet hp-volume-new02 for: disk-a -> hp-volume-old01",
    ] {
        assert!(refused.contains(want), "{want:?} not in: {refused}");
    }
    assert!(w.exists("hp-volume-old01").await);

    // Two of three conditions are still not enough: Running, all Ready, one UID still old.
    w.pod_phase("hp-volume-new02", "Running").await;
    w.volume_status(&[
        ("disk-a", "Ready", "hp-volume-old01", &old_uid),
        ("disk-b", "Ready", "hp-volume-new02", &new_uid),
    ])
    .await;
    let refused = w.delete("hp-volume-old01", false).await.unwrap_err();
    assert!(
        refused.contains("disk-a -> hp-volume-old01") && !refused.contains("not Ready"),
        "{refused}"
    );

    // Handoff complete: virt-handler moved disk-a to the new pod.
    w.volume_status(&[
        ("disk-a", "Ready", "hp-volume-new02", &new_uid),
        ("disk-b", "Ready", "hp-volume-new02", &new_uid),
    ])
    .await;
    assert_eq!(w.delete("hp-volume-old01", false).await, Ok(()));
    assert!(!w.exists("hp-volume-old01").await);

    // A third disk: another replacement that never finishes. Denied until the handoff timeout,
    // counted from the replacement's creation, then allowed with a Warning event on the VMI.
    w.vmis
        .patch(
            "vm1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"volumes": [
                {"name": "rootdisk", "persistentVolumeClaim": {"claimName": "vm1-root"}},
                {"name": "disk-a", "persistentVolumeClaim": {"claimName": "pvc-disk-a", "hotpluggable": true}},
                {"name": "disk-b", "persistentVolumeClaim": {"claimName": "pvc-disk-b", "hotpluggable": true}},
                {"name": "disk-c", "persistentVolumeClaim": {"claimName": "pvc-disk-c", "hotpluggable": true}}
            ]}})),
        )
        .await
        .unwrap();
    let stuck_created = Instant::now();
    let stuck_uid = w
        .attachment_pod(
            "hp-volume-new03",
            &launcher_uid,
            &["disk-a", "disk-b", "disk-c"],
        )
        .await;
    w.volume_status(&[
        ("disk-a", "Ready", "hp-volume-new02", &new_uid),
        ("disk-b", "Ready", "hp-volume-new02", &new_uid),
        ("disk-c", "Pending", "hp-volume-new03", &stuck_uid),
    ])
    .await;
    let refused = w.delete("hp-volume-new02", false).await.unwrap_err();
    assert!(refused.contains("disk-c (Pending)"), "{refused}");
    let allowed_at = loop {
        match w.delete("hp-volume-new02", false).await {
            Ok(()) => break stuck_created.elapsed(),
            Err(e) => assert!(e.contains("stops waiting in"), "{e}"),
        }
        assert!(
            stuck_created.elapsed() < Duration::from_secs(HANDOFF_TIMEOUT_S + 20),
            "still denied long after the handoff timeout"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // creationTimestamp has one-second resolution.
    assert!(
        allowed_at >= Duration::from_secs(HANDOFF_TIMEOUT_S - 2),
        "allowed after {allowed_at:?}, before the {HANDOFF_TIMEOUT_S}s timeout"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let event =
        loop {
            let list = w
                .events
                .list(&ListParams::default().fields("involvedObject.name=vm1"))
                .await
                .unwrap();
            if let Some(e) = list.items.into_iter().find(|e| {
                e.data.get("reason").and_then(Value::as_str) == Some("HotplugHandoffTimeout")
            }) {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "no HotplugHandoffTimeout event on the VMI"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
    assert_eq!(event.data["type"], "Warning");
    assert_eq!(
        event.data["involvedObject"]["kind"],
        "VirtualMachineInstance"
    );
    assert_eq!(event.data["involvedObject"]["uid"], json!(vmi_uid));
    let msg = event.data["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("hp-volume-new03") && msg.contains("limit of 20s"),
        "{msg}"
    );

    // The scrape: the decisions above, and exactly the documented metric names.
    let text = http_get(metrics_port, "/metrics").unwrap();
    let series = |d: &str, r: &str| {
        sample(
            &text,
            &format!(r#"rds_csi_hotplug_guard_decisions_total{{decision="{d}",reason="{r}"}}"#),
        )
    };
    assert!(series("denied", "handoff-pending") >= 3.0, "{text}");
    // The API server may consult a webhook more than once for one DELETE (it does for pods
    // deleted at once, without a grace period): at least once each.
    assert!(series("allowed", "handoff-complete") >= 1.0, "{text}");
    assert!(series("timed_out", "handoff-timeout") >= 1.0, "{text}");
    let scraped: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, kind) = (it.next()?, it.next()?);
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            })
        })
        .collect();
    let documented: std::collections::BTreeSet<String> = DOC
        .lines()
        .filter(|l| l.starts_with("| `rds_csi_"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (cols[4] == "all" || cols[4] == "hotplug-guard")
                .then(|| cols[1].trim_matches('`').to_string())
        })
        .collect();
    assert_eq!(scraped, documented, "docs/metrics.md vs the guard's scrape");

    // Guard down: another unfinished handoff, and the deletion goes through (failurePolicy
    // Ignore) instead of blocking KubeVirt.
    let down_uid = w
        .attachment_pod(
            "hp-volume-new04",
            &launcher_uid,
            &["disk-a", "disk-b", "disk-c"],
        )
        .await;
    w.volume_status(&[
        ("disk-a", "Ready", "hp-volume-new03", &stuck_uid),
        ("disk-b", "Ready", "hp-volume-new03", &stuck_uid),
        ("disk-c", "Pending", "hp-volume-new04", &down_uid),
    ])
    .await;
    w.pod_phase("hp-volume-new03", "Running").await;
    assert!(
        w.delete("hp-volume-new03", true).await.is_err(),
        "guard up: denied"
    );
    // Unplug: with the pod's volumes gone from the VMI spec, its deletion is allowed; with them
    // back, denied again.
    let volumes = |names: &[&str]| {
        let mut v =
            vec![json!({"name": "rootdisk", "persistentVolumeClaim": {"claimName": "vm1-root"}})];
        v.extend(names.iter().map(|n| {
            json!({"name": n, "persistentVolumeClaim": {"claimName": format!("pvc-{n}"), "hotpluggable": true}})
        }));
        Patch::Merge(json!({"spec": {"volumes": v}}))
    };
    w.vmis
        .patch("vm1", &PatchParams::default(), &volumes(&[]))
        .await
        .unwrap();
    assert_eq!(w.delete("hp-volume-new03", true).await, Ok(()));
    let text = http_get(metrics_port, "/metrics").unwrap();
    let unplugged =
        r#"rds_csi_hotplug_guard_decisions_total{decision="allowed",reason="volumes-unplugged"}"#;
    assert!(sample(&text, unplugged) >= 1.0, "{text}");
    w.vmis
        .patch(
            "vm1",
            &PatchParams::default(),
            &volumes(&["disk-a", "disk-b", "disk-c"]),
        )
        .await
        .unwrap();
    assert!(w.delete("hp-volume-new03", true).await.is_err());
    guard.0.kill().unwrap();
    guard.0.wait().unwrap();
    assert_eq!(w.delete("hp-volume-new03", false).await, Ok(()));
    assert!(!w.exists("hp-volume-new03").await);

    let _ = kubectl(
        &admin,
        &["delete", "validatingwebhookconfiguration", &webhook_name],
        None,
    );
    let _ = kubectl(&admin, &["delete", "namespace", &ns, "--wait=false"], None);
}
