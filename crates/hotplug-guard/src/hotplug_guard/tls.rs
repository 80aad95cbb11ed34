//! The serving certificate, read from PEM files (a mounted Secret) and reloaded when they change.
//!
//! The resolver checks the files' modification times on each TLS handshake (a `stat` of two
//! files; the API server keeps its connections open, so handshakes are rare) and loads the pair
//! again when either changed. A new pair is used only when both files parse and the key belongs
//! to the certificate, so a pair caught half-written (certificate replaced, key not yet) keeps
//! the previous one serving until the second file lands. Kubelet swaps a Secret volume's files
//! atomically, so in a pod that window never opens; a manual copy is covered too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::{info, warn};

use super::error::GuardError;
use super::metrics::GuardMetrics;

/// After a failed reload, wait this long before reading the files again, so a broken pair does
/// not cost a parse on every handshake.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// (modified, length) of both files: what "changed" means.
type Stamp = [(Option<SystemTime>, u64); 2];

struct Current {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    failed_at: Option<Instant>,
}

/// A `ResolvesServerCert` over a certificate file and a key file.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
    metrics: GuardMetrics,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair once; an error here stops the start (a guard without a certificate is
    /// useless, and failurePolicy Ignore keeps the cluster working meanwhile).
    pub fn new(
        cert: &Path,
        key: &Path,
        metrics: GuardMetrics,
    ) -> Result<ReloadingCert, GuardError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = stamp(cert, key);
        let loaded = load(cert, key, &provider)?;
        Ok(ReloadingCert {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            provider,
            current: Mutex::new(Current {
                key: Arc::new(loaded),
                stamp,
                failed_at: None,
            }),
            metrics,
        })
    }

    /// The pair to serve now, reloading first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now_stamp = stamp(&self.cert_path, &self.key_path);
        let waiting = cur.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER);
        if now_stamp != cur.stamp && !waiting {
            match load(&self.cert_path, &self.key_path, &self.provider) {
                Ok(k) => {
                    info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                    cur.key = Arc::new(k);
                    cur.stamp = now_stamp;
                    cur.failed_at = None;
                    self.metrics.tls_reload(true);
                }
                Err(e) => {
                    if cur.failed_at.is_none() {
                        self.metrics.tls_reload(false);
                    }
                    warn!(error = %e, "certificate files changed but are not a usable pair; still serving the previous one");
                    cur.failed_at = Some(Instant::now());
                }
            }
        }
        Arc::clone(&cur.key)
    }

    /// A rustls server config (HTTP/1.1 only) that asks this resolver on every handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, GuardError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(GuardError::TlsConfig)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(cert), one(key)]
}

/// Parses the pair and checks that the key is the certificate's.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, GuardError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|source| GuardError::ReadCert {
            path: cert.to_path_buf(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| GuardError::ParseCert {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(GuardError::NoCert {
            path: cert.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| GuardError::ReadKey {
        path: key.to_path_buf(),
        source,
    })?;
    let pair = |source| GuardError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(pair)?;
    // from_der accepts a key whose public half it cannot extract; insist on a proven match.
    certified
        .keys_match()
        .map_err(|source| GuardError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String, Vec<u8>) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (
            c.cert.pem(),
            c.signing_key.serialize_pem(),
            c.cert.der().to_vec(),
        )
    }

    fn served(r: &ReloadingCert) -> Vec<u8> {
        r.current().cert[0].to_vec()
    }

    #[test]
    fn changed_files_are_reloaded_and_a_half_written_pair_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let (cp, kp) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (c1, k1, d1) = pair("one.example");
        std::fs::write(&cp, &c1).unwrap();
        std::fs::write(&kp, &k1).unwrap();
        let metrics = GuardMetrics::default();
        let r = ReloadingCert::new(&cp, &kp, metrics).unwrap();
        assert_eq!(served(&r), d1);

        // Certificate replaced, key not yet: still the old pair.
        let (c2, k2, d2) = pair("two.example");
        std::fs::write(&cp, &c2).unwrap();
        assert_eq!(served(&r), d1);
        std::thread::sleep(RETRY_AFTER + Duration::from_millis(50));
        std::fs::write(&kp, &k2).unwrap();
        assert_eq!(served(&r), d2);

        // Garbage: keep serving, then recover.
        std::fs::write(&kp, "-----BEGIN PRIVATE KEY-----\nnope\n").unwrap();
        assert_eq!(served(&r), d2);
        std::thread::sleep(RETRY_AFTER + Duration::from_millis(50));
        std::fs::write(&kp, &k2).unwrap();
        std::fs::write(&cp, &c2).unwrap();
        assert_eq!(served(&r), d2);
    }

    #[test]
    fn a_mismatched_or_missing_pair_fails_the_start_naming_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cp, kp) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (c1, _, _) = pair("one.example");
        let (_, k2, _) = pair("two.example");
        std::fs::write(&cp, &c1).unwrap();
        std::fs::write(&kp, &k2).unwrap();
        let e = ReloadingCert::new(&cp, &kp, GuardMetrics::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.key"), "{e}");
        let e = ReloadingCert::new(&dir.path().join("nope.crt"), &kp, GuardMetrics::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.crt"), "{e}");
        std::fs::write(&cp, "").unwrap();
        let e = ReloadingCert::new(&cp, &kp, GuardMetrics::default()).unwrap_err();
        assert!(matches!(e, GuardError::NoCert { .. }), "{e}");
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
