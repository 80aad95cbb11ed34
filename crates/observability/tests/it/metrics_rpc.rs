//! RPC and RouterOS metrics fed by a real controller: gRPC → `traced` → RPC observer, and the
//! RDS client's command observer, as a scrape shows them.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)] // `common` re-exports helpers this file does not use.
use crate::common;

use common::*;
use observability::metrics::Metrics;
use tonic::Code;
use vocab::rpc;

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn calls_are_counted_by_method_and_code_and_commands_by_backend_verb_outcome() {
    let metrics = Metrics::new();
    let observer = metrics.command_observer("default");
    let mut h = start_with(|o| {
        o.observer = Some(observer);
        o.rpc_observers = rpc::Observers::new(vec![metrics.rpc_observer()]);
    })
    .await;

    let name = pvc_name();
    let vol = created(&mut h.controller, create_req(&name, 1)).await;
    // Same name again: idempotent, still OK.
    h.controller
        .create_volume(create_req(&name, 1))
        .await
        .unwrap();
    let bad = h
        .controller
        .create_volume(create_req("", 1))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    h.controller
        .delete_volume(csi::v1::DeleteVolumeRequest {
            volume_id: vol.volume_id,
            ..Default::default()
        })
        .await
        .unwrap();

    let text = metrics.encode().unwrap();
    let expect = [
        (
            r#"rds_csi_rpc_requests_total{method="CreateVolume",code="OK"}"#,
            2.0,
        ),
        (
            r#"rds_csi_rpc_requests_total{method="CreateVolume",code="InvalidArgument"}"#,
            1.0,
        ),
        (
            r#"rds_csi_rpc_requests_total{method="DeleteVolume",code="OK"}"#,
            1.0,
        ),
        (
            r#"rds_csi_rpc_duration_seconds_count{method="CreateVolume"}"#,
            3.0,
        ),
        (
            r#"rds_csi_routeros_commands_total{backend="default",verb="disk-add",outcome="ok"}"#,
            1.0,
        ),
    ];
    for (series, want) in expect {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    let removes = sample(
        &text,
        r#"rds_csi_routeros_command_duration_seconds_count{backend="default",verb="disk-remove"}"#,
    );
    assert!(removes.is_some_and(|n| n >= 1.0), "{text}");
    h.stop().await;
}
