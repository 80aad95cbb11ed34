//! One collector for the subsystems that count in a plain stats struct (fencing, orphans): each
//! scrape takes one snapshot, so the numbers of a scrape agree with each other and with what the
//! subsystem itself reports, and a table names each gauge and counter.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One exported value: name without prefix, help, how to read it from the snapshot.
pub type Field<S> = (&'static str, &'static str, fn(&S) -> u64);

/// Exports `gauges` (what is true now) and `counters` (totals since start) of the snapshot
/// `read` returns, at scrape time.
pub struct StatsCollector<S: 'static> {
    name: &'static str,
    read: Box<dyn Fn() -> S + Send + Sync>,
    gauges: &'static [Field<S>],
    counters: &'static [Field<S>],
}

impl<S: 'static> StatsCollector<S> {
    pub fn new(
        name: &'static str,
        read: impl Fn() -> S + Send + Sync + 'static,
        gauges: &'static [Field<S>],
        counters: &'static [Field<S>],
    ) -> Self {
        StatsCollector {
            name,
            read: Box::new(read),
            gauges,
            counters,
        }
    }
}

impl<S: 'static> fmt::Debug for StatsCollector<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsCollector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn encode_one<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: M,
) -> Result<(), fmt::Error> {
    let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family)
}

impl<S: 'static> Collector for StatsCollector<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = (self.read)();
        for (name, help, read) in self.gauges {
            let value = i64::try_from(read(&stats)).unwrap_or(i64::MAX);
            encode_one(&mut encoder, name, help, ConstGauge::new(value))?;
        }
        for (name, help, read) in self.counters {
            encode_one(&mut encoder, name, help, ConstCounter::new(read(&stats)))?;
        }
        Ok(())
    }
}
