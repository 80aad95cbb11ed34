//! `rds_csi_rds_ssh_*`: each backend's SSH connection as its transport sees it at scrape time.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use rds::exec::TransportStats;

use vocab::backend::Backends;

/// Reads `RdsClient::transport_stats` of every backend on each scrape.
pub struct SshCollector {
    backends: Arc<Backends>,
}

impl SshCollector {
    pub fn new(backends: Arc<Backends>) -> Self {
        SshCollector { backends }
    }
}

impl fmt::Debug for SshCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshCollector")
            .field("backends", &self.backends.names())
            .finish()
    }
}

type Stats = [(String, TransportStats)];

/// One metric family with a sample per backend.
fn encode_per_backend<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    stats: &Stats,
    value: impl Fn(&TransportStats) -> M,
) -> Result<(), fmt::Error> {
    let sample = value(&TransportStats::default());
    let mut family = encoder.encode_descriptor(name, help, None, sample.metric_type())?;
    for (backend, s) in stats {
        let labels = [("backend", backend.as_str())];
        let metric = family.encode_family(&labels)?;
        value(s).encode(metric)?;
    }
    Ok(())
}

impl Collector for SshCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats: Vec<(String, TransportStats)> = self
            .backends
            .all()
            .filter_map(|b| b.client.transport_stats().map(|s| (b.name.clone(), s)))
            .collect();
        encode_per_backend(
            &mut encoder,
            "rds_ssh_connected",
            "1 while the SSH connection to the backend is open and not known broken, else 0",
            &stats,
            |s| ConstGauge::new(i64::from(s.connected)),
        )?;
        encode_per_backend(
            &mut encoder,
            "rds_ssh_reconnects",
            "SSH connections made to the backend after the first one (each replaced a failed one)",
            &stats,
            |s| ConstCounter::new(s.reconnects()),
        )?;
        encode_per_backend(
            &mut encoder,
            "rds_ssh_connect_failures",
            "Attempts to connect to the backend that failed (TCP, handshake, host key, authentication, timeout)",
            &stats,
            |s| ConstCounter::new(s.connect_failures),
        )
    }
}

/// `rds_csi_rds_reachable` and `rds_csi_rds_health_checks`: the health checker's last result,
/// read on each scrape (a scrape never triggers a check).
pub struct HealthCollector {
    health: Arc<vocab::health::RdsHealth>,
}

impl HealthCollector {
    pub fn new(health: Arc<vocab::health::RdsHealth>) -> Self {
        HealthCollector { health }
    }
}

impl fmt::Debug for HealthCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCollector").finish_non_exhaustive()
    }
}

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "rds_reachable",
                "1 when the backend answered the latest health check, 0 when it did not",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for b in self.health.last().map(|r| r.backends).unwrap_or_default() {
                let labels = [("backend", b.name.as_str())];
                ConstGauge::new(i64::from(b.error.is_none()))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let checks = ConstCounter::new(self.health.checks());
        let metric = encoder.encode_descriptor(
            "rds_health_checks",
            "Health checks run (each pinged every backend once); at most one per freshness period",
            None,
            checks.metric_type(),
        )?;
        checks.encode(metric)
    }
}
