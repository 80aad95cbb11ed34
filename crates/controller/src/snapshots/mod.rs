//! Snapshots, restores and clones: point-in-time copies made on the RDS with `copy-from`.
//!
//! `ids` turns CSI snapshot names into slots and parses snapshot ids, `lineage` records a
//! snapshot's source and creation time in its backing-file name (RouterOS prints no source
//! field, see there), and `service` holds the RPC logic the controller delegates to.

pub mod ids;
pub mod lineage;
pub mod service;

pub use ids::SnapshotId;
pub use service::{CopySource, SnapshotService, restore_size};
