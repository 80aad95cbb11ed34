//! Controller HA: which replica serves ControllerPublish/Unpublish, and what the attachment
//! state does when leadership comes and goes. The decisions are the pure functions
//! [`refusal`] and [`step`] (unit-tested); [`HaGate`] and [`follow_leadership`] apply them to
//! the [`LeaderElector`] and the attachment manager.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fencing::{AttachmentManager, LeaderGate};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use super::leader::LeaderElector;

/// Why this replica refuses publish/unpublish now, if it does. It serves once it holds the
/// Lease (`leading`) AND rebuilt the attachment state in this leadership term (`rebuilt_in ==
/// term`); `holder` is the Lease's holder as last read, `me` this replica's identity.
pub fn refusal(
    leading: bool,
    term: u64,
    rebuilt_in: u64,
    holder: Option<&str>,
    me: &str,
) -> Option<String> {
    if leading && rebuilt_in == term {
        return None;
    }
    if leading {
        return Some(
            "this replica just became the leader and is rebuilding the attachment state".into(),
        );
    }
    let leader = holder
        .filter(|h| *h != me)
        .unwrap_or("not known yet (no replica holds the Lease)");
    Some(format!("not the leader; the leader is {leader}"))
}

/// What a leadership change asks of the attachment state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new term: stop what ran in an earlier one, rebuild, then serve and reconcile.
    Rebuild,
    /// Not leading: suspend publish and stop the reconciler.
    Suspend,
    /// Leading, already rebuilt in this term.
    Nothing,
}

/// The step for a replica that is `leading` (or not) in `term`, having rebuilt in `rebuilt_in`.
pub fn step(leading: bool, term: u64, rebuilt_in: u64) -> Step {
    if leading && rebuilt_in != term {
        Step::Rebuild
    } else if !leading {
        Step::Suspend
    } else {
        Step::Nothing
    }
}

/// Controller HA: whether this replica may serve publish/unpublish right now ([`refusal`]); it
/// stops the moment the elector reports the Lease lost, without waiting for
/// [`follow_leadership`] to react.
pub struct HaGate {
    elector: Arc<LeaderElector>,
    /// The leadership term the attachment state was rebuilt in (0: none yet).
    rebuilt_in: AtomicU64,
}

impl HaGate {
    pub fn new(elector: Arc<LeaderElector>) -> HaGate {
        HaGate {
            elector,
            rebuilt_in: AtomicU64::new(0),
        }
    }

    pub fn elector(&self) -> &Arc<LeaderElector> {
        &self.elector
    }

    /// Whether this replica serves publish/unpublish now ([`refusal`] is `None`).
    pub fn serving(&self) -> bool {
        self.elector.is_leader() && self.rebuilt_in.load(Ordering::SeqCst) == self.elector.term()
    }
}

impl LeaderGate for HaGate {
    fn refusal(&self) -> Option<String> {
        refusal(
            self.elector.is_leader(),
            self.elector.term(),
            self.rebuilt_in.load(Ordering::SeqCst),
            self.elector.holder().as_deref(),
            self.elector.identity(),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Gaining leadership: rebuild the attachment state (retrying while still leading), THEN serve
/// publish and run the attachment reconciler. Losing it: stop both and mark the state stale.
pub async fn follow_leadership(
    gate: Arc<HaGate>,
    fencing: Arc<AttachmentManager>,
    mut leading: watch::Receiver<bool>,
    reconciler: Arc<Mutex<Option<JoinHandle<()>>>>,
) {
    let retry = gate.elector.config().retry_period;
    loop {
        let is_leader = *leading.borrow_and_update();
        let term = gate.elector.term();
        match step(is_leader, term, gate.rebuilt_in.load(Ordering::SeqCst)) {
            Step::Rebuild => {
                // A new term: whatever ran in an earlier one is stale.
                if let Some(r) = lock(&reconciler).take() {
                    r.abort();
                }
                match fencing.rebuild().await {
                    Ok(report) => {
                        gate.rebuilt_in.store(term, Ordering::SeqCst);
                        info!(
                            term,
                            volumes = report.volumes,
                            attachments = report.attachments,
                            "leader: attachment state rebuilt; serving ControllerPublish/Unpublish"
                        );
                        *lock(&reconciler) = Some(fencing.spawn_reconciler());
                    }
                    Err(e) => {
                        error!(error = %e, "leader: cannot rebuild the attachment state; publish stays refused, retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(retry) => {}
                            _ = leading.changed() => {}
                        }
                        continue;
                    }
                }
                // Leadership may have been lost and regained during the rebuild: check again.
                if gate.elector.term() != term {
                    continue;
                }
            }
            Step::Suspend => {
                fencing.suspend();
                if let Some(r) = lock(&reconciler).take() {
                    r.abort();
                }
            }
            Step::Nothing => {}
        }
        if leading.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_serves_only_once_it_rebuilt_in_this_term() {
        assert_eq!(refusal(true, 3, 3, Some("me"), "me"), None);
        let why = refusal(true, 3, 2, Some("me"), "me").expect("refused");
        assert!(why.contains("rebuilding the attachment state"), "{why}");
        let why = refusal(true, 1, 0, Some("me"), "me").expect("refused");
        assert!(why.contains("rebuilding"), "{why}");
    }

    #[test]
    fn a_follower_refuses_naming_the_leader_never_itself() {
        assert_eq!(
            refusal(false, 3, 3, Some("other"), "me").as_deref(),
            Some("not the leader; the leader is other")
        );
        // The Lease still names this replica just after it lost it: not a leader to point at.
        for holder in [Some("me"), None] {
            assert_eq!(
                refusal(false, 3, 3, holder, "me").as_deref(),
                Some("not the leader; the leader is not known yet (no replica holds the Lease)")
            );
        }
    }

    #[test]
    fn leadership_changes_rebuild_once_per_term_and_suspend_when_lost() {
        assert_eq!(step(true, 1, 0), Step::Rebuild);
        assert_eq!(step(true, 1, 1), Step::Nothing);
        assert_eq!(step(true, 2, 1), Step::Rebuild, "regained: a new term");
        assert_eq!(step(false, 2, 2), Step::Suspend);
        assert_eq!(step(false, 0, 0), Step::Suspend);
    }
}
