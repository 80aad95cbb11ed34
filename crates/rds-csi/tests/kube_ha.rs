//! Controller HA against a real kube-apiserver (started by `scripts/test-kube`): two controller
//! processes elect one leader through a Lease, the follower refuses publish naming the leader,
//! and after the leader is SIGKILLed the follower takes over within 30 s with the attachment
//! state rebuilt (a conflicting publish is still refused); a leader stopped with SIGTERM
//! releases the Lease for a third replica.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Starts a controller serving on `socket`, named `pod` (the Lease identity starts with it).
/// Waits only for the socket: a follower serves everything but publish/unpublish.
fn start_controller(
    dir: &Path,
    socket: &Path,
    pod: &str,
    port: u16,
    fp: &str,
    kc: &str,
    driver: &str,
) -> Proc {
    let child = Command::new(BIN)
        .args([
            "controller",
            "--metrics-address",
            "",
            "--driver-name",
            driver,
            "--kubeconfig",
            kc,
            "--leader-election-namespace",
            "kube-system",
            "--endpoint",
        ])
        .arg(socket)
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
        .args(lease_flags())
        .env("POD_NAME", pod)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !csi(socket, &["probe"]).0 {
        assert!(Instant::now() < deadline, "controller {pod} never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    Proc(child)
}

/// `RDS_CSI_HA_LEASE=<duration>,<renew deadline>,<retry period>` (e.g. `6s,4s,1s`) runs the
/// replicas with those leader-election settings, to measure the failover each one gives;
/// unset, the defaults.
fn lease_flags() -> Vec<String> {
    let Ok(spec) = std::env::var("RDS_CSI_HA_LEASE") else {
        return Vec::new();
    };
    let parts: Vec<&str> = spec.split(',').collect();
    assert_eq!(
        parts.len(),
        3,
        "RDS_CSI_HA_LEASE={spec}: want lease,renew,retry"
    );
    let flags = [
        "--leader-election-lease-duration",
        "--leader-election-renew-deadline",
        "--leader-election-retry-period",
    ];
    flags
        .iter()
        .zip(parts)
        .flat_map(|(f, v)| [f.to_string(), v.to_string()])
        .collect()
}

fn lease_holder(admin: &str, lease: &str) -> String {
    let (ok, out) = kubectl(
        admin,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            lease,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    if ok {
        out.trim().to_string()
    } else {
        String::new()
    }
}

/// True while the answer is a leadership refusal (not a fencing decision).
fn refused_for_leadership(out: &str) -> bool {
    out.contains("UNAVAILABLE")
        && (out.contains("not the leader") || out.contains("rebuilding the attachment state"))
}

#[test]
fn two_controllers_elect_one_leader_failover_after_sigkill_and_release_on_sigterm() {
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
    let driver = format!("ha-{suffix}.csi.test");
    let lease = format!("rds-csi-ha-{suffix}-csi-test");
    let ns = format!("ha-{suffix}");
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port, fp) = start_sim(dir.path());
    let (pod_a, pod_b) = (format!("ctl-a-{suffix}"), format!("ctl-b-{suffix}"));
    let (sock_a, sock_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let ctl_a = start_controller(
        dir.path(),
        &sock_a,
        &pod_a,
        port,
        &fp,
        &controller_kc,
        &driver,
    );
    let ctl_b = start_controller(
        dir.path(),
        &sock_b,
        &pod_b,
        port,
        &fp,
        &controller_kc,
        &driver,
    );

    // Exactly one of them holds the Lease.
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let h = lease_holder(&admin, &lease);
        if !h.is_empty() {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "nobody took Lease kube-system/{lease}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let a_leads = holder.starts_with(&format!("{pod_a}_"));
    assert!(
        a_leads || holder.starts_with(&format!("{pod_b}_")),
        "holder {holder} is neither controller"
    );
    let (mut leader, mut follower, leader_sock, follower_sock, follower_pod) = if a_leads {
        (ctl_a, ctl_b, sock_a, sock_b, pod_b.clone())
    } else {
        (ctl_b, ctl_a, sock_b, sock_a, pod_a.clone())
    };

    // CreateVolume needs no Lease: the follower serves it too.
    let pv = format!("pvc-{suffix}-0000-4000-8000-000000000002");
    let (ok, out) = csi(
        &follower_sock,
        &["create-volume", "--name", &pv, "--size", "1Gi"],
    );
    assert!(ok, "a follower serves CreateVolume: {out}");
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

    // The leader publishes (once its state is rebuilt).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = csi(&leader_sock, &["publish", &id, "--node", &n1]);
        if ok {
            break;
        }
        assert!(
            refused_for_leadership(&out),
            "publish through the leader: {out}"
        );
        assert!(
            Instant::now() < deadline,
            "the leader never served publish: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    apply(
        &admin,
        serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": format!("va-{suffix}")},
        "spec": {"attacher": driver, "nodeName": n1, "source": {"persistentVolumeName": pv}}}),
    );

    // The follower refuses and names the leader.
    let (ok, out) = csi(&follower_sock, &["publish", &id, "--node", &n1]);
    assert!(
        !ok && out.contains("UNAVAILABLE")
            && out.contains("not the leader")
            && out.contains(&holder),
        "a follower must refuse publish naming the leader: {out}"
    );
    let (ok, out) = csi(&follower_sock, &["unpublish", &id, "--node", &n1]);
    assert!(
        !ok && out.contains("not the leader"),
        "and unpublish: {out}"
    );

    // SIGKILL the leader: no release, the follower waits for the Lease to expire.
    let killed = Instant::now();
    let _ = leader.0.kill();
    let _ = leader.0.wait();
    let out = loop {
        let (ok, out) = csi(&follower_sock, &["publish", &id, "--node", &n2]);
        assert!(!ok, "the conflicting publish must never succeed: {out}");
        if !refused_for_leadership(&out) {
            break out;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover within 30s: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("failover after SIGKILL: {:?}", killed.elapsed());
    assert!(
        out.contains("FAILED_PRECONDITION") && out.contains(&n1),
        "the new leader rebuilt the fence on {n1}: {out}"
    );
    let new_leader = lease_holder(&admin, &lease);
    assert!(
        new_leader.starts_with(&format!("{follower_pod}_")),
        "the Lease names the new leader: {new_leader}"
    );
    let (ok, out) = csi(&follower_sock, &["publish", &id, "--node", &n1]);
    assert!(ok, "the new leader serves publish: {out}");

    // SIGTERM: a graceful stop releases the Lease, so a third replica need not wait for expiry.
    let pod_c = format!("ctl-c-{suffix}");
    let sock_c = dir.path().join("c.sock");
    let _ctl_c = start_controller(
        dir.path(),
        &sock_c,
        &pod_c,
        port,
        &fp,
        &controller_kc,
        &driver,
    );
    let (ok, out) = csi(&sock_c, &["publish", &id, "--node", &n1]);
    assert!(!ok && out.contains("not the leader"), "c follows: {out}");
    let term = Command::new("kill")
        .args(["-TERM", &follower.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = follower.0.wait().unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    let after = lease_holder(&admin, &lease);
    assert_ne!(after, new_leader, "the stopped leader released its Lease");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = csi(&sock_c, &["publish", &id, "--node", &n1]);
        if ok {
            break;
        }
        assert!(refused_for_leadership(&out), "publish through c: {out}");
        assert!(Instant::now() < deadline, "c never took over: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out) = csi(&sock_c, &["publish", &id, "--node", &n2]);
    assert!(
        !ok && out.contains("FAILED_PRECONDITION"),
        "c rebuilt the fence too: {out}"
    );
    let (ok, out) = csi(&sock_c, &["unpublish", &id, "--node", &n1]);
    assert!(ok, "and unpublish: {out}");
}
