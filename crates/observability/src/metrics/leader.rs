//! `rds_csi_leader`: whether this controller replica decides attachments right now, so an alert
//! can tell when no replica does (publish is then refused cluster-wide until one takes over).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use fencing::LeaderGate;

/// Reads the leader gate on every scrape; without a gate (leader election off) the replica is
/// the only decider and always reports 1.
pub struct LeaderCollector {
    gate: Option<Arc<dyn LeaderGate>>,
}

impl LeaderCollector {
    pub fn new(gate: Option<Arc<dyn LeaderGate>>) -> Self {
        LeaderCollector { gate }
    }
}

impl fmt::Debug for LeaderCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderCollector")
            .field("election", &self.gate.is_some())
            .finish()
    }
}

impl Collector for LeaderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let serving = self.gate.as_ref().is_none_or(|g| g.refusal().is_none());
        let gauge = ConstGauge::new(i64::from(serving));
        let metric = encoder.encode_descriptor(
            "leader",
            "1 while this controller replica serves ControllerPublish/Unpublish (holds the Lease and has rebuilt the attachment state; always 1 with leader election off), else 0",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Gate(AtomicBool);
    impl LeaderGate for Gate {
        fn refusal(&self) -> Option<String> {
            (!self.0.load(Ordering::SeqCst)).then(|| "not the leader".into())
        }
    }

    fn scrape(c: LeaderCollector) -> String {
        let mut r = prometheus_client::registry::Registry::with_prefix("rds_csi");
        r.register_collector(Box::new(c));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn follows_the_gate_and_is_one_without_election() {
        assert!(scrape(LeaderCollector::new(None)).contains("\nrds_csi_leader 1\n"));
        let gate = Arc::new(Gate(AtomicBool::new(false)));
        let c = || LeaderCollector::new(Some(gate.clone() as Arc<dyn LeaderGate>));
        assert!(scrape(c()).contains("\nrds_csi_leader 0\n"));
        gate.0.store(true, Ordering::SeqCst);
        assert!(scrape(c()).contains("\nrds_csi_leader 1\n"));
    }
}
