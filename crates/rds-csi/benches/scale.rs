//! Scale benchmark: `cargo bench -p rds-csi --bench scale`.
//!
//! The controller binary as its own process (what a pod's memory limit sees) against an rds-sim
//! pre-populated with 0, 1,000 and 10,000 volumes: start-up time, RSS at idle, after listing
//! every volume in one reply and page by page, and idle again; then the fencing state rebuild
//! over 1,000 and 10,000 attached volumes (in-process, with the in-memory cluster: the
//! algorithm's cost, without the Kubernetes API's list latency). The controller runs twice:
//! with glibc's default allocator settings and with the mmap threshold the controller
//! Deployment fixes. Prints Markdown for docs/benchmarks.md. Numbers are measurements, not
//! assertions.

#![allow(clippy::unwrap_used)]

#[path = "../tests/procsim/mod.rs"]
mod procsim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use csi::v1 as pb;
use fencing::cluster::VolumeAttachmentInfo;
use fencing::{AttachmentManager, FencingConfig, MemoryCluster};
use procsim::*;

fn slot(i: usize) -> String {
    format!("pvc-{:08x}-0000-4000-8000-{:012x}", i, i)
}

fn populate(sim: &rds_sim::Sim, n: usize) {
    for i in 0..n {
        let s = slot(i);
        sim.run_local(&format!(
            "/disk add type=file file-path=/storage-pool/metal-csi/{s}.img file-size=1G slot={s} \
             nvme-tcp-export=yes nvme-tcp-server-port=4420 \
             nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:{s}"
        ))
        .unwrap();
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

struct Row {
    volumes: usize,
    startup: Duration,
    idle: u64,
    list_all: Duration,
    after_list: u64,
    pages: usize,
    paged: Duration,
    after_paged: u64,
    settled: u64,
    /// After three more paged walks: flat means high-water, growing means a leak.
    repeated: u64,
    /// A second controller process that only pages (so the one-reply listing's high-water
    /// mark does not hide what paging costs): first walk, and RSS after four walks.
    fresh_paged: Duration,
    fresh_after: u64,
}

async fn controller_at(volumes: usize, env: &[(&str, &str)]) -> Row {
    let rig = Rig::start(1 << 50).await;
    populate(&rig.sim, volumes);
    let started = Instant::now();
    let mut ctl = rig.controller_with_env("scale", &[], env);
    let (_, mut c) = ctl.clients().await;
    let startup = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = ctl.pid();
    let idle = usage(pid).rss_kib;

    let t = Instant::now();
    let all = c
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let list_all = t.elapsed();
    assert_eq!(all.entries.len(), volumes);
    let after_list = usage(pid).rss_kib;

    let t = Instant::now();
    let pages = walk(&mut c, volumes).await;
    let paged = t.elapsed();
    let after_paged = usage(pid).rss_kib;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = usage(pid).rss_kib;
    for _ in 0..3 {
        walk(&mut c, volumes).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let repeated = usage(pid).rss_kib;
    drop(c);
    drop(ctl);

    let mut ctl = rig.controller_with_env("scale-paged", &[], env);
    let (_, mut c) = ctl.clients().await;
    let t = Instant::now();
    walk(&mut c, volumes).await;
    let fresh_paged = t.elapsed();
    for _ in 0..3 {
        walk(&mut c, volumes).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh_after = usage(ctl.pid()).rss_kib;
    Row {
        volumes,
        startup,
        idle,
        list_all,
        after_list,
        pages,
        paged,
        after_paged,
        settled,
        repeated,
        fresh_paged,
        fresh_after,
    }
}

/// Lists every volume 500 at a time, as a CO paging through them would; returns the pages.
async fn walk(
    c: &mut csi::v1::controller_client::ControllerClient<tonic::transport::Channel>,
    volumes: usize,
) -> usize {
    let mut token = String::new();
    let mut pages = 0;
    let mut seen = 0;
    loop {
        let r = c
            .list_volumes(pb::ListVolumesRequest {
                max_entries: 500,
                starting_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen += r.entries.len();
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    assert_eq!(seen, volumes);
    pages
}

/// The attachment state rebuilt from `n` PVs each attached to one of 50 nodes.
async fn rebuild(n: usize) -> (Duration, usize) {
    let cluster = Arc::new(MemoryCluster::new());
    for i in 0..n {
        let pv = format!("pv-{i}");
        cluster.add_pv(&pv, &format!("default:{}", slot(i)), Some(("ns", &pv)));
        cluster.add_volume_attachment(VolumeAttachmentInfo {
            name: format!("csi-{i:064x}"),
            pv_name: Some(pv),
            node: format!("node-{}", i % 50),
            attached: true,
            deleting_for_secs: None,
        });
    }
    let mut best = Duration::MAX;
    let mut restored = 0;
    for _ in 0..5 {
        let m = AttachmentManager::new(cluster.clone(), FencingConfig::default());
        let t = Instant::now();
        let report = m.rebuild().await.unwrap();
        best = best.min(t.elapsed());
        restored = report.volumes;
    }
    (best, restored)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("## Scale benchmark (cargo bench -p rds-csi --bench scale)\n");
        // The controller Deployment (deploy/kubernetes/base/controller.yaml) fixes glibc's mmap
        // threshold; measured with and without it.
        for (label, env) in [
            ("glibc defaults", &[][..]),
            (
                "as deployed: MALLOC_MMAP_THRESHOLD_=131072",
                &[("MALLOC_MMAP_THRESHOLD_", "131072")][..],
            ),
        ] {
            println!("### Controller process, {label}\n");
            println!(
                "| volumes on the RDS | start → Probe ready ms | RSS idle MiB | ListVolumes (all, one reply) ms | RSS after MiB | ListVolumes paged (500) pages / ms | RSS after MiB | RSS 3 s later MiB | RSS after 3 more paged walks MiB | paging only (fresh process): first walk ms | its RSS after 4 walks MiB |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|");
            for n in [0, 1_000, 10_000] {
                let r = controller_at(n, env).await;
                println!(
                    "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
                    r.volumes,
                    ms(r.startup),
                    mib(r.idle),
                    ms(r.list_all),
                    mib(r.after_list),
                    r.pages,
                    ms(r.paged),
                    mib(r.after_paged),
                    mib(r.settled),
                    mib(r.repeated),
                    ms(r.fresh_paged),
                    mib(r.fresh_after)
                );
            }
            println!();
        }
        println!(
            "\n### Fencing state rebuild (in-process, in-memory cluster; best of 5)\n"
        );
        println!("| attached volumes | rebuild ms |");
        println!("|---|---|");
        for n in [1_000, 10_000] {
            let (t, restored) = rebuild(n).await;
            assert_eq!(restored, n);
            println!("| {n} | {} |", ms(t));
        }
    });
}
