//! Fencing metrics are the attachment manager's own numbers, read at scrape time: a publish, a
//! refused second node, a migration and an unpublish each show up in the next scrape.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use fencing::{AttachmentManager, FencingConfig, MemoryCluster, PublishRequest, Sharing};
use observability::metrics::Metrics;

const V: &str = "default:pvc-0b9e3c0e-1f0a-4c6e-9d55-6a1c2f3e4d5a";
const BLOCK: &str = "default:pvc-7d0c1a3e-5b2f-4e8a-9c6d-1f2e3a4b5c6d";

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn req(volume: &str, node: &str, sharing: Sharing) -> PublishRequest {
    PublishRequest {
        volume_id: volume.to_string(),
        node: node.to_string(),
        sharing,
        volume_context: HashMap::new(),
    }
}

async fn setup() -> (Arc<MemoryCluster>, Arc<AttachmentManager>, Arc<Metrics>) {
    let cluster = Arc::new(MemoryCluster::new());
    let manager = Arc::new(AttachmentManager::new(
        cluster.clone(),
        FencingConfig::default(),
    ));
    manager.rebuild().await.unwrap();
    let metrics = Metrics::new();
    metrics.watch_fencing(manager.clone());
    (cluster, manager, metrics)
}

#[tokio::test]
async fn every_fencing_family_is_listed_at_zero_before_anything_happens() {
    let (_cluster, _manager, metrics) = setup().await;
    let text = metrics.encode().unwrap();
    for gauge in [
        "rds_csi_fencing_attached_volumes",
        "rds_csi_fencing_migrations_in_flight",
    ] {
        assert!(text.contains(&format!("# TYPE {gauge} gauge")), "{text}");
        assert_eq!(sample(&text, gauge), Some(0.0), "{gauge} in\n{text}");
    }
    for counter in [
        "attaches",
        "detaches",
        "conflicts",
        "stale_attachments_cleared",
        "migrations_started",
        "migrations_completed",
        "migration_timeouts",
        "stuck_volume_attachments",
        "persist_failures",
        "unpersisted",
        "reconcile_errors",
        "events_dropped",
    ] {
        let name = format!("rds_csi_fencing_{counter}");
        assert!(text.contains(&format!("# TYPE {name} counter")), "{text}");
        assert_eq!(
            sample(&text, &format!("{name}_total")),
            Some(0.0),
            "{name} in\n{text}"
        );
    }
}

#[tokio::test]
async fn publish_conflict_and_unpublish_are_read_from_the_manager() {
    let (cluster, manager, metrics) = setup().await;
    cluster.add_pv("pv-data", V, Some(("apps", "data")));

    manager
        .publish(&req(V, "node-a", Sharing::SingleNode))
        .await
        .unwrap();
    let refused = manager
        .publish(&req(V, "node-b", Sharing::SingleNode))
        .await;
    assert!(refused.is_err(), "second node must be refused");

    let text = metrics.encode().unwrap();
    for (series, want) in [
        ("rds_csi_fencing_attached_volumes", 1.0),
        ("rds_csi_fencing_attaches_total", 1.0),
        ("rds_csi_fencing_conflicts_total", 1.0),
        ("rds_csi_fencing_detaches_total", 0.0),
        ("rds_csi_fencing_unpersisted_total", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }

    manager.unpublish(V, Some("node-a")).await.unwrap();
    let text = metrics.encode().unwrap();
    for (series, want) in [
        ("rds_csi_fencing_attached_volumes", 0.0),
        ("rds_csi_fencing_attaches_total", 1.0),
        ("rds_csi_fencing_conflicts_total", 1.0),
        ("rds_csi_fencing_detaches_total", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    // The scrape shows exactly what the manager reports.
    let stats = manager.stats();
    assert_eq!(
        sample(&text, "rds_csi_fencing_detaches_total"),
        Some(stats.detaches_total as f64)
    );
}

#[tokio::test]
async fn migrations_in_flight_follow_the_attachments_and_volumes_without_pv_are_counted() {
    let (_cluster, manager, metrics) = setup().await;
    // No PV for BLOCK: every change is kept in memory only.
    manager
        .publish(&req(BLOCK, "node-a", Sharing::MultiNode))
        .await
        .unwrap();
    manager
        .publish(&req(BLOCK, "node-b", Sharing::MultiNode))
        .await
        .unwrap();
    let text = metrics.encode().unwrap();
    for (series, want) in [
        ("rds_csi_fencing_migrations_in_flight", 1.0),
        ("rds_csi_fencing_migrations_started_total", 1.0),
        ("rds_csi_fencing_attaches_total", 2.0),
        ("rds_csi_fencing_unpersisted_total", 2.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }

    manager.unpublish(BLOCK, Some("node-a")).await.unwrap();
    let text = metrics.encode().unwrap();
    for (series, want) in [
        ("rds_csi_fencing_migrations_in_flight", 0.0),
        ("rds_csi_fencing_migrations_completed_total", 1.0),
        ("rds_csi_fencing_attached_volumes", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
}
