//! The hotplug guard's one error type. The guard fails open, so most of these end up in a log
//! line beside an allowed deletion; only the certificate errors stop the program's start.

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::pem;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A Kubernetes read or write, or decoding what it returned; `what` names the object.
    #[error("{what}: {source}")]
    Lookup {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what}: no answer from the API server within {limit:?}")]
    ApiTimeout { what: String, limit: Duration },
    #[error("VirtualMachineInstance has an unexpected shape: {0}")]
    VmiShape(serde_json::Error),
    #[error("DELETE review carries no oldObject")]
    NoOldObject,
    #[error("oldObject is not a Pod: {0}")]
    NotAPod(serde_json::Error),

    #[error("TLS configuration: {0}")]
    TlsConfig(rustls::Error),
    #[error("reading certificate {}: {source}", path.display())]
    ReadCert { path: PathBuf, source: pem::Error },
    #[error("parsing certificate {}: {source}", path.display())]
    ParseCert { path: PathBuf, source: pem::Error },
    #[error("{} holds no certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("reading private key {}: {source}", path.display())]
    ReadKey { path: PathBuf, source: pem::Error },
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("{} does not belong to {}: {source}", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

impl GuardError {
    pub(crate) fn lookup(
        what: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> GuardError {
        GuardError::Lookup {
            what: what.to_string(),
            source: source.into(),
        }
    }
}
