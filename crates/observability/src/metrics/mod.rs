//! The process's Prometheus registry and the driver's own metrics.
//!
//! One private registry (prefix `rds_csi`), so a scrape shows exactly what `docs/metrics.md`
//! lists and nothing a library registered behind our back. Values that some other part of the
//! process already knows (SSH connection state, attachments, NVMe controllers) are read at
//! scrape time by collectors rather than mirrored into counters that could drift; other
//! subsystems add theirs with [`Metrics::register_collector`] or [`Metrics::register`].
//!
//! Events reach it through observer traits defined where they happen
//! ([`vocab::rpc::RpcObserver`], [`::node::NodeObserver`]): this module implements them
//! and the modules that report know nothing of it, so imports run one way (checked by
//! `tests/module_graph.rs`).

mod fencing;
mod leader;
mod node;
mod orphans;
mod pool;
mod routeros;
mod rpc;
mod ssh;
mod stats;

use std::sync::{Arc, Mutex, MutexGuard, Once};

use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Registry, Unit};

pub use leader::LeaderCollector;
pub use node::{NodeEventMetrics, NvmeCollector};
pub use pool::{
    PoolCache, PoolCollector, PoolFigures, REFRESH_INTERVAL, REFRESH_TIMEOUT, STALE_AFTER,
};
pub use routeros::RouterOsMetrics;
pub use rpc::RpcMetrics;
pub use ssh::{HealthCollector, SshCollector};
pub use stats::StatsCollector;

use ::fencing::{AttachmentManager, LeaderGate};
use ::node::{NodeConfig, NodeObserver};
use vocab::backend::Backends;
use vocab::error::DriverError;

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
    /// RouterOS families exist only in processes that talk to an RDS.
    routeros_registered: Once,
}

impl Metrics {
    /// A registry with the RPC families registered; the RouterOS ones follow with the first
    /// [`Metrics::command_observer`].
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix(PREFIX);
        let rpc = Arc::new(RpcMetrics::new());
        rpc.register(&mut registry);
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            rpc,
            routeros: Arc::new(RouterOsMetrics::new()),
            routeros_registered: Once::new(),
        })
    }

    /// The registry stays usable after a panic elsewhere: metric families are atomics, a
    /// half-finished registration cannot leave them inconsistent.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a metric the caller keeps a handle to (counters it increments itself). `name` is
    /// without the `rds_csi_` prefix, and for counters without `_total` (added on encoding);
    /// `help` without a final period (one is added on encoding). Wrap a `Family` in
    /// [`AlwaysListed`] so it shows before its first sample.
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

    /// Feeds `rds_csi_rpc_*`; one of the server's `rpc::Observers`.
    pub fn rpc_observer(&self) -> Arc<RpcMetrics> {
        Arc::clone(&self.rpc)
    }

    /// Feeds `rds_csi_routeros_*` for one backend; pass to `config::build_backend`.
    pub fn command_observer(&self, backend: &str) -> Arc<dyn rds::CommandObserver> {
        self.routeros_registered
            .call_once(|| self.routeros.register(&mut self.registry()));
        self.routeros.for_backend(backend)
    }

    /// Exports the SSH connection state of these backends, read on every scrape.
    pub fn watch_backends(&self, backends: Arc<Backends>) {
        self.register_collector(Box::new(SshCollector::new(backends)));
    }

    /// Exports the RDS health checker's last result and how many checks it ran.
    pub fn watch_health(&self, health: Arc<vocab::health::RdsHealth>) {
        self.register_collector(Box::new(HealthCollector::new(health)));
    }

    /// Exports the attachment manager's fencing stats, read on every scrape.
    pub fn watch_fencing(&self, manager: Arc<AttachmentManager>) {
        self.register_collector(Box::new(fencing::collector(manager)));
    }

    /// Exports the pool figures of these backends from a cache refreshed every
    /// [`REFRESH_INTERVAL`] by a task this starts (needs a Tokio runtime); scrapes never query
    /// the RDS. The task ends when this registry is dropped.
    pub fn watch_pools(&self, backends: Arc<Backends>) -> Arc<PoolCache> {
        let cache = PoolCache::new(backends, STALE_AFTER, REFRESH_TIMEOUT);
        cache.spawn(REFRESH_INTERVAL);
        self.register_collector(Box::new(PoolCollector::new(cache.clone())));
        cache
    }

    /// Exports `rds_csi_leader` from the replica's leader gate (`None`: election off).
    pub fn watch_leadership(&self, gate: Option<Arc<dyn LeaderGate>>) {
        self.register_collector(Box::new(LeaderCollector::new(gate)));
    }

    /// Exports the orphan reconciler's counters, read on every scrape.
    pub fn watch_orphans(&self, reconciler: Arc<controller::orphans::OrphanReconciler>) {
        self.register_collector(Box::new(orphans::collector(reconciler)));
    }

    /// Counts the node service's events and forwards them to `inner`; hand the result to
    /// `NodeService::new_observed`.
    pub fn node_observer(&self, inner: Arc<dyn NodeObserver>) -> Arc<dyn NodeObserver> {
        NodeEventMetrics::register(self, inner)
    }

    /// Exports the managed NVMe subsystems under `cfg.sysfs_root`, scanned on every scrape
    /// under the node's sysfs deadline. Fails only for an invalid managed prefix.
    pub fn watch_nvme(&self, cfg: &NodeConfig) -> Result<(), DriverError> {
        let prefix = nvme::ManagedPrefix::new(cfg.managed_prefix.clone())
            .map_err(|e| DriverError::Config(format!("managed NQN prefix: {e}")))?;
        let sysfs = nvme::Sysfs::new(&cfg.sysfs_root, &cfg.dev_root);
        self.register_collector(Box::new(NvmeCollector::new(
            sysfs,
            prefix,
            cfg.deadlines.sysfs,
        )));
        Ok(())
    }

    /// The OpenMetrics text exposition of everything registered.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())?;
        Ok(out)
    }
}

pub use vocab::registry::AlwaysListed;

impl vocab::registry::MetricRegistry for Metrics {
    fn register(&self, name: &str, help: &str, metric: impl Metric) {
        Metrics::register(self, name, help, metric);
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
        m.register("widgets", "Widgets made", c.clone());
        c.inc_by(3);
        let text = m.encode().unwrap();
        assert!(text.contains("rds_csi_widgets_total 3"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn families_are_listed_before_their_first_sample_and_routeros_only_with_a_backend() {
        let m = Metrics::new();
        let text = m.encode().unwrap();
        assert!(
            text.contains("# TYPE rds_csi_rpc_requests counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE rds_csi_rpc_duration_seconds histogram"),
            "{text}"
        );
        assert!(!text.contains("routeros"), "{text}");
        m.command_observer("a");
        m.command_observer("b");
        let text = m.encode().unwrap();
        assert_eq!(
            text.matches("# TYPE rds_csi_routeros_commands counter")
                .count(),
            1,
            "{text}"
        );
    }
}
