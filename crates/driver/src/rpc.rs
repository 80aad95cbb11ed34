//! One wrapper every RPC goes through: logs method, volume and outcome with its duration,
//! feeds the metrics observer, audits calls that change state, and turns `DriverError` into a
//! gRPC status. Request bodies are never logged or audited (they carry secrets).
//!
//! Whatever a request put into an id or an error message is clipped before it is echoed
//! (status, log, audit) and escaped in logs, so a caller cannot make a log line long, forge one
//! with a newline, or push the status past what a gRPC client accepts in trailers.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tonic::{Response, Status};
use tracing::{debug, info, warn};

use crate::audit;
use crate::error::DriverError;

/// Told about every finished RPC (metrics hook).
pub trait RpcObserver: Send + Sync {
    fn on_rpc(&self, method: &'static str, code: tonic::Code, elapsed: Duration);
}

static OBSERVER: OnceLock<Arc<dyn RpcObserver>> = OnceLock::new();

/// Installs the process-wide RPC observer (first call wins).
pub fn set_observer(o: Arc<dyn RpcObserver>) {
    let _ = OBSERVER.set(o);
}

/// Most bytes of request-derived text one log field or audit record carries.
pub const MAX_ECHO: usize = 256;
/// Most bytes of a status message (gRPC clients refuse trailers over 8 KiB by default).
pub const MAX_STATUS: usize = 1024;

/// `s` cut to at most `limit` bytes (on a character boundary), saying how long it was.
pub fn clip(s: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= limit {
        return s.into();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len()).into()
}

/// Request-derived text for a log field: clipped, control characters escaped (`\n`), so a
/// text-format log line stays one line whatever the caller sent.
pub fn log_safe(s: &str) -> String {
    let clipped = clip(s, MAX_ECHO);
    if !clipped.chars().any(char::is_control) {
        return clipped.into_owned();
    }
    clipped
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Milliseconds rounded to microseconds, so logs and audit show `1.23`, not float noise.
pub fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_micros() as f64) / 1e3
}

fn status(e: DriverError) -> Status {
    let code = e.code();
    let message = e.to_string();
    Status::new(code, clip(&message, MAX_STATUS).into_owned())
}

/// A request refused at the boundary (a field over its limit): logged, counted and audited as
/// the handler's own failures are, naming no request value.
pub fn refused(method: &'static str, e: DriverError) -> Status {
    let code = e.code();
    let message = e.to_string();
    warn!(method, code = ?code, error = %log_safe(&message), "rpc refused at the boundary");
    if let Some(o) = OBSERVER.get() {
        o.on_rpc(method, code, Duration::ZERO);
    }
    if audit::is_mutating(method) {
        audit::operation(&audit::Operation {
            name: method,
            volume: "",
            node: None,
            code,
            message: &message,
            elapsed: None,
        });
    }
    status(e)
}

/// [`traced_on_node`] for calls that name no node.
pub async fn traced<T>(
    method: &'static str,
    volume: &str,
    fut: impl Future<Output = Result<T, DriverError>>,
) -> Result<Response<T>, Status> {
    traced_on_node(method, volume, None, fut).await
}

/// Runs one RPC handler: logs it, tells the observer (metrics) and, for calls that change
/// state, writes the audit record. Takes only the ids worth recording, never the request.
pub async fn traced_on_node<T>(
    method: &'static str,
    volume: &str,
    node: Option<&str>,
    fut: impl Future<Output = Result<T, DriverError>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    let volume_log = log_safe(volume);
    let node_log = log_safe(node.unwrap_or_default());
    debug!(method, volume = %volume_log, node = %node_log, "rpc start");
    let result = fut.await;
    let elapsed = start.elapsed();
    let ms = millis(elapsed);
    let (code, message) = match &result {
        Ok(_) => {
            info!(method, volume = %volume_log, node = %node_log, elapsed_ms = ms, "rpc ok");
            (tonic::Code::Ok, String::new())
        }
        Err(e) => {
            let message = clip(&e.to_string(), MAX_STATUS).into_owned();
            warn!(method, volume = %volume_log, node = %node_log, elapsed_ms = ms, code = ?e.code(), error = %log_safe(&message), "rpc failed");
            (e.code(), message)
        }
    };
    if let Some(o) = OBSERVER.get() {
        o.on_rpc(method, code, elapsed);
    }
    if audit::is_mutating(method) {
        audit::operation(&audit::Operation {
            name: method,
            volume: &clip(volume, MAX_ECHO),
            node: node.map(|n| clip(n, MAX_ECHO)).as_deref(),
            code,
            message: &message,
            elapsed: Some(elapsed),
        });
    }
    result.map(Response::new).map_err(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_clipped_on_a_char_boundary_and_escaped() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(200);
        let c = clip(&long, 11);
        assert!(c.starts_with("ééééé…"), "{c}");
        assert!(c.ends_with("(400 bytes in all)"), "{c}");
        assert_eq!(log_safe("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert!(log_safe(&"x".repeat(1 << 20)).len() < MAX_ECHO + 32);
    }

    #[test]
    fn milliseconds_carry_no_float_noise() {
        assert_eq!(millis(Duration::from_nanos(12_300)).to_string(), "0.012");
        assert_eq!(millis(Duration::from_micros(1_230)).to_string(), "1.23");
        assert_eq!(millis(Duration::from_secs(2)).to_string(), "2000");
    }

    #[test]
    fn a_status_message_is_clipped() {
        let s = status(DriverError::NotFound(format!(
            "volume {} not found",
            "v".repeat(1 << 20)
        )));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(s.message().len() < MAX_STATUS + 32, "{}", s.message().len());
    }
}
