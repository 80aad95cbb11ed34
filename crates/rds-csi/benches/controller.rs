//! Controller benchmark: `cargo bench -p rds-csi --bench controller`.
//!
//! Everything runs for real on this machine: rds-sim over SSH, the production SSH client, the
//! controller on a unix socket, gRPC clients. Prints a Markdown report (copied into
//! docs/benchmarks.md). Numbers are measurements, not assertions.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csi::v1 as pb;
use csi::v1::controller_client::ControllerClient;
use rds::{CommandEvent, CommandObserver};
use sandbox::{Sandbox, SandboxOptions};
use tonic::transport::Channel;

const GIB: i64 = 1 << 30;
const LATENCY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Recorder(Mutex<Vec<CommandEvent>>);

impl CommandObserver for Recorder {
    fn on_command(&self, e: &CommandEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Recorder {
    fn take(&self) -> Vec<CommandEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn cap() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: pb::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}

fn create(name: &str, gib: i64) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap()],
        ..Default::default()
    }
}

fn name(i: usize) -> String {
    format!("pvc-{:08x}-0000-4000-8000-{:012x}", i, i)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

async fn round_trips(sb: &Sandbox, rec: &Recorder) {
    let mut c = sb.controller.clone();
    let mut id = sb.identity.clone();
    println!("\n### RouterOS round trips per CSI operation\n");
    println!("| operation | round trips | commands |");
    println!("|---|---|---|");
    let row = |op: &str, ev: Vec<CommandEvent>| {
        let verbs: Vec<&str> = ev.iter().map(|e| e.verb).collect();
        println!("| {op} | {} | {} |", ev.len(), verbs.join(", "));
    };
    rec.take();
    let v = c
        .create_volume(create(&name(1), 1))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    row("CreateVolume (new)", rec.take());
    c.create_volume(create(&name(1), 1)).await.unwrap();
    row("CreateVolume (retry, exists)", rec.take());
    c.controller_expand_volume(pb::ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: 2 * GIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    row("ControllerExpandVolume (grow)", rec.take());
    c.controller_get_volume(pb::ControllerGetVolumeRequest {
        volume_id: v.volume_id.clone(),
    })
    .await
    .unwrap();
    row("ControllerGetVolume", rec.take());
    c.list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap();
    row("ListVolumes", rec.take());
    c.get_capacity(pb::GetCapacityRequest::default())
        .await
        .unwrap();
    row("GetCapacity", rec.take());
    c.delete_volume(pb::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    row("DeleteVolume (exists)", rec.take());
    c.delete_volume(pb::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    })
    .await
    .unwrap();
    row("DeleteVolume (already gone)", rec.take());
    id.probe(pb::ProbeRequest {}).await.unwrap();
    row("Probe", rec.take());
}

/// Sequential operations: the driver's own time is the RPC time minus the time spent inside
/// RouterOS commands (as the SSH client saw them, so SSH channel setup counts as RDS time).
async fn overhead(sb: &Sandbox, rec: &Recorder, n: usize) {
    let mut c = sb.controller.clone();
    let mut rows = Vec::new();
    for (op, is_create) in [("CreateVolume", true), ("DeleteVolume", false)] {
        let mut over = Vec::new();
        let mut total = Vec::new();
        for i in 0..n {
            rec.take();
            let start = Instant::now();
            if is_create {
                c.create_volume(create(&name(1000 + i), 1)).await.unwrap();
            } else {
                let volume_id = format!("default:{}", name(1000 + i));
                c.delete_volume(pb::DeleteVolumeRequest {
                    volume_id,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            let rpc = start.elapsed();
            let inside: Duration = rec.take().iter().map(|e| e.duration).sum();
            over.push(rpc.saturating_sub(inside));
            total.push(rpc);
        }
        over.sort();
        total.sort();
        rows.push(format!(
            "| {op} | {n} | {} | {} | {} | {} |",
            ms(pct(&total, 0.5)),
            ms(pct(&over, 0.5)),
            ms(pct(&over, 0.99)),
            ms(*over.last().unwrap())
        ));
    }
    println!(
        "\n### Driver overhead above RouterOS time (sequential, {LATENCY:?} injected per command)\n"
    );
    println!(
        "| operation | n | RPC p50 ms | overhead p50 ms | overhead p99 ms | overhead max ms |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

async fn concurrent(sb: &Sandbox, n: usize) {
    println!(
        "\n### {n} concurrent CreateVolume, then {n} concurrent DeleteVolume ({LATENCY:?} per command, 4 SSH sessions)\n"
    );
    println!("| phase | wall s | ops/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for phase in ["CreateVolume", "DeleteVolume"] {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            let mut c: ControllerClient<Channel> = sb.controller.clone();
            let create_phase = phase == "CreateVolume";
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                if create_phase {
                    c.create_volume(create(&name(5000 + i), 1))
                        .await
                        .map(|_| ())
                } else {
                    let volume_id = format!("default:{}", name(5000 + i));
                    c.delete_volume(pb::DeleteVolumeRequest {
                        volume_id,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                }
                .map(|_| t.elapsed())
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.push(t.await.unwrap().unwrap());
        }
        let wall = start.elapsed();
        lat.sort();
        println!(
            "| {phase} | {:.2} | {:.1} | {} | {} | {} |",
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(*lat.last().unwrap())
        );
    }
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Controller RSS as its own process (what a pod's memory limit sees).
async fn rss(volumes: usize) {
    let bin = env!("CARGO_BIN_EXE_rds-csi");
    let dir = tempfile::tempdir().unwrap();
    let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, private_key).unwrap();
    let auth = dir.path().join("auth");
    std::fs::write(&auth, public_line).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sim = Command::new(bin)
        .args([
            "sim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--capacity",
            "100T",
        ])
        .arg("--authorized-keys")
        .arg(&auth)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut fp = String::new();
    for line in BufReader::new(sim.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(f) = line.strip_prefix("pin it with: --rds-host-key ") {
            fp = f.trim().into();
            break;
        }
    }
    let _sim = Proc(sim);
    let socket = dir.path().join("csi.sock");
    let started = Instant::now();
    let ctl = Proc(
        Command::new(bin)
            .args([
                "controller",
                "--no-kubernetes",
                "--log-level",
                "warn",
                "--endpoint",
            ])
            .arg(&socket)
            .args([
                "--rds-address",
                "127.0.0.1",
                "--rds-port",
                &port.to_string(),
                "--rds-host-key",
                &fp,
            ])
            .arg("--rds-key-file")
            .arg(&key)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let channel = loop {
        if let Ok(ch) = csi::uds::connect(&socket, Duration::from_secs(1)).await {
            break ch;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut id = csi::v1::identity_client::IdentityClient::new(channel.clone());
    assert_eq!(
        id.probe(pb::ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        Some(true)
    );
    let ready = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(ctl.0.id());
    let c = ControllerClient::new(channel);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..volumes).step_by(16) {
                c.create_volume(create(&name(100_000 + i), 1))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let listed = c
        .clone()
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .len();
    let loaded = rss_kib(ctl.0.id());
    println!("\n### Controller process\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| start → first Probe ready | {} ms |", ms(ready));
    println!(
        "| RSS idle (after Probe) | {:.1} MiB |",
        idle as f64 / 1024.0
    );
    println!(
        "| RSS after creating and listing {listed} volumes | {:.1} MiB |",
        loaded as f64 / 1024.0
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rec = Arc::new(Recorder::default());
        let observer: Arc<dyn CommandObserver> = rec.clone();
        let sb = Sandbox::start(SandboxOptions {
            observer: Some(observer),
            ..Default::default()
        })
        .await
        .unwrap();
        println!("## Controller benchmark (cargo bench -p rds-csi --bench controller)");
        round_trips(&sb, &rec).await;
        sb.sim().faults().set_latency(LATENCY);
        overhead(&sb, &rec, 50).await;
        concurrent(&sb, 100).await;
        sb.stop().await;
        rss(1000).await;
    });
}
