//! The `rds-csi` binary as an operator runs it: `sim` and `controller` as separate processes
//! talking real SSH, the `csi` subcommands calling the controller's unix socket, SIGTERM for a
//! graceful stop, and `demo` end to end.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rds-csi");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn csi(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "csi",
            "--endpoint",
            &format!("unix://{}", socket.display()),
            "--timeout",
            "20s",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// A failed `csi` call: its exit status and the code name leading its message.
fn assert_exit(out: &Output, status: i32, code: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{stderr}");
    assert!(stderr.starts_with(&format!("error: {code}: ")), "{stderr}");
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `rds-csi sim` and returns it with the fingerprint it printed.
fn start_sim(dir: &Path) -> (Proc, u16, String, PathBuf) {
    let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
    let key = dir.join("id_ed25519");
    std::fs::write(&key, private_key).unwrap();
    let auth = dir.join("authorized_keys");
    std::fs::write(&auth, format!("# test key\n{public_line}\n")).unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--authorized-keys")
        .arg(&auth)
        .arg("--host-key-file")
        .arg(dir.join("sim_host_key"))
        .args(["--capacity", "100G"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut fingerprint = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(fp) = line.strip_prefix("pin it with: --rds-host-key ") {
            fingerprint = fp.trim().to_string();
            break;
        }
    }
    assert!(
        fingerprint.starts_with("SHA256:"),
        "sim printed no fingerprint"
    );
    (Proc(child), port, fingerprint, key)
}

#[test]
fn controller_process_serves_the_csi_client_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port, fingerprint, key) = start_sim(dir.path());
    let socket = dir.path().join("csi.sock");
    // A stale socket from a previous run must not stop the controller from starting.
    std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut controller = Proc(
        Command::new(BIN)
            .args(["controller", "--no-kubernetes", "--endpoint"])
            .arg(&socket)
            .args([
                "--rds-address",
                "127.0.0.1",
                "--rds-port",
                &port.to_string(),
            ])
            .arg("--rds-key-file")
            .arg(&key)
            .args(["--rds-host-key", &fingerprint])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait until the stale socket is replaced by a live one.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = csi(&socket, &["probe"]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("true"), "probe: {text}");
            break;
        }
        assert!(Instant::now() < deadline, "controller never answered probe");
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = csi(
        &socket,
        &[
            "create-volume",
            "--name",
            "pvc-7d0c8d0e-4f3a-4c51-9d7e-0a1b2c3d4e5f",
            "--size",
            "2Gi",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = reply["volume"]["volume_id"].as_str().unwrap().to_string();
    assert_eq!(id, "default:pvc-7d0c8d0e-4f3a-4c51-9d7e-0a1b2c3d4e5f");

    let out = csi(&socket, &["list-volumes"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

    let out = csi(
        &socket,
        &[
            "create-volume",
            "--name",
            "pvc-7d0c8d0e-4f3a-4c51-9d7e-0a1b2c3d4e5f",
            "--size",
            "3Gi",
        ],
    );
    assert_exit(&out, 106, "ALREADY_EXISTS");

    // Each gRPC code has its own exit status (docs/configuration.md), so scripts can branch.
    let out = csi(
        &socket,
        &[
            "get-volume",
            "default:pvc-00000000-0000-4000-8000-000000000000",
        ],
    );
    assert_exit(&out, 105, "NOT_FOUND");
    let out = csi(
        &socket,
        &[
            "create-volume",
            "--name",
            "pvc-x",
            "--size",
            "1Gi",
            "--param",
            "nope=1",
        ],
    );
    assert_exit(&out, 103, "INVALID_ARGUMENT");
    let out = csi(&socket, &["modify-volume", &id]);
    assert_exit(&out, 112, "UNIMPLEMENTED");
    let out = csi(&dir.path().join("nobody.sock"), &["probe"]);
    assert_exit(&out, 114, "UNAVAILABLE");
    // A usage error is not a gRPC code.
    let out = csi(&socket, &["no-such-rpc"]);
    assert_eq!(out.status.code(), Some(2));

    let out = csi(&socket, &["delete-volume", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    sigterm(&controller.0);
    let status = wait_exit(&mut controller.0, Duration::from_secs(20));
    assert!(status.success(), "controller exit: {status}");
    assert!(!socket.exists(), "socket left behind after a graceful stop");
}

#[test]
fn controller_refuses_to_start_without_host_key_verification() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "not used").unwrap();
    let out = Command::new(BIN)
        .args(["controller", "--no-kubernetes", "--endpoint"])
        .arg(dir.path().join("csi.sock"))
        .args(["--rds-address", "127.0.0.1"])
        .arg("--rds-key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host key"), "{err}");
}

#[test]
fn demo_runs_the_whole_lifecycle() {
    let out = Command::new(BIN)
        .arg("demo")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{text}");
    for step in [
        "CreateVolume",
        "ControllerExpandVolume",
        "DeleteVolume",
        "routeros",
        "/disk add",
    ] {
        assert!(text.contains(step), "demo output lacks {step:?}:\n{text}");
    }
    assert!(!text.contains("UNEXPECTED"), "{text}");
}

#[test]
fn help_works_for_every_subcommand() {
    for sub in ["controller", "node", "all", "sim", "demo", "csi"] {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("--"),
            "{sub} --help lists no flags"
        );
    }
}

/// Fencing state must survive restarts, so a controller that cannot reach Kubernetes refuses to
/// start (unless the operator explicitly runs without it).
#[test]
fn controller_refuses_to_start_without_a_kubernetes_api() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port, fingerprint, key) = start_sim(dir.path());
    let out = Command::new(BIN)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["controller", "--endpoint"])
        .arg(dir.path().join("csi.sock"))
        .args([
            "--rds-address",
            "127.0.0.1",
            "--rds-port",
            &port.to_string(),
        ])
        .arg("--rds-key-file")
        .arg(&key)
        .args(["--rds-host-key", &fingerprint, "--metrics-address", ""])
        .arg("--kubeconfig")
        .arg(dir.path().join("missing-kubeconfig"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "started without a Kubernetes API");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--no-kubernetes"),
        "the error should say how to proceed: {err}"
    );
}

/// A node image may carry no CA certificates. A kubeconfig that skips TLS verification must then
/// still start the driver: the system trust store is never needed for it.
#[test]
fn an_insecure_kubeconfig_needs_no_system_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port, fingerprint, key) = start_sim(dir.path());
    let kubeconfig = dir.path().join("kubeconfig");
    let api = free_port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"https://127.0.0.1:{api}\", insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: \"t\"}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let no_certs = dir.path().join("no-certs");
    std::fs::create_dir(&no_certs).unwrap();
    let mut child = Command::new(BIN)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        // Where the system trust store is looked for: an empty directory, no bundle.
        .env("SSL_CERT_DIR", &no_certs)
        .env("SSL_CERT_FILE", no_certs.join("none.pem"))
        .args(["controller", "--endpoint"])
        .arg(dir.path().join("csi.sock"))
        .args([
            "--rds-address",
            "127.0.0.1",
            "--rds-port",
            &port.to_string(),
        ])
        .arg("--rds-key-file")
        .arg(&key)
        .args(["--rds-host-key", &fingerprint, "--metrics-address", ""])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give it time to build the client (it then waits for the absent API server), then stop it.
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("CA certificates") && !err.contains("building the Kubernetes client"),
        "the client needed the system trust store: {err}"
    );
}
