//! The shared CSI vocabulary of the RDS driver: what the controller, the node plugin, fencing,
//! the Kubernetes adapter, the hot-plug guard and observability all speak.
//!
//! Owns: volume ids (`volume_id`), node ids (`node_id`), sizes, volume capabilities,
//! StorageClass parameters and the volume/publish context keys (`params`), backends and their
//! configuration (`backend`, `config`), the one [`DriverError`] → gRPC status mapping
//! (`error`), per-volume locks, the one ownership rule for which disks are the driver's
//! (`ownership`), RDS reachability (`health`) and the Identity service that reports it, and the
//! RPC plumbing: request bounds (`bounds`), the one RPC wrapper and its observer trait (`rpc`),
//! the unix-socket server (`server`, generic over the services), the TCP accept loop (`accept`)
//! and the metric registration trait (`registry`).
//!
//! May not: depend on any other crate of the driver (controller, fencing, node, k8s,
//! hotplug-guard, observability), on Kubernetes client crates, or on the simulator or
//! test-only crates. Services and observers plug into it through traits and generics; it never
//! names them. Imports between its own top-level modules run one way (checked by
//! `tests/it/module_graph.rs`, which also checks the crate graph).

pub mod accept;
pub mod backend;
pub mod bounds;
pub mod capability;
pub mod config;
pub mod error;
pub mod health;
pub mod identity;
pub mod locks;
pub mod node_id;
pub mod ownership;
pub mod params;
pub mod redundancy;
pub mod registry;
pub mod rpc;
pub mod server;
pub mod size;
pub mod volume_id;

pub use backend::{Backend, Backends};
pub use error::DriverError;
pub use identity::IdentityService;
