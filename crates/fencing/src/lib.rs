//! Volume fencing: which node may write a volume, decided and recorded before ControllerPublish
//! answers, and enforced on the RDS.
//!
//! Owns: the attachment manager (publish/unpublish policy, sharing, migrations), its state and
//! persistence (annotations on PVs), the rebuild before the gRPC socket opens, the reconciler,
//! KubeVirt VMI grouping, the leader gate, the clock, and `host_acl` (the RDS-side host ACL).
//! Kubernetes is reached only through the [`cluster::Cluster`] trait defined here (the `k8s`
//! crate implements it; tests use [`memory`]).
//!
//! May not: depend on the controller, the node plugin, the `k8s` adapter, the hot-plug guard
//! or observability (they depend on it: metrics read [`AttachmentManager`] stats at scrape
//! time), nor on the simulator or test-only crates. Depends on `vocab` only among the driver's
//! crates.
//!
//! The code lives in the `fencing` module (the former `fencing`), re-exported here.

mod fencing;

pub use self::fencing::*;
