//! The driver's one error type and its one mapping to gRPC status codes.
//!
//! Handlers return `DriverError`; the conversion to `tonic::Status` below is the only place a
//! gRPC code is chosen, so the same situation always answers with the same code.

use rds::{ErrorClass, RdsError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The request is malformed or asks for something unsupported; the message says what to fix.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A limit is reached (a node's attach limit); the CO may retry elsewhere or later.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    /// Startup configuration is unusable; never returned over gRPC.
    #[error("configuration: {0}")]
    Config(String),
    /// A configured backend's name is not one a volume id can carry.
    #[error("backend name {0:?} is invalid: use 1-32 lower-case letters, digits and '-'")]
    InvalidBackendName(String),
    #[error("backend {0:?} is configured twice")]
    DuplicateBackend(String),
    #[error("default backend {0:?} is not configured")]
    NoDefaultBackend(String),
    /// An RDS operation failed; `context` says what the driver was doing.
    #[error("{context}: {source}")]
    Rds {
        context: String,
        #[source]
        source: RdsError,
    },
}

impl DriverError {
    pub fn rds(context: impl Into<String>, source: RdsError) -> Self {
        DriverError::Rds {
            context: context.into(),
            source,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            DriverError::InvalidArgument(_) => Code::InvalidArgument,
            DriverError::OutOfRange(_) => Code::OutOfRange,
            DriverError::NotFound(_) => Code::NotFound,
            DriverError::AlreadyExists(_) => Code::AlreadyExists,
            DriverError::ResourceExhausted(_) => Code::ResourceExhausted,
            DriverError::FailedPrecondition(_) => Code::FailedPrecondition,
            DriverError::Aborted(_) => Code::Aborted,
            DriverError::Unavailable(_) => Code::Unavailable,
            DriverError::Unimplemented(_) => Code::Unimplemented,
            DriverError::Internal(_)
            | DriverError::Config(_)
            | DriverError::InvalidBackendName(_)
            | DriverError::DuplicateBackend(_)
            | DriverError::NoDefaultBackend(_) => Code::Internal,
            DriverError::Rds { source, .. } => match source.class() {
                ErrorClass::NotFound => Code::NotFound,
                ErrorClass::Exhausted => Code::ResourceExhausted,
                ErrorClass::Transport => Code::Unavailable,
                ErrorClass::Rejected => Code::InvalidArgument,
                ErrorClass::AlreadyExists => Code::AlreadyExists,
                ErrorClass::Internal => Code::Internal,
            },
        }
    }
}

impl From<DriverError> for Status {
    fn from(e: DriverError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, DriverError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transport_trouble_is_unavailable_never_not_found() {
        let e = DriverError::rds(
            "looking up volume",
            RdsError::Timeout {
                verb: "disk-print",
                after: Duration::from_secs(10),
            },
        );
        assert_eq!(Status::from(e).code(), Code::Unavailable);
    }

    #[test]
    fn routeros_failures_map_by_kind() {
        let cases = [
            (routeros::FailureKind::NoSpace, Code::ResourceExhausted),
            (routeros::FailureKind::NotFound, Code::NotFound),
            (routeros::FailureKind::Rejected, Code::InvalidArgument),
            (routeros::FailureKind::Other, Code::Internal),
        ];
        for (kind, code) in cases {
            let failure = routeros::Failure {
                kind,
                message: "failure: x".into(),
            };
            let e = DriverError::rds(
                "creating",
                RdsError::Failure {
                    verb: "disk-add",
                    failure,
                },
            );
            assert_eq!(e.code(), code, "{kind:?}");
        }
    }
}
