//! The Kubernetes adapter: everything that talks to a kube-apiserver for the controller and the
//! node plugin.
//!
//! Owns: [`KubeCluster`] (fencing's `Cluster` trait against a real API server: PVs,
//! VolumeAttachments, nodes, pods, VMIs), the node and VolumeAttachment watches, the PV index
//! and node cache, leader election and the controller HA policy built on it (`ha`: when a
//! replica serves publish, a `fencing::LeaderGate`), kubelet version checks, API
//! error classification and events (including the node plugin's, as a `node::NodeObserver`).
//!
//! May not: depend on the controller, the hot-plug guard or observability, nor on the
//! simulator or test-only crates. Fencing and the node plugin define the traits it implements
//! and know nothing of it.
//!
//! Its integration tests stay one binary per file (`tests/kube_*.rs`, sharing `kube_common.rs`),
//! unlike the other crates' single `tests/it` binary: they share one real API server, and some
//! stop it (the outage tests) or take RBAC bindings away, which only the other files' tests in a
//! separate process, run after them, are safe from.
//!
//! The code lives in the `kube` module (the former `k8s`), re-exported here.

mod kube;

pub use self::kube::*;
