//! The crate's single error type.
//!
//! Every variant that touches the outside world carries the path or command it touched, because
//! an operator reading "timed out" without knowing *which* kernel file hung cannot act on it.
//! [`NvmeError::class`] folds the variants into the three outcomes callers branch on
//! (not connected, timeout, kernel refused) so the node service never matches on message text.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = NvmeError> = std::result::Result<T, E>;

/// Coarse classification used by callers to map errors onto retry and gRPC decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The controller or subsystem is not there (already gone, never connected).
    NotConnected,
    /// A kernel write or external command did not finish before its deadline.
    Timeout,
    /// The kernel (or nvme-cli on its behalf) answered with an errno.
    KernelRefused,
    /// Input rejected before anything was sent anywhere.
    Invalid,
    /// The operation was refused because the NQN is outside the managed prefix.
    NotManaged,
    /// Anything else: unexpected I/O failures, unparsable kernel answers.
    Other,
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("{op} on {target} timed out after {after:?}")]
    Timeout {
        op: &'static str,
        target: String,
        after: Duration,
    },

    #[error("kernel refused {op} on {path}: {source} (errno {errno})")]
    KernelRefused {
        op: &'static str,
        path: PathBuf,
        errno: i32,
        #[source]
        source: std::io::Error,
    },

    #[error("not connected: {what}")]
    NotConnected { what: String },

    #[error("{op} on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error("`{command}` could not be started: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("unexpected answer from {path}: {answer:?}")]
    UnexpectedAnswer { path: PathBuf, answer: String },

    #[error("refusing to touch {nqn}: not under the managed prefix {prefix}")]
    NotManaged { nqn: String, prefix: String },

    #[error("host identity: {0}")]
    Identity(String),

    #[error("background task for {op} failed: {reason}")]
    Task { op: &'static str, reason: String },
}

impl NvmeError {
    /// Which of the few outcomes callers care about this error is.
    pub fn class(&self) -> ErrorClass {
        match self {
            NvmeError::Invalid { .. } => ErrorClass::Invalid,
            NvmeError::Timeout { .. } => ErrorClass::Timeout,
            NvmeError::KernelRefused { .. } => ErrorClass::KernelRefused,
            NvmeError::NotConnected { .. } => ErrorClass::NotConnected,
            NvmeError::NotManaged { .. } => ErrorClass::NotManaged,
            NvmeError::Command { .. } => ErrorClass::KernelRefused,
            NvmeError::Io { .. }
            | NvmeError::Spawn { .. }
            | NvmeError::UnexpectedAnswer { .. }
            | NvmeError::Identity(_)
            | NvmeError::Task { .. } => ErrorClass::Other,
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        NvmeError::Invalid {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// Maps an I/O error from a kernel interface: an errno answer is the kernel refusing, a
    /// missing file means the controller is gone, anything else stays plain I/O.
    pub(crate) fn from_kernel_io(op: &'static str, path: PathBuf, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return NvmeError::NotConnected {
                what: format!("{} does not exist", path.display()),
            };
        }
        match source.raw_os_error() {
            Some(errno) => NvmeError::KernelRefused {
                op,
                path,
                errno,
                source,
            },
            None => NvmeError::Io { op, path, source },
        }
    }
}

/// An NQN the shared type refused reads as any other invalid value of this crate.
impl From<nqn::NqnError> for NvmeError {
    fn from(e: nqn::NqnError) -> Self {
        NvmeError::invalid("NQN", e.value, e.problem.to_string())
    }
}
