//! `rds_csi_routeros_*`: RouterOS commands by backend, verb and outcome, fed by each backend's
//! `rds::CommandObserver` (every attempt, retries included, is one command).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rds::{CommandEvent, CommandObserver};

use super::{AlwaysListed, LATENCY_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    backend: String,
    verb: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    backend: String,
    verb: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone)]
pub struct RouterOsMetrics {
    commands: Family<CommandLabels, Counter>,
    duration: Family<VerbLabels, Histogram, fn() -> Histogram>,
}

impl RouterOsMetrics {
    pub(super) fn new() -> Self {
        RouterOsMetrics {
            commands: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "routeros_commands",
            "RouterOS commands sent over SSH, by backend, verb and outcome (ok, failure, transport, timeout)",
            AlwaysListed(self.commands.clone()),
        );
        registry.register_with_unit(
            "routeros_command_duration",
            "Time one RouterOS command took, including waiting for an SSH session, by backend and verb",
            Unit::Seconds,
            AlwaysListed(self.duration.clone()),
        );
    }

    pub(super) fn for_backend(&self, backend: &str) -> Arc<dyn CommandObserver> {
        Arc::new(BackendObserver {
            backend: backend.to_string(),
            metrics: self.clone(),
        })
    }
}

/// `CommandEvent` does not name its backend (the client does not know its name), so each
/// backend gets an observer that adds it.
struct BackendObserver {
    backend: String,
    metrics: RouterOsMetrics,
}

impl CommandObserver for BackendObserver {
    fn on_command(&self, event: &CommandEvent) {
        self.metrics
            .commands
            .get_or_create(&CommandLabels {
                backend: self.backend.clone(),
                verb: event.verb,
                outcome: event.outcome,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&VerbLabels {
                backend: self.backend.clone(),
                verb: event.verb,
            })
            .observe(event.duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn commands_are_labelled_with_their_backend() {
        let m = RouterOsMetrics::new();
        let mut reg = Registry::with_prefix("t");
        m.register(&mut reg);
        let event = |outcome| CommandEvent {
            verb: "disk-add",
            line: "/disk add slot=pvc-1".into(),
            duration: Duration::from_millis(5),
            outcome,
        };
        m.for_backend("rds1").on_command(&event("ok"));
        m.for_backend("rds2").on_command(&event("timeout"));
        m.for_backend("rds2").on_command(&event("timeout"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for want in [
            r#"t_routeros_commands_total{backend="rds1",verb="disk-add",outcome="ok"} 1"#,
            r#"t_routeros_commands_total{backend="rds2",verb="disk-add",outcome="timeout"} 2"#,
            r#"t_routeros_command_duration_seconds_count{backend="rds2",verb="disk-add"} 2"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
