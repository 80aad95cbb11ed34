//! `rds-csi hotplug-guard`: the KubeVirt hotplug handoff guard webhook (see
//! `hotplug_guard` and docs/kubevirt.md).
//!
//! A separate process from the CSI driver on purpose: it needs its own TLS endpoint reachable by
//! the API server, its own RBAC (VMIs, pods), and operators must be able to turn it off by
//! deleting one ValidatingWebhookConfiguration without touching storage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hotplug_guard::tls::ReloadingCert;
use hotplug_guard::{Guard, GuardMetrics, GuardSettings, KubeGuardCluster, server};
use k8s::ClientSettings;
use observability::metrics::Metrics;
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::args::parse_duration;
use crate::error::CliError;
use crate::http::{self, Endpoints};
use crate::shutdown;

/// How long open webhook connections may finish after SIGTERM/SIGINT.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// Address the webhook's HTTPS endpoint (`POST /validate`) listens on.
    #[arg(long, env = "RDS_CSI_GUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: String,
    /// PEM certificate (chain) the webhook serves; reloaded when the file changes (a mounted
    /// Secret's `tls.crt`).
    #[arg(
        long,
        env = "RDS_CSI_GUARD_TLS_CERT_FILE",
        default_value = "/etc/rds-csi/webhook/tls.crt"
    )]
    pub tls_cert_file: PathBuf,
    /// PEM private key of that certificate (`tls.key`); reloaded with it.
    #[arg(
        long,
        env = "RDS_CSI_GUARD_TLS_KEY_FILE",
        default_value = "/etc/rds-csi/webhook/tls.key"
    )]
    pub tls_key_file: PathBuf,
    /// How long a hotplug handoff may take, counted from the replacement attachment pod's
    /// creation, before the old pod's deletion is allowed anyway (with a Warning event on the
    /// VMI).
    #[arg(long, env = "RDS_CSI_GUARD_HANDOFF_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub handoff_timeout: Duration,
    /// Bound on the Kubernetes reads for one review; past it the deletion is allowed. Keep it
    /// below the webhook's timeoutSeconds.
    #[arg(long, env = "RDS_CSI_GUARD_LOOKUP_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub lookup_timeout: Duration,
    /// Address of the plain-HTTP endpoint serving /metrics, /healthz and /readyz; empty
    /// disables it.
    #[arg(
        long,
        env = "RDS_CSI_GUARD_METRICS_LISTEN",
        default_value = "0.0.0.0:9810"
    )]
    pub metrics_listen: String,
    /// kubeconfig for the Kubernetes API; without it the in-cluster service account is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

pub async fn run(a: GuardArgs) -> Result<(), CliError> {
    if a.handoff_timeout.is_zero() {
        return Err(CliError::ZeroFlag {
            flag: "--handoff-timeout",
            why: " (0 would never protect a handoff)",
        });
    }
    if a.lookup_timeout.is_zero() {
        return Err(CliError::ZeroFlag {
            flag: "--lookup-timeout",
            why: "",
        });
    }
    let metrics = Metrics::new();
    let guard_metrics = GuardMetrics::register(&metrics);
    let cert = Arc::new(ReloadingCert::new(
        &a.tls_cert_file,
        &a.tls_key_file,
        guard_metrics.clone(),
    )?);
    let tls = Arc::new(cert.server_config()?);
    let client = k8s::client(&ClientSettings {
        kubeconfig: a.kubeconfig.clone(),
        connect_timeout: a.lookup_timeout,
        read_timeout: a.lookup_timeout,
        write_timeout: a.lookup_timeout,
    })
    .await?;
    let cluster = Arc::new(KubeGuardCluster::new(client, a.lookup_timeout));
    let guard = Arc::new(Guard::new(
        cluster,
        guard_metrics,
        GuardSettings {
            handoff_timeout: a.handoff_timeout,
            lookup_deadline: a.lookup_timeout,
        },
    ));
    let listener = TcpListener::bind(&a.listen)
        .await
        .map_err(|source| CliError::Listen {
            what: "the webhook",
            addr: a.listen.clone(),
            source,
        })?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        handoff_timeout = ?a.handoff_timeout,
        "rds-csi hotplug guard starting"
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let endpoints = Endpoints {
        metrics,
        ready: Arc::new(|| Box::pin(async { Ok(()) })),
        orphans: None,
        rds: None,
        expose_details: false,
    };
    let http_server = http::start(&a.metrics_listen, endpoints, stop_rx.clone())
        .await
        .unwrap_or_else(|e| {
            error!(error = %e, "no /metrics, /healthz or /readyz; serving the webhook without them");
            None
        });
    let webhook = tokio::spawn(server::serve(listener, tls, guard, stop_rx));
    shutdown::signal(SHUTDOWN_LIMIT).await;
    let _ = stop.send(true);
    if let Err(e) = webhook.await {
        error!(error = %e, "webhook task failed");
    }
    if let Some(h) = http_server {
        h.join().await;
    }
    info!("rds-csi hotplug guard stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(handoff: Duration, lookup: Duration) -> GuardArgs {
        GuardArgs {
            listen: "127.0.0.1:0".into(),
            tls_cert_file: "/nonexistent/tls.crt".into(),
            tls_key_file: "/nonexistent/tls.key".into(),
            handoff_timeout: handoff,
            lookup_timeout: lookup,
            metrics_listen: String::new(),
            kubeconfig: None,
        }
    }

    #[tokio::test]
    async fn zero_limits_and_a_missing_certificate_refuse_the_start_saying_why() {
        let e = run(args(Duration::ZERO, Duration::from_secs(3)))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--handoff-timeout"), "{e}");
        let e = run(args(Duration::from_secs(60), Duration::ZERO))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--lookup-timeout"), "{e}");
        let e = run(args(Duration::from_secs(60), Duration::from_secs(3)))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/tls.crt"), "{e}");
    }
}
