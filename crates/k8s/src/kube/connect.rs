//! Building a `kube::Client` from a kubeconfig file or the in-cluster service account.

use std::path::PathBuf;
use std::time::Duration;

use ::kube::config::{KubeConfigOptions, Kubeconfig};

use vocab::error::{DriverError, Result};

/// Where the credentials come from and how long a single HTTP exchange may take.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// A kubeconfig file; `None` means the in-cluster service account (the normal case in a
    /// pod). An explicit path is never silently replaced by in-cluster config: running against
    /// the wrong cluster is worse than not starting.
    pub kubeconfig: Option<PathBuf>,
    /// TCP + TLS connect bound: an unreachable API server must fail fast.
    pub connect_timeout: Duration,
    /// Bound on waiting for a response; kube's default (295 s, meant for watches) would hold a
    /// CSI call far beyond the sidecar's own timeout.
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            kubeconfig: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(15),
        }
    }
}

/// Builds a client. Errors are `DriverError::Config`: this runs at startup, and a driver that
/// cannot reach its credentials must refuse to start rather than run without fencing.
pub async fn client(settings: &ClientSettings) -> Result<::kube::Client> {
    install_crypto_provider();
    let mut config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                DriverError::Config(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            ::kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    DriverError::Config(format!("using kubeconfig {}: {e}", path.display()))
                })?
        }
        None => ::kube::Config::incluster().map_err(|e| {
            DriverError::Config(format!(
                "no --kubeconfig given and no in-cluster service account: {e}"
            ))
        })?,
    };
    trust_no_store_when_unchecked(&mut config);
    config.connect_timeout = Some(settings.connect_timeout);
    config.read_timeout = Some(settings.read_timeout);
    config.write_timeout = Some(settings.write_timeout);
    ::kube::Client::try_from(config)
        .map_err(|e| DriverError::Config(format!("building the Kubernetes client: {e}")))
}

/// A kubeconfig that turns certificate checks off (`insecure-skip-tls-verify`) and names no CA
/// must not need the system trust store: kube would otherwise load it to build a verifier it then
/// replaces, and a minimal node image without CA certificates could not start at all. An empty
/// root set keeps kube away from the store; verification stays off exactly as the kubeconfig says.
fn trust_no_store_when_unchecked(config: &mut ::kube::Config) {
    if config.accept_invalid_certs && config.root_cert.is_none() && config.root_cert_file.is_none()
    {
        config.root_cert = Some(Vec::new());
    }
}

/// rustls refuses to pick a crypto provider when more than one is compiled in; the workspace
/// standardises on ring (as russh does), so say so explicitly instead of relying on feature
/// unification staying the way it is today.
fn install_crypto_provider() {
    // Err only means a provider is already installed for this process, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_kubeconfig_is_a_config_error_naming_the_path() {
        let settings = ClientSettings {
            kubeconfig: Some(PathBuf::from("/nonexistent/rds-csi/kubeconfig")),
            ..ClientSettings::default()
        };
        let err = client(&settings).await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.starts_with("configuration:"), "{err}");
        assert!(err.contains("/nonexistent/rds-csi/kubeconfig"), "{err}");
    }
}
