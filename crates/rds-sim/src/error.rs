//! The crate's single error type: everything that can stop the simulator from starting.

use std::path::PathBuf;

/// Why the simulator could not start or a helper could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener failed (port in use, bad address).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Reading or writing a key file, or preparing the storage directory.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key could not be generated, parsed or encoded.
    #[error("ssh key {what}: {detail}")]
    Key { what: String, detail: String },
    /// An `authorized_keys` line the simulator cannot use.
    #[error("authorized_keys line {line}: {detail}")]
    AuthorizedKey { line: usize, detail: String },
    /// A configfs operation of the nvmet exporter failed.
    #[error("nvmet: {what} {path}: {source}")]
    Nvmet {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A configfs operation of the nvmet exporter did not return in time; the kernel target is
    /// wedged (or a port is draining connections) and the caller must not wait forever.
    #[error("nvmet: {what} {path} did not finish within {after:?}")]
    NvmetTimeout {
        what: &'static str,
        path: PathBuf,
        after: std::time::Duration,
    },
    /// The nvmet exporter cannot serve this request at all (no target, no backing file, bad NQN).
    #[error("nvmet: {0}")]
    NvmetRefused(String),
}

impl SimError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SimError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn key(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        SimError::Key {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
