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
}
