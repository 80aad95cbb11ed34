//! The one seam between command logic and transport.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::RdsError;

/// What a command printed, on both streams, and how it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_status: Option<u32>,
}

pub type ExecFuture<'a> = Pin<Box<dyn Future<Output = Result<ExecOutput, RdsError>> + Send + 'a>>;

/// What the transport knows about its connection right now. Read at scrape time, so the
/// exported state and counts can never drift from the transport's own view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// A connection is open and not known to be broken.
    pub connected: bool,
    /// Connections established since start, the first one included.
    pub connects: u64,
    /// Connection attempts that failed (TCP, handshake, host key, authentication, timeout).
    pub connect_failures: u64,
}

impl TransportStats {
    /// Connections made after the first: each one replaced a connection that failed.
    pub fn reconnects(&self) -> u64 {
        self.connects.saturating_sub(1)
    }
}

/// Runs one command line with a deadline. Implementations reconnect as needed and report
/// transport trouble as `RdsError::{Connect, Transport, Timeout, …}`.
pub trait Exec: Send + Sync {
    fn exec<'a>(&'a self, verb: &'static str, line: &'a str, deadline: Duration) -> ExecFuture<'a>;
    /// Cheap liveness check that does not run a RouterOS command (opens and closes a
    /// session). RouterOS does not answer SSH keepalive requests.
    fn ping(
        &self,
        deadline: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), RdsError>> + Send + '_>>;
    /// Human-readable target for logs (`admin@10.0.0.1:22`).
    fn target(&self) -> String;
    /// Connection state for metrics; `None` for transports without a connection (test fakes).
    fn stats(&self) -> Option<TransportStats> {
        None
    }
}
