//! The seam for per-VM publish/unpublish serialization (KubeVirt hotplug), an opt-in feature
//! (`--enable-vmi-serialization`, implemented by `vmi_grouper::VmiGrouper`).
//!
//! KubeVirt paused VMs when several volumes of one VM were published concurrently; the earlier
//! driver serialized ControllerPublish per VirtualMachineInstance. An implementation resolves the
//! PVC to its VMI (pods in the namespace → owner reference or `kubevirt.io/vmi` label), holds one
//! lock per VMI for the returned guard's lifetime, and fails open (no guard) when the VMI cannot
//! be resolved. It is entered before the volume lock, so the lock order is
//! VMI guard → volume lock → state map.

/// Held for the rest of a publish or unpublish; dropping it lets the next one of the same VM proceed.
pub type SerialGuard = Box<dyn Send + Sync>;

#[async_trait::async_trait]
pub trait PublishSerializer: Send + Sync + 'static {
    /// `pvc` is (namespace, name) when known. `None` means "no serialization for this call".
    async fn enter(&self, volume_id: &str, pvc: Option<&(String, String)>) -> Option<SerialGuard>;
}

/// The default: publishes of different volumes run in parallel.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSerialization;

#[async_trait::async_trait]
impl PublishSerializer for NoSerialization {
    async fn enter(
        &self,
        _volume_id: &str,
        _pvc: Option<&(String, String)>,
    ) -> Option<SerialGuard> {
        None
    }
}
