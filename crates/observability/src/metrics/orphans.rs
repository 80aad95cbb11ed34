//! `rds_csi_orphan_*`: the reconciler's own counters, read at scrape time so the exported
//! numbers cannot drift from the report operators get from `GET /orphans`.

use std::sync::Arc;

use super::stats::{Field, StatsCollector};
use controller::orphans::{OrphanReconciler, OrphanStats};

/// Exports the reconciler's [`OrphanStats`] at scrape time.
pub fn collector(reconciler: Arc<OrphanReconciler>) -> StatsCollector<OrphanStats> {
    StatsCollector::new("orphans", move || reconciler.stats(), &GAUGES, &COUNTERS)
}

const GAUGES: [Field<OrphanStats>; 2] = [
    (
        "orphan_disks",
        "Orphan disk candidates found by the latest complete orphan pass (not yet deleted)",
        |s| s.disks,
    ),
    (
        "orphan_files",
        "Orphan backing-file candidates found by the latest complete orphan pass (not yet deleted)",
        |s| s.files,
    ),
];

const COUNTERS: [Field<OrphanStats>; 5] = [
    ("orphan_passes", "Complete orphan reconciler passes", |s| {
        s.passes
    }),
    (
        "orphan_pass_failures",
        "Orphan passes that decided nothing because an input (RDS listing, PV list) failed",
        |s| s.failed_passes,
    ),
    (
        "orphan_disks_deleted",
        "Orphan disks deleted by the reconciler",
        |s| s.disks_deleted,
    ),
    (
        "orphan_files_deleted",
        "Orphan backing files deleted by the reconciler",
        |s| s.files_deleted,
    ),
    (
        "orphan_delete_failures",
        "Orphan deletions that failed (retried on a later pass)",
        |s| s.delete_failures,
    ),
];
