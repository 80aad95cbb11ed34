//! What fencing needs from Kubernetes, as a narrow trait.
//!
//! The attachment manager is written against this trait so its rules are unit-testable with an
//! in-memory fake; `k8s` implements it against a real API server (and that
//! implementation is proven against a real kube-apiserver). Keep it small: every method here is
//! something the real implementation must do with the right RBAC.

use std::collections::BTreeMap;

/// A PersistentVolume of this driver, as fencing sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvInfo {
    pub name: String,
    /// `spec.csi.volumeHandle`.
    pub volume_handle: String,
    pub annotations: BTreeMap<String, String>,
    /// For optimistic concurrency on annotation patches.
    pub resource_version: String,
    /// `spec.claimRef` (namespace, name), when bound.
    pub claim: Option<(String, String)>,
    /// `metadata.uid`, and `spec.claimRef.uid`: what an event's involvedObject names, kept so
    /// posting an event about a PV just read needs no second read.
    pub uid: Option<String>,
    pub claim_uid: Option<String>,
}

/// A VolumeAttachment of this driver (`spec.attacher == driver name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeAttachmentInfo {
    pub name: String,
    /// `spec.source.persistentVolumeName`.
    pub pv_name: Option<String>,
    pub node: String,
    /// `status.attached`.
    pub attached: bool,
    /// Seconds since `metadata.deletionTimestamp`, when deletion was requested.
    pub deleting_for_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// The Node object does not exist (the node is gone for good).
    Absent,
    /// The Node exists; `out_of_service` when it carries the
    /// `node.kubernetes.io/out-of-service` taint (operator says it is down).
    Present { out_of_service: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// An event about a volume: posted on its PVC (in the PVC's namespace) when known, else on
/// the PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeEvent {
    pub pv_name: Option<String>,
    /// (namespace, name) of the PVC.
    pub pvc: Option<(String, String)>,
    pub kind: EventKind,
    /// CamelCase reason, e.g. `AttachmentConflict`.
    pub reason: String,
    pub message: String,
    /// The PV's and the PVC's uids when the caller already read them; with them the recorder
    /// reads nothing before posting. A `pvc_uid` belongs to `pvc`; a `pv_uid` without a `pvc`
    /// says the PV was read and has no claim.
    pub pv_uid: Option<String>,
    pub pvc_uid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The object changed since it was read (resourceVersion mismatch): re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The API server could not be reached or answered 5xx/timeout.
    #[error("Kubernetes API unavailable: {0}")]
    Unavailable(String),
    #[error("forbidden by RBAC: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Other(String),
}

#[async_trait::async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// The PV of this driver whose volume handle is `volume_handle`, if any.
    async fn pv_by_handle(&self, volume_handle: &str) -> Result<Option<PvInfo>, ClusterError>;
    /// All PVs of this driver.
    async fn list_pvs(&self) -> Result<Vec<PvInfo>, ClusterError>;
    /// Applies annotation changes (`None` removes the key) to PV `pv_name`, only if its
    /// resourceVersion is still `resource_version` (else `Conflict`). Returns the updated PV.
    async fn patch_pv_annotations(
        &self,
        pv_name: &str,
        resource_version: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<PvInfo, ClusterError>;
    /// All VolumeAttachments of this driver.
    async fn list_volume_attachments(&self) -> Result<Vec<VolumeAttachmentInfo>, ClusterError>;
    async fn node_state(&self, node: &str) -> Result<NodeState, ClusterError>;
    /// How many volumes of this driver `node` may hold (`CSINode` `spec.drivers[].allocatable
    /// .count` in Kubernetes), `None` when no limit is published. A cluster without such a
    /// registry (test fakes) has none.
    async fn attach_limit(&self, node: &str) -> Result<Option<u32>, ClusterError> {
        let _ = node;
        Ok(None)
    }
    /// Lets Kubernetes finish deleting VolumeAttachment `name`, which is stuck in deletion for
    /// `node`, by taking off the external-attacher's finalizer: what the attacher does after a
    /// ControllerUnpublish succeeded. The VA is read afresh and changed only if it is still
    /// this driver's, for `node`, being deleted and carrying that finalizer (`Ok(false)`
    /// otherwise); the write is conditional on the read's resourceVersion. A cluster without
    /// VolumeAttachments (the trial mode) has nothing to finish.
    async fn finish_volume_attachment(&self, name: &str, node: &str) -> Result<bool, ClusterError> {
        let _ = (name, node);
        Ok(false)
    }
    /// What admitting a new attachment to `node` needs: whether it exists, and its attach
    /// limit (`attach_limit`, asked only of a node that exists). An implementation may answer
    /// from a watch-fed cache for nodes it holds, never "absent" from a cache.
    async fn node_for_attach(&self, node: &str) -> Result<(NodeState, Option<u32>), ClusterError> {
        let state = self.node_state(node).await?;
        if state == NodeState::Absent {
            return Ok((state, None));
        }
        Ok((state, self.attach_limit(node).await?))
    }
    /// Best effort: failures are logged by the implementation, never returned, because an
    /// event must never fail the operation it describes. The Kubernetes implementation queues
    /// the event and returns at once, so an event costs the operation no API request.
    async fn post_event(&self, event: VolumeEvent);
    /// Events `post_event` had to drop since the start (its queue was full). An implementation
    /// that never drops keeps the default.
    fn dropped_events(&self) -> u64 {
        0
    }
}
