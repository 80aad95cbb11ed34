//! Pool figures against rds-sim over real SSH: size, used, free and the bytes provisioned to
//! `pvc-` volumes as the RDS reports them after a refresh; a scrape itself sends nothing to the
//! RDS; a host key mismatch is counted under its own reason; figures older than the stated
//! freshness are withdrawn instead of shown as current.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use observability::metrics::{Metrics, PoolCache, PoolCollector};
use routeros::{ByteSize, DiskAdd, FilePath, Slot};
use sandbox::{SandboxOptions, start_sim};
use vocab::Backends;
use vocab::config::build_backend;

const GIB: u64 = 1 << 30;

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn disk(slot: &str, dir: &str, gib: u64) -> DiskAdd {
    DiskAdd {
        slot: Slot::new(slot).unwrap(),
        file_path: FilePath::new(&format!("{dir}/{slot}.img")).unwrap(),
        file_size: Some(ByteSize(gib * GIB)),
        nvme: None,
        copy_from: None,
    }
}

#[tokio::test]
async fn figures_follow_the_rds_and_scrapes_send_no_commands() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SandboxOptions {
        capacity: 100 * GIB,
        ..Default::default()
    };
    let sim = start_sim(dir.path(), "rds1", &opts).await.unwrap();
    let backend = build_backend(&sim.settings, None).unwrap();
    let backends = Arc::new(Backends::new("rds1", vec![backend]).unwrap());
    let client = backends.get("rds1").unwrap().client.clone();
    // 30 GiB of driver volumes, 10 GiB of something else (not the driver's: not provisioned).
    client
        .create_disk(&disk("pvc-a", "/storage-pool/metal-csi", 10))
        .await
        .unwrap();
    client
        .create_disk(&disk("pvc-b", "/storage-pool/other", 20))
        .await
        .unwrap();
    client
        .create_disk(&disk("backup-1", "/storage-pool/metal-csi", 10))
        .await
        .unwrap();

    let metrics = Metrics::new();
    let cache = PoolCache::new(
        backends.clone(),
        Duration::from_secs(300),
        Duration::from_secs(10),
    );
    metrics.register_collector(Box::new(PoolCollector::new(cache.clone())));
    let text = metrics.encode().unwrap();
    let labels = r#"{backend="rds1",pool="storage-pool"}"#;
    assert_eq!(
        sample(&text, &format!("rds_csi_pool_size_bytes{labels}")),
        None,
        "nothing read yet:\n{text}"
    );
    assert_eq!(
        sample(&text, r#"rds_csi_pool_refresh_success{backend="rds1"}"#),
        Some(0.0)
    );

    cache.refresh().await;
    let before = client.round_trips();
    let text = metrics.encode().unwrap();
    let _ = metrics.encode().unwrap();
    assert_eq!(
        client.round_trips(),
        before,
        "a scrape must not query the RDS"
    );
    let get = |name: &str| sample(&text, &format!("rds_csi_pool_{name}{labels}")).unwrap();
    assert_eq!(get("size_bytes"), (100 * GIB) as f64, "{text}");
    assert_eq!(get("used_bytes"), (40 * GIB) as f64, "{text}");
    assert_eq!(get("free_bytes"), (60 * GIB) as f64, "{text}");
    assert_eq!(get("provisioned_bytes"), (30 * GIB) as f64, "{text}");
    assert!((get("overcommit_ratio") - 0.3).abs() < 1e-9, "{text}");
    assert_eq!(
        sample(&text, r#"rds_csi_pool_refresh_success{backend="rds1"}"#),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            r#"rds_csi_pool_refresh_timestamp_seconds{backend="rds1"}"#
        )
        .unwrap()
            > 1.7e9
    );

    // A deleted volume shows at the next refresh, not before.
    client
        .delete_disk(&Slot::new("pvc-b").unwrap())
        .await
        .unwrap();
    let text = metrics.encode().unwrap();
    assert_eq!(
        sample(&text, &format!("rds_csi_pool_provisioned_bytes{labels}")),
        Some((30 * GIB) as f64)
    );
    cache.refresh().await;
    let text = metrics.encode().unwrap();
    assert_eq!(
        sample(&text, &format!("rds_csi_pool_provisioned_bytes{labels}")),
        Some((10 * GIB) as f64),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("rds_csi_pool_free_bytes{labels}")),
        Some((80 * GIB) as f64),
        "{text}"
    );
}

#[tokio::test]
async fn host_key_mismatch_is_counted_and_stale_figures_are_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), "rds1", &SandboxOptions::default())
        .await
        .unwrap();
    // Short deadlines so the failing refresh below ends well inside `stale_after`.
    let mut settings = sim.settings.clone();
    settings.connect_timeout = Duration::from_secs(1);
    settings.read_timeout = Duration::from_secs(1);
    let good = build_backend(&settings, None).unwrap();
    let mut wrong = settings.clone();
    wrong.name = "rds2".into();
    wrong.host_key = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let bad = build_backend(&wrong, None).unwrap();
    let backends = Arc::new(Backends::new("rds1", vec![good, bad]).unwrap());
    let metrics = Metrics::new();
    let stale_after = Duration::from_secs(6);
    let cache = PoolCache::new(backends, stale_after, Duration::from_secs(2));
    metrics.register_collector(Box::new(PoolCollector::new(cache.clone())));

    cache.refresh().await;
    let fetched = tokio::time::Instant::now();
    let text = metrics.encode().unwrap();
    for (reason, want) in [
        ("host_key_mismatch", 1.0),
        ("unreachable", 0.0),
        ("auth", 0.0),
        ("timeout", 0.0),
        ("routeros", 0.0),
    ] {
        let series =
            format!(r#"rds_csi_pool_refresh_failures_total{{backend="rds2",reason="{reason}"}}"#);
        assert_eq!(sample(&text, &series), Some(want), "{series}:\n{text}");
    }
    assert_eq!(
        sample(&text, r#"rds_csi_pool_refresh_success{backend="rds2"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"rds_csi_pool_refresh_success{backend="rds1"}"#),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            r#"rds_csi_pool_size_bytes{backend="rds1",pool="storage-pool"}"#
        )
        .is_some(),
        "{text}"
    );
    assert!(
        !text.contains(r#"rds_csi_pool_size_bytes{backend="rds2""#),
        "{text}"
    );

    // The RDS stops answering: the last figures stay for `stale_after`, then disappear.
    sim.sim.shutdown().await;
    cache.refresh().await;
    let text = metrics.encode().unwrap();
    assert!(
        fetched.elapsed() < stale_after,
        "the failing refresh took too long to test this"
    );
    assert!(
        sample(
            &text,
            r#"rds_csi_pool_size_bytes{backend="rds1",pool="storage-pool"}"#
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"rds_csi_pool_refresh_success{backend="rds1"}"#),
        Some(0.0)
    );
    tokio::time::sleep_until(fetched + stale_after + Duration::from_millis(100)).await;
    let text = metrics.encode().unwrap();
    assert_eq!(
        sample(
            &text,
            r#"rds_csi_pool_size_bytes{backend="rds1",pool="storage-pool"}"#
        ),
        None,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"rds_csi_pool_overcommit_ratio{backend="rds1",pool="storage-pool"}"#
        ),
        None,
        "{text}"
    );
}
