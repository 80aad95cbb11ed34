//! `rds_csi_orphan_*`: the reconciler's own counters, read at scrape time so the exported
//! numbers cannot drift from the report operators get from `GET /orphans`.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{OrphanReconciler, OrphanStats};

pub struct OrphanCollector {
    reconciler: Arc<OrphanReconciler>,
}

impl OrphanCollector {
    pub fn new(reconciler: Arc<OrphanReconciler>) -> Self {
        OrphanCollector { reconciler }
    }
}

impl fmt::Debug for OrphanCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrphanCollector").finish_non_exhaustive()
    }
}

type Read = fn(&OrphanStats) -> u64;

const GAUGES: [(&str, &str, Read); 2] = [
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

const COUNTERS: [(&str, &str, Read); 5] = [
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

fn encode_one<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: M,
) -> Result<(), fmt::Error> {
    let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family)
}

impl Collector for OrphanCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.reconciler.stats();
        for (name, help, read) in GAUGES {
            let value = i64::try_from(read(&stats)).unwrap_or(i64::MAX);
            encode_one(&mut encoder, name, help, ConstGauge::new(value))?;
        }
        for (name, help, read) in COUNTERS {
            encode_one(&mut encoder, name, help, ConstCounter::new(read(&stats)))?;
        }
        Ok(())
    }
}
