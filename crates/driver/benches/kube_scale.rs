//! Fencing at cluster scale against a real kube-apiserver:
//! `scripts/test-kube cargo bench -p driver --bench kube_scale`.
//!
//! Creates `RDS_CSI_SCALE_PVS` (default 10,000) PVs of a driver of its own, named after their
//! slot as the external-provisioner names them, and as many VolumeAttachments, through the
//! admin client 32 at a time; then measures, as the controller ServiceAccount under the shipped
//! RBAC: the attachment state rebuild at start (its two paged LISTs included), and
//! ControllerPublish + ControllerUnpublish latency and API requests, the old way (no index, a PV
//! not named after its slot: every PV is listed) and the new (one GET by name, one PATCH).
//! Prints Markdown for docs/benchmarks.md. Numbers are measurements, not assertions; the
//! request counts are asserted by `kube_fencing` with small counts.

#![allow(clippy::unwrap_used)]

#[path = "../tests/kube_common.rs"]
mod kube_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::fencing::{AttachmentManager, FencingConfig, PublishRequest, Sharing};
use driver::kube::KubeCluster;
use kube_common::*;
use tokio::task::JoinSet;

const CONCURRENCY: usize = 32;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `make(i)` for every i in 0..n, `CONCURRENCY` at a time.
async fn fan_out<F, Fut>(n: usize, make: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..n {
        if set.len() >= CONCURRENCY {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(make(i));
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

struct Figures {
    p50: Duration,
    p99: Duration,
    pv_requests: f64,
    all_requests: f64,
}

/// Publishes then unpublishes each of `ids` on `node`; latency of each publish, and requests
/// per publish.
async fn publish_each(
    manager: &AttachmentManager,
    log: &RequestLog,
    ids: &[String],
    node: &str,
) -> Figures {
    let mut took = Vec::new();
    let (mut pv, mut all) = (0usize, 0usize);
    for id in ids {
        log.lock().unwrap().clear();
        let req = PublishRequest {
            volume_id: id.clone(),
            node: node.to_string(),
            sharing: Sharing::SingleNode,
            volume_context: HashMap::new(),
        };
        let t = Instant::now();
        manager.publish(&req).await.unwrap();
        took.push(t.elapsed());
        pv += pv_requests(log).len();
        all += log.lock().unwrap().len();
        manager.unpublish(id, Some(node)).await.unwrap();
    }
    took.sort();
    Figures {
        p50: pct(&took, 0.5),
        p99: pct(&took, 0.99),
        pv_requests: pv as f64 / ids.len() as f64,
        all_requests: all as f64 / ids.len() as f64,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(env) = env("kube_scale bench").await else {
        return;
    };
    let n = count("RDS_CSI_SCALE_PVS", 10_000);
    let samples = count("RDS_CSI_SCALE_SAMPLES", 100);
    apply_rbac(&env).await;
    let driver = test_driver();
    let node = unique("node");
    create_node(&env.admin, &node, &[]).await;

    let slots: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|_| format!("pvc-{}", uuid::Uuid::new_v4()))
            .collect(),
    );
    let t = Instant::now();
    fan_out(n, |i| {
        let (admin, driver, slots) = (env.admin.clone(), driver.clone(), slots.clone());
        async move {
            let slot = &slots[i];
            create_pv(&admin, slot, &driver, &format!("default:{slot}"), None).await;
        }
    })
    .await;
    let made_pvs = t.elapsed();
    let t = Instant::now();
    fan_out(n, |i| {
        let (admin, driver, slots) = (env.admin.clone(), driver.clone(), slots.clone());
        async move {
            let va = format!("csi-{}", uuid::Uuid::new_v4().simple());
            create_va(
                &admin,
                &va,
                &driver,
                &format!("node-{}", i % 50),
                &slots[i],
                &[],
            )
            .await;
        }
    })
    .await;
    let made_vas = t.elapsed();
    // One PV not named after its slot: before the index, finding it lists every PV.
    let legacy_slot = format!("pvc-{}", uuid::Uuid::new_v4());
    create_pv(
        &env.admin,
        &unique("static"),
        &driver,
        &format!("default:{legacy_slot}"),
        None,
    )
    .await;

    let (client, log) = counting_controller_client().await;
    let cluster = KubeCluster::new(client, driver.clone());
    let mut rebuilds = Vec::new();
    let mut manager = None;
    for _ in 0..3 {
        let m = AttachmentManager::new(Arc::new(cluster.clone()), FencingConfig::default());
        log.lock().unwrap().clear();
        let t = Instant::now();
        m.rebuild().await.unwrap();
        rebuilds.push(t.elapsed());
        manager = Some(m);
    }
    let rebuild_requests = log.lock().unwrap().len();
    rebuilds.sort();
    let manager = manager.unwrap();

    let before_samples = samples.clamp(1, 20);
    let legacy = vec![format!("default:{legacy_slot}"); before_samples];
    let before = publish_each(&manager, &log, &legacy, &node).await;

    let step = (n / samples.max(1)).max(1);
    let ids: Vec<String> = (0..n)
        .step_by(step)
        .take(samples)
        .map(|i| format!("default:{}", slots[i]))
        .collect();
    let by_name = publish_each(&manager, &log, &ids, &node).await;

    let index = cluster.start_pv_index();
    let t = Instant::now();
    while !cluster.pv_index_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let index_ready = t.elapsed();
    let indexed = publish_each(&manager, &log, &legacy, &node).await;
    index.abort();

    println!("## Fencing against a real kube-apiserver ({n} PVs, {n} VolumeAttachments)\n");
    println!(
        "Setup: {n} PVs created in {:.1} s, {n} VolumeAttachments in {:.1} s ({CONCURRENCY} at a time).\n",
        made_pvs.as_secs_f64(),
        made_vas.as_secs_f64()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| rebuild at start (LIST VolumeAttachments + LIST PVs, pages of 500, and assembly), best / worst of 3 | {} / {} ms, {} requests |",
        ms(rebuilds[0]),
        ms(rebuilds[rebuilds.len() - 1]),
        rebuild_requests
    );
    println!(
        "| PV index: watch start → first listing complete | {} ms |",
        ms(index_ready)
    );
    println!();
    println!(
        "| ControllerPublish | samples | p50 ms | p99 ms | PV requests per publish | all requests per publish |"
    );
    println!("|---|---|---|---|---|---|");
    for (what, k, f) in [
        (
            "before: PV found by listing every PV (no index, PV not named after its slot)",
            before_samples,
            &before,
        ),
        (
            "after: provisioned PV, GET by slot name",
            ids.len(),
            &by_name,
        ),
        (
            "after: PV not named after its slot, through the index",
            before_samples,
            &indexed,
        ),
    ] {
        println!(
            "| {what} | {k} | {} | {} | {:.1} | {:.1} |",
            ms(f.p50),
            ms(f.p99),
            f.pv_requests,
            f.all_requests
        );
    }
}
