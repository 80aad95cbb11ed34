//! One error type for the crate, with a class that decides retries and gRPC codes.

use std::time::Duration;

/// Coarse error classes; the driver maps each to exactly one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The item does not exist (→ NOT_FOUND). Only ever from RouterOS saying so.
    NotFound,
    /// Out of space on the RDS (→ RESOURCE_EXHAUSTED).
    Exhausted,
    /// Connection, authentication, host key or deadline problems (→ UNAVAILABLE). Never
    /// "not found", never success.
    Transport,
    /// RouterOS rejected the input (→ INVALID_ARGUMENT).
    Rejected,
    /// The item exists already (→ ALREADY_EXISTS where the caller cares).
    AlreadyExists,
    /// Anything else RouterOS refused, or output we could not parse (→ INTERNAL).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum RdsError {
    #[error("RDS {addr}: connect failed: {reason}")]
    Connect { addr: String, reason: String },
    #[error("RDS {addr}: host key fingerprint mismatch (expected {expected}, got {got})")]
    HostKeyMismatch { addr: String, expected: String, got: String },
    #[error("RDS {addr}: authentication failed for user {user}")]
    Auth { addr: String, user: String },
    #[error("RDS transport error running `{verb}`: {reason}")]
    Transport { verb: &'static str, reason: String },
    #[error("RDS command `{verb}` timed out after {after:?}")]
    Timeout { verb: &'static str, after: Duration },
    #[error("RouterOS refused `{verb}`: {failure}")]
    Failure { verb: &'static str, failure: routeros::Failure },
    #[error("unexpected RouterOS output for `{verb}`: {source}")]
    Parse { verb: &'static str, source: routeros::ParseError },
    #[error("invalid value: {0}")]
    Value(#[from] routeros::ValueError),
    #[error("{0}")]
    Verify(String),
    #[error("SSH configuration: {0}")]
    Config(String),
}

impl RdsError {
    pub fn class(&self) -> ErrorClass {
        use routeros::FailureKind as K;
        match self {
            RdsError::Connect { .. }
            | RdsError::HostKeyMismatch { .. }
            | RdsError::Auth { .. }
            | RdsError::Transport { .. }
            | RdsError::Timeout { .. } => ErrorClass::Transport,
            RdsError::Failure { failure, .. } => match failure.kind {
                K::NotFound => ErrorClass::NotFound,
                K::NoSpace => ErrorClass::Exhausted,
                K::AlreadyExists => ErrorClass::AlreadyExists,
                K::Rejected => ErrorClass::Rejected,
                K::InUse | K::Other => ErrorClass::Internal,
            },
            RdsError::Value(_) => ErrorClass::Rejected,
            RdsError::Parse { .. } | RdsError::Verify(_) | RdsError::Config(_) => {
                ErrorClass::Internal
            }
        }
    }

    /// Worth another attempt after backoff: transport trouble only.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Transport
            && !matches!(self, RdsError::HostKeyMismatch { .. } | RdsError::Auth { .. })
    }
}
