//! The audit trail and the log, as a controller and a node-shaped handler produce them:
//! mutating calls are audited with their outcome, and secrets sent with a request appear in
//! neither. One test per binary: it owns the global subscriber.

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
use vocab::DriverError;
use vocab::rpc::{Observers, observed, traced_on_node};

const SECRETS: [&str; 3] = [
    "s3cr3t-password-7f2a",
    "chap-secret-91bd",
    "-----BEGIN PRIVATE KEY-----QUJD",
];

fn secrets() -> HashMap<String, String> {
    HashMap::from([
        ("password".to_string(), SECRETS[0].to_string()),
        (
            "node.session.auth.password".to_string(),
            SECRETS[1].to_string(),
        ),
        ("key".to_string(), SECRETS[2].to_string()),
    ])
}

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

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn audit_lines(sink: &MemorySink) -> Vec<serde_json::Value> {
    sink.lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn mutating_calls_are_audited_and_secrets_reach_no_log() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let sink = Arc::new(MemorySink::default());
    let observers = Observers::new(vec![Arc::new(audit::Audit::new(sink.clone()))]);
    let mut h = start_with(|o| o.rpc_observers = observers.clone()).await;
    let name = pvc_name();
    let mut req = create_req(&name, 1);
    req.secrets = secrets();
    let vol = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    h.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: vol.volume_id.clone(),
            secrets: secrets(),
        })
        .await
        .unwrap();
    // Read-only calls are not audited.
    h.controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap();

    // A node handler that logs its whole request, as a careless one might, and fails.
    let stage = pb::NodeStageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: "/var/lib/kubelet/staging/x".into(),
        secrets: secrets(),
        ..Default::default()
    };
    // Run as the server runs a handler: with its observers in scope.
    let handler = traced_on_node("NodeStageVolume", &stage.volume_id, Some("node-a"), async {
        tracing::debug!(request = ?stage, "staging");
        Err::<(), _>(DriverError::Unavailable(format!(
            "no NVMe controller for {}",
            stage.volume_id
        )))
    });
    let result = observed(observers, handler).await;
    assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
    h.stop().await;

    let records = audit_lines(&sink);
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["CreateVolume", "DeleteVolume", "NodeStageVolume"],
        "{records:#?}"
    );
    assert_eq!(records[0]["volume"], name);
    assert_eq!(records[0]["outcome"], "success");
    assert_eq!(records[0]["code"], "OK");
    assert_eq!(records[1]["volume"], vol.volume_id);
    assert_eq!(records[2]["node"], "node-a");
    assert_eq!(records[2]["outcome"], "failure");
    assert_eq!(records[2]["code"], "Unavailable");
    assert!(
        records[2]["message"]
            .as_str()
            .unwrap()
            .contains("no NVMe controller")
    );
    for r in &records {
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'), "{r}");
        assert!(r["duration_ms"].as_f64().is_some(), "{r}");
    }

    let text = log.text();
    // The capture works: it saw the calls and the request the handler logged.
    assert!(text.contains(&name), "{text}");
    assert!(text.contains("staging"), "{text}");
    assert!(
        text.contains("password"),
        "secret keys may be named: {text}"
    );
    let audit_text = sink.lines().join("\n");
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "secret {secret:?} leaked into the log"
        );
        assert!(
            !audit_text.contains(secret),
            "secret {secret:?} leaked into the audit log"
        );
    }
}
