//! The guard's counters, registered in the process's one registry (`rds_csi_hotplug_guard_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::rules::{Decision, Reason};
use vocab::registry::{AlwaysListed, MetricRegistry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Handles to the guard's metric families; cheap to clone.
#[derive(Clone, Default)]
pub struct GuardMetrics {
    decisions: Family<DecisionLabels, Counter>,
    invalid: Counter,
    tls_reloads: Family<OutcomeLabels, Counter>,
}

impl GuardMetrics {
    /// Registers the families in `metrics`, listed from the start.
    pub fn register(metrics: &impl MetricRegistry) -> GuardMetrics {
        let m = GuardMetrics::default();
        metrics.register(
            "hotplug_guard_decisions",
            "Attachment pod deletions decided, by decision (allowed, denied, timed_out) and reason",
            AlwaysListed(m.decisions.clone()),
        );
        metrics.register(
            "hotplug_guard_invalid_reviews",
            "Request bodies that were not a usable AdmissionReview v1 (answered with code 400)",
            m.invalid.clone(),
        );
        metrics.register(
            "hotplug_guard_tls_reloads",
            "Reloads of the serving certificate after its files changed, by outcome (ok, failed)",
            AlwaysListed(m.tls_reloads.clone()),
        );
        // Every series exists from the start at 0, so an alert on a rate (or on absence) works
        // before the first hot-plug.
        let series = Reason::ALL.iter().map(|r| ("allowed", r.as_str())).chain([
            ("denied", "handoff-pending"),
            ("timed_out", "handoff-timeout"),
        ]);
        for (decision, reason) in series {
            drop(
                m.decisions
                    .get_or_create(&DecisionLabels { decision, reason }),
            );
        }
        m
    }

    pub fn decided(&self, d: &Decision) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: d.outcome(),
                reason: d.reason(),
            })
            .inc();
    }

    pub fn invalid_review(&self) {
        self.invalid.inc();
    }

    pub fn tls_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.tls_reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
