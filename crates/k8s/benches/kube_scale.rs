//! Fencing at cluster scale against a real kube-apiserver:
//! `scripts/test-kube cargo bench -p k8s --bench kube_scale`.
//!
//! Creates `RDS_CSI_SCALE_PVS` (default 10,000) PVs of a driver of its own, named after their
//! slot as the external-provisioner names them, and as many VolumeAttachments, through the
//! admin client 32 at a time; then measures, as the controller ServiceAccount under the shipped
//! RBAC: the attachment state rebuild at start (its two paged LISTs included), and
//! ControllerPublish + ControllerUnpublish latency and API requests, the old way (no index, a PV
//! not named after its slot: every PV is listed) and the new (one GET by name, one PATCH), with
//! and without the node cache (Node and CSINode read per publish, or not). Events are posted
//! from a queue after the publish answered; the bench waits for them between publishes
//! (untimed) and counts their requests apart.
//! Prints Markdown for docs/benchmarks.md. Numbers are measurements, not assertions; the
//! request counts are asserted by `kube_fencing` with small counts.

#![allow(clippy::unwrap_used)]

#[path = "../tests/kube_common.rs"]
mod kube_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fencing::{AttachmentManager, FencingConfig, PublishRequest, Sharing};
use k8s::KubeCluster;
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
    /// Requests the publish made itself (its event is posted after it answered).
    path_requests: f64,
    /// Requests the publish's event cost, posted from the queue.
    event_requests: f64,
}

/// Publishes then unpublishes each of `ids` on `node`; latency of each publish, and requests
/// per publish.
async fn publish_each(
    manager: &AttachmentManager,
    cluster: &KubeCluster,
    log: &RequestLog,
    ids: &[String],
    node: &str,
) -> Figures {
    let mut took = Vec::new();
    let (mut pv, mut path, mut events) = (0usize, 0usize, 0usize);
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
        // The event is posted from the queue, maybe before these lines run; wait for it
        // (untimed) so its request is counted, by its path, and does not overlap the next publish.
        cluster.events().flushed().await;
        let (for_events, others): (Vec<String>, Vec<String>) = log
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .partition(|r| r.contains("/events"));
        path += others.len();
        events += for_events.len();
        pv += pv_requests(log).len();
        manager.unpublish(id, Some(node)).await.unwrap();
        cluster.events().flushed().await;
    }
    took.sort();
    let n = ids.len() as f64;
    Figures {
        p50: pct(&took, 0.5),
        p99: pct(&took, 0.99),
        pv_requests: pv as f64 / n,
        path_requests: path as f64 / n,
        event_requests: events as f64 / n,
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
    let before = publish_each(&manager, &cluster, &log, &legacy, &node).await;

    let step = (n / samples.max(1)).max(1);
    let ids: Vec<String> = (0..n)
        .step_by(step)
        .take(samples)
        .map(|i| format!("default:{}", slots[i]))
        .collect();
    let by_name = publish_each(&manager, &cluster, &log, &ids, &node).await;

    let nodes = cluster.start_node_cache();
    while !cluster.node_cache_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cached = publish_each(&manager, &cluster, &log, &ids, &node).await;

    let index = cluster.start_pv_index();
    let t = Instant::now();
    while !cluster.pv_index_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let index_ready = t.elapsed();
    let indexed = publish_each(&manager, &cluster, &log, &legacy, &node).await;
    index.abort();
    nodes.abort();

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
        "| ControllerPublish (then Unpublish, not timed) | samples | p50 ms | p99 ms | PV requests per publish | requests of the publish | event requests, from the queue |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (what, k, f) in [
        (
            "PV found by listing every PV (no index, PV not named after its slot), no node cache",
            before_samples,
            &before,
        ),
        (
            "provisioned PV, GET by slot name; Node and CSINode read per publish",
            ids.len(),
            &by_name,
        ),
        (
            "provisioned PV, GET by slot name; node admitted from the node cache",
            ids.len(),
            &cached,
        ),
        (
            "PV not named after its slot, through the index; node cache",
            before_samples,
            &indexed,
        ),
    ] {
        println!(
            "| {what} | {k} | {} | {} | {:.1} | {:.1} | {:.1} |",
            ms(f.p50),
            ms(f.p99),
            f.pv_requests,
            f.path_requests,
            f.event_requests
        );
    }
}
