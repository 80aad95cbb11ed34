//! When a staged volume's NVMe multipath redundancy is lost or regained.
//!
//! The node reports every change of a volume's live paths (`NodeObserver::paths_changed`);
//! metrics count, and events announce, only the crossings between "every path live" and
//! "some path missing", so a flapping second path of a degraded volume, or the same report
//! repeated, says nothing new. State is one flag per staged volume, dropped when the node
//! reports the volume gone (total 0), so it stays as bounded as the volumes on the node.
//! A leaf module: metrics and the Kubernetes events each keep a tracker of their own.

use std::collections::HashMap;
use std::sync::Mutex;

/// A crossing between full redundancy and a degraded volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Some paths of a multipath volume are missing (or it was staged that way).
    Lost,
    /// Every path is live again.
    Regained,
}

/// Whether a report of `live` of `total` paths is degraded: only a volume with two or more
/// paths has redundancy to lose (a single path's loss is a lost connection, reported as such).
pub fn degraded(live: usize, total: usize) -> bool {
    total >= 2 && live < total
}

/// Per-volume redundancy state, fed by every `paths_changed` report.
#[derive(Debug, Default)]
pub struct RedundancyTracker {
    degraded: Mutex<HashMap<String, bool>>,
}

impl RedundancyTracker {
    /// Records `live` of `total` paths for `volume_id` and says whether that crossed between
    /// full and degraded. A volume's first report counts as a crossing from full, so a volume
    /// staged with a path missing is announced. `total` 0 forgets the volume (unstaged).
    pub fn observe(&self, volume_id: &str, live: usize, total: usize) -> Option<Transition> {
        let mut state = self.degraded.lock().unwrap_or_else(|p| p.into_inner());
        if total == 0 {
            state.remove(volume_id);
            return None;
        }
        let now = degraded(live, total);
        let before = state.insert(volume_id.to_string(), now).unwrap_or(false);
        match (before, now) {
            (false, true) => Some(Transition::Lost),
            (true, false) => Some(Transition::Regained),
            _ => None,
        }
    }

    /// Volumes with state kept (those staged and not yet reported gone).
    pub fn len(&self) -> usize {
        self.degraded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crossings_between_full_and_degraded_are_transitions() {
        let t = RedundancyTracker::default();
        assert_eq!(t.observe("v", 2, 2), None, "staged with every path");
        assert_eq!(t.observe("v", 2, 2), None, "the same report again");
        assert_eq!(t.observe("v", 1, 2), Some(Transition::Lost));
        assert_eq!(t.observe("v", 1, 2), None, "still degraded");
        assert_eq!(t.observe("v", 0, 2), None, "worse, but no new crossing");
        assert_eq!(t.observe("v", 2, 2), Some(Transition::Regained));
        assert_eq!(t.observe("v", 2, 2), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_volume_staged_degraded_is_announced_and_unstaging_forgets_it() {
        let t = RedundancyTracker::default();
        assert_eq!(t.observe("a", 1, 3), Some(Transition::Lost));
        assert_eq!(t.observe("b", 3, 3), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.observe("a", 0, 0), None);
        assert_eq!(t.observe("b", 0, 0), None);
        assert!(t.is_empty(), "no state left for unstaged volumes");
        // Staged again later: a fresh start.
        assert_eq!(t.observe("a", 3, 3), None);
    }

    #[test]
    fn a_single_path_volume_has_no_redundancy_to_lose() {
        let t = RedundancyTracker::default();
        assert_eq!(t.observe("v", 1, 1), None);
        assert_eq!(t.observe("v", 0, 1), None);
        assert_eq!(t.observe("v", 1, 1), None);
        assert!(!degraded(0, 1));
        assert!(degraded(1, 2));
        assert!(!degraded(2, 2));
    }
}
