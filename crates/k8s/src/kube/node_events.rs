//! Node-side events: what the node plugin notices (stale mounts, recoveries, lost and restored
//! NVMe connections, failed stages) posted as core/v1 Events on the volume's PVC, so an operator
//! sees them with `kubectl describe pvc` instead of digging in node logs. Multipath changes
//! are posted only when a volume loses or regains full redundancy (`vocab::redundancy`).

use std::sync::Arc;

use crate::kube::EventRecorder;
use fencing::cluster::{EventKind, VolumeEvent};
use node::NodeObserver;
use vocab::redundancy::{RedundancyTracker, Transition};
use vocab::volume_id::VolumeId;

/// Event reasons for multipath redundancy, as `kubectl describe pvc` shows them.
pub const REASON_PATHS_DEGRADED: &str = "MultipathDegraded";
pub const REASON_PATHS_RESTORED: &str = "MultipathRestored";

/// Posts node events and passes every notification on to `inner` (audit, metrics).
pub struct NodeEvents {
    recorder: Arc<EventRecorder>,
    inner: Arc<dyn NodeObserver>,
    redundancy: RedundancyTracker,
}

impl NodeEvents {
    pub fn new(recorder: Arc<EventRecorder>, inner: Arc<dyn NodeObserver>) -> Self {
        NodeEvents {
            recorder,
            inner,
            redundancy: RedundancyTracker::default(),
        }
    }

    /// Observer calls come from sync code inside the runtime; posting is async and must never
    /// hold up recovery, so it runs on its own task (and is skipped outside a runtime).
    fn post(
        &self,
        volume_id: &str,
        pvc: Option<(String, String)>,
        kind: EventKind,
        reason: &str,
        message: String,
    ) {
        let event = VolumeEvent {
            pv_name: pv_name_of(volume_id),
            pvc,
            kind,
            reason: reason.to_string(),
            message,
            pv_uid: None,
            pvc_uid: None,
        };
        if event.pv_name.is_none() && event.pvc.is_none() {
            tracing::debug!(
                volume = volume_id,
                reason,
                "no PV or PVC known for this volume; event not posted"
            );
            return;
        }
        let recorder = self.recorder.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { recorder.post(&event).await });
        }
    }
}

/// The event a paths report calls for, if any: (kind, reason, message).
fn paths_event(
    transition: Option<Transition>,
    volume_id: &str,
    live: usize,
    total: usize,
    missing: &[String],
) -> Option<(EventKind, &'static str, String)> {
    match transition? {
        Transition::Lost => Some((
            EventKind::Warning,
            REASON_PATHS_DEGRADED,
            format!(
                "volume {volume_id}: NVMe/TCP multipath degraded on this node: {live} of {total} paths live, missing {}; I/O continues on the others",
                if missing.is_empty() {
                    "(not named)".to_string()
                } else {
                    missing.join(", ")
                }
            ),
        )),
        Transition::Regained => Some((
            EventKind::Normal,
            REASON_PATHS_RESTORED,
            format!("volume {volume_id}: all {total} NVMe/TCP paths live again on this node"),
        )),
    }
}

/// The PV a volume id belongs to: volumes made by the external-provisioner keep their PV name
/// (`pvc-<uuid>`) as the slot; other ids do not name a PV.
pub fn pv_name_of(volume_id: &str) -> Option<String> {
    let id = VolumeId::parse(volume_id, "default").ok()?;
    let slot = id.slot.as_str();
    let uuid = slot.strip_prefix("pvc-")?;
    (uuid.len() == 36 && uuid::Uuid::try_parse(uuid).is_ok()).then(|| slot.to_string())
}

impl NodeObserver for NodeEvents {
    fn stale_detected(&self, volume_id: &str, reason: &str) {
        self.post(
            volume_id,
            None,
            EventKind::Warning,
            "StaleMountDetected",
            format!("volume {volume_id}: stale mount detected: {reason}"),
        );
        self.inner.stale_detected(volume_id, reason);
    }

    fn recovered(&self, volume_id: &str, detail: &str) {
        self.post(
            volume_id,
            None,
            EventKind::Normal,
            "StaleMountRecovered",
            format!("volume {volume_id} recovered: {detail}"),
        );
        self.inner.recovered(volume_id, detail);
    }

    fn recovery_failed(&self, volume_id: &str, error: &str) {
        self.post(
            volume_id,
            None,
            EventKind::Warning,
            "RecoveryFailed",
            format!("volume {volume_id}: recovery failed (will retry): {error}"),
        );
        self.inner.recovery_failed(volume_id, error);
    }

    fn connection_lost(&self, volume_id: &str, nqn: &str, state: &str) {
        self.post(
            volume_id,
            None,
            EventKind::Warning,
            "ConnectionLost",
            format!(
                "volume {volume_id}: NVMe/TCP connection to {nqn} lost (controller state {state})"
            ),
        );
        self.inner.connection_lost(volume_id, nqn, state);
    }

    fn connection_restored(&self, volume_id: &str, nqn: &str) {
        self.post(
            volume_id,
            None,
            EventKind::Normal,
            "ConnectionRestored",
            format!("volume {volume_id}: NVMe/TCP connection to {nqn} restored"),
        );
        self.inner.connection_restored(volume_id, nqn);
    }

    fn nvme_connected(&self, volume_id: &str, nqn: &str) {
        self.inner.nvme_connected(volume_id, nqn);
    }

    fn nvme_disconnected(&self, volume_id: &str, nqn: &str) {
        self.inner.nvme_disconnected(volume_id, nqn);
    }

    fn stage_failed(&self, volume_id: &str, pvc: Option<(String, String)>, error: &str) {
        self.post(
            volume_id,
            pvc.clone(),
            EventKind::Warning,
            "MountFailed",
            format!("volume {volume_id}: staging failed: {error}"),
        );
        self.inner.stage_failed(volume_id, pvc, error);
    }

    fn paths_changed(
        &self,
        volume_id: &str,
        pvc: Option<(String, String)>,
        live: usize,
        total: usize,
        missing: &[String],
    ) {
        let transition = self.redundancy.observe(volume_id, live, total);
        if let Some((kind, reason, message)) =
            paths_event(transition, volume_id, live, total, missing)
        {
            self.post(volume_id, pvc.clone(), kind, reason, message);
        }
        self.inner
            .paths_changed(volume_id, pvc, live, total, missing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioner_volumes_name_their_pv() {
        assert_eq!(
            pv_name_of("default:pvc-1c7e2a9e-5f0a-4d8e-9a59-0b7d1a2b3c4d").as_deref(),
            Some("pvc-1c7e2a9e-5f0a-4d8e-9a59-0b7d1a2b3c4d")
        );
        assert_eq!(
            pv_name_of("pvc-1c7e2a9e-5f0a-4d8e-9a59-0b7d1a2b3c4d").as_deref(),
            Some("pvc-1c7e2a9e-5f0a-4d8e-9a59-0b7d1a2b3c4d")
        );
        assert_eq!(pv_name_of("default:pvc-short"), None);
        assert_eq!(pv_name_of("garbage"), None);
    }

    #[test]
    fn paths_events_name_the_missing_paths_and_only_crossings_post() {
        let missing = vec!["10.0.2.2:4420".to_string()];
        let (kind, reason, msg) =
            paths_event(Some(Transition::Lost), "default:pvc-1", 1, 2, &missing).unwrap();
        assert_eq!((kind, reason), (EventKind::Warning, REASON_PATHS_DEGRADED));
        assert!(
            msg.contains("1 of 2 paths live") && msg.contains("10.0.2.2:4420"),
            "{msg}"
        );
        let (kind, reason, msg) =
            paths_event(Some(Transition::Regained), "default:pvc-1", 2, 2, &[]).unwrap();
        assert_eq!((kind, reason), (EventKind::Normal, REASON_PATHS_RESTORED));
        assert!(msg.contains("all 2"), "{msg}");
        assert!(paths_event(None, "default:pvc-1", 1, 2, &missing).is_none());
    }
}
