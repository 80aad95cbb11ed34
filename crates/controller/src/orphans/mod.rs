//! The orphan reconciler: finds disks and backing files the driver made that no
//! PersistentVolume refers to any more, reports them, and (only when the operator enabled it)
//! deletes them after a real grace period.
//!
//! Safe by construction, because a reconciler that errs deletes live data: dry-run is the
//! default; a candidate is due only when an earlier pass of
//! this process already saw it and the grace period has passed since (RouterOS gives disks no
//! creation time, so "first seen" is the only honest age); a pass whose inputs are not all
//! complete decides nothing; a disk is re-printed, and the PVs re-listed, right before deleting.
//! The reconciler runs only while `is_leader` says so, the seam for leader election.

pub mod decide;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use routeros::{FilePath, Slot};
use serde::Serialize;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use decide::{Action, Kind};

use decide::{Aged, Inventory, Tracker};
use fencing::Cluster;
use fencing::clock::{Clock, SystemClock, format_rfc3339};
use vocab::Backends;
use vocab::error::DriverError;

/// Snapshot disks (`snap-…`) are listed only so their files are known to be in use.
const SNAPSHOT_PREFIX: &str = "snap-";
/// Audit record names for the two kinds of cleanup.
pub const AUDIT_DISK: &str = "OrphanDiskCleanup";
pub const AUDIT_FILE: &str = "OrphanFileCleanup";

/// One deletion the reconciler attempted.
#[derive(Debug, Clone, Copy)]
pub struct Cleanup<'a> {
    pub kind: Kind,
    /// `<backend>:<slot>`.
    pub volume: &'a str,
    /// Why it failed; `None` when the disk or file is gone.
    pub error: Option<&'a str>,
    pub elapsed: Duration,
}

/// Told about every deletion (the audit trail records them). Deletions are the reconciler's
/// only changes to the RDS, so they are what an operator must be able to trace.
pub trait OrphanObserver: Send + Sync {
    fn cleaned(&self, cleanup: &Cleanup<'_>);
}

#[derive(Debug, Clone)]
pub struct OrphanConfig {
    /// How long a candidate must have been seen before it is due.
    pub grace_period: Duration,
    /// Pause between passes.
    pub interval: Duration,
    /// Delete due orphans; otherwise only report them (dry-run).
    pub delete: bool,
    /// Deadline for listing PersistentVolumes.
    pub api_timeout: Duration,
}

impl Default for OrphanConfig {
    fn default() -> Self {
        OrphanConfig {
            grace_period: Duration::from_secs(3600),
            interval: Duration::from_secs(3600),
            delete: false,
            api_timeout: Duration::from_secs(15),
        }
    }
}

/// One orphan candidate as operators see it (`GET /orphans`, `rds-csi orphans`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub backend: String,
    pub kind: Kind,
    pub slot: String,
    /// The backing file.
    pub path: String,
    pub first_seen: String,
    pub age_secs: u64,
    pub action: Action,
    /// Why a deletion failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The latest pass, as served to operators.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Whether passes run at all in this process.
    pub enabled: bool,
    pub dry_run: bool,
    pub grace_period_secs: u64,
    /// Completed passes (a failed one is not counted).
    pub passes: u64,
    /// When the latest pass (complete or not) ended; `None` before the first.
    pub last_pass: Option<String>,
    /// Why the latest pass decided nothing; `None` when it was complete.
    pub error: Option<String>,
    /// Candidates of the latest complete pass.
    pub findings: Vec<Finding>,
}

/// Counters since start, read by the metrics collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanStats {
    pub passes: u64,
    pub failed_passes: u64,
    pub disks: u64,
    pub files: u64,
    pub disks_deleted: u64,
    pub files_deleted: u64,
    pub delete_failures: u64,
}

#[derive(Default)]
struct Counters {
    passes: AtomicU64,
    failed_passes: AtomicU64,
    disks: AtomicU64,
    files: AtomicU64,
    disks_deleted: AtomicU64,
    files_deleted: AtomicU64,
    delete_failures: AtomicU64,
}

pub type IsLeader = Arc<dyn Fn() -> bool + Send + Sync>;

pub struct OrphanReconciler {
    backends: Arc<Backends>,
    cluster: Arc<dyn Cluster>,
    config: OrphanConfig,
    clock: Arc<dyn Clock>,
    is_leader: IsLeader,
    observer: Option<Arc<dyn OrphanObserver>>,
    enabled: bool,
    tracker: tokio::sync::Mutex<Tracker>,
    report: RwLock<Report>,
    counters: Counters,
}

/// Everything one pass reads; any missing piece makes the pass decide nothing.
struct Inputs {
    inventories: Vec<Inventory>,
    pv_handles: Vec<String>,
}

impl OrphanReconciler {
    /// `enabled` only says whether [`OrphanReconciler::spawn`] runs passes; the report and the
    /// metrics exist either way so operators see that it is off.
    pub fn new(
        backends: Arc<Backends>,
        cluster: Arc<dyn Cluster>,
        config: OrphanConfig,
        enabled: bool,
    ) -> Self {
        let report = Report {
            enabled,
            dry_run: !config.delete,
            grace_period_secs: config.grace_period.as_secs(),
            ..Report::default()
        };
        OrphanReconciler {
            backends,
            cluster,
            config,
            clock: Arc::new(SystemClock),
            is_leader: Arc::new(|| true),
            observer: None,
            enabled,
            tracker: tokio::sync::Mutex::new(Tracker::default()),
            report: RwLock::new(report),
            counters: Counters::default(),
        }
    }

    /// Time from `clock` instead of the wall clock, so grace periods are tested by moving time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Passes run only while this says true. Today there is one controller replica and it is
    /// always the leader; leader election plugs in here.
    pub fn with_leader_check(mut self, is_leader: IsLeader) -> Self {
        self.is_leader = is_leader;
        self
    }

    /// Deletions are told to `observer` (the audit trail).
    pub fn with_observer(mut self, observer: Arc<dyn OrphanObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn tell(&self, kind: Kind, volume: &str, error: Option<&str>, elapsed: Duration) {
        if let Some(o) = &self.observer {
            o.cleaned(&Cleanup {
                kind,
                volume,
                error,
                elapsed,
            });
        }
    }

    pub fn report(&self) -> Report {
        self.report
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The report as JSON, for the HTTP endpoint.
    pub fn report_json(&self) -> String {
        serde_json::to_string_pretty(&self.report()).unwrap_or_else(|e| {
            format!(
                "{{\"error\":{:?}}}",
                format!("cannot encode the report: {e}")
            )
        })
    }

    pub fn stats(&self) -> OrphanStats {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OrphanStats {
            passes: r(&c.passes),
            failed_passes: r(&c.failed_passes),
            disks: r(&c.disks),
            files: r(&c.files),
            disks_deleted: r(&c.disks_deleted),
            files_deleted: r(&c.files_deleted),
            delete_failures: r(&c.delete_failures),
        }
    }

    /// Runs a pass every interval (the first one at once: it only records first sightings,
    /// it never deletes) until the handle is aborted. Does nothing when disabled.
    pub fn spawn(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        if !self.enabled {
            info!("orphan reconciler disabled");
            return None;
        }
        let me = Arc::clone(self);
        let every = if me.config.interval.is_zero() {
            OrphanConfig::default().interval
        } else {
            me.config.interval
        };
        info!(
            dry_run = !me.config.delete,
            grace = ?me.config.grace_period,
            interval = ?every,
            "orphan reconciler started"
        );
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !(me.is_leader)() {
                    continue;
                }
                me.run_once().await;
            }
        }))
    }

    /// One pass: list, decide, log, count and (when enabled and due) delete. Returns the
    /// report it published.
    pub async fn run_once(&self) -> Report {
        let mut tracker = self.tracker.lock().await;
        let now = self.clock.now();
        let inputs = self.gather().await;
        let mut report = self.report();
        report.last_pass = Some(format_rfc3339(self.clock.now()));
        let inputs = match inputs {
            Ok(i) => i,
            Err(why) => {
                self.counters.failed_passes.fetch_add(1, Ordering::Relaxed);
                warn!(error = %why, "orphan pass incomplete: nothing decided, nothing deleted");
                report.error = Some(why.to_string());
                self.publish(report.clone());
                return report;
            }
        };
        let live = decide::live_volumes(&inputs.pv_handles, self.backends.default_name());
        let found: Vec<_> = inputs
            .inventories
            .iter()
            .flat_map(|inv| decide::candidates(inv, &live))
            .collect();
        let aged = tracker.observe(now, self.config.grace_period, found);
        self.counters.passes.fetch_add(1, Ordering::Relaxed);
        let mut findings = Vec::with_capacity(aged.len());
        let mut to_delete = Vec::new();
        for a in aged {
            let action = decide::plan(&a, self.config.delete);
            if action == Action::Delete {
                to_delete.push(a);
            } else {
                findings.push(self.finding(&a, action, None));
            }
        }
        if !to_delete.is_empty() {
            findings.extend(self.delete_due(&mut tracker, to_delete).await);
        }
        findings.sort_by(|a, b| (&a.backend, a.kind, &a.path).cmp(&(&b.backend, b.kind, &b.path)));
        for f in &findings {
            info!(
                backend = %f.backend,
                kind = f.kind.as_str(),
                slot = %f.slot,
                path = %f.path,
                age_secs = f.age_secs,
                action = f.action.as_str(),
                detail = f.detail.as_deref().unwrap_or(""),
                "orphan {}",
                f.kind.as_str()
            );
        }
        let count = |k: Kind| {
            findings
                .iter()
                .filter(|f| f.kind == k && f.action != Action::Deleted)
                .count() as u64
        };
        self.counters
            .disks
            .store(count(Kind::Disk), Ordering::Relaxed);
        self.counters
            .files
            .store(count(Kind::File), Ordering::Relaxed);
        info!(
            passes = tracker.passes(),
            candidates = findings.len(),
            dry_run = !self.config.delete,
            "orphan pass complete"
        );
        report.passes = tracker.passes();
        report.error = None;
        report.findings = findings;
        self.publish(report.clone());
        report
    }

    fn publish(&self, report: Report) {
        *self.report.write().unwrap_or_else(|p| p.into_inner()) = report;
    }

    fn finding(&self, a: &Aged, action: Action, detail: Option<String>) -> Finding {
        Finding {
            backend: a.candidate.key.backend.clone(),
            kind: a.candidate.key.kind,
            slot: a.candidate.slot.clone(),
            path: a.candidate.path.clone(),
            first_seen: format_rfc3339(a.first_seen),
            age_secs: a.age.as_secs(),
            action,
            detail,
        }
    }

    /// Lists every backend's disks and files and the cluster's PVs. Each RDS command carries
    /// the client's read deadline; the PV list gets `api_timeout`.
    async fn gather(&self) -> Result<Inputs, DriverError> {
        let pvc = Slot::new(vocab::volume_id::SLOT_PREFIX)
            .map_err(|e| DriverError::Internal(e.to_string()))?;
        let snap = Slot::new(SNAPSHOT_PREFIX).map_err(|e| DriverError::Internal(e.to_string()))?;
        let mut inventories = Vec::new();
        for b in self.backends.all() {
            let fail = |what: &str, e| DriverError::rds(format!("backend {}: {what}", b.name), e);
            let mut disks = b
                .client
                .list_disks(&pvc)
                .await
                .map_err(|e| fail("listing pvc- disks", e))?;
            disks.extend(
                b.client
                    .list_disks(&snap)
                    .await
                    .map_err(|e| fail("listing snapshot disks", e))?,
            );
            let mut files = Vec::new();
            for dir in top_dirs(&b.allowed_paths) {
                files.extend(
                    b.client
                        .list_files(&dir)
                        .await
                        .map_err(|e| fail(&format!("listing files under {}", dir.as_str()), e))?,
                );
            }
            inventories.push(Inventory {
                backend: b.name.clone(),
                allowed_paths: b.allowed_paths.clone(),
                disks,
                files,
            });
        }
        let pv_handles = self.pv_handles().await?;
        Ok(Inputs {
            inventories,
            pv_handles,
        })
    }

    async fn pv_handles(&self) -> Result<Vec<String>, DriverError> {
        let limit = self.config.api_timeout;
        match tokio::time::timeout(limit, self.cluster.list_pvs()).await {
            Ok(Ok(pvs)) => Ok(pvs.into_iter().map(|p| p.volume_handle).collect()),
            Ok(Err(e)) => Err(DriverError::Unavailable(format!(
                "listing PersistentVolumes: {e}"
            ))),
            Err(_) => Err(DriverError::Unavailable(format!(
                "listing PersistentVolumes: no answer within {limit:?}"
            ))),
        }
    }

    /// Deletes due candidates after a last check: the PVs are listed again (a PV created since
    /// the pass began keeps its volume), and each disk is printed again and must be the disk
    /// the pass judged.
    async fn delete_due(&self, tracker: &mut Tracker, due: Vec<Aged>) -> Vec<Finding> {
        let live = match self.pv_handles().await {
            Ok(h) => decide::live_volumes(&h, self.backends.default_name()),
            Err(why) => {
                let why = format!("not deleted: {why}");
                warn!(error = %why, "orphan deletions skipped this pass");
                return due
                    .iter()
                    .map(|a| self.finding(a, Action::Kept, Some(why.clone())))
                    .collect();
            }
        };
        let mut out = Vec::new();
        for a in due {
            let c = &a.candidate;
            if live.contains(&(c.key.backend.clone(), c.slot.clone())) {
                tracker.forget(&c.key);
                out.push(self.finding(
                    &a,
                    Action::Kept,
                    Some("a PersistentVolume now refers to it".into()),
                ));
                continue;
            }
            let Some(backend) = self.backends.get(&c.key.backend) else {
                out.push(self.finding(
                    &a,
                    Action::Kept,
                    Some("backend no longer configured".into()),
                ));
                continue;
            };
            let started = std::time::Instant::now();
            let result = match c.key.kind {
                Kind::Disk => self.delete_disk(backend, &a).await,
                Kind::File => self.delete_file(backend, &a).await,
            };
            let volume = format!("{}:{}", c.key.backend, c.slot);
            let finding = match result {
                Ok(None) => {
                    tracker.forget(&c.key);
                    let counter = match c.key.kind {
                        Kind::Disk => &self.counters.disks_deleted,
                        Kind::File => &self.counters.files_deleted,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.tell(c.key.kind, &volume, None, started.elapsed());
                    self.finding(&a, Action::Deleted, None)
                }
                Ok(Some(why)) => {
                    tracker.forget(&c.key);
                    self.finding(&a, Action::Kept, Some(why))
                }
                Err(why) => {
                    self.counters
                        .delete_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let why = why.to_string();
                    self.tell(c.key.kind, &volume, Some(&why), started.elapsed());
                    self.finding(&a, Action::DeleteFailed, Some(why))
                }
            };
            out.push(finding);
        }
        out
    }

    /// `Ok(None)` deleted, `Ok(Some(why))` left alone because it changed, `Err` failed.
    async fn delete_disk(
        &self,
        b: &vocab::Backend,
        a: &Aged,
    ) -> Result<Option<String>, DriverError> {
        let c = &a.candidate;
        let slot = Slot::new(&c.slot).map_err(|e| DriverError::Internal(e.to_string()))?;
        let now = b
            .client
            .get_disk(&slot)
            .await
            .map_err(|e| DriverError::rds("re-printing the disk", e))?;
        let Some(disk) = now else {
            return Ok(Some("the disk is already gone".into()));
        };
        let judged = c.disk.as_ref();
        if disk.file_path != judged.and_then(|d| d.file_path.clone())
            || disk.kind != judged.and_then(|d| d.kind.clone())
        {
            return Ok(Some("the disk changed since the pass listed it".into()));
        }
        let outcome = b
            .client
            .delete_found_disk(&disk)
            .await
            .map_err(|e| DriverError::rds("removing the disk", e))?;
        if let Some(file) = outcome.leftover_file {
            warn!(backend = %b.name, slot = %c.slot, file = %file, "orphan disk removed but its file was not; it will be reported as an orphan file");
        }
        Ok(None)
    }

    async fn delete_file(
        &self,
        b: &vocab::Backend,
        a: &Aged,
    ) -> Result<Option<String>, DriverError> {
        let c = &a.candidate;
        let slot = Slot::new(&c.slot).map_err(|e| DriverError::Internal(e.to_string()))?;
        // A disk of that slot made since the listing (a retried CreateVolume) owns the file.
        if b.client
            .get_disk(&slot)
            .await
            .map_err(|e| DriverError::rds("checking for a disk of the slot", e))?
            .is_some()
        {
            return Ok(Some("a disk of this slot exists now".into()));
        }
        let path = FilePath::new(&c.path).map_err(|e| DriverError::Internal(e.to_string()))?;
        b.client
            .remove_file(&path)
            .await
            .map_err(|e| DriverError::rds("removing the file", e))?;
        Ok(None)
    }
}

/// The allowed paths without those under another one (or repeated), so no file is listed
/// twice.
fn top_dirs(paths: &[FilePath]) -> Vec<FilePath> {
    let mut out: Vec<FilePath> = Vec::new();
    for p in paths {
        if !paths.iter().any(|q| p.is_under(q)) && !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencing::MemoryCluster;
    use fencing::clock::ManualClock;
    use fencing::cluster::ClusterError;
    use rds::testing::ScriptedExec;
    use rds::{ClientConfig, RdsClient};
    use vocab::Backend;

    const ORPHAN: &str = "pvc-22222222-2222-2222-2222-222222222222";

    fn backends(exec: Arc<ScriptedExec>) -> Arc<Backends> {
        let base = FilePath::new("/storage-pool/metal-csi").unwrap();
        let config = ClientConfig {
            max_attempts: 1,
            ..ClientConfig::default()
        };
        let b = Backend {
            name: "default".into(),
            client: Arc::new(RdsClient::new(exec, config)),
            nvme_addresses: vec!["127.0.0.1".parse().unwrap()],
            nvme_port: routeros::Port::new(4420).unwrap(),
            volume_path: base.clone(),
            allowed_paths: vec![base],
            insecure: false,
            target: "test".into(),
        };
        Arc::new(Backends::new("default", vec![b]).unwrap())
    }

    /// One pass's listings: the orphan disk, no snapshots, no files.
    fn script_listing(exec: &ScriptedExec) {
        exec.ok(&format!(
            " 0  slot=\"{ORPHAN}\" type=file file-path=/storage-pool/metal-csi/{ORPHAN}.img size=1 073 741 824\n"
        ));
        exec.ok("");
        exec.ok("");
    }

    #[tokio::test]
    async fn a_pass_with_a_failed_input_decides_and_deletes_nothing() {
        let exec = Arc::new(ScriptedExec::new());
        let cluster = Arc::new(MemoryCluster::new());
        let config = OrphanConfig {
            grace_period: Duration::ZERO,
            delete: true,
            ..OrphanConfig::default()
        };
        let r = OrphanReconciler::new(backends(exec.clone()), cluster.clone(), config, true)
            .with_clock(Arc::new(ManualClock::default()));

        script_listing(&exec);
        let first = r.run_once().await;
        assert_eq!(first.error, None);
        assert_eq!(first.findings.len(), 1);
        assert_eq!(first.findings[0].action, Action::Waiting);

        // The PV list fails: the orphan would be due now, but nothing is decided.
        cluster.fail_lists(Some(ClusterError::Unavailable("apiserver down".into())));
        script_listing(&exec);
        let failed = r.run_once().await;
        assert!(
            failed.error.as_deref().unwrap().contains("apiserver down"),
            "{failed:?}"
        );
        assert_eq!(r.stats().failed_passes, 1);
        assert_eq!(r.stats().disks_deleted, 0);
        assert!(
            !exec.lines().iter().any(|l| l.contains("remove")),
            "{:?}",
            exec.lines()
        );

        // An RDS listing that fails is the same.
        cluster.fail_lists(None);
        exec.err(rds::RdsError::Transport {
            verb: "disk-print",
            reason: "connection reset".into(),
        });
        let failed = r.run_once().await;
        assert!(
            failed
                .error
                .as_deref()
                .unwrap()
                .contains("connection reset")
        );
        assert!(!exec.lines().iter().any(|l| l.contains("remove")));
        assert_eq!(exec.remaining(), 0);
        assert_eq!(r.stats().passes, 1);
    }

    #[test]
    fn nested_allowed_paths_are_listed_once() {
        let p = |s: &str| FilePath::new(s).unwrap();
        let dirs = top_dirs(&[
            p("/storage-pool/metal-csi"),
            p("/storage-pool/metal-csi/fast"),
            p("/storage-pool/other"),
            p("/storage-pool/other"),
        ]);
        assert_eq!(
            dirs,
            [p("/storage-pool/metal-csi"), p("/storage-pool/other")]
        );
    }
}
