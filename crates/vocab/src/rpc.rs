//! One wrapper every RPC goes through: logs method, volume and outcome with its duration, tells
//! the server's [`RpcObserver`] (metrics, the audit trail) and turns `DriverError` into a gRPC
//! status. Request bodies are never logged or passed on (they carry secrets).
//!
//! The observer is a value given to the server ([`crate::server::Services`]), not a process
//! global: [`crate::bounds::Bounded`] scopes it around each call, so [`traced`] finds it without
//! every service holding it, and two servers in one process (tests) keep separate observers.
//! This module knows nothing of metrics or audit; they implement [`RpcObserver`].
//!
//! Whatever a request put into an id or an error message is clipped before it is echoed
//! (status, log, audit) and escaped in logs, so a caller cannot make a log line long, forge one
//! with a newline, or push the status past what a gRPC client accepts in trailers.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Response, Status};
use tracing::{debug, info, warn};

use crate::error::DriverError;

/// One finished RPC, as observers see it: ids clipped to [`MAX_ECHO`], never the request.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'static str,
    /// The volume (or snapshot, or name) the call was about; empty when it names none.
    pub volume: &'a str,
    pub node: Option<&'a str>,
    pub code: tonic::Code,
    /// The error message for failures (clipped as the status is); empty on success.
    pub message: &'a str,
    /// `None` for a request refused at the boundary, before any handler ran.
    pub elapsed: Option<Duration>,
}

/// Told about every finished RPC (metrics count them, the audit trail records mutating ones).
pub trait RpcObserver: Send + Sync {
    fn on_rpc(&self, call: &Call<'_>);
}

/// Observers told in order; the server takes one of these (cloned per call, so shared).
#[derive(Clone)]
pub struct Observers(Arc<[Arc<dyn RpcObserver>]>);

impl Default for Observers {
    fn default() -> Self {
        Observers::new(Vec::new())
    }
}

impl Observers {
    pub fn new(observers: Vec<Arc<dyn RpcObserver>>) -> Self {
        Observers(observers.into())
    }

    /// Tells `call` to every observer.
    fn tell(&self, call: &Call<'_>) {
        for o in self.0.iter() {
            o.on_rpc(call);
        }
    }
}

tokio::task_local! {
    /// The serving server's observers, scoped by [`crate::bounds::Bounded`] around each call.
    static OBSERVERS: Observers;
}

/// Runs `fut` (one RPC) with `observers` told about it by [`traced`] and [`refused`].
pub async fn observed<F: Future>(observers: Observers, fut: F) -> F::Output {
    OBSERVERS.scope(observers, fut).await
}

/// Tells the observers in scope, if any (a service called outside a server has none).
fn notify(call: &Call<'_>) {
    let _ = OBSERVERS.try_with(|o| o.tell(call));
}

/// The code names gRPC itself uses (and Go's `codes.Code.String()`, so dashboards built for
/// other CSI drivers keep working).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
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
    notify(&Call {
        method,
        volume: "",
        node: None,
        code,
        message: &message,
        elapsed: None,
    });
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

/// Runs one RPC handler: logs it and tells the observers in scope (metrics, audit). Takes only
/// the ids worth recording, never the request.
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
    notify(&Call {
        method,
        volume: &clip(volume, MAX_ECHO),
        node: node.map(|n| clip(n, MAX_ECHO)).as_deref(),
        code,
        message: &message,
        elapsed: Some(elapsed),
    });
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

    #[test]
    fn code_names_match_grpc() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(code_name(tonic::Code::NotFound), "NotFound");
    }
}
