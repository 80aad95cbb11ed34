//! Helpers for the suites that run the `rds-csi` binary against rds-sim and a real
//! kube-apiserver (`scripts/test-kube`): processes that die with the test, the simulator as its
//! own process, `kubectl` as the sidecars would use the API, and the operator's CSI client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_rds-csi");

pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn kubeconfigs() -> Option<(String, String)> {
    match (
        std::env::var("RDS_CSI_KUBECONFIG_ADMIN"),
        std::env::var("RDS_CSI_KUBECONFIG_CONTROLLER"),
    ) {
        (Ok(a), Ok(c)) => Some((a, c)),
        _ => {
            let msg = "no kube-apiserver (RDS_CSI_KUBECONFIG_* unset); run scripts/test-kube";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            record_skip("controller binary against Kubernetes", msg);
            None
        }
    }
}

pub fn kubectl(kc: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", kc, "--request-timeout=20s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "kubectl (Debian package kubernetes-client) is needed; scripts/test-kube installs it",
        );
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn apply(kc: &str, json: serde_json::Value) {
    let (ok, out) = kubectl(kc, &["apply", "-f", "-"], Some(&json.to_string()));
    assert!(ok, "kubectl apply: {out}");
}

pub fn csi(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args([
            "csi",
            "--endpoint",
            &format!("unix://{}", socket.display()),
            "--timeout",
            "30s",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn start_sim(dir: &Path) -> (Proc, u16, String) {
    let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
    std::fs::write(dir.join("id"), private_key).unwrap();
    std::fs::write(dir.join("auth"), public_line).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--authorized-keys",
        ])
        .arg(dir.join("auth"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut fp = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(f) = line.unwrap().strip_prefix("pin it with: --rds-host-key ") {
            fp = f.trim().into();
            break;
        }
    }
    (Proc(child), port, fp)
}

pub fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos() ^ std::process::id()
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

/// A loopback port nothing listens on right now (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 GET to 127.0.0.1:`port`: status and body, `None` when nothing (fully) answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// Polls `ok` every 100 ms until it holds; fails the test after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `rds-csi csi` against the driver on `socket`.
pub fn csi_output(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["csi", "--endpoint", &format!("unix://{}", socket.display())])
        .args(["--timeout", "20s"])
        .args(args)
        .output()
        .unwrap()
}

/// The value of one series in a Prometheus text scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
