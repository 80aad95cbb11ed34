//! The controller binary wired to a real kube-apiserver (started by `scripts/test-kube`):
//! attachment fences land in PV annotations, conflicts are refused with an event on the PVC,
//! a controller killed with SIGKILL comes back with the fences rebuilt, and an unreachable RDS
//! is a Warning event on the controller's Pod.
//! Objects are made with `kubectl` as the sidecars and kube-controller-manager would make them.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn start_controller(dir: &Path, port: u16, fp: &str, kc: &str, driver: &str) -> Proc {
    let socket = dir.join("csi.sock");
    let child = Command::new(BIN)
        .args([
            "controller",
            "--metrics-address",
            "",
            "--driver-name",
            driver,
            "--kubeconfig",
            kc,
            "--endpoint",
        ])
        .arg(&socket)
        .args([
            "--rds-address",
            "127.0.0.1",
            "--rds-port",
            &port.to_string(),
            "--rds-host-key",
            fp,
        ])
        .arg("--rds-key-file")
        .arg(dir.join("id"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !csi(&socket, &["probe"]).0 {
        assert!(Instant::now() < deadline, "controller never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Publish is served once this process holds the leader Lease and rebuilt its state; after a
    // SIGKILL the dead predecessor's Lease must expire first (lease duration + retry period).
    let deadline = Instant::now() + Duration::from_secs(40);
    while !csi(
        &socket,
        &["unpublish", "default:pvc-leader-probe", "--node", "none"],
    )
    .0
    {
        assert!(
            Instant::now() < deadline,
            "controller never became the leader"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Proc(child)
}

fn attached_node(admin: &str, pv: &str) -> String {
    let (ok, out) = kubectl(
        admin,
        &[
            "get",
            "pv",
            pv,
            "-o",
            r#"jsonpath={.metadata.annotations.rds\.csi\.srvlab\.io/attached-node}"#,
        ],
        None,
    );
    assert!(ok, "{out}");
    out.trim().to_string()
}

#[test]
fn controller_binary_fences_through_the_kubernetes_api_and_survives_sigkill() {
    let Some((admin, controller_kc)) = kubeconfigs() else {
        return;
    };
    let (ok, out) = kubectl(
        &admin,
        &[
            "apply",
            "-k",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes/rbac"),
        ],
        None,
    );
    assert!(ok, "applying the RBAC manifests: {out}");
    let suffix = format!("{:08x}", rand_suffix());
    let driver = format!("bin-{suffix}.csi.test");
    let ns = format!("bin-{suffix}");
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port, fp) = start_sim(dir.path());
    let mut ctl = start_controller(dir.path(), port, &fp, &controller_kc, &driver);
    let socket = dir.path().join("csi.sock");

    let pv = format!("pvc-{suffix}-0000-4000-8000-000000000001");
    let (ok, out) = csi(&socket, &["create-volume", "--name", &pv, "--size", "1Gi"]);
    assert!(ok, "{out}");
    let id = format!("default:{pv}");
    apply(
        &admin,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
    apply(
        &admin,
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv, "storageClassName": ""}}),
    );
    apply(
        &admin,
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                 "claimRef": {"namespace": ns, "name": "data"}, "csi": {"driver": driver, "volumeHandle": id}}}),
    );
    for node in ["n1", "n2"] {
        apply(
            &admin,
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("{node}-{suffix}")}}),
        );
    }
    let (n1, n2) = (format!("n1-{suffix}"), format!("n2-{suffix}"));

    let (ok, out) = csi(&socket, &["publish", &id, "--node", &n1]);
    assert!(ok, "publish to n1: {out}");
    assert!(out.contains("nvme_nqn"), "publish_context: {out}");
    assert_eq!(
        attached_node(&admin, &pv),
        n1,
        "the fence is written to the PV before the RPC answers"
    );
    // What kube-controller-manager does for an attached volume.
    apply(
        &admin,
        serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": format!("va-{suffix}")},
        "spec": {"attacher": driver, "nodeName": n1, "source": {"persistentVolumeName": pv}}}),
    );

    let (ok, out) = csi(&socket, &["publish", &id, "--node", &n2]);
    assert!(
        !ok && out.contains(&n1) && out.contains(&n2),
        "conflict must name both nodes: {out}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, events) = kubectl(
            &admin,
            &[
                "get",
                "events",
                "-n",
                &ns,
                "-o",
                "jsonpath={.items[*].reason}",
            ],
            None,
        );
        if events.contains("AttachmentConflict") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no AttachmentConflict event in {ns}: {events}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGKILL: no graceful anything. The new process rebuilds from VolumeAttachments + PVs.
    let _ = ctl.0.kill();
    let _ = ctl.0.wait();
    ctl = start_controller(dir.path(), port, &fp, &controller_kc, &driver);
    let (ok, out) = csi(&socket, &["publish", &id, "--node", &n2]);
    assert!(
        !ok && out.contains("FAILED_PRECONDITION"),
        "after restart: {out}"
    );

    let (ok, out) = csi(&socket, &["unpublish", &id, "--node", &n1]);
    assert!(ok, "{out}");
    assert_eq!(attached_node(&admin, &pv), "", "unpublish clears the fence");
    let (ok, out) = csi(&socket, &["publish", &id, "--node", &n2]);
    assert!(ok, "a detached volume is free: {out}");
    assert_eq!(attached_node(&admin, &pv), n2);
    drop(ctl);
}

/// A controller started while its RDS is unreachable serves (Probe ready, ControllerUnpublish
/// works) and says why on its own Pod: a Warning event `RDSUnreachable` naming the backend.
#[test]
fn an_unreachable_rds_is_a_warning_event_on_the_controller_pod() {
    let Some((admin, controller_kc)) = kubeconfigs() else {
        return;
    };
    let (ok, out) = kubectl(
        &admin,
        &[
            "apply",
            "-k",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes/rbac"),
        ],
        None,
    );
    assert!(ok, "applying the RBAC manifests: {out}");
    let suffix = format!("{:08x}", rand_suffix());
    let ns = format!("ev-{suffix}");
    apply(
        &admin,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
    let pod = format!("rds-csi-controller-{suffix}");
    let dir = tempfile::tempdir().unwrap();
    let (private_key, _) = rds_sim::generate_client_key().unwrap();
    std::fs::write(dir.path().join("id"), private_key).unwrap();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket = dir.path().join("csi.sock");
    let _ctl = Proc(
        Command::new(BIN)
            .args([
                "controller",
                "--metrics-address",
                "",
                "--leader-election=false",
            ])
            .args(["--driver-name", &format!("ev-{suffix}.csi.test")])
            .args(["--kubeconfig", &controller_kc, "--endpoint"])
            .arg(&socket)
            .args([
                "--rds-address",
                "127.0.0.1",
                "--rds-port",
                &nobody.to_string(),
            ])
            .args([
                "--rds-host-key",
                "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ])
            .args(["--rds-connect-timeout", "2s", "--probe-timeout", "2s"])
            .arg("--rds-key-file")
            .arg(dir.path().join("id"))
            .env("POD_NAME", &pod)
            .env("POD_NAMESPACE", &ns)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !csi(&socket, &["probe"]).0 {
        assert!(Instant::now() < deadline, "controller never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out) = csi(
        &socket,
        &["unpublish", "default:pvc-unreachable", "--node", "worker-1"],
    );
    assert!(ok, "{out}");
    let selector =
        format!("involvedObject.kind=Pod,involvedObject.name={pod},reason=RDSUnreachable");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = kubectl(
            &admin,
            &[
                "-n",
                &ns,
                "get",
                "events",
                "--field-selector",
                &selector,
                "-o",
                "jsonpath={.items[*].type} {.items[*].message}",
            ],
            None,
        );
        assert!(ok, "{out}");
        if out.starts_with("Warning ") {
            assert!(out.contains("backend default does not answer"), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no RDSUnreachable event: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
