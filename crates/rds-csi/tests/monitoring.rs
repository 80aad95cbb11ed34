//! The alert rules and the Grafana dashboard in deploy/monitoring name only metrics the driver
//! really exports: a running `rds-csi controller` (against `rds-csi sim`) and `rds-csi node`
//! are scraped over HTTP, and every `rds_csi_…` name in the rules, the PrometheusRule and every
//! dashboard query must be one of the series names those scrapes produce. A renamed metric, or
//! a rule written against a metric that does not exist, fails here instead of never firing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{BIN, Proc, free_port, http_get as get};
const RULES: &str = include_str!("../../../deploy/monitoring/rds-csi.rules.yaml");
const PROMETHEUS_RULE: &str = include_str!("../../../deploy/monitoring/prometheusrule.yaml");
const DASHBOARD: &str = include_str!("../../../deploy/monitoring/grafana-dashboard.json");

fn scrape_when_ready(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/readyz").is_none_or(|(code, _)| code != 200) {
        assert!(Instant::now() < deadline, "ready within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, text) = get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    text
}

/// The series names Prometheus stores for a scrape: counters as `_total`, histograms as
/// `_bucket`/`_sum`/`_count`, everything else as listed.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = l.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// Every `rds_csi_…` identifier in `text`.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("rds_csi_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn start_controller(dir: &Path, http_port: u16) -> (Proc, Proc) {
    let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
    let key = dir.join("id_ed25519");
    std::fs::write(&key, private_key).unwrap();
    let auth = dir.join("authorized_keys");
    std::fs::write(&auth, format!("{public_line}\n")).unwrap();
    let sim_port = free_port();
    let mut sim = Command::new(BIN)
        .args(["sim", "--listen", &format!("127.0.0.1:{sim_port}")])
        .arg("--authorized-keys")
        .arg(&auth)
        .arg("--host-key-file")
        .arg(dir.join("sim_host_key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let fingerprint = BufReader::new(sim.stdout.take().unwrap())
        .lines()
        .find_map(|l| {
            l.unwrap()
                .strip_prefix("pin it with: --rds-host-key ")
                .map(|f| f.trim().to_string())
        })
        .unwrap();
    let sim = Proc(sim);
    let ctl = Command::new(BIN)
        .args(["controller", "--no-kubernetes", "--endpoint"])
        .arg(dir.join("ctl.sock"))
        .args(["--rds-address", "127.0.0.1", "--rds-port"])
        .arg(sim_port.to_string())
        .arg("--rds-key-file")
        .arg(&key)
        .args(["--rds-host-key", &fingerprint])
        .arg("--metrics-address")
        .arg(format!("127.0.0.1:{http_port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (sim, Proc(ctl))
}

fn start_node(dir: &Path, http_port: u16) -> Proc {
    for d in ["sys", "dev", "state"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    Proc(
        Command::new(BIN)
            .args([
                "node",
                "--no-kubernetes",
                "--node-id",
                "worker-1",
                "--endpoint",
            ])
            .arg(dir.join("node.sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--sysfs-root")
            .arg(dir.join("sys"))
            .arg("--dev-root")
            .arg(dir.join("dev"))
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{http_port}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Names a running controller and node plugin export, as Prometheus stores them.
fn exported() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let (ctl_port, node_port) = (free_port(), free_port());
    let _controller = start_controller(dir.path(), ctl_port);
    let _node = start_node(dir.path(), node_port);
    let mut names = series_names(&scrape_when_ready(ctl_port));
    names.extend(series_names(&scrape_when_ready(node_port)));
    // The scrape is real, not a list that happens to be empty.
    for must in [
        "rds_csi_pool_used_bytes",
        "rds_csi_leader",
        "rds_csi_node_nvme_subsystems",
    ] {
        assert!(names.contains(must), "{must} not scraped: {names:?}");
    }
    names
}

fn dashboard_queries() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut exprs = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

#[test]
fn rules_and_dashboard_name_only_exported_metrics() {
    let exported = exported();
    for (what, text) in [
        ("deploy/monitoring/rds-csi.rules.yaml", RULES.to_string()),
        (
            "deploy/monitoring/prometheusrule.yaml",
            PROMETHEUS_RULE.to_string(),
        ),
        (
            "deploy/monitoring/grafana-dashboard.json queries",
            dashboard_queries().join("\n"),
        ),
    ] {
        let named = metric_tokens(&text);
        assert!(named.len() >= 10, "{what} names too few metrics: {named:?}");
        let missing: Vec<_> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{what} names metrics no running controller or node exports: {missing:?}"
        );
    }
}

#[test]
fn the_dashboard_covers_pool_operations_errors_attachments_and_nodes() {
    let queries = dashboard_queries();
    assert!(!queries.is_empty());
    for needed in [
        "rds_csi_pool_used_bytes",
        "rds_csi_pool_overcommit_ratio",
        "rds_csi_rpc_requests_total",
        "rds_csi_rpc_duration_seconds_bucket",
        "rds_csi_fencing_attached_volumes",
        "rds_csi_node_nvme_subsystems",
        "rds_csi_node_stale_mounts_detected_total",
        "rds_csi_node_volume_paths_live",
    ] {
        assert!(
            queries.iter().any(|q| metric_tokens(q).contains(needed)),
            "no dashboard query uses {needed}"
        );
    }
    assert!(
        queries
            .iter()
            .any(|q| q.contains("rds_csi_rpc_requests_total") && q.contains("code!=\"OK\"")),
        "no panel shows errors by code"
    );
}

#[test]
fn metric_tokens_find_every_name_and_nothing_else() {
    let t = metric_tokens("max(rds_csi_a_b{x=\"1\"} / rds_csi_c_total[5m]) rds_csi_d");
    assert_eq!(
        t,
        ["rds_csi_a_b", "rds_csi_c_total", "rds_csi_d"]
            .map(String::from)
            .into()
    );
}
