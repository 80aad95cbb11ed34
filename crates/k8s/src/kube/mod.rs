//! Kubernetes access for the driver: the real implementation of `fencing::cluster::Cluster`,
//! the process's one event recorder, and the VMI grouper's pod lookup (opt-in).
//!
//! Fencing decisions are taken on objects read from the API server, never on a cache: the
//! watch-fed structures only say which PV to read (`pv_index`, volume handle → PV name, and
//! writes stay conditional on the resourceVersion of that read) or admit a publish to a node
//! that exists with room under its attach limit (`node_cache`, which asks the API server about
//! anything it does not hold). Every request runs under a
//! deadline so a wedged API server turns into `ClusterError::Unavailable` instead of a hung CSI
//! call.

mod api_errors;
mod cluster;
mod connect;
mod events;
pub mod ha;
mod kubelet_version;
pub mod leader;
mod node_cache;
mod node_events;
mod node_watch;
mod objects;
mod pv_index;
mod va_watch;
mod vmi_lookup;

pub use cluster::KubeCluster;
pub use connect::{ClientSettings, client};
pub use events::{EventRecorder, component};
pub use ha::{HaGate, follow_leadership};
pub use kubelet_version::{check_kubelet_version, kubelet_version};
pub use leader::{LeaderConfig, LeaderElector};
pub use node_events::{NodeEvents, REASON_PATHS_DEGRADED, REASON_PATHS_RESTORED, pv_name_of};
pub use node_watch::watch_nodes;
pub use objects::OUT_OF_SERVICE_TAINT;
pub use va_watch::{DEFAULT_GRACE as VA_FINISH_GRACE, watch_volume_attachments};
pub use vmi_lookup::KubeVmiLookup;
