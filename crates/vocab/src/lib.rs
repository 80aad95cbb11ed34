//! The CSI services for the RDS and the policy between CSI and RouterOS.
//!
//! `controller` decides CSI semantics (ids, sizes, idempotency, codes) and calls the `rds`
//! client; `identity` answers who we are and whether the RDS is reachable; `server` puts the
//! services on a unix socket. Errors map to gRPC codes in exactly one place (`error`).
//!
//! Imports between the top-level modules run one way (`tests/module_graph.rs` fails on a
//! cycle): modules where events happen (`rpc`, `node`, `orphans`) define observer traits, and
//! the observability modules (`metrics`, `audit`) implement them; what observes a running
//! server is handed to it ([`server::Services`]), never installed as a process global. The
//! in-process test stack lives in the `sandbox` crate, so this library links no simulator.

pub mod accept;
pub mod audit;
pub mod backend;
pub mod bounds;
pub mod capability;
pub mod config;
pub mod controller;
mod create_check;
pub mod error;
pub mod fencing;
pub mod health;
pub mod hotplug_guard;
pub mod identity;
pub mod kube;
pub mod locks;
pub mod metrics;
pub mod node;
pub mod node_id;
pub mod orphans;
pub mod ownership;
pub mod paging;
pub mod params;
pub mod rpc;
pub mod server;
pub mod size;
pub mod snapshots;
pub mod volume_id;

pub use backend::{Backend, Backends};
pub use controller::ControllerService;
pub use error::DriverError;
pub use identity::IdentityService;
pub use node::NodeService;
