//! An in-memory [`Cluster`]: the fake every fencing rule is tested against, and the cluster the
//! sandbox and demo run with (they have no Kubernetes).
//!
//! It behaves like the API server where fencing cares: resourceVersions change on every write
//! and a patch with a stale one is a `Conflict`. Nodes nobody mentioned exist (so a sandbox can
//! publish to any node name); `remove_node` makes one absent. Faults are injected per method.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use super::cluster::{Cluster, ClusterError, NodeState, PvInfo, VolumeAttachmentInfo, VolumeEvent};

#[derive(Debug, Default)]
struct Inner {
    pvs: BTreeMap<String, PvInfo>,
    vas: Vec<VolumeAttachmentInfo>,
    nodes: HashMap<String, NodeState>,
    limits: HashMap<String, u32>,
    events: Vec<VolumeEvent>,
    next_version: u64,
    patches: u64,
    /// Errors returned by the next patches, in order.
    patch_faults: VecDeque<ClusterError>,
    /// Number of upcoming patches that find the PV changed by "someone else" first.
    concurrent_writes: u32,
    node_fault: Option<ClusterError>,
    list_fault: Option<ClusterError>,
    lookup_fault: Option<ClusterError>,
}

impl Inner {
    fn bump(&mut self) -> String {
        self.next_version += 1;
        self.next_version.to_string()
    }
}

#[derive(Debug, Default)]
pub struct MemoryCluster {
    inner: Mutex<Inner>,
}

impl MemoryCluster {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) a PV bound to PVC `claim` = (namespace, name).
    pub fn add_pv(&self, name: &str, volume_handle: &str, claim: Option<(&str, &str)>) -> PvInfo {
        let mut i = self.inner();
        let pv = PvInfo {
            name: name.to_string(),
            volume_handle: volume_handle.to_string(),
            annotations: BTreeMap::new(),
            resource_version: i.bump(),
            claim: claim.map(|(ns, n)| (ns.to_string(), n.to_string())),
            uid: None,
            claim_uid: None,
        };
        i.pvs.insert(name.to_string(), pv.clone());
        pv
    }

    /// Replaces a PV's annotations as an operator editing it by hand would.
    pub fn set_pv_annotations(&self, name: &str, annotations: BTreeMap<String, String>) {
        let mut i = self.inner();
        let version = i.bump();
        if let Some(pv) = i.pvs.get_mut(name) {
            pv.annotations = annotations;
            pv.resource_version = version;
        }
    }

    pub fn pv(&self, name: &str) -> Option<PvInfo> {
        self.inner().pvs.get(name).cloned()
    }

    pub fn add_volume_attachment(&self, va: VolumeAttachmentInfo) {
        self.inner().vas.push(va);
    }

    /// Publishes an attach limit for `node`, as a CSINode's allocatable count would.
    pub fn set_attach_limit(&self, node: &str, limit: u32) {
        self.inner().limits.insert(node.to_string(), limit);
    }

    pub fn set_node(&self, node: &str, state: NodeState) {
        self.inner().nodes.insert(node.to_string(), state);
    }

    /// The Node object is deleted.
    pub fn remove_node(&self, node: &str) {
        self.set_node(node, NodeState::Absent);
    }

    pub fn events(&self) -> Vec<VolumeEvent> {
        self.inner().events.clone()
    }

    pub fn events_with_reason(&self, reason: &str) -> Vec<VolumeEvent> {
        self.inner()
            .events
            .iter()
            .filter(|e| e.reason == reason)
            .cloned()
            .collect()
    }

    /// Successful annotation patches so far.
    pub fn patch_count(&self) -> u64 {
        self.inner().patches
    }

    /// The next patches fail with these errors, in order.
    pub fn fail_patches(&self, errors: impl IntoIterator<Item = ClusterError>) {
        self.inner().patch_faults.extend(errors);
    }

    /// The next `n` patches find that another writer changed the PV since it was read.
    pub fn concurrent_writes(&self, n: u32) {
        self.inner().concurrent_writes = n;
    }

    /// Node lookups fail with `error` until cleared with `None`.
    pub fn fail_node_lookups(&self, error: Option<ClusterError>) {
        self.inner().node_fault = error;
    }

    /// Listing PVs and VolumeAttachments fails with `error` until cleared with `None`.
    pub fn fail_lists(&self, error: Option<ClusterError>) {
        self.inner().list_fault = error;
    }

    /// Looking a PV up by handle fails with `error` until cleared with `None`.
    pub fn fail_pv_lookups(&self, error: Option<ClusterError>) {
        self.inner().lookup_fault = error;
    }
}

#[async_trait::async_trait]
impl Cluster for MemoryCluster {
    async fn pv_by_handle(&self, volume_handle: &str) -> Result<Option<PvInfo>, ClusterError> {
        let i = self.inner();
        if let Some(e) = &i.lookup_fault {
            return Err(e.clone());
        }
        Ok(i.pvs
            .values()
            .find(|p| p.volume_handle == volume_handle)
            .cloned())
    }

    async fn list_pvs(&self) -> Result<Vec<PvInfo>, ClusterError> {
        let i = self.inner();
        if let Some(e) = &i.list_fault {
            return Err(e.clone());
        }
        Ok(i.pvs.values().cloned().collect())
    }

    async fn patch_pv_annotations(
        &self,
        pv_name: &str,
        resource_version: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<PvInfo, ClusterError> {
        let mut i = self.inner();
        if let Some(e) = i.patch_faults.pop_front() {
            return Err(e);
        }
        if i.concurrent_writes > 0 {
            i.concurrent_writes -= 1;
            let version = i.bump();
            if let Some(pv) = i.pvs.get_mut(pv_name) {
                pv.resource_version = version;
            }
        }
        let version = i.bump();
        let pv = i
            .pvs
            .get_mut(pv_name)
            .ok_or_else(|| ClusterError::NotFound(format!("persistentvolume {pv_name}")))?;
        if pv.resource_version != resource_version {
            return Err(ClusterError::Conflict(format!(
                "persistentvolume {pv_name} is at resourceVersion {}, not {resource_version}",
                pv.resource_version
            )));
        }
        for (k, v) in changes {
            match v {
                Some(v) => pv.annotations.insert(k.clone(), v.clone()),
                None => pv.annotations.remove(k),
            };
        }
        pv.resource_version = version;
        let out = pv.clone();
        i.patches += 1;
        Ok(out)
    }

    async fn list_volume_attachments(&self) -> Result<Vec<VolumeAttachmentInfo>, ClusterError> {
        let i = self.inner();
        if let Some(e) = &i.list_fault {
            return Err(e.clone());
        }
        Ok(i.vas.clone())
    }

    /// Removes the VolumeAttachment when it is being deleted for `node` (its finalizer gone,
    /// the API server would delete it).
    async fn finish_volume_attachment(&self, name: &str, node: &str) -> Result<bool, ClusterError> {
        let mut i = self.inner();
        if let Some(e) = &i.list_fault {
            return Err(e.clone());
        }
        let before = i.vas.len();
        i.vas
            .retain(|va| !(va.name == name && va.node == node && va.deleting_for_secs.is_some()));
        Ok(i.vas.len() < before)
    }

    async fn node_state(&self, node: &str) -> Result<NodeState, ClusterError> {
        let i = self.inner();
        if let Some(e) = &i.node_fault {
            return Err(e.clone());
        }
        Ok(i.nodes.get(node).copied().unwrap_or(NodeState::Present {
            out_of_service: false,
        }))
    }

    async fn attach_limit(&self, node: &str) -> Result<Option<u32>, ClusterError> {
        Ok(self.inner().limits.get(node).copied())
    }

    async fn post_event(&self, event: VolumeEvent) {
        self.inner().events.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_patch_with_a_stale_resource_version_is_a_conflict() {
        let c = MemoryCluster::new();
        let pv = c.add_pv("pv-1", "default:pvc-1", None);
        let mut set = BTreeMap::new();
        set.insert("k".to_string(), Some("v".to_string()));
        let after = c
            .patch_pv_annotations("pv-1", &pv.resource_version, &set)
            .await
            .unwrap();
        assert_eq!(after.annotations["k"], "v");
        let again = c
            .patch_pv_annotations("pv-1", &pv.resource_version, &set)
            .await;
        assert!(matches!(again, Err(ClusterError::Conflict(_))), "{again:?}");
        c.concurrent_writes(1);
        let raced = c
            .patch_pv_annotations("pv-1", &after.resource_version, &set)
            .await;
        assert!(matches!(raced, Err(ClusterError::Conflict(_))), "{raced:?}");
        assert_eq!(c.patch_count(), 1);
    }

    #[tokio::test]
    async fn unknown_nodes_exist_and_removed_ones_do_not() {
        let c = MemoryCluster::new();
        assert_eq!(
            c.node_state("any").await.unwrap(),
            NodeState::Present {
                out_of_service: false
            }
        );
        c.remove_node("gone");
        assert_eq!(c.node_state("gone").await.unwrap(), NodeState::Absent);
    }
}
