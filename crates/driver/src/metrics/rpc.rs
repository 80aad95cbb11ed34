//! `rds_csi_rpc_*`: every CSI call by method and gRPC code, fed by the one `traced` wrapper.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{AlwaysListed, LATENCY_BUCKETS};
use crate::rpc::RpcObserver;

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
    fn on_rpc(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        self.requests
            .get_or_create(&CallLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }
}

/// The code names gRPC itself uses (and Go's `codes.Code.String()`, so dashboards built for
/// other CSI drivers keep working).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
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
        m.on_rpc("CreateVolume", tonic::Code::Ok, Duration::from_millis(20));
        m.on_rpc("CreateVolume", tonic::Code::Ok, Duration::from_millis(30));
        m.on_rpc(
            "CreateVolume",
            tonic::Code::ResourceExhausted,
            Duration::from_secs(2),
        );
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

    #[test]
    fn code_names_match_grpc() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(code_name(tonic::Code::NotFound), "NotFound");
    }
}
