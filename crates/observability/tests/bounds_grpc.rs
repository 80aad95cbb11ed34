//! Request limits at the gRPC boundary, over the real socket against rds-sim: an oversize field
//! is INVALID_ARGUMENT naming the field and the limit, and nothing a caller sends makes a log
//! line, an audit record or a status long, or forges a log line. One test per binary: it owns
//! the global subscriber.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)] // `common` re-exports helpers this file does not use.
#[path = "../../controller/tests/it/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use csi::v1 as pb;
use observability::audit::{self, MemorySink};
use vocab::rpc::Observers;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn oversize_fields_are_refused_by_name_and_echoes_stay_small() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let sink = Arc::new(MemorySink::default());
    let audit = audit::Audit::new(sink.clone());
    let mut h = start_with(|o| o.rpc_observers = Observers::new(vec![Arc::new(audit)])).await;

    // A 1 MiB volume id, twenty times: each answer is the real error, short, without the value.
    let huge = "v".repeat(1 << 20);
    for _ in 0..20 {
        let err = h
            .controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: huge.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert_eq!(
            err.message(),
            "volume_id is 1048576 bytes; the limit is 128 bytes"
        );
    }

    // A map over 4 KiB: named, its size given, its content not.
    let mut req = create_req(&pvc_name(), 1);
    req.parameters = HashMap::from([("fsType".to_string(), "x".repeat(5000))]);
    let err = h.controller.create_volume(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "parameters holds 5006 bytes of keys and values; the limit is 4096 bytes"
    );

    // A newline in a name cannot forge a log line.
    let forged = "pvc-1\n2026-01-01T00:00:00Z ERROR forged line";
    let err = h
        .controller
        .create_volume(create_req(forged, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("name contains a control character"));

    // Within the limits, requests still work and are still logged with their ids.
    let name = pvc_name();
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    h.stop().await;

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(text.contains(&name), "{text}");
    assert!(text.contains("rpc refused at the boundary"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a request forged a log line:\n{text}"
    );
    assert!(
        !text.contains(&"v".repeat(300)),
        "a request id was echoed whole"
    );
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a {longest}-byte log line");
    let records = sink.lines();
    let refused = records
        .iter()
        .filter(|r| r.contains("InvalidArgument"))
        .count();
    assert_eq!(refused, 22, "{records:#?}");
    assert!(records.iter().any(|r| r.contains(&name)));
    assert!(v.volume_id.ends_with(&name), "{}", v.volume_id);
    let audit_bytes: usize = records.iter().map(String::len).sum();
    assert!(audit_bytes < 32 * 1024, "audit grew to {audit_bytes} bytes");
}
