//! Typed RDS operations built from `routeros` commands.

use std::sync::Arc;
use std::time::Duration;

use crate::exec::Exec;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Deadline for read-only commands (`print`).
    pub read_timeout: Duration,
    /// Deadline for mutating commands (`add`, `set`, `remove`).
    pub write_timeout: Duration,
    /// Attempts for retryable (transport) errors, including the first.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// One command as it ran: for metrics, audit and the demo's transcript.
#[derive(Debug, Clone)]
pub struct CommandEvent {
    pub verb: &'static str,
    pub line: String,
    pub duration: Duration,
    /// `ok`, `failure`, `transport`, `timeout`.
    pub outcome: &'static str,
}

pub trait CommandObserver: Send + Sync {
    fn on_command(&self, event: &CommandEvent);
}

/// Result of `create_disk`: the verified disk, and whether this call created it.
#[derive(Debug, Clone)]
pub struct CreateOutcome {
    pub disk: routeros::Disk,
    pub created: bool,
}

pub struct RdsClient {
    _exec: Arc<dyn Exec>,
    _config: ClientConfig,
}
