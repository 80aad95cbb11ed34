//! Counters for metrics. Kept as plain atomics so fencing does not depend on a metrics library;
//! whoever exports Prometheus reads [`FencingStats`] snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time copy of the counters (totals only grow) and gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FencingStats {
    /// Gauge: volumes attached to at least one node.
    pub attached_volumes: u64,
    /// Gauge: volumes attached to two nodes (live migrations in flight).
    pub migrations_in_flight: u64,
    /// Node attachments recorded (a migration target counts as one).
    pub attaches_total: u64,
    /// Node attachments removed by ControllerUnpublish.
    pub detaches_total: u64,
    /// Publishes refused because another node holds the volume.
    pub conflicts_total: u64,
    /// Attachments cleared because their node was deleted or taken out of service.
    pub stale_cleared_total: u64,
    pub migrations_started_total: u64,
    pub migrations_completed_total: u64,
    /// Migrations reported for running past their timeout (never detached by the driver).
    pub migration_timeouts_total: u64,
    /// VolumeAttachments reported as stuck in deletion.
    pub stale_volume_attachment_reports_total: u64,
    /// Changes refused because the PV could not be written (the change was not made).
    pub persist_failures_total: u64,
    /// Changes made for a volume without a PV (kept in memory only).
    pub unpersisted_total: u64,
    /// Reconciler passes that could not check something because the API failed (nothing cleared).
    pub reconcile_errors_total: u64,
    /// Kubernetes events dropped because the event queue was full (the operations they
    /// describe were done; only their record is missing).
    pub events_dropped_total: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub attaches: AtomicU64,
    pub detaches: AtomicU64,
    pub conflicts: AtomicU64,
    pub stale_cleared: AtomicU64,
    pub migrations_started: AtomicU64,
    pub migrations_completed: AtomicU64,
    pub migration_timeouts: AtomicU64,
    pub stale_va_reports: AtomicU64,
    pub persist_failures: AtomicU64,
    pub unpersisted: AtomicU64,
    pub reconcile_errors: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(
        &self,
        attached_volumes: u64,
        migrations_in_flight: u64,
        events_dropped_total: u64,
    ) -> FencingStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FencingStats {
            attached_volumes,
            migrations_in_flight,
            attaches_total: get(&self.attaches),
            detaches_total: get(&self.detaches),
            conflicts_total: get(&self.conflicts),
            stale_cleared_total: get(&self.stale_cleared),
            migrations_started_total: get(&self.migrations_started),
            migrations_completed_total: get(&self.migrations_completed),
            migration_timeouts_total: get(&self.migration_timeouts),
            stale_volume_attachment_reports_total: get(&self.stale_va_reports),
            persist_failures_total: get(&self.persist_failures),
            unpersisted_total: get(&self.unpersisted),
            reconcile_errors_total: get(&self.reconcile_errors),
            events_dropped_total,
        }
    }
}
