//! The HTTP endpoint and the audit trail of the real binary: `rds-csi controller` against
//! `rds-csi sim`, driven with `rds-csi csi`, scraped over HTTP. The set of metric names a scrape
//! shows must equal the table in docs/metrics.md.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod support;
use support::{BIN, Proc, csi_output as csi, free_port, http_get as get, sample, wait_for};

const DOC: &str = include_str!("../../../docs/metrics.md");
const VOLUME: &str = "pvc-0b6f5a52-93d4-4b7e-8d1e-7c2f9a1e3b40";

/// Starts `rds-csi sim`; returns it, its port, host-key fingerprint and the client key file.
fn start_sim(dir: &Path) -> (Proc, u16, String, PathBuf) {
    let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
    let key = dir.join("id_ed25519");
    std::fs::write(&key, private_key).unwrap();
    let auth = dir.join("authorized_keys");
    std::fs::write(&auth, format!("{public_line}\n")).unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--authorized-keys")
        .arg(&auth)
        .arg("--host-key-file")
        .arg(dir.join("sim_host_key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let fingerprint = BufReader::new(stdout)
        .lines()
        .find_map(|l| {
            l.unwrap()
                .strip_prefix("pin it with: --rds-host-key ")
                .map(|f| f.trim().to_string())
        })
        .unwrap();
    (Proc(child), port, fingerprint, key)
}

fn controller(dir: &Path, sim_port: u16, host_key: &str, key: &Path, http_port: u16) -> Proc {
    Proc(
        Command::new(BIN)
            .args(["controller", "--no-kubernetes", "--endpoint"])
            .arg(dir.join("csi.sock"))
            .args(["--rds-address", "127.0.0.1", "--rds-port"])
            .arg(sim_port.to_string())
            .arg("--rds-key-file")
            .arg(key)
            .args(["--rds-host-key", host_key])
            .args(["--rds-connect-timeout", "5s", "--probe-timeout", "5s"])
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--audit-log")
            .arg(dir.join("audit.jsonl"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Metric names as a scrape lists them (`# TYPE` lines; counters get their `_total`).
fn scraped_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            }
        })
        .collect()
}

/// Metric names in the docs table served by a process of this `kind` (`controller`, `node`).
fn documented_names(kind: &str) -> BTreeSet<String> {
    let names: BTreeSet<String> = DOC
        .lines()
        .filter(|l| l.starts_with("| `rds_csi_"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            let served_by = cols[4];
            (served_by == "all" || served_by == kind).then(|| cols[1].trim_matches('`').to_string())
        })
        .collect();
    assert!(!names.is_empty(), "no metrics table in docs/metrics.md");
    names
}

fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn succeeded(out: &Output) -> bool {
    out.status.success()
}

#[test]
fn controller_scrape_shows_the_documented_metrics_and_audits_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, sim_port, fingerprint, key) = start_sim(dir.path());
    let http_port = free_port();
    let mut ctl = controller(dir.path(), sim_port, &fingerprint, &key, http_port);
    let socket = dir.path().join("csi.sock");

    wait_for("controller ready", Duration::from_secs(30), || {
        get(http_port, "/readyz").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(get(http_port, "/healthz").unwrap().0, 200);

    let create = |size: &str| {
        csi(
            &socket,
            &["create-volume", "--name", VOLUME, "--size", size],
        )
    };
    assert!(succeeded(&create("1Gi")));
    // Same name, different size: AlreadyExists.
    assert!(!succeeded(&create("2Gi")));
    let id = format!("default:{VOLUME}");
    assert!(succeeded(&csi(&socket, &["list-volumes"])));
    // Fencing: attach, a refused second node, detach.
    let publish = |node: &str| csi(&socket, &["publish", &id, "--node", node]);
    assert!(succeeded(&publish("worker-1")));
    assert!(!succeeded(&publish("worker-2")));
    assert!(succeeded(&csi(
        &socket,
        &["unpublish", &id, "--node", "worker-1"]
    )));
    assert!(succeeded(&csi(&socket, &["delete-volume", &id])));

    // The pool figures come from the refresh made at start, not from the scrape.
    let pool_ok = r#"rds_csi_pool_refresh_success{backend="default"}"#;
    wait_for("pool figures", Duration::from_secs(30), || {
        get(http_port, "/metrics").is_some_and(|(_, t)| sample(&t, pool_ok) == Some(1.0))
    });
    let (code, text) = get(http_port, "/metrics").unwrap();
    assert_eq!(code, 200);
    let size = sample(
        &text,
        r#"rds_csi_pool_size_bytes{backend="default",pool="storage-pool"}"#,
    );
    assert!(size.is_some_and(|s| s > 0.0), "{text}");
    assert_eq!(sample(&text, "rds_csi_leader"), Some(1.0), "{text}");
    assert_eq!(
        scraped_names(&text),
        documented_names("controller"),
        "scrape and docs/metrics.md disagree; scrape:\n{text}"
    );
    for (series, want) in [
        (
            r#"rds_csi_rpc_requests_total{method="CreateVolume",code="OK"}"#,
            1.0,
        ),
        (
            r#"rds_csi_rpc_requests_total{method="CreateVolume",code="AlreadyExists"}"#,
            1.0,
        ),
        (
            r#"rds_csi_rpc_requests_total{method="DeleteVolume",code="OK"}"#,
            1.0,
        ),
        (r#"rds_csi_rds_ssh_connected{backend="default"}"#, 1.0),
        (
            r#"rds_csi_routeros_commands_total{backend="default",verb="disk-add",outcome="ok"}"#,
            1.0,
        ),
        ("rds_csi_fencing_attaches_total", 1.0),
        ("rds_csi_fencing_conflicts_total", 1.0),
        ("rds_csi_fencing_detaches_total", 1.0),
        ("rds_csi_fencing_attached_volumes", 0.0),
        // No PV without Kubernetes: the attach and the detach were kept in memory only.
        ("rds_csi_fencing_unpersisted_total", 2.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }

    let records = audit_records(&dir.path().join("audit.jsonl"));
    let summary: Vec<(String, String)> = records
        .iter()
        .map(|r| (r["event"].to_string(), r["code"].to_string()))
        .collect();
    assert_eq!(
        summary,
        [
            ("\"CreateVolume\"".into(), "\"OK\"".into()),
            ("\"CreateVolume\"".into(), "\"AlreadyExists\"".into()),
            ("\"ControllerPublishVolume\"".into(), "\"OK\"".into()),
            (
                "\"ControllerPublishVolume\"".into(),
                "\"FailedPrecondition\"".into()
            ),
            ("\"ControllerUnpublishVolume\"".into(), "\"OK\"".into()),
            ("\"DeleteVolume\"".into(), "\"OK\"".into()),
        ],
        "{records:#?}"
    );
    assert_eq!(records[5]["volume"], id.as_str());

    let kill = Command::new("kill")
        .args(["-TERM", &ctl.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    wait_for("controller exit", Duration::from_secs(20), || {
        ctl.0.try_wait().unwrap().is_some()
    });
    assert!(
        get(http_port, "/healthz").is_none(),
        "HTTP endpoint still up after exit"
    );
}

#[test]
fn host_key_mismatch_is_a_critical_audit_record_and_shown_in_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, sim_port, _fingerprint, key) = start_sim(dir.path());
    let http_port = free_port();
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let _ctl = controller(dir.path(), sim_port, wrong, &key, http_port);
    let audit = dir.path().join("audit.jsonl");

    wait_for("host-key audit record", Duration::from_secs(30), || {
        audit_records(&audit)
            .iter()
            .any(|r| r["event"] == "ssh_host_key_mismatch")
    });
    let records = audit_records(&audit);
    let rec = records
        .iter()
        .find(|r| r["event"] == "ssh_host_key_mismatch")
        .unwrap();
    assert_eq!(rec["severity"], "critical");
    assert_eq!(rec["outcome"], "denied");
    assert_eq!(rec["details"]["addr"], format!("127.0.0.1:{sim_port}"));

    wait_for("HTTP endpoint up", Duration::from_secs(30), || {
        get(http_port, "/healthz").is_some()
    });
    // Reported in /readyz detail (this peer is loopback), never a reason to be unready.
    let (code, body) = get(http_port, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("backend default: unreachable"), "{body}");
    assert!(body.contains("host key"), "{body}");
}

#[test]
fn node_serves_its_documented_metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["sys", "dev", "state"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let http_port = free_port();
    let mut node = Proc(
        Command::new(BIN)
            .args([
                "node",
                "--no-kubernetes",
                "--node-id",
                "worker-1",
                "--endpoint",
            ])
            .arg(dir.path().join("csi.sock"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--sysfs-root")
            .arg(dir.path().join("sys"))
            .arg("--dev-root")
            .arg(dir.path().join("dev"))
            .arg("--metrics-address")
            .arg(format!(":{http_port}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("node ready", Duration::from_secs(30), || {
        get(http_port, "/readyz").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(get(http_port, "/healthz").unwrap().0, 200);
    let socket = dir.path().join("csi.sock");
    assert!(succeeded(&csi(&socket, &["node-info"])));

    let (code, text) = get(http_port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        scraped_names(&text),
        documented_names("node"),
        "scrape and docs/metrics.md disagree; scrape:\n{text}"
    );
    // The empty --sysfs-root was scanned: nothing connected, and known to be nothing.
    for (series, want) in [
        ("rds_csi_node_nvme_scan_success", 1.0),
        (r#"rds_csi_node_nvme_subsystems{health="healthy"}"#, 0.0),
        (r#"rds_csi_node_nvme_controllers{state="live"}"#, 0.0),
        ("rds_csi_node_stale_mounts_detected_total", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }

    let kill = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    wait_for("node exit", Duration::from_secs(20), || {
        node.0.try_wait().unwrap().is_some()
    });
}
