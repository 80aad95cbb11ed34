//! The `rds-csi controller` binary as its own process against an rds-sim running inside the
//! test: the controller is exactly what production runs (so it can be SIGKILLed and its
//! /proc read), while the test keeps the simulator's fault switches and state at hand.
//! Used by faults_process, soak and the scale bench.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csi::v1 as pb;
use csi::v1::controller_client::ControllerClient;
use csi::v1::identity_client::IdentityClient;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_rds-csi");
pub const GIB: i64 = 1 << 30;

/// An in-process simulator plus what a controller needs to log in to it.
pub struct Rig {
    pub sim: rds_sim::Sim,
    pub dir: tempfile::TempDir,
    key: PathBuf,
    fingerprint: String,
}

impl Rig {
    pub async fn start(capacity_bytes: u64) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, private_key).unwrap();
        let mut cfg = rds_sim::SimConfig::for_tests();
        cfg.authorized_keys = vec![public_line];
        cfg.capacity_bytes = capacity_bytes;
        let sim = rds_sim::Sim::start(cfg).await.unwrap();
        let fingerprint = sim.host_key_fingerprint();
        Rig {
            sim,
            dir,
            key,
            fingerprint,
        }
    }

    /// Spawns `rds-csi controller --no-kubernetes` on `<dir>/<name>.sock`, logging to
    /// `<dir>/<name>.log`. `extra` adds flags (not ones set here: clap refuses repeats).
    pub fn controller(&self, name: &str, extra: &[&str]) -> Controller {
        self.controller_with_env(name, extra, &[])
    }

    /// [`Rig::controller`] with `env` added to the process's environment.
    pub fn controller_with_env(
        &self,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Controller {
        let socket = self.dir.path().join(format!("{name}.sock"));
        let log = self.dir.path().join(format!("{name}.log"));
        let metrics_port = free_port();
        let child = Command::new(BIN)
            .args(["controller", "--no-kubernetes", "--log-level", "warn"])
            .arg("--endpoint")
            .arg(&socket)
            .args(["--rds-address", "127.0.0.1"])
            .args(["--rds-port", &self.sim.addr().port().to_string()])
            .arg("--rds-key-file")
            .arg(&self.key)
            .args(["--rds-host-key", &self.fingerprint])
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller {
            child,
            socket,
            log,
            metrics_port,
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A controller process; killed (SIGKILL) and reaped when dropped.
pub struct Controller {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub metrics_port: u16,
}

impl Controller {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects once the socket answers and Probe says ready.
    pub async fn clients(&mut self) -> (IdentityClient<Channel>, ControllerClient<Channel>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "controller exited ({status}) before serving:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(ch) = csi::uds::connect(&self.socket, Duration::from_secs(60)).await {
                let mut id = IdentityClient::new(ch.clone());
                if let Ok(r) = id.probe(pb::ProbeRequest {}).await
                    && r.into_inner().ready == Some(true)
                {
                    return (id, ControllerClient::new(ch));
                }
            }
            assert!(
                Instant::now() < deadline,
                "controller never became ready:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no drain, no goodbye to the RDS — a crashed or OOM-killed pod.
    pub fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// GET /metrics over plain HTTP/1.0 (the test needs no HTTP client crate for one request).
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What /proc says about a process: the figures a leak shows up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcUsage {
    pub fds: usize,
    pub threads: usize,
    pub rss_kib: u64,
    /// The anonymous part of `rss_kib` (heap, stacks): without the binary's file-backed pages,
    /// which grow as code runs for the first time, not with a leak.
    pub anon_kib: u64,
}

pub fn usage(pid: u32) -> ProcUsage {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
            .unwrap()
    };
    ProcUsage {
        fds,
        threads: field("Threads:") as usize,
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
    }
}

/// A metric's value from Prometheus text (summing every label set).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn mount_cap() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            },
        )),
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: pb::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}

pub fn create_req(name: &str, gib: i64) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap()],
        ..Default::default()
    }
}

pub fn disks_named(sim: &rds_sim::Sim, slot: &str) -> usize {
    sim.disks().iter().filter(|d| d.slot == slot).count()
}

pub fn files_named(sim: &rds_sim::Sim, slot: &str) -> usize {
    sim.files()
        .iter()
        .filter(|f| f.path.ends_with(&format!("/{slot}.img")))
        .count()
}

pub async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
