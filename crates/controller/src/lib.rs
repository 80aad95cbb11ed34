//! The CSI Controller service: volumes, snapshots, list paging and the orphan reconciler.
//!
//! Owns: `controller` (the service, one file per RPC group: create, delete, expand, list,
//! lookup, publish), `snapshots` (snapshot ids, lineage, Create/Delete/List/GetSnapshot and
//! copies), `paging` (list tokens), `orphans` (finding and removing disks and exports nothing
//! owns, with its `OrphanObserver` trait), and the create-time checks (`create_check`).
//! ControllerPublish asks `fencing` before it answers.
//!
//! May not: depend on the node plugin, the `k8s` adapter, the hot-plug guard or
//! observability (they implement its observer traits), nor on the simulator or test-only
//! crates (the in-process stack for its tests comes from `sandbox`, a dev-dependency).
//! Depends on `vocab` and `fencing` among the driver's crates.

pub mod controller;
mod create_check;
pub mod orphans;
pub mod paging;
pub mod snapshots;

pub use controller::ControllerService;
