//! Volume fencing: ControllerPublish/Unpublish guarantee a single-node volume is attached to at
//! most one node, with state that survives controller restarts.
//!
//! Fencing is always on in controller mode: there is no configuration without a [`Cluster`].
//! `manager` holds the rules (the publish decision itself is `publish_plan`, pure), `annotations` the persisted format, `rebuild` the restart path,
//! `reconciler` the background repairs, `memory` the in-memory cluster used by tests and the
//! sandbox, `serialize` the seam for KubeVirt per-VM serialization, and `vmi`/`vmi_grouper` its opt-in
//! implementation (publishes of one VMI's volumes one at a time).
//!
//! Volumes without a PersistentVolume (a CSI client calling the driver directly, as csi-sanity or
//! the `rds-csi csi` operator client do) are fenced in memory only, with a loud warning and the
//! `unpersisted_total` counter: refusing them would make the driver untestable outside
//! Kubernetes, and inside Kubernetes every attachable volume has a PV.

pub mod annotations;
pub mod clock;
pub mod cluster;
pub mod host_acl;
pub mod manager;
pub mod memory;
pub mod publish_plan;
pub mod rebuild;
pub mod reconciler;
pub mod serialize;
pub mod state;
pub mod stats;
pub mod vmi;
pub mod vmi_grouper;

pub use cluster::Cluster;
pub use host_acl::{AclTarget, HostAcl};
pub use manager::{
    AttachmentManager, FencingConfig, Held, LeaderGate, PublishOutcome, PublishRequest,
    UnpublishOutcome,
};
pub use memory::MemoryCluster;
pub use state::Sharing;
pub use stats::FencingStats;
pub use vmi::{MemoryVmiLookup, PodInfo, VmiLookup};
pub use vmi_grouper::{VmiGrouper, VmiGrouperConfig, VmiGrouperStats};
