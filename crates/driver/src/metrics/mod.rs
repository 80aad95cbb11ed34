//! The process's Prometheus registry and the driver's own metrics.
//!
//! One private registry (prefix `rds_csi`), so a scrape shows exactly what `docs/metrics.md`
//! lists and nothing a library registered behind our back. Values that some other part of the
//! process already knows (SSH connection state, attachments, NVMe controllers) are read at
//! scrape time by collectors rather than mirrored into counters that could drift; other
//! subsystems add theirs with [`Metrics::register_collector`] or [`Metrics::register`].

mod routeros;
mod rpc;
mod ssh;

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Registry, Unit};

pub use routeros::RouterOsMetrics;
pub use rpc::{RpcMetrics, code_name};
pub use ssh::SshCollector;

use crate::backend::Backends;

/// Every metric name starts with this (followed by `_`).
pub const PREFIX: &str = "rds_csi";

/// Shared by RPC and RouterOS latencies: RouterOS answers prints in milliseconds but a
/// `/disk add` on a busy pool, or an RPC that waits for a reconnect, can take most of a minute.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The registry plus the metric families the driver feeds itself.
pub struct Metrics {
    registry: Mutex<Registry>,
    rpc: Arc<RpcMetrics>,
    routeros: Arc<RouterOsMetrics>,
}

impl Metrics {
    /// A registry with the RPC and RouterOS families already registered.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix(PREFIX);
        let rpc = Arc::new(RpcMetrics::new());
        rpc.register(&mut registry);
        let routeros = Arc::new(RouterOsMetrics::new());
        routeros.register(&mut registry);
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            rpc,
            routeros,
        })
    }

    /// The registry stays usable after a panic elsewhere: metric families are atomics, a
    /// half-finished registration cannot leave them inconsistent.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a metric the caller keeps a handle to (counters it increments itself). `name` is
    /// without the `rds_csi_` prefix, and for counters without `_total` (added on encoding).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry().register(name, help, metric);
    }

    /// As [`Metrics::register`], with the unit appended to the name (`…_seconds`).
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        self.registry().register_with_unit(name, help, unit, metric);
    }

    /// Adds a collector asked for its values on every scrape: the way to export state that
    /// lives elsewhere (attachments, sysfs) without copying it.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry().register_collector(collector);
    }

    /// Feeds `rds_csi_rpc_*`; install with `rpc::set_observer`.
    pub fn rpc_observer(&self) -> Arc<RpcMetrics> {
        Arc::clone(&self.rpc)
    }

    /// Feeds `rds_csi_routeros_*` for one backend; pass to `config::build_backend`.
    pub fn command_observer(&self, backend: &str) -> Arc<dyn rds::CommandObserver> {
        self.routeros.for_backend(backend)
    }

    /// Exports the SSH connection state of these backends, read on every scrape.
    pub fn watch_backends(&self, backends: Arc<Backends>) {
        self.register_collector(Box::new(SshCollector::new(backends)));
    }

    /// The OpenMetrics text exposition of everything registered.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())?;
        Ok(out)
    }
}

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn registered_metrics_carry_the_prefix_and_end_with_eof() {
        let m = Metrics::new();
        let c = Counter::<u64>::default();
        m.register("widgets", "Widgets made.", c.clone());
        c.inc_by(3);
        let text = m.encode().unwrap();
        assert!(text.contains("rds_csi_widgets_total 3"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
