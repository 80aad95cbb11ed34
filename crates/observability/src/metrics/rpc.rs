//! `rds_csi_rpc_*`: every CSI call by method and gRPC code, fed by the one `traced` wrapper.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{AlwaysListed, LATENCY_BUCKETS};
use vocab::rpc::{Call, RpcObserver, code_name};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct RpcMetrics {
    requests: Family<CallLabels, Counter>,
    duration: HistogramFamily<MethodLabels>,
}

impl RpcMetrics {
    pub(super) fn new() -> Self {
        RpcMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_requests",
            "CSI calls finished, by method and gRPC status code",
            AlwaysListed(self.requests.clone()),
        );
        registry.register_with_unit(
            "rpc_duration",
            "Time from receiving a CSI call to answering it, by method",
            Unit::Seconds,
            AlwaysListed(self.duration.clone()),
        );
    }
}

impl RpcObserver for RpcMetrics {
    fn on_rpc(&self, call: &Call<'_>) {
        let method = call.method;
        self.requests
            .get_or_create(&CallLabels {
                method,
                code: code_name(call.code),
            })
            .inc();
        // A call refused at the boundary took no handler time.
        self.duration
            .get_or_create(&MethodLabels { method })
            .observe(call.elapsed.unwrap_or(Duration::ZERO).as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_method_and_code_and_timed_by_method() {
        let m = RpcMetrics::new();
        let mut reg = Registry::with_prefix("t");
        m.register(&mut reg);
        let call = |code, ms| Call {
            method: "CreateVolume",
            volume: "",
            node: None,
            code,
            message: "",
            elapsed: Some(Duration::from_millis(ms)),
        };
        m.on_rpc(&call(tonic::Code::Ok, 20));
        m.on_rpc(&call(tonic::Code::Ok, 30));
        m.on_rpc(&call(tonic::Code::ResourceExhausted, 2000));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains(r#"t_rpc_requests_total{method="CreateVolume",code="OK"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"t_rpc_requests_total{method="CreateVolume",code="ResourceExhausted"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"t_rpc_duration_seconds_count{method="CreateVolume"} 3"#),
            "{text}"
        );
        // 20 ms and 30 ms fall at or below the 0.05 s bucket, 2 s does not.
        assert!(
            text.contains(r#"t_rpc_duration_seconds_bucket{le="0.05",method="CreateVolume"} 2"#),
            "{text}"
        );
    }
}
