//! How a part of the process adds its metric families to the process's one Prometheus registry
//! without knowing who owns it: the registry's owner (`observability::metrics::Metrics`)
//! implements [`MetricRegistry`], and parts that must not depend on observability (the hot-plug
//! guard) take `&impl MetricRegistry`.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Metric;

/// A registry that metric families can be added to.
pub trait MetricRegistry {
    /// Adds a metric the caller keeps a handle to. `name` is without the process's prefix, and
    /// for counters without `_total`; `help` without a final period. Wrap a `Family` in
    /// [`AlwaysListed`] so it shows before its first sample.
    fn register(&self, name: &str, help: &str, metric: impl Metric);
}

/// Keeps a metric family in every scrape, with its HELP and TYPE, even before its first
/// sample (prometheus-client leaves empty families out). A scrape then lists the same names
/// from the start, which dashboards, alerts on absence and the docs check rely on.
#[derive(Debug, Clone)]
pub struct AlwaysListed<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for AlwaysListed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
    fn is_empty(&self) -> bool {
        false
    }
}

impl<R: MetricRegistry + ?Sized> MetricRegistry for std::sync::Arc<R> {
    fn register(&self, name: &str, help: &str, metric: impl Metric) {
        R::register(self, name, help, metric);
    }
}
