//! The background monitor: between kubelet calls, walk every staged volume, notice controller
//! state changes (reported to the observer) and stale mounts, and recover them with a bounded
//! backoff per volume. NodeGetVolumeStats wakes it early when it sees a stale mount.
//!
//! Volumes are checked one after another under their locks; missing multipath paths found on
//! the way are connected beside the pass, without the lock (`multipath`), and the pass ends
//! when those are done too.
//!
//! Cost: a pass reads sysfs and the mount table once ([`PassView`]) and a volume that view
//! shows healthy costs a few lookups and two `lstat`s. Only a volume the view does not clear
//! is read afresh and repaired ([`Inner::recover`]): per-volume sysfs lookups walk every
//! controller on the host, which made a pass grow with the square of the volumes
//! (docs/benchmarks.md, "Node monitor pass").

use std::sync::Arc;

use mount::{MountHealth, MountTable, NodeKind, classify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Inner;
use super::multipath::PathReport;
use super::recovery::RecoveryOutcome;
use super::stage::devnum;
use super::state::{StagedKind, StagedVolume};
use nvme::{Health, HostView, assess, path_states};

/// What one pass read once for all volumes. A snapshot: it only ever clears a volume; anything
/// it does not clear is read again under the volume's lock before a repair.
pub(crate) struct PassView {
    host: HostView,
    mounts: MountTable,
    /// Why the kernel will not take a second path, when it will not.
    multipath_off: Option<String>,
}

/// Result of checking one volume in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeCheck {
    Healthy,
    Recovered(String),
    /// The kernel is reconnecting on its own; nothing done.
    Waiting(String),
    /// Recovery failed; retried after the backoff.
    Failed(String),
    /// Skipped: still inside the backoff after an earlier failure.
    BackingOff,
}

/// One pass over all staged volumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorReport {
    pub checks: Vec<(String, VolumeCheck)>,
}

impl MonitorReport {
    pub fn get(&self, volume_id: &str) -> Option<&VolumeCheck> {
        self.checks
            .iter()
            .find(|(v, _)| v == volume_id)
            .map(|(_, c)| c)
    }
}

fn health_text(h: &Option<Health>) -> String {
    match h {
        None => "no controller".into(),
        Some(Health::Healthy) => "live".into(),
        Some(Health::Recovering { controllers }) => controllers
            .iter()
            .map(|(n, s)| format!("{n}={s}"))
            .collect::<Vec<_>>()
            .join(","),
        Some(Health::Orphaned(r)) => format!("orphaned: {r}"),
    }
}

impl Inner {
    pub(crate) async fn run_monitor(self: &Arc<Self>) {
        loop {
            let report = self.monitor_pass().await;
            for (volume, check) in &report.checks {
                match check {
                    VolumeCheck::Healthy | VolumeCheck::BackingOff => {}
                    other => tracing::info!(volume = %volume, check = ?other, "monitor"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.monitor_interval) => {}
                _ = self.kick.notified() => {}
            }
        }
    }

    pub(crate) async fn monitor_pass(self: &Arc<Self>) -> super::MonitorReport {
        let mut report = MonitorReport::default();
        let mut repairs = JoinSet::new();
        let view = self.pass_view().await;
        for rec in self.state.all() {
            let id = rec.volume_id.clone();
            let Some((check, paths)) = self.check_volume(rec.clone(), view.as_ref()).await else {
                continue;
            };
            if check != VolumeCheck::BackingOff
                && paths
                    .as_ref()
                    .is_some_and(|p| self.wants_path_repair(&id, p))
            {
                let me = Arc::clone(self);
                repairs.spawn(async move { (rec.volume_id.clone(), me.repair_paths(rec).await) });
            }
            report.checks.push((id, check));
        }
        while let Some(joined) = repairs.join_next().await {
            let Ok((id, Some(done))) = joined else {
                continue;
            };
            if let Some((_, check)) = report.checks.iter_mut().find(|(v, _)| *v == id) {
                *check = match std::mem::replace(check, VolumeCheck::Healthy) {
                    VolumeCheck::Recovered(d) => VolumeCheck::Recovered(format!("{d}; {done}")),
                    VolumeCheck::Failed(e) => VolumeCheck::Failed(e),
                    _ => VolumeCheck::Recovered(done),
                };
            }
        }
        report
    }

    /// One sysfs walk and one mount table for the whole pass; `None` (every volume then reads
    /// for itself) when either cannot be read.
    async fn pass_view(&self) -> Option<PassView> {
        let host = self
            .initiator
            .host_view()
            .await
            .map_err(|e| tracing::warn!(error = %e, "monitor: cannot read the NVMe subsystems"))
            .ok()?;
        let mounts = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| tracing::warn!(error = %e, "monitor: cannot read the mount table"))
            .ok()?;
        let multipath_off = self.multipath_off(2).await;
        Some(PassView {
            host,
            mounts,
            multipath_off,
        })
    }

    /// The volume's paths when `view` shows nothing for the recovery to do: a live controller,
    /// the staging mount (or each published device node) on the device the NQN resolves to.
    /// Missing paths do not matter here (they are the background repair's). `None` when
    /// anything is off or cannot be told from the view.
    fn clear_in_view(&self, rec: &StagedVolume, view: &PassView) -> Option<PathReport> {
        let nqn = rec.nqn().ok()?;
        let sub = view.host.subsystem(&nqn)?;
        if assess(sub) != Health::Healthy {
            return None;
        }
        let states = path_states(&sub.controllers, &rec.targets().ok()?);
        let degraded = states.len() > 1 && !states.iter().all(|p| p.is_live());
        let device = view.host.device(&nqn)?;
        match &rec.kind {
            StagedKind::Filesystem { .. } => {
                let verdict = classify(
                    &view.mounts,
                    self.sys.as_ref(),
                    &rec.staging_path,
                    Some(&device.path),
                    false,
                )
                .ok()?;
                (verdict == MountHealth::Ok).then_some(())?;
            }
            StagedKind::Block => {
                let current = devnum(&device)?;
                for target in rec.published.keys() {
                    match self.sys.node_kind(target).ok()? {
                        NodeKind::BlockDevice(d) if d != current => return None,
                        _ => {}
                    }
                }
            }
        }
        let off = if degraded {
            view.multipath_off.clone()
        } else {
            None
        };
        Some(PathReport::from_states(&states, off))
    }

    /// Checks one volume under its lock; also returns its paths as last seen, for the repair.
    async fn check_volume(
        &self,
        rec: StagedVolume,
        view: Option<&PassView>,
    ) -> Option<(VolumeCheck, Option<PathReport>)> {
        let id = rec.volume_id.clone();
        let now = Instant::now();
        if !self.watch_of(&id).recovery.due(now) {
            return Some((VolumeCheck::BackingOff, None));
        }
        let _guard = self.locks.lock(&id).await;
        // Unstaged while we waited for the lock: nothing to watch any more.
        let rec = self.state.get(&id)?;
        let nqn = rec.nqn.clone();
        if let Some(paths) = view.and_then(|v| self.clear_in_view(&rec, v)) {
            if self.watch_of(&id).live == Some(false) {
                tracing::info!(volume = %id, nqn = %nqn, "NVMe connection restored");
                self.observer.connection_restored(&id, &nqn);
            }
            let policy = &self.cfg.recovery;
            self.update_watch(&id, |w| {
                w.live = Some(true);
                w.recovery.record(false, policy);
            });
            let paths = self.announce_paths(&rec, paths);
            return Some((VolumeCheck::Healthy, Some(paths)));
        }
        let health = self.initiator.health(&rec.nqn().ok()?).await;
        match &health {
            Ok(h) => {
                let live = matches!(h, Some(Health::Healthy));
                let before = self.watch_of(&id).live;
                match (before, live) {
                    (Some(true) | None, false) => {
                        tracing::warn!(volume = %id, nqn = %nqn, state = %health_text(h), "NVMe connection lost");
                        self.observer.connection_lost(&id, &nqn, &health_text(h));
                    }
                    (Some(false), true) => {
                        tracing::info!(volume = %id, nqn = %nqn, "NVMe connection restored");
                        self.observer.connection_restored(&id, &nqn);
                    }
                    _ => {}
                }
                self.update_watch(&id, |w| w.live = Some(live));
            }
            Err(e) => tracing::warn!(volume = %id, error = %e, "cannot read controller state"),
        }
        let check = match self.recover(&rec).await {
            Ok(RecoveryOutcome::Healthy) => VolumeCheck::Healthy,
            Ok(RecoveryOutcome::Recovered(d)) => VolumeCheck::Recovered(d),
            Ok(RecoveryOutcome::Waiting(d)) => VolumeCheck::Waiting(d),
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(volume = %id, error = %msg, "recovery failed");
                self.observer.recovery_failed(&id, &msg);
                VolumeCheck::Failed(msg)
            }
        };
        // Multipath: report a change of the live path set (and the first view after a start).
        let paths = self.report_paths(&rec).await;
        let failed = matches!(check, VolumeCheck::Failed(_));
        self.update_watch(&id, |w| w.recovery.record(failed, &self.cfg.recovery));
        if matches!(check, VolumeCheck::Recovered(_)) {
            // A reconnect changes the controller state; record it so it is not reported twice.
            if let Ok(Some(Health::Healthy)) = self.initiator.health(&rec.nqn().ok()?).await {
                let before = self.watch_of(&id).live;
                if before == Some(false) {
                    self.observer.connection_restored(&id, &nqn);
                }
                self.update_watch(&id, |w| w.live = Some(true));
            }
        }
        Some((check, paths))
    }

    pub(crate) fn watch_of(&self, id: &str) -> super::Watch {
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn update_watch(&self, id: &str, f: impl FnOnce(&mut super::Watch)) {
        let mut map = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(id.to_string()).or_default());
    }
}
