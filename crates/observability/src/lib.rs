//! Observability: the process's Prometheus registry and the driver's metrics (`metrics`), and
//! the audit trail (`audit`).
//!
//! Owns: implementations of the observer traits defined where events happen
//! (`vocab::rpc::RpcObserver`, `node::NodeObserver`, `controller::orphans`' observer) and of
//! `vocab::registry::MetricRegistry`, plus scrape-time collectors over fencing, health, pools,
//! SSH connections and NVMe sysfs.
//!
//! May not: be depended on by any other crate of the driver except the `rds-csi` binary (and
//! `sandbox`): the modules that report know nothing of it, and observers are values handed to
//! the server and services when the binary builds them, never process globals. Never depends on
//! the simulator or test-only crates, nor on `k8s` or the hot-plug guard.
//!
//! Its integration tests are one binary (`tests/it`) except `bounds_grpc` and
//! `metrics_audit_secrets`, which install the process-wide tracing subscriber to read what was
//! logged and so need a process of their own.

pub mod audit;
pub mod metrics;
