//! `rds_csi_fencing_*`: the attachment manager's counters and gauges, read from
//! `AttachmentManager::stats()` on every scrape so the exported numbers are the manager's own
//! and cannot drift from them.
//!
//! There is deliberately no fencing duration histogram: ControllerUnpublish is fencing alone and
//! ControllerPublish is fencing plus one `disk-print`, so `rds_csi_rpc_duration_seconds` (by
//! method) and `rds_csi_routeros_command_duration_seconds` already tell the time apart.

use std::sync::Arc;

use super::stats::{Field, StatsCollector};
use fencing::{AttachmentManager, FencingStats};

/// Exports one manager's [`FencingStats`] at scrape time.
pub fn collector(manager: Arc<AttachmentManager>) -> StatsCollector<FencingStats> {
    StatsCollector::new("fencing", move || manager.stats(), &GAUGES, &COUNTERS)
}

/// Gauges: what is true now (name without prefix, help, value).
const GAUGES: [Field<FencingStats>; 2] = [
    (
        "fencing_attached_volumes",
        "Volumes the controller has attached to at least one node",
        |s| s.attached_volumes,
    ),
    (
        "fencing_migrations_in_flight",
        "Volumes attached to two nodes at once (KubeVirt live migrations in progress)",
        |s| s.migrations_in_flight,
    ),
];

/// Counters since the controller started (name without prefix and `_total`, help, value).
const COUNTERS: [Field<FencingStats>; 12] = [
    (
        "fencing_attaches",
        "Node attachments recorded by ControllerPublish (a migration target counts as one)",
        |s| s.attaches_total,
    ),
    (
        "fencing_detaches",
        "Node attachments removed by ControllerUnpublish",
        |s| s.detaches_total,
    ),
    (
        "fencing_conflicts",
        "ControllerPublish calls refused because another node holds the volume",
        |s| s.conflicts_total,
    ),
    (
        "fencing_stale_attachments_cleared",
        "Attachments released because their node was deleted or taken out of service",
        |s| s.stale_cleared_total,
    ),
    (
        "fencing_migrations_started",
        "Live migrations started (a second node attached a multi-node block volume)",
        |s| s.migrations_started_total,
    ),
    (
        "fencing_migrations_completed",
        "Live migrations ended by detaching one of the two nodes",
        |s| s.migrations_completed_total,
    ),
    (
        "fencing_migration_timeouts",
        "Live migrations reported for running past their timeout (never detached by the driver)",
        |s| s.migration_timeouts_total,
    ),
    (
        "fencing_stuck_volume_attachments",
        "VolumeAttachments reported as stuck in deletion",
        |s| s.stale_volume_attachment_reports_total,
    ),
    (
        "fencing_persist_failures",
        "Attachment changes refused because the PersistentVolume annotations could not be written",
        |s| s.persist_failures_total,
    ),
    (
        "fencing_unpersisted",
        "Attachment changes for volumes without a PersistentVolume, kept in memory only",
        |s| s.unpersisted_total,
    ),
    (
        "fencing_reconcile_errors",
        "Reconciler checks skipped because the Kubernetes API failed (nothing was cleared)",
        |s| s.reconcile_errors_total,
    ),
    (
        "fencing_events_dropped",
        "Kubernetes events about attachments dropped because the event queue was full",
        |s| s.events_dropped_total,
    ),
];
