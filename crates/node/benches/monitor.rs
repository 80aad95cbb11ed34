//! Node monitor cost: `cargo bench -p node --bench monitor`.
//!
//! One monitor pass over N staged two-path volumes, and one NodeGetVolumeStats among them (what
//! kubelet asks of every volume about once a minute), on the fake kernel of the node tests (a
//! sysfs-shaped tree on the local filesystem, a mountinfo file): what the background monitor
//! spends every `--node-monitor-interval` on a node with N volumes while all is well. The
//! tree is on tmpfs or disk, not sysfs, so the absolute figures are only indicative; the growth
//! with N is the point. Prints Markdown for docs/benchmarks.md. Measurements, not assertions.

#![allow(clippy::unwrap_used, dead_code, unused_imports)]
include!("../tests/it/common/node_env.rs");

const TWO_PATHS: [(&str, &str); 1] = [("nvmeAddresses", "10.0.0.1,10.0.1.1")];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| staged volumes (2 paths each) | one monitor pass, median of 5 | per volume | one NodeGetVolumeStats, median of 21 |"
    );
    println!("|---|---|---|---|");
    for n in [10usize, 50, 100, 200] {
        rt.block_on(async {
            let e = Env::with_config(|c| c.max_volumes = 0);
            e.kernel.set_multipath(true);
            for i in 0..n {
                let id = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
                let vol = format!("default:pvc-{id}");
                let nqn = format!("nqn.2000-02.com.mikrotik:pvc-{id}");
                e.stage_with(&vol, &nqn, fs_cap("ext4", &[]), &TWO_PATHS)
                    .await
                    .unwrap();
            }
            assert_eq!(e.node.staged_volumes().len(), n);
            e.node.monitor_pass().await;
            let mut times = Vec::new();
            for _ in 0..5 {
                let t = std::time::Instant::now();
                let report = e.node.monitor_pass().await;
                times.push(t.elapsed());
                assert!(
                    report
                        .checks
                        .iter()
                        .all(|(_, c)| *c == VolumeCheck::Healthy),
                    "{report:?}"
                );
            }
            times.sort();
            let median = times[2];
            let mut stats = Vec::new();
            for i in 0..21 {
                let id = format!("{:08x}-0000-4000-8000-{:012x}", i % n, i % n);
                let vol = format!("default:pvc-{id}");
                let t = std::time::Instant::now();
                let st = e.stats(&vol, &e.staging(&vol)).await.unwrap();
                stats.push(t.elapsed());
                assert!(!st.volume_condition.unwrap().abnormal);
            }
            stats.sort();
            println!(
                "| {n} | {:.1} ms | {:.0} µs | {:.2} ms |",
                median.as_secs_f64() * 1e3,
                median.as_secs_f64() * 1e6 / n as f64,
                stats[10].as_secs_f64() * 1e3
            );
        });
    }
}
