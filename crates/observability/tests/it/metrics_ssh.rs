//! SSH connection metrics read from the transport at scrape time: connected while the
//! connection is up, 0 after the RDS drops it, and one reconnect once a command needs it again.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use observability::metrics::Metrics;
use routeros::Slot;
use sandbox::{SandboxOptions, start_sim};
use vocab::Backends;
use vocab::config::build_backend;

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn connection_state_and_reconnects_follow_the_transport() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), "rds1", &SandboxOptions::default())
        .await
        .unwrap();
    let metrics = Metrics::new();
    let backend = build_backend(&sim.settings, Some(metrics.command_observer("rds1"))).unwrap();
    let backends = Arc::new(Backends::new("rds1", vec![backend]).unwrap());
    metrics.watch_backends(backends.clone());
    let client = backends.get("rds1").unwrap().client.clone();

    let connected = r#"rds_csi_rds_ssh_connected{backend="rds1"}"#;
    let reconnects = r#"rds_csi_rds_ssh_reconnects_total{backend="rds1"}"#;
    let text = metrics.encode().unwrap();
    assert_eq!(sample(&text, connected), Some(0.0), "{text}");

    client
        .list_disks(&Slot::new("pvc-").unwrap())
        .await
        .unwrap();
    let text = metrics.encode().unwrap();
    assert_eq!(sample(&text, connected), Some(1.0), "{text}");
    assert_eq!(sample(&text, reconnects), Some(0.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"rds_csi_routeros_commands_total{backend="rds1",verb="disk-print",outcome="ok"}"#
        ),
        Some(1.0),
        "{text}"
    );

    // The RDS reboots: the transport notices the closed connection without sending anything.
    sim.sim.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics.encode().unwrap();
        if sample(&text, connected) == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection never reported down:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    client
        .list_disks(&Slot::new("pvc-").unwrap())
        .await
        .unwrap();
    let text = metrics.encode().unwrap();
    assert_eq!(sample(&text, connected), Some(1.0), "{text}");
    assert_eq!(sample(&text, reconnects), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"rds_csi_rds_ssh_connect_failures_total{backend="rds1"}"#
        ),
        Some(0.0),
        "{text}"
    );
    sim.sim.shutdown().await;
}
