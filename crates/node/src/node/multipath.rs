//! NVMe/TCP multipath on the node: one volume's subsystem connected through every configured
//! address with the same host identity, so the kernel's native multipath serves one head block
//! device (`nvmeSnN`) over all of them and fails I/O over when a path goes.
//!
//! - Stage connects every path that has no controller yet, in parallel; it succeeds when at
//!   least one path has a controller. A path that cannot connect is left to the monitor, which
//!   retries it ([`Inner::repair_paths`]) and reports the live set.
//! - A path whose controller the kernel deleted (6.12 does so when the target answers a
//!   reconnect with "do not retry") is reconnected the same way: the head device and every mount
//!   on it stay as they are, since another path kept the namespace.
//! - That repair runs beside the monitor pass, without the volume lock: a connect to an address
//!   that never answers waits out its whole deadline, and neither the volume's own unstage nor
//!   the other volumes' checks may wait with it. A connect that lands after an unstage is undone
//!   under the lock. A path that stays down is retried with a doubling pause (the recovery
//!   policy's), not on every pass, and at most [`PATH_REPAIRS_IN_FLIGHT`] repairs run at once.
//! - With the kernel's multipath off (`nvme_core.multipath=N`) a second controller would be a
//!   second block device for the same volume, so only one path is ever connected and the reason
//!   is reported (VolumeCondition, log, `paths_changed`).
//! - Unstage deletes every controller of the NQN, live or reconnecting, so no path survives it.

use nvme::{ConnectParams, Multipath, Nqn, PathState, TargetAddress};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::state::StagedVolume;
use super::{Inner, nvme_err};
use vocab::error::{DriverError, Result};

/// Background path repairs in flight at once on a node. Each holds at most one blocking kernel
/// call per path, so this keeps most of the executor's slots for stage and recovery even when
/// one address is dead for every volume.
pub(crate) const PATH_REPAIRS_IN_FLIGHT: usize = 4;

/// Whether a path connect may repair the subsystem itself or only add to a working one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Stage and locked recovery: an orphaned subsystem is disconnected and connected again.
    Repair,
    /// The unlocked background repair: only paths next to a live or reconnecting controller are
    /// added; anything else belongs to the locked recovery.
    AddMissing,
}

/// What [`Inner::connect_paths`] did.
#[derive(Debug, Default)]
pub(crate) struct PathsConnect {
    /// The NQN had no usable controller before and has one now: this call made the connection
    /// (and a failed stage may undo it).
    pub created: bool,
    /// Paths (`address:port`) this call connected.
    pub connected: Vec<String>,
    /// Paths that could not be connected, with the error.
    pub failed: Vec<(String, String)>,
    /// Why paths were left unconnected on purpose (multipath disabled in the kernel).
    pub withheld: Option<String>,
}

/// The paths of one staged volume as the kernel has them now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathReport {
    pub total: usize,
    /// `address:port` of each live path.
    pub live: Vec<String>,
    /// `address:port` of each path that is not live.
    pub missing: Vec<String>,
    /// The missing paths with their controllers' states, for messages.
    pub missing_detail: Vec<String>,
    /// Paths with no controller at all: only these can be connected (the others are the
    /// kernel's to reconnect).
    pub absent: usize,
    /// Set when the kernel's multipath is off and the volume has several paths.
    pub multipath_off: Option<String>,
}

impl PathReport {
    pub(crate) fn from_states(states: &[PathState], multipath_off: Option<String>) -> PathReport {
        let (live, missing): (Vec<&PathState>, Vec<&PathState>) =
            states.iter().partition(|p| p.is_live());
        PathReport {
            total: states.len(),
            live: live.iter().map(|p| p.name()).collect(),
            missing: missing.iter().map(|p| p.name()).collect(),
            missing_detail: missing.iter().map(|p| p.describe()).collect(),
            absent: states.iter().filter(|p| p.is_absent()).count(),
            multipath_off,
        }
    }

    /// The VolumeCondition problem of a multipath volume that lacks paths; `None` when every
    /// path is live or the volume has a single path (its controller problem is reported
    /// elsewhere).
    pub fn problem(&self) -> Option<String> {
        if self.total < 2 || self.missing.is_empty() {
            return None;
        }
        let mut msg = format!(
            "NVMe/TCP paths degraded: {} of {} live; missing {}",
            self.live.len(),
            self.total,
            self.missing_detail.join(", ")
        );
        if let Some(why) = &self.multipath_off {
            msg.push_str(&format!(
                " ({why}: only one path is connected so the volume never shows up as two block devices)"
            ));
        }
        Some(msg)
    }
}

fn name_of(t: &TargetAddress) -> String {
    std::net::SocketAddr::new(t.ip(), t.port()).to_string()
}

impl Inner {
    /// The kernel's multipath setting when it matters (several paths); `None` otherwise.
    pub(crate) async fn multipath_off(&self, paths: usize) -> Option<String> {
        if paths < 2 {
            return None;
        }
        match self.initiator.multipath().await {
            Ok(Multipath::Disabled { reason }) => Some(reason),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kernel's NVMe multipath setting; assuming it is on");
                None
            }
        }
    }

    /// Connects every path in `paths` (one volume: same NQN, one target each) that has no
    /// controller, in parallel. An orphaned subsystem (nothing live or reconnecting, or no block
    /// device) is disconnected first. Succeeds when afterwards at least one path has a
    /// controller; the paths that failed are in the answer, for the caller to report.
    pub(crate) async fn connect_paths(&self, paths: &[ConnectParams]) -> Result<PathsConnect> {
        self.connect_paths_in(paths, Scope::Repair).await
    }

    /// Connects the paths of `paths` that have no controller, only while the subsystem has a
    /// live or reconnecting controller; otherwise does nothing (the locked recovery owns it).
    async fn add_missing_paths(&self, paths: &[ConnectParams]) -> Result<PathsConnect> {
        self.connect_paths_in(paths, Scope::AddMissing).await
    }

    async fn connect_paths_in(
        &self,
        paths: &[ConnectParams],
        scope: Scope,
    ) -> Result<PathsConnect> {
        let Some(first) = paths.first() else {
            return Err(DriverError::Internal(
                "a volume without NVMe/TCP paths".into(),
            ));
        };
        let nqn = first.nqn.clone();
        let health = self
            .initiator
            .health(&nqn)
            .await
            .map_err(|e| nvme_err(&format!("reading the state of {nqn}"), e))?;
        let had_any = match health {
            Some(nvme::Health::Healthy) | Some(nvme::Health::Recovering { .. }) => true,
            _ if scope == Scope::AddMissing => return Ok(PathsConnect::default()),
            Some(nvme::Health::Orphaned(reason)) => {
                tracing::warn!(nqn = %nqn, %reason, "orphaned subsystem; reconnecting");
                self.initiator
                    .disconnect(&nqn)
                    .await
                    .map_err(|e| nvme_err(&format!("repairing orphaned {nqn}"), e))?;
                false
            }
            None => false,
        };
        let targets: Vec<TargetAddress> = paths.iter().map(|p| p.target).collect();
        let states = self
            .initiator
            .paths(&nqn, &targets)
            .await
            .map_err(|e| nvme_err(&format!("reading the paths of {nqn}"), e))?;
        let present = states.iter().any(|s| !s.is_absent());
        let absent: Vec<ConnectParams> = paths
            .iter()
            .zip(&states)
            .filter(|(_, s)| s.is_absent())
            .map(|(p, _)| p.clone())
            .collect();
        let mut out = PathsConnect::default();
        if absent.is_empty() {
            return Ok(out);
        }
        if let Some(why) = self.multipath_off(paths.len()).await {
            // One path only, the first that connects, in preference order.
            if present {
                out.withheld = Some(why);
                return Ok(out);
            }
            for p in &absent {
                match self.initiator.connect(p).await {
                    Ok(_) => {
                        out.connected.push(name_of(&p.target));
                        break;
                    }
                    Err(e) => out.failed.push((name_of(&p.target), e.to_string())),
                }
            }
            tracing::warn!(nqn = %nqn, reason = %why, connected = ?out.connected, "NVMe multipath is off: one path only");
            out.withheld = Some(why);
        } else {
            let mut set = JoinSet::new();
            for p in absent {
                let initiator = std::sync::Arc::clone(&self.initiator);
                set.spawn(async move {
                    let r = initiator.connect(&p).await;
                    (name_of(&p.target), r)
                });
            }
            let mut results = Vec::new();
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok(r) => results.push(r),
                    Err(e) => out
                        .failed
                        .push(("?".into(), format!("connect task failed: {e}"))),
                }
            }
            // Report in configuration order, not completion order.
            results.sort_by_key(|(name, _)| {
                targets
                    .iter()
                    .position(|t| name_of(t) == *name)
                    .unwrap_or(usize::MAX)
            });
            for (name, r) in results {
                match r {
                    Ok(_) => out.connected.push(name),
                    Err(e) => out.failed.push((name, e.to_string())),
                }
            }
        }
        for (path, error) in &out.failed {
            tracing::warn!(nqn = %nqn, path = %path, error = %error, "NVMe/TCP path did not connect; retried in the background");
        }
        if !had_any && out.connected.is_empty() {
            let list: Vec<String> = out
                .failed
                .iter()
                .map(|(p, e)| format!("{p}: {e}"))
                .collect();
            return Err(DriverError::Unavailable(format!(
                "connecting {nqn}: no NVMe/TCP path connected ({})",
                list.join("; ")
            )));
        }
        out.created = !had_any && !out.connected.is_empty();
        Ok(out)
    }

    /// The state of every path of `nqn` among `targets`.
    pub(crate) async fn path_report(
        &self,
        nqn: &Nqn,
        targets: &[TargetAddress],
    ) -> Result<PathReport> {
        let states = self
            .initiator
            .paths(nqn, targets)
            .await
            .map_err(|e| nvme_err(&format!("reading the paths of {nqn}"), e))?;
        let off = if states.iter().filter(|s| s.is_live()).count() < states.len() {
            self.multipath_off(states.len()).await
        } else {
            None
        };
        Ok(PathReport::from_states(&states, off))
    }

    /// Reports the live paths of a staged volume to the observer when they differ from what was
    /// reported last (always on the first call after a start, so gauges exist after a restart).
    /// Returns what it saw, `None` when the paths could not be read.
    pub(crate) async fn report_paths(&self, rec: &StagedVolume) -> Option<PathReport> {
        let (nqn, targets) = match (rec.nqn(), rec.targets()) {
            (Ok(n), Ok(t)) => (n, t),
            _ => return None,
        };
        let report = match self.path_report(&nqn, &targets).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(volume = %rec.volume_id, error = %e, "cannot read the volume's paths");
                return None;
            }
        };
        Some(self.announce_paths(rec, report))
    }

    /// Hands `report` to the observer when its live set differs from the last one reported.
    pub(crate) fn announce_paths(&self, rec: &StagedVolume, report: PathReport) -> PathReport {
        let previous = {
            let mut map = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            let w = map.entry(rec.volume_id.clone()).or_default();
            w.live_paths.replace(report.live.clone())
        };
        if previous.as_ref() == Some(&report.live) {
            return report;
        }
        if report.total > 1 {
            if report.missing.is_empty() {
                tracing::info!(volume = %rec.volume_id, live = report.live.len(), total = report.total, "every NVMe/TCP path live");
            } else {
                tracing::warn!(volume = %rec.volume_id, live = report.live.len(), total = report.total, missing = ?report.missing_detail, multipath_off = ?report.multipath_off, "NVMe/TCP paths degraded");
            }
        }
        self.observer.paths_changed(
            &rec.volume_id,
            rec.pvc(),
            report.live.len(),
            report.total,
            &report.missing,
        );
        report
    }

    /// Whether the monitor should start a background repair for this volume now: several paths,
    /// one of them without a controller, and no pause pending after earlier failed repairs.
    pub(crate) fn wants_path_repair(&self, volume_id: &str, report: &PathReport) -> bool {
        if report.total < 2 || report.absent == 0 {
            return false;
        }
        // With multipath off a second path is never added; nothing to try while one is there.
        if report.multipath_off.is_some() && !report.live.is_empty() {
            return false;
        }
        self.watch_of(volume_id).paths.due(Instant::now())
    }

    /// Connects the paths of a staged volume that have no controller, without its lock (see the
    /// module documentation). Returns what it connected, for the monitor's report.
    pub(crate) async fn repair_paths(&self, rec: StagedVolume) -> Option<String> {
        let paths = rec.path_params().ok()?;
        let _permit = self.path_repairs.acquire().await.ok()?;
        let result = self.add_missing_paths(&paths).await;
        let _guard = self.locks.lock(&rec.volume_id).await;
        let staged = self
            .state
            .get(&rec.volume_id)
            .is_some_and(|now| now.nqn == rec.nqn);
        if !staged {
            // Unstaged (or staged anew for another NQN) while the connect was in the kernel: the
            // unstage could not see this controller yet, so it is removed here.
            if let Ok(c) = &result
                && !c.connected.is_empty()
                && let Ok(nqn) = rec.nqn()
            {
                tracing::warn!(volume = %rec.volume_id, paths = ?c.connected, "a path connected after the volume was unstaged; disconnecting it");
                if let Err(e) = self.initiator.disconnect(&nqn).await {
                    tracing::warn!(volume = %rec.volume_id, error = %e, "disconnecting a path connected after unstage");
                }
            }
            return None;
        }
        let (done, failed) = match &result {
            Ok(c) => (c.connected.clone(), !c.failed.is_empty()),
            Err(e) => {
                tracing::debug!(volume = %rec.volume_id, error = %e, "adding missing paths");
                (Vec::new(), true)
            }
        };
        self.update_watch(&rec.volume_id, |w| {
            w.paths.record(failed, &self.cfg.recovery)
        });
        if done.is_empty() {
            return None;
        }
        self.report_paths(&rec).await;
        Some(format!(
            "reconnected NVMe/TCP path(s) {} (their controllers were gone)",
            done.join(", ")
        ))
    }

    /// After an unstage: the volume has no paths on this node any more.
    pub(crate) fn forget_paths(&self, volume_id: &str, pvc: Option<(String, String)>) {
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(volume_id);
        self.observer.paths_changed(volume_id, pvc, 0, 0, &[]);
    }
}
