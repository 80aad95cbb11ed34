//! The background monitor: between kubelet calls, walk every staged volume, notice controller
//! state changes (reported to the observer) and stale mounts, and recover them with a bounded
//! backoff per volume. NodeGetVolumeStats wakes it early when it sees a stale mount.
//!
//! Volumes are checked one after another under their locks; missing multipath paths found on
//! the way are connected beside the pass, without the lock (`multipath`), and the pass ends
//! when those are done too.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Inner;
use super::recovery::RecoveryOutcome;
use super::state::StagedVolume;
use nvme::Health;

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
        for rec in self.state.all() {
            let id = rec.volume_id.clone();
            let Some((check, paths)) = self.check_volume(rec.clone()).await else {
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

    /// Checks one volume under its lock; also returns its paths as last seen, for the repair.
    async fn check_volume(
        &self,
        rec: StagedVolume,
    ) -> Option<(VolumeCheck, Option<super::multipath::PathReport>)> {
        let id = rec.volume_id.clone();
        let now = Instant::now();
        if self.watch_of(&id).next_try.is_some_and(|t| t > now) {
            return Some((VolumeCheck::BackingOff, None));
        }
        let _guard = self.locks.lock(&id).await;
        // Unstaged while we waited for the lock: nothing to watch any more.
        let rec = self.state.get(&id)?;
        let nqn = rec.nqn.clone();
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
        let policy = self.cfg.recovery.clone();
        let failed = matches!(check, VolumeCheck::Failed(_));
        self.update_watch(&id, |w| {
            if failed {
                w.failures = w.failures.saturating_add(1);
                w.next_try = Some(Instant::now() + policy.backoff(w.failures));
            } else {
                w.failures = 0;
                w.next_try = None;
            }
        });
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

    fn watch_of(&self, id: &str) -> super::Watch {
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn update_watch(&self, id: &str, f: impl FnOnce(&mut super::Watch)) {
        let mut map = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(id.to_string()).or_default());
    }
}
