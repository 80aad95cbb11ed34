//! Kubernetes access for the driver: the real implementation of `fencing::cluster::Cluster`,
//! the process's one event recorder, and the VMI grouper's pod lookup (opt-in).
//!
//! Everything here talks to the API server directly (no informer caches): fencing decisions
//! must never be taken on stale data, and the objects involved (this driver's PVs and
//! VolumeAttachments) are few. Every request runs under a deadline so a wedged API server turns
//! into `ClusterError::Unavailable` instead of a hung CSI call.

mod api_errors;
mod cluster;
mod connect;
mod events;
pub mod leader;
mod node_events;
mod objects;
mod vmi_lookup;

pub use cluster::KubeCluster;
pub use connect::{ClientSettings, client};
pub use events::{EventRecorder, component};
pub use leader::{LeaderConfig, LeaderElector};
pub use node_events::{NodeEvents, pv_name_of};
pub use objects::OUT_OF_SERVICE_TAINT;
pub use vmi_lookup::KubeVmiLookup;
