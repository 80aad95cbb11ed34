//! Hook for node events and metrics. The node service calls it on every state change it
//! notices; whoever wires Kubernetes events or Prometheus implements it. All methods default to
//! doing nothing so an implementation overrides only what it reports.

/// Told about connection and stale-mount state changes of staged volumes.
pub trait NodeObserver: Send + Sync {
    /// A staged volume's mount (or published device node) no longer matches the device its NQN
    /// resolves to. `reason` is human-readable (device gone / changed / source mismatch).
    fn stale_detected(&self, _volume_id: &str, _reason: &str) {}
    /// Automatic recovery brought the volume back; `detail` says what was done.
    fn recovered(&self, _volume_id: &str, _detail: &str) {}
    /// Recovery failed (and will be retried with backoff); `error` is the cause.
    fn recovery_failed(&self, _volume_id: &str, _error: &str) {}
    /// The NQN's controllers left the `live` state (or vanished).
    fn connection_lost(&self, _volume_id: &str, _nqn: &str, _state: &str) {}
    /// A live controller is back for the NQN.
    fn connection_restored(&self, _volume_id: &str, _nqn: &str) {}
    /// This plugin connected the NQN (a stage that found it already connected does not count).
    fn nvme_connected(&self, _volume_id: &str, _nqn: &str) {}
    /// This plugin disconnected the NQN (unstage, or undoing a failed stage's connect, when
    /// `volume_id` is empty).
    fn nvme_disconnected(&self, _volume_id: &str, _nqn: &str) {}
    /// NodeStageVolume failed (connect, format or mount); `pvc` is (namespace, name) from the
    /// volume_context when the provisioner passed it.
    fn stage_failed(&self, _volume_id: &str, _pvc: Option<(String, String)>, _error: &str) {}
    /// A staged volume's NVMe/TCP paths (multipath) changed: `live` of the `total` configured
    /// paths carry I/O, `missing` names the others as `address:port`. Called after a stage,
    /// whenever the monitor sees the live set change, and with `total` 0 after an unstage (the
    /// volume is gone from this node). `pvc` as in [`NodeObserver::stage_failed`].
    fn paths_changed(
        &self,
        _volume_id: &str,
        _pvc: Option<(String, String)>,
        _live: usize,
        _total: usize,
        _missing: &[String],
    ) {
    }
}

/// The default observer: reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl NodeObserver for NoopObserver {}
