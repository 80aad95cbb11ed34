//! The audit trail: one JSON line per mutating operation and per security event.
//!
//! Kept apart from the diagnostic log because it answers a different question (who changed
//! what, when, and did it work) and must not depend on the log level or format an operator
//! picked. [`Audit`] is the trail as a value, given to whatever reports to it: it observes every
//! RPC through the server's observers ([`vocab::rpc::RpcObserver`], so no handler can forget a
//! record), the orphan reconciler's deletions ([`controller::orphans::OrphanObserver`]) and the node's
//! stale-mount recovery ([`RecoveryAudit`]); [`SecurityEventLayer`] turns the `security_event`
//! tracing events other crates emit (the `rds` SSH host-key check) into records. Records never
//! hold request bodies, so secrets cannot reach them. The modules that report events know nothing
//! of this one: it implements their observer traits.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use controller::orphans::{self, OrphanObserver};
use node::NodeObserver;
use vocab::error::{DriverError, Result};
use vocab::rpc::{Call, RpcObserver, code_name, millis};

/// The `target` every record carries, so a log pipeline reading stderr can route audit lines.
pub const TARGET: &str = "audit";

/// CSI calls that change state somewhere (RDS, node, attachments). Read-only calls are not
/// audited: they are many, and their metrics say enough.
pub const MUTATING_RPCS: [&str; 12] = [
    "CreateVolume",
    "DeleteVolume",
    "CreateSnapshot",
    "DeleteSnapshot",
    "ControllerExpandVolume",
    "ControllerPublishVolume",
    "ControllerUnpublishVolume",
    "NodeStageVolume",
    "NodeUnstageVolume",
    "NodePublishVolume",
    "NodeUnpublishVolume",
    "NodeExpandVolume",
];

pub fn is_mutating(method: &str) -> bool {
    MUTATING_RPCS.contains(&method)
}

/// One line of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// UTC, RFC 3339 with milliseconds.
    pub timestamp: String,
    pub target: &'static str,
    /// `volume_operation` or `security`.
    pub category: &'static str,
    /// The operation (`CreateVolume`, `StaleMountRecovery`) or security event
    /// (`ssh_host_key_mismatch`).
    pub event: String,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: &'static str,
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// gRPC code name (`OK`, `NotFound`, …) for operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Event-specific facts (expected and presented host key, address).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl AuditRecord {
    pub fn to_json(&self) -> String {
        // Only strings, numbers and a string map: serialization cannot fail, but a record is
        // never worth a panic.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"target":"{TARGET}","event":"audit_record_unserializable","error":{:?}}}"#,
                e.to_string()
            )
        })
    }
}

/// Where audit lines go. `write` gets one complete JSON object without the newline.
pub trait AuditSink: Send + Sync {
    fn write(&self, line: &str);
}

/// JSON lines to any writer (stderr, a file), one `write_all` per line so concurrent records
/// never interleave.
pub struct WriterSink<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> WriterSink<W> {
    pub fn new(out: W) -> Self {
        WriterSink {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> AuditSink for WriterSink<W> {
    fn write(&self, line: &str) {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(buf.as_bytes()).and_then(|()| out.flush()) {
            // The audit sink itself failing is worth saying, through the other channel.
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// Audit lines on stderr, next to the diagnostic log, told apart by `"target":"audit"`.
pub fn stderr_sink() -> Arc<dyn AuditSink> {
    Arc::new(WriterSink::new(std::io::stderr()))
}

/// Audit lines appended to a file (created if missing, mode 0600: records name volumes and
/// nodes).
pub fn file_sink(path: &Path) -> Result<Arc<dyn AuditSink>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            DriverError::Config(format!("cannot open audit log {}: {e}", path.display()))
        })?;
    Ok(Arc::new(WriterSink::new(file)))
}

/// Keeps lines in memory: for tests that assert what was audited.
#[derive(Default)]
pub struct MemorySink {
    lines: Mutex<Vec<String>>,
}

impl MemorySink {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl AuditSink for MemorySink {
    fn write(&self, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.to_string());
    }
}

/// Records as `info` events under target `audit`: what a program that opened no sink gets
/// ([`Audit::default`]), so its records still show in its log (and nowhere else).
struct TracingSink;

impl AuditSink for TracingSink {
    fn write(&self, line: &str) {
        tracing::info!(target: "audit", "{line}");
    }
}

/// The audit trail: a cheap handle on one sink, cloned into everything that reports to it.
#[derive(Clone)]
pub struct Audit {
    sink: Arc<dyn AuditSink>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit::new(Arc::new(TracingSink))
    }
}

impl Audit {
    pub fn new(sink: Arc<dyn AuditSink>) -> Self {
        Audit { sink }
    }

    pub fn emit(&self, record: &AuditRecord) {
        self.sink.write(&record.to_json());
    }

    pub fn operation(&self, op: &Operation<'_>) {
        self.emit(&operation_record(op, SystemTime::now()));
    }
}

/// Mutating RPCs are recorded; read-only ones are not (their metrics say enough).
impl RpcObserver for Audit {
    fn on_rpc(&self, call: &Call<'_>) {
        if is_mutating(call.method) {
            self.operation(&Operation {
                name: call.method,
                volume: call.volume,
                node: call.node,
                code: call.code,
                message: call.message,
                elapsed: call.elapsed,
            });
        }
    }
}

impl OrphanObserver for Audit {
    fn cleaned(&self, cleanup: &orphans::Cleanup<'_>) {
        let (code, message) = match cleanup.error {
            None => (tonic::Code::Ok, ""),
            Some(e) => (tonic::Code::Internal, e),
        };
        self.operation(&Operation {
            name: match cleanup.kind {
                orphans::Kind::Disk => orphans::AUDIT_DISK,
                orphans::Kind::File => orphans::AUDIT_FILE,
            },
            volume: cleanup.volume,
            node: None,
            code,
            message,
            elapsed: Some(cleanup.elapsed),
        });
    }
}

/// A finished operation: a mutating RPC or one the driver starts itself (stale-mount recovery,
/// orphan cleanup).
pub struct Operation<'a> {
    pub name: &'a str,
    pub volume: &'a str,
    pub node: Option<&'a str>,
    pub code: tonic::Code,
    /// The error message for failures; empty on success.
    pub message: &'a str,
    /// `None` when the reporter does not time the operation.
    pub elapsed: Option<Duration>,
}

fn operation_record(op: &Operation<'_>, at: SystemTime) -> AuditRecord {
    use tonic::Code;
    let (outcome, severity) = match op.code {
        Code::Ok => ("success", "info"),
        // The caller asked for something we refused by policy (RWO conflict, access).
        Code::PermissionDenied | Code::FailedPrecondition => ("denied", "warning"),
        // The request was wrong or stale; nothing broke.
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Aborted => ("failure", "warning"),
        _ => ("failure", "error"),
    };
    AuditRecord {
        timestamp: rfc3339_millis(at),
        target: TARGET,
        category: "volume_operation",
        event: op.name.to_string(),
        severity,
        outcome,
        volume: (!op.volume.is_empty()).then(|| op.volume.to_string()),
        node: op.node.filter(|n| !n.is_empty()).map(str::to_string),
        code: Some(code_name(op.code)),
        message: (!op.message.is_empty()).then(|| op.message.to_string()),
        duration_ms: op.elapsed.map(millis),
        details: BTreeMap::new(),
    }
}

/// Audits the node's automatic stale-mount recovery (which no RPC wraps) and passes every
/// observation on to `inner` (events, metrics), so it composes with other observers.
pub struct RecoveryAudit {
    node: String,
    inner: Arc<dyn NodeObserver>,
    audit: Audit,
}

/// What recovery records are called in the audit trail.
pub const RECOVERY: &str = "StaleMountRecovery";

impl RecoveryAudit {
    pub fn new(node: String, inner: Arc<dyn NodeObserver>, audit: Audit) -> Self {
        RecoveryAudit { node, inner, audit }
    }

    fn record(&self, volume: &str, code: tonic::Code, message: &str) {
        self.audit.operation(&Operation {
            name: RECOVERY,
            volume,
            node: Some(&self.node),
            code,
            message,
            elapsed: None,
        });
    }
}

impl NodeObserver for RecoveryAudit {
    fn stale_detected(&self, volume_id: &str, reason: &str) {
        self.inner.stale_detected(volume_id, reason);
    }
    fn recovered(&self, volume_id: &str, detail: &str) {
        self.record(volume_id, tonic::Code::Ok, "");
        tracing::debug!(volume = volume_id, detail, "recovery audited");
        self.inner.recovered(volume_id, detail);
    }
    fn recovery_failed(&self, volume_id: &str, error: &str) {
        self.record(volume_id, tonic::Code::Internal, error);
        self.inner.recovery_failed(volume_id, error);
    }
    fn connection_lost(&self, volume_id: &str, nqn: &str, state: &str) {
        self.inner.connection_lost(volume_id, nqn, state);
    }
    fn connection_restored(&self, volume_id: &str, nqn: &str) {
        self.inner.connection_restored(volume_id, nqn);
    }
    fn nvme_connected(&self, volume_id: &str, nqn: &str) {
        self.inner.nvme_connected(volume_id, nqn);
    }
    fn nvme_disconnected(&self, volume_id: &str, nqn: &str) {
        self.inner.nvme_disconnected(volume_id, nqn);
    }
    fn stage_failed(&self, volume_id: &str, pvc: Option<(String, String)>, error: &str) {
        // NodeStageVolume is already audited by `traced`; only pass it on.
        self.inner.stage_failed(volume_id, pvc, error);
    }
    fn paths_changed(
        &self,
        volume_id: &str,
        pvc: Option<(String, String)>,
        live: usize,
        total: usize,
        missing: &[String],
    ) {
        self.inner
            .paths_changed(volume_id, pvc, live, total, missing);
    }
}

/// A tracing layer that turns events carrying a `security_event` field into critical audit
/// records. Other crates only need to log such an event; they need not know about the sink.
pub struct SecurityEventLayer(pub Audit);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SecurityEventLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(record) = security_record(fields, SystemTime::now()) {
            self.0.emit(&record);
        }
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

fn security_record(fields: Fields, at: SystemTime) -> Option<AuditRecord> {
    let mut details = fields.0;
    let event = details.remove("security_event")?;
    let severity = match details.remove("severity").as_deref() {
        Some("info") => "info",
        Some("warning") => "warning",
        Some("error") => "error",
        _ => "critical",
    };
    let message = details.remove("message");
    Some(AuditRecord {
        timestamp: rfc3339_millis(at),
        target: TARGET,
        category: "security",
        event,
        severity,
        outcome: "denied",
        volume: None,
        node: None,
        code: None,
        message,
        duration_ms: None,
        details,
    })
}

/// `2025-01-31T12:34:56.789Z`; a clock before 1970 (broken) is written as the epoch.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t.max(UNIX_EPOCH)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn timestamps_are_utc_rfc3339_with_millis() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day of a century leap year) 23:59:59.999
        assert_eq!(
            rfc3339_millis(at(951_868_799, 999)),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_735_689_600, 5)),
            "2025-01-01T00:00:00.005Z"
        );
    }

    #[test]
    fn operation_records_carry_code_outcome_node_and_duration() {
        let rec = operation_record(
            &Operation {
                name: "ControllerPublishVolume",
                volume: "default:pvc-1",
                node: Some("node-a"),
                code: tonic::Code::FailedPrecondition,
                message: "attached to node-b",
                elapsed: Some(Duration::from_millis(12)),
            },
            UNIX_EPOCH,
        );
        let v: serde_json::Value = serde_json::from_str(&rec.to_json()).unwrap();
        assert_eq!(v["target"], "audit");
        assert_eq!(v["event"], "ControllerPublishVolume");
        assert_eq!(v["volume"], "default:pvc-1");
        assert_eq!(v["node"], "node-a");
        assert_eq!(v["code"], "FailedPrecondition");
        assert_eq!(v["outcome"], "denied");
        assert_eq!(v["message"], "attached to node-b");
        assert_eq!(v["duration_ms"], 12.0);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn successful_operations_without_node_omit_it() {
        let rec = operation_record(
            &Operation {
                name: "CreateVolume",
                volume: "pvc-1",
                node: None,
                code: tonic::Code::Ok,
                message: "",
                elapsed: None,
            },
            UNIX_EPOCH,
        );
        let v: serde_json::Value = serde_json::from_str(&rec.to_json()).unwrap();
        assert_eq!(v["outcome"], "success");
        assert_eq!(v["severity"], "info");
        assert!(v.get("node").is_none(), "{v}");
        assert!(v.get("message").is_none(), "{v}");
        assert!(v.get("duration_ms").is_none(), "untimed: {v}");
    }

    #[test]
    fn mutating_rpcs_are_exactly_the_state_changing_ones() {
        assert!(is_mutating("CreateVolume"));
        assert!(is_mutating("NodeUnpublishVolume"));
        assert!(!is_mutating("ListVolumes"));
        assert!(is_mutating("CreateSnapshot") && is_mutating("DeleteSnapshot"));
        assert!(!is_mutating("ListSnapshots"));
        assert!(!is_mutating("ControllerGetVolume"));
    }

    #[test]
    fn only_mutating_rpcs_are_recorded() {
        let sink = Arc::new(MemorySink::default());
        let audit = Audit::new(sink.clone());
        let call = |method| Call {
            method,
            volume: "default:pvc-1",
            node: Some("node-a"),
            code: tonic::Code::Ok,
            message: "",
            elapsed: Some(Duration::from_millis(4)),
        };
        audit.on_rpc(&call("ListVolumes"));
        audit.on_rpc(&call("ControllerPublishVolume"));
        let lines = sink.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["event"], "ControllerPublishVolume");
        assert_eq!(v["node"], "node-a");
        assert_eq!(v["duration_ms"], 4.0);
    }

    #[test]
    fn orphan_cleanups_are_recorded_by_kind_and_outcome() {
        let sink = Arc::new(MemorySink::default());
        let audit = Audit::new(sink.clone());
        let cleanup = |kind, error| orphans::Cleanup {
            kind,
            volume: "default:pvc-7",
            error,
            elapsed: Duration::from_millis(2),
        };
        audit.cleaned(&cleanup(orphans::Kind::Disk, None));
        audit.cleaned(&cleanup(orphans::Kind::File, Some("file busy")));
        let v: Vec<serde_json::Value> = sink
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["event"], orphans::AUDIT_DISK);
        assert_eq!(v[0]["outcome"], "success");
        assert_eq!(v[0]["volume"], "default:pvc-7");
        assert_eq!(v[1]["event"], orphans::AUDIT_FILE);
        assert_eq!(v[1]["outcome"], "failure");
        assert_eq!(v[1]["message"], "file busy");
    }

    #[test]
    fn security_events_from_any_crate_become_critical_records() {
        let sink = Arc::new(MemorySink::default());
        let audit = Audit::new(sink.clone());
        let subscriber = tracing_subscriber::registry().with(SecurityEventLayer(audit.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                security_event = "ssh_host_key_mismatch",
                severity = "critical",
                addr = %"10.0.0.1:22",
                expected = %"SHA256:aaa",
                got = %"SHA256:bbb",
                "RDS host key does not match the pinned key; connection refused"
            );
            tracing::error!(addr = %"10.0.0.1:22", "an ordinary error");
        });
        let lines = sink.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["event"], "ssh_host_key_mismatch");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["outcome"], "denied");
        assert_eq!(v["details"]["expected"], "SHA256:aaa");
        assert_eq!(v["details"]["got"], "SHA256:bbb");
        assert_eq!(v["details"]["addr"], "10.0.0.1:22");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("does not match the pinned key")
        );

        // Recovery is audited and still reaches the observer it wraps.
        #[derive(Default)]
        struct Counting(std::sync::atomic::AtomicUsize);
        impl NodeObserver for Counting {
            fn recovery_failed(&self, _v: &str, _e: &str) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let inner = Arc::new(Counting::default());
        let observer = RecoveryAudit::new("node-a".into(), inner.clone(), audit);
        NodeObserver::recovery_failed(&observer, "default:pvc-9", "mount: EBUSY");
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        let rec: serde_json::Value = sink
            .lines()
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["event"] == RECOVERY)
            .unwrap();
        assert_eq!(rec["volume"], "default:pvc-9");
        assert_eq!(rec["node"], "node-a");
        assert_eq!(rec["outcome"], "failure");
        assert_eq!(rec["message"], "mount: EBUSY");
    }
}
