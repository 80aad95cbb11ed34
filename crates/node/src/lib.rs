//! The CSI Node service: NVMe/TCP connect, NodeStage/Publish/Unpublish/Unstage, stats,
//! expand, startup recovery and the health monitor, with every kernel call under a deadline.
//!
//! Owns: the node's configuration, state file, path checks, the publish/volume context it
//! reads (keys from `vocab::params`), and the [`NodeObserver`] trait through which its events
//! reach Kubernetes events (`k8s`) and metrics (`observability`).
//!
//! May not: depend on the controller, fencing, the `k8s` adapter, the hot-plug guard or
//! observability (the contract with the controller is the publish context, whose keys live in
//! `vocab::params`), nor on the simulator or test-only crates. Depends on `vocab` only among
//! the driver's crates.
//!
//! The code lives in the `node` module (the former `node`), re-exported here.

mod node;

pub use self::node::*;
