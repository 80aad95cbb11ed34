//! The health surfaces and startup checks of the real binary: Probe and `/readyz` never gate
//! what needs no RDS, a flood of `/readyz` cannot turn into a flood of SSH logins, and the
//! startup inputs (key file, node name, simulator capacity) fail or warn as an operator needs.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::{BIN, Proc, csi_output as csi, free_port, http_get as get, sample, wait_for};

/// Collects a child's stderr in the background.
fn capture_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let sink = out.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    out
}

/// A client key for the simulator (written 0644: the warning test wants group/others read).
fn client_key(dir: &Path) -> (PathBuf, String) {
    let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
    let key = dir.join("id_ed25519");
    std::fs::write(&key, private_key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    (key, public_line)
}

fn start_sim(dir: &Path, public_line: &str, capacity: &str) -> (Proc, u16) {
    let auth = dir.join("authorized_keys");
    std::fs::write(&auth, format!("{public_line}\n")).unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--authorized-keys")
        .arg(&auth)
        .args(["--capacity", capacity])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ok = BufReader::new(stdout)
        .lines()
        .any(|l| l.unwrap().starts_with("pin it with: --rds-host-key "));
    assert!(ok, "the simulator did not start with --capacity {capacity}");
    (Proc(child), port)
}

fn controller(dir: &Path, rds_port: u16, host_key: &str, key: &Path, http_port: u16) -> Command {
    let mut c = Command::new(BIN);
    c.args(["controller", "--no-kubernetes", "--endpoint"])
        .arg(dir.join("csi.sock"))
        .args(["--rds-address", "127.0.0.1", "--rds-port"])
        .arg(rds_port.to_string())
        .arg("--rds-key-file")
        .arg(key)
        .args(["--rds-host-key", host_key])
        .args(["--rds-connect-timeout", "2s", "--probe-timeout", "2s"])
        .arg("--metrics-address")
        .arg(format!("127.0.0.1:{http_port}"))
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A controller (re)started while its RDS is unreachable is ready for the sidecars and detaches;
/// the outage shows in `/readyz` detail and the metrics instead. Its text log, going to a pipe,
/// carries no colour codes and durations without float noise; the world-readable key is warned
/// about.
#[test]
fn a_controller_started_without_its_rds_is_ready_and_unpublishes() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = client_key(dir.path());
    let nobody = free_port();
    let http_port = free_port();
    let fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let mut child = controller(dir.path(), nobody, fingerprint, &key, http_port)
        .spawn()
        .unwrap();
    let stderr = capture_stderr(&mut child);
    let _ctl = Proc(child);
    let socket = dir.path().join("csi.sock");
    wait_for("CSI socket", Duration::from_secs(30), || socket.exists());

    let probe = csi(&socket, &["probe"]);
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success(), "{probe:?}");
    assert!(out.contains("\"ready\": true"), "{out}");

    let id = "default:pvc-0b6f5a52-93d4-4b7e-8d1e-7c2f9a1e3b40";
    let unpublish = csi(&socket, &["unpublish", id, "--node", "worker-1"]);
    assert!(unpublish.status.success(), "{unpublish:?}");
    // What needs the RDS says so, as UNAVAILABLE.
    let delete = csi(&socket, &["delete-volume", id]);
    assert!(!delete.status.success());
    assert!(
        String::from_utf8_lossy(&delete.stderr).contains("UNAVAILABLE"),
        "{delete:?}"
    );

    let (code, body) = get(http_port, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("ready\nbackend default: unreachable: "),
        "{body}"
    );
    let (_, metrics) = get(http_port, "/metrics").unwrap();
    assert_eq!(
        sample(&metrics, r#"rds_csi_rds_reachable{backend="default"}"#),
        Some(0.0),
        "{metrics}"
    );

    let log = stderr.lock().unwrap().clone();
    assert!(log.contains("readable by group or others"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log:\n{log}"
    );
    let rpc_ok = log
        .lines()
        .find(|l| l.contains("rpc ok") && l.contains("ControllerUnpublishVolume"))
        .unwrap_or_else(|| panic!("no rpc ok line:\n{log}"));
    let ms = rpc_ok
        .split("elapsed_ms=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let decimals = ms.split_once('.').map_or(0, |(_, f)| f.len());
    assert!(decimals <= 3, "elapsed_ms={ms} in {rpc_ok}");
}

/// A thousand `/readyz` requests against an RDS that refuses the controller (wrong pinned host
/// key, each attempt a critical audit record) cost a bounded number of SSH logins: concurrent
/// callers share one check and a result stands for its freshness period.
#[test]
fn a_readyz_flood_causes_a_bounded_number_of_ssh_logins() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public_line) = client_key(dir.path());
    let (_sim, sim_port) = start_sim(dir.path(), &public_line, "100G");
    let http_port = free_port();
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let _ctl = Proc(
        controller(dir.path(), sim_port, wrong, &key, http_port)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("HTTP endpoint", Duration::from_secs(30), || {
        get(http_port, "/healthz").is_some()
    });
    let started = Instant::now();
    let threads: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let (code, body) = get(http_port, "/readyz").unwrap();
                    assert_eq!(code, 200, "{body}");
                    assert!(body.contains("unreachable"), "{body}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let (_, metrics) = get(http_port, "/metrics").unwrap();
    let failures = sample(
        &metrics,
        r#"rds_csi_rds_ssh_connect_failures_total{backend="default"}"#,
    )
    .unwrap();
    let checks = sample(&metrics, "rds_csi_rds_health_checks_total").unwrap();
    // One check at start, then at most one per 10 s freshness period the flood lasted.
    let periods = 2.0 + (elapsed.as_secs_f64() / 10.0).ceil();
    assert!(checks <= periods, "{checks} checks in {elapsed:?}");
    assert!(
        failures <= periods,
        "{failures} SSH logins for 1000 /readyz in {elapsed:?}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    let mismatches = audit.matches("ssh_host_key_mismatch").count() as f64;
    assert!(mismatches >= 1.0 && mismatches <= periods, "{audit}");
}

#[test]
fn an_endless_key_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = controller(
        dir.path(),
        free_port(),
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        Path::new("/dev/zero"),
        free_port(),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("reading SSH private key /dev/zero"), "{err}");
    assert!(err.contains("larger than 64 KiB"), "{err}");
}

#[test]
fn the_simulator_takes_the_capacity_units_its_help_shows() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public_line) = client_key(dir.path());
    for capacity in ["1Ti", "500G", "512GiB", "1073741824"] {
        drop(start_sim(dir.path(), &public_line, capacity));
    }
    let out = Command::new(BIN)
        .args([
            "sim",
            "--authorized-keys",
            "/nonexistent",
            "--capacity",
            "1Qi",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid value '1Qi' for '--capacity"), "{err}");
    assert!(err.contains("1Ti, 500G"), "{err}");
}

/// A node name that makes the node id too long for older Kubernetes is said at start.
#[test]
fn a_node_id_too_long_for_older_kubernetes_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["sys", "dev", "state"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let name = format!("node-{}", "n".repeat(60));
    let mut child = Command::new(BIN)
        .args(["node", "--no-kubernetes", "--node-id", &name, "--endpoint"])
        .arg(dir.path().join("csi.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--sysfs-root")
        .arg(dir.path().join("sys"))
        .arg("--dev-root")
        .arg(dir.path().join("dev"))
        .args(["--metrics-address", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = capture_stderr(&mut child);
    let _node = Proc(child);
    wait_for("the node id error", Duration::from_secs(30), || {
        stderr
            .lock()
            .unwrap()
            .contains("refuse CSINode node ids over 128 bytes")
    });
    let log = stderr.lock().unwrap().clone();
    assert!(log.contains("keep node names to 59 bytes"), "{log}");
}
