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
    HostKeyMismatch {
        addr: String,
        expected: String,
        got: String,
    },
    #[error("RDS {addr}: authentication failed for user {user}")]
    Auth { addr: String, user: String },
    #[error("RDS transport error running `{verb}`: {reason}")]
    Transport { verb: &'static str, reason: String },
    #[error("RDS command `{verb}` timed out after {after:?}")]
    Timeout { verb: &'static str, after: Duration },
    #[error("RouterOS refused `{verb}`: {failure}")]
    Failure {
        verb: &'static str,
        failure: routeros::Failure,
    },
    #[error("unexpected RouterOS output for `{verb}`: {source}")]
    Parse {
        verb: &'static str,
        source: routeros::ParseError,
    },
    #[error("invalid value: {0}")]
    Value(#[from] routeros::ValueError),
    #[error("{0}")]
    Verify(String),
    /// The RDS answered and the item is not there (the client's own conclusion from a
    /// successful print, never from a transport error).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid RouterOS but not something the driver will do (e.g. shrinking).
    #[error("{0}")]
    Rejected(String),
    /// A resize asked for less than the disk has; shrinking would cut data off the end, so the
    /// client refuses. Typed so callers can answer "already large enough" without parsing text.
    #[error("shrinking is not supported (current {current} bytes, requested {requested} bytes)")]
    WouldShrink {
        current: u64,
        requested: u64,
        disk: Box<routeros::Disk>,
    },
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
            RdsError::NotFound(_) => ErrorClass::NotFound,
            RdsError::Value(_) | RdsError::Rejected(_) | RdsError::WouldShrink { .. } => {
                ErrorClass::Rejected
            }
            RdsError::Parse { .. } | RdsError::Verify(_) | RdsError::Config(_) => {
                ErrorClass::Internal
            }
        }
    }

    /// Worth another attempt after backoff: transport trouble only.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Transport
            && !matches!(
                self,
                RdsError::HostKeyMismatch { .. } | RdsError::Auth { .. }
            )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use routeros::{Failure, FailureKind};

    fn failure(kind: FailureKind) -> RdsError {
        RdsError::Failure {
            verb: "disk-add",
            failure: Failure {
                kind,
                message: "x".into(),
            },
        }
    }

    #[test]
    fn transport_trouble_is_retryable_except_identity_problems() {
        let addr = || "rds:22".to_string();
        let retryable = [
            RdsError::Connect {
                addr: addr(),
                reason: "refused".into(),
            },
            RdsError::Transport {
                verb: "disk-print",
                reason: "eof".into(),
            },
            RdsError::Timeout {
                verb: "disk-print",
                after: Duration::from_secs(1),
            },
        ];
        for e in retryable {
            assert_eq!(e.class(), ErrorClass::Transport, "{e}");
            assert!(e.is_retryable(), "{e}");
        }
        let fatal = [
            RdsError::HostKeyMismatch {
                addr: addr(),
                expected: "a".into(),
                got: "b".into(),
            },
            RdsError::Auth {
                addr: addr(),
                user: "admin".into(),
            },
        ];
        for e in fatal {
            assert_eq!(e.class(), ErrorClass::Transport, "{e}");
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn routeros_failures_map_to_their_class_and_are_never_retried() {
        let cases = [
            (FailureKind::NotFound, ErrorClass::NotFound),
            (FailureKind::NoSpace, ErrorClass::Exhausted),
            (FailureKind::AlreadyExists, ErrorClass::AlreadyExists),
            (FailureKind::Rejected, ErrorClass::Rejected),
            (FailureKind::InUse, ErrorClass::Internal),
            (FailureKind::Other, ErrorClass::Internal),
        ];
        for (kind, class) in cases {
            let e = failure(kind);
            assert_eq!(e.class(), class, "{kind:?}");
            assert!(!e.is_retryable(), "{kind:?}");
        }
        assert_eq!(RdsError::NotFound("x".into()).class(), ErrorClass::NotFound);
        assert_eq!(RdsError::Rejected("x".into()).class(), ErrorClass::Rejected);
        assert_eq!(RdsError::Verify("x".into()).class(), ErrorClass::Internal);
    }
}
