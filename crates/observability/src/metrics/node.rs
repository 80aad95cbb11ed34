//! `rds_csi_node_*`: what the node plugin notices about its volumes.
//!
//! Two sources, kept apart on purpose. Events the node service reports through its
//! [`NodeObserver`] (connections lost and restored, stale mounts and their recovery) are counted
//! as they happen: each is a one-off occurrence, so a counter is the right shape. The state of
//! the NVMe subsystems is read from sysfs on every scrape by [`NvmeCollector`]: a counter of
//! "connected minus disconnected" would drift with every missed or doubled event, sysfs cannot.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use nvme::{ControllerState, Health, ManagedPrefix, Subsystem, Sysfs};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

use super::{AlwaysListed, Metrics};
use node::NodeObserver;
use vocab::redundancy::{RedundancyTracker, Transition};

/// One series per staged volume: added by the first paths report, removed when the node says
/// the volume is gone, so the label set is bounded by the volumes staged on the node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    volume_id: String,
}

/// Counts node events and forwards every call unchanged to the observer it wraps, so it can sit
/// anywhere in the observer chain.
pub struct NodeEventMetrics {
    connects: Counter,
    disconnects: Counter,
    connections_lost: Counter,
    connections_restored: Counter,
    stale_detected: Counter,
    recovered: Counter,
    recovery_failed: Counter,
    paths_live: Family<VolumeLabels, Gauge>,
    paths: Family<VolumeLabels, Gauge>,
    redundancy_lost: Counter,
    redundancy: RedundancyTracker,
    inner: Arc<dyn NodeObserver>,
}

impl NodeEventMetrics {
    /// Registers the counters in `metrics` (listed from the start, at 0) and wraps `inner`.
    pub fn register(metrics: &Metrics, inner: Arc<dyn NodeObserver>) -> Arc<NodeEventMetrics> {
        let m = NodeEventMetrics {
            connects: Counter::default(),
            disconnects: Counter::default(),
            connections_lost: Counter::default(),
            connections_restored: Counter::default(),
            stale_detected: Counter::default(),
            recovered: Counter::default(),
            recovery_failed: Counter::default(),
            paths_live: Family::default(),
            paths: Family::default(),
            redundancy_lost: Counter::default(),
            redundancy: RedundancyTracker::default(),
            inner,
        };
        metrics.register(
            "node_nvme_connects",
            "NVMe/TCP connections this plugin made for NodeStageVolume (already-connected NQNs are not counted)",
            m.connects.clone(),
        );
        metrics.register(
            "node_nvme_disconnects",
            "NVMe/TCP disconnects this plugin made (NodeUnstageVolume, or undoing a failed stage)",
            m.disconnects.clone(),
        );
        metrics.register(
            "node_nvme_connections_lost",
            "Times a staged volume's NVMe controllers were seen leaving the live state (or vanishing)",
            m.connections_lost.clone(),
        );
        metrics.register(
            "node_nvme_connections_restored",
            "Times a live NVMe controller was seen again for a staged volume after a loss (reconnects)",
            m.connections_restored.clone(),
        );
        metrics.register(
            "node_stale_mounts_detected",
            "Staged or published volumes found mounted on a device that no longer carries their NQN",
            m.stale_detected.clone(),
        );
        metrics.register(
            "node_stale_mount_recoveries",
            "Stale mounts repaired automatically",
            m.recovered.clone(),
        );
        metrics.register(
            "node_stale_mount_recovery_failures",
            "Automatic stale-mount repairs that failed (each is retried with backoff)",
            m.recovery_failed.clone(),
        );
        metrics.register(
            "node_volume_paths_live",
            "NVMe/TCP paths of a staged volume that carry I/O now (multipath), per volume",
            AlwaysListed(m.paths_live.clone()),
        );
        metrics.register(
            "node_volume_paths",
            "NVMe/TCP paths a staged volume is configured with (its storage addresses), per volume",
            AlwaysListed(m.paths.clone()),
        );
        metrics.register(
            "node_volume_redundancy_lost",
            "Times a staged multipath volume went from every path live to some path missing (or was staged with one missing)",
            m.redundancy_lost.clone(),
        );
        Arc::new(m)
    }
}

impl fmt::Debug for NodeEventMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeEventMetrics").finish_non_exhaustive()
    }
}

impl NodeObserver for NodeEventMetrics {
    fn stale_detected(&self, volume_id: &str, reason: &str) {
        self.stale_detected.inc();
        self.inner.stale_detected(volume_id, reason);
    }
    fn recovered(&self, volume_id: &str, detail: &str) {
        self.recovered.inc();
        self.inner.recovered(volume_id, detail);
    }
    fn recovery_failed(&self, volume_id: &str, error: &str) {
        self.recovery_failed.inc();
        self.inner.recovery_failed(volume_id, error);
    }
    fn connection_lost(&self, volume_id: &str, nqn: &str, state: &str) {
        self.connections_lost.inc();
        self.inner.connection_lost(volume_id, nqn, state);
    }
    fn connection_restored(&self, volume_id: &str, nqn: &str) {
        self.connections_restored.inc();
        self.inner.connection_restored(volume_id, nqn);
    }
    fn stage_failed(&self, volume_id: &str, pvc: Option<(String, String)>, error: &str) {
        self.inner.stage_failed(volume_id, pvc, error);
    }
    fn nvme_connected(&self, volume_id: &str, nqn: &str) {
        self.connects.inc();
        self.inner.nvme_connected(volume_id, nqn);
    }
    fn nvme_disconnected(&self, volume_id: &str, nqn: &str) {
        self.disconnects.inc();
        self.inner.nvme_disconnected(volume_id, nqn);
    }
    fn paths_changed(
        &self,
        volume_id: &str,
        pvc: Option<(String, String)>,
        live: usize,
        total: usize,
        missing: &[String],
    ) {
        let labels = VolumeLabels {
            volume_id: volume_id.to_string(),
        };
        if total == 0 {
            self.paths_live.remove(&labels);
            self.paths.remove(&labels);
        } else {
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.paths_live.get_or_create(&labels).set(gauge(live));
            self.paths.get_or_create(&labels).set(gauge(total));
        }
        if self.redundancy.observe(volume_id, live, total) == Some(Transition::Lost) {
            self.redundancy_lost.inc();
        }
        self.inner
            .paths_changed(volume_id, pvc, live, total, missing);
    }
}

/// Controller states always exported (at 0 when absent), so a query for "connecting > 0" has
/// a series to look at; anything else the kernel reports is folded into `unknown` to keep the
/// label set bounded.
const STATES: [&str; 8] = [
    "live",
    "new",
    "connecting",
    "resetting",
    "deleting",
    "deleting (no IO)",
    "dead",
    "unknown",
];

/// Subsystem health as `nvme::assess` judges it, always all exported.
const HEALTHS: [&str; 3] = ["healthy", "recovering", "orphaned"];

fn state_label(s: &ControllerState) -> &'static str {
    match s {
        ControllerState::Live => "live",
        ControllerState::New => "new",
        ControllerState::Connecting => "connecting",
        ControllerState::Resetting => "resetting",
        ControllerState::Deleting => "deleting",
        ControllerState::DeletingNoIo => "deleting (no IO)",
        ControllerState::Dead => "dead",
        ControllerState::Unknown(_) => "unknown",
    }
}

fn health_label(h: &Health) -> &'static str {
    match h {
        Health::Healthy => "healthy",
        Health::Recovering { .. } => "recovering",
        Health::Orphaned(_) => "orphaned",
    }
}

/// Counts of one scan: subsystems by health, controllers by state (indexes into the arrays).
#[derive(Debug, Default, PartialEq, Eq)]
struct Snapshot {
    subsystems: [u64; HEALTHS.len()],
    controllers: [u64; STATES.len()],
}

fn summarize(subsystems: &[Subsystem], prefix: &ManagedPrefix) -> Snapshot {
    let mut snap = Snapshot::default();
    for sub in subsystems.iter().filter(|s| prefix.matches(&s.nqn)) {
        let health = health_label(&nvme::assess(sub));
        if let Some(i) = HEALTHS.iter().position(|h| *h == health) {
            snap.subsystems[i] += 1;
        }
        for c in &sub.controllers {
            let state = state_label(&c.state);
            if let Some(i) = STATES.iter().position(|s| *s == state) {
                snap.controllers[i] += 1;
            }
        }
    }
    snap
}

/// Reads the managed NVMe subsystems from sysfs on every scrape.
///
/// The scan is blocking file I/O and a wedged sysfs (a kernel waiting on the network) must not
/// hang `/metrics`: it runs on its own thread and the scrape waits at most `timeout`. While a
/// timed-out scan is still stuck no second one is started, so scrapes cannot pile up threads.
pub struct NvmeCollector {
    sysfs: Sysfs,
    prefix: ManagedPrefix,
    timeout: Duration,
    busy: Arc<AtomicBool>,
}

impl NvmeCollector {
    pub fn new(sysfs: Sysfs, prefix: ManagedPrefix, timeout: Duration) -> Self {
        NvmeCollector {
            sysfs,
            prefix,
            timeout,
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// One scan under the deadline; `Err` says why there is no snapshot.
    fn scan(&self) -> Result<Snapshot, String> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(format!(
                "an earlier scan of {} has not finished yet (sysfs not answering)",
                self.sysfs.root().display()
            ));
        }
        let (tx, rx) = mpsc::channel();
        let sysfs = self.sysfs.clone();
        let prefix = self.prefix.clone();
        let busy = Arc::clone(&self.busy);
        let spawned = std::thread::Builder::new()
            .name("nvme-metrics".into())
            .spawn(move || {
                let result = sysfs
                    .subsystems()
                    .map(|subs| summarize(&subs, &prefix))
                    .map_err(|e| e.to_string());
                busy.store(false, Ordering::Release);
                // The scrape may have stopped waiting; then nobody needs the answer.
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            self.busy.store(false, Ordering::Release);
            return Err(format!("cannot start the sysfs scan thread: {e}"));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "scanning {} took longer than {:?}",
                self.sysfs.root().display(),
                self.timeout
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("the sysfs scan thread ended without an answer".into())
            }
        }
    }
}

impl fmt::Debug for NvmeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvmeCollector")
            .field("sysfs", &self.sysfs.root())
            .field("prefix", &self.prefix.as_str())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One gauge family with a sample per label value.
fn encode_by(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
    counts: Option<&[u64]>,
) -> Result<(), fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    // No scan, no samples: a 0 here would claim "nothing connected" when nothing is known.
    let Some(counts) = counts else {
        return Ok(());
    };
    for (value, count) in values.iter().zip(counts) {
        let labels = [(label, *value)];
        let metric = family.encode_family(&labels)?;
        ConstGauge::new(i64::try_from(*count).unwrap_or(i64::MAX)).encode(metric)?;
    }
    Ok(())
}

impl Collector for NvmeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snap = match self.scan() {
            Ok(s) => Some(s),
            Err(why) => {
                tracing::warn!(error = %why, "NVMe metrics: sysfs scan failed; exporting no subsystem samples");
                None
            }
        };
        encode_by(
            &mut encoder,
            "node_nvme_subsystems",
            "NVMe subsystems under the managed NQN prefix on this node, by health (healthy, recovering, orphaned)",
            "health",
            &HEALTHS,
            snap.as_ref().map(|s| &s.subsystems[..]),
        )?;
        encode_by(
            &mut encoder,
            "node_nvme_controllers",
            "NVMe controllers of managed subsystems on this node, by kernel state",
            "state",
            &STATES,
            snap.as_ref().map(|s| &s.controllers[..]),
        )?;
        let ok = ConstGauge::new(i64::from(snap.is_some()));
        let family = encoder.encode_descriptor(
            "node_nvme_scan_success",
            "1 if this scrape's sysfs scan of NVMe subsystems succeeded within its deadline, else 0",
            None,
            ok.metric_type(),
        )?;
        ok.encode(family)?;
        let calls = kcall::global();
        for (name, help, value) in [
            (
                "node_blocking_calls_stuck",
                "Kernel calls (mount, sysfs, device I/O) past their deadline that have not returned yet",
                calls.stuck(),
            ),
            (
                "node_blocking_calls_in_flight",
                "Kernel calls running on blocking threads right now, stuck ones included",
                calls.in_flight(),
            ),
        ] {
            let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let family = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(family)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_states_fold_into_one_label() {
        assert_eq!(
            state_label(&ControllerState::parse("frobnicating")),
            "unknown"
        );
        assert_eq!(
            state_label(&ControllerState::parse("deleting (no IO)")),
            "deleting (no IO)"
        );
        for s in STATES {
            assert!(
                s == "unknown" || state_label(&ControllerState::parse(s)) == s,
                "{s}"
            );
        }
    }
}
