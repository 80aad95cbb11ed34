use std::path::PathBuf;

/// Everything that can go wrong in this crate's socket plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "unsupported CSI endpoint {endpoint:?}: only unix sockets are supported (unix:///path or a plain path)"
    )]
    UnsupportedScheme { endpoint: String },

    #[error("invalid CSI endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        endpoint: String,
        reason: &'static str,
    },

    #[error("refusing to remove {path}: it exists but is not a unix socket ({kind})")]
    NotASocket { path: PathBuf, kind: &'static str },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("connecting to {path} timed out after {timeout:?}")]
    ConnectTimeout {
        path: PathBuf,
        timeout: std::time::Duration,
    },

    /// `detail` holds the whole cause chain: tonic's own message is just
    /// "transport error", which tells an operator nothing.
    #[error("connecting to {path}: {detail}")]
    Connect { path: PathBuf, detail: String },
}
