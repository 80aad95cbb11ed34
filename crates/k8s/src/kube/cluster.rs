//! `KubeCluster`: fencing's `Cluster` trait against a real API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::kube::Api;
use ::kube::api::{ListParams, ObjectList, Patch, PatchParams};
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};
use tracing::warn;

use super::api_errors::bounded;
use super::events::{EventRecorder, component};
use super::node_cache::{self, NodeCache};
use super::objects;
use super::pv_index::{self, PvIndex};
use fencing::cluster::{
    Cluster, ClusterError, NodeState, PvInfo, VolumeAttachmentInfo, VolumeEvent,
};

/// Page size for list calls: bounds each response while keeping a few hundred PVs to one call.
const PAGE: u32 = 500;

/// The real `Cluster`. Cheap to clone; clones share the client and the event recorder.
#[derive(Clone)]
pub struct KubeCluster {
    client: ::kube::Client,
    driver_name: String,
    timeout: Duration,
    events: Arc<EventRecorder>,
    /// Handle → PV names for PVs not named after their slot (static PVs); see `start_pv_index`.
    pv_index: Arc<PvIndex>,
    /// Nodes and CSINode limits for admitting publishes; see `start_node_cache`.
    node_cache: Arc<NodeCache>,
}

impl KubeCluster {
    /// A cluster view for `driver_name` (the CSI driver name PVs and attachments carry), posting
    /// events as `rds-csi-controller`; see `with_events` for the node or a shared recorder.
    pub fn new(client: ::kube::Client, driver_name: String) -> Self {
        let events = Arc::new(EventRecorder::new(client.clone(), component::CONTROLLER));
        KubeCluster {
            client,
            driver_name,
            timeout: Duration::from_secs(10),
            events,
            pv_index: Arc::default(),
            node_cache: Arc::default(),
        }
    }

    /// Starts the Node and CSINode watches that let a publish admit its node without a
    /// request; abort the handle to stop both. Without them (and for a node they have not seen)
    /// the Node and its CSINode are read per publish.
    pub fn start_node_cache(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(node_cache::run(
            self.client.clone(),
            self.driver_name.clone(),
            Arc::clone(&self.node_cache),
            super::node_watch::watch_secs(self.timeout),
        ))
    }

    /// True once both watches of the node cache delivered their first listing.
    pub fn node_cache_ready(&self) -> bool {
        self.node_cache.is_ready()
    }

    /// The attach limit the node cache holds for `node` (`None` while it cannot answer).
    pub fn cached_attach_limit(&self, node: &str) -> Option<Option<u32>> {
        self.node_cache.limit(node)
    }

    /// Starts the watch that keeps the handle → PV index current; abort the handle to stop it.
    /// Until its first listing completed (and without it) lookups of PVs not named after their
    /// slot list every PV, as a controller without the index must.
    pub fn start_pv_index(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(pv_index::run(
            self.client.clone(),
            self.driver_name.clone(),
            Arc::clone(&self.pv_index),
            super::node_watch::watch_secs(self.timeout),
        ))
    }

    /// True once the index answers lookups (its first listing arrived).
    pub fn pv_index_ready(&self) -> bool {
        self.pv_index.is_ready()
    }

    /// The PV names the index holds for `volume_handle`; `None` while it cannot answer.
    pub fn indexed_pv_names(&self, volume_handle: &str) -> Option<Vec<String>> {
        self.pv_index.names(volume_handle)
    }

    /// The PV named `name` when it is a CSI volume of this driver.
    async fn pv_named(&self, name: &str) -> Result<Option<PvInfo>, ClusterError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let what = format!("reading PersistentVolume {name}");
        let pv = bounded(&what, self.timeout, api.get_opt(name)).await?;
        Ok(pv.and_then(|pv| objects::pv_info(&pv, &self.driver_name)))
    }

    /// The old way, for when the index cannot answer: every PV, filtered here (PVs have no
    /// field selector on spec.csi).
    async fn pv_by_listing(&self, volume_handle: &str) -> Result<Option<PvInfo>, ClusterError> {
        let mut found: Vec<PvInfo> = self
            .list_pvs()
            .await?
            .into_iter()
            .filter(|pv| pv.volume_handle == volume_handle)
            .collect();
        if found.len() > 1 {
            // Two PVs for one disk (static provisioning gone wrong): fencing works on the first
            // by name so the choice is at least stable; an operator must fix the duplicate.
            found.sort_by(|a, b| a.name.cmp(&b.name));
            let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
            warn!(volume_handle, pvs = ?names, "several PVs share one volume handle");
        }
        Ok(found.into_iter().next())
    }

    /// Uses `recorder` for `post_event`, so the whole process shares one recorder.
    pub fn with_events(mut self, recorder: Arc<EventRecorder>) -> Self {
        self.events = recorder;
        self
    }

    /// Deadline for each API request (a list of several pages gets it per page).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn events(&self) -> &Arc<EventRecorder> {
        &self.events
    }

    pub fn driver_name(&self) -> &str {
        &self.driver_name
    }

    /// Every object of a cluster-scoped kind, following `continue` tokens.
    async fn list_all<K>(&self, what: &str) -> Result<Vec<K>, ClusterError>
    where
        K: ::kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let mut items = Vec::new();
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page: ObjectList<K> = bounded(what, self.timeout, api.list(&params)).await?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(items),
            }
        }
    }
}

#[async_trait::async_trait]
impl Cluster for KubeCluster {
    /// One GET in the common case: the index names the PV (smallest name first when several
    /// share the handle, as a listing chose); when it names none that verifies, the PV named
    /// after the slot is tried, as the provisioner names a PV after the CSI volume name, which
    /// is the slot (that covers a PV too new for the index). Whatever the name came from, the
    /// PV read is checked for this driver and this exact handle. Without a ready index a miss
    /// lists every PV, as before. A PV too new for the index and not named after its slot is
    /// missed: its volume is then fenced in memory only, with the warning fencing gives for
    /// volumes without a PV.
    async fn pv_by_handle(&self, volume_handle: &str) -> Result<Option<PvInfo>, ClusterError> {
        let indexed = self.pv_index.names(volume_handle);
        let slot = slot_name(volume_handle);
        let mut tried_slot = false;
        for name in indexed.iter().flatten() {
            tried_slot |= slot == Some(name.as_str());
            if let Some(pv) = self.pv_named(name).await?
                && pv.volume_handle == volume_handle
            {
                return Ok(Some(pv));
            }
        }
        if let Some(name) = slot.filter(|_| !tried_slot)
            && let Some(pv) = self.pv_named(name).await?
            && pv.volume_handle == volume_handle
        {
            return Ok(Some(pv));
        }
        match indexed {
            Some(_) => Ok(None),
            None => self.pv_by_listing(volume_handle).await,
        }
    }

    async fn list_pvs(&self) -> Result<Vec<PvInfo>, ClusterError> {
        let pvs: Vec<PersistentVolume> = self.list_all("listing PersistentVolumes").await?;
        Ok(pvs
            .iter()
            .filter_map(|pv| objects::pv_info(pv, &self.driver_name))
            .collect())
    }

    async fn patch_pv_annotations(
        &self,
        pv_name: &str,
        resource_version: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<PvInfo, ClusterError> {
        // Without a resourceVersion the merge patch would apply unconditionally and could
        // overwrite a fence written by a concurrent publish.
        if resource_version.is_empty() {
            return Err(ClusterError::Other(format!(
                "refusing to patch PV {pv_name} without a resourceVersion precondition"
            )));
        }
        let annotations: Map<String, Value> = changes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
            .collect();
        // A JSON merge patch carrying metadata.resourceVersion makes the API server compare it
        // with the stored one and answer 409 on mismatch: optimistic concurrency in one request.
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": resource_version,
                "annotations": annotations,
            }
        });
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let what = format!("patching annotations of PV {pv_name}");
        let pv = bounded(
            &what,
            self.timeout,
            api.patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?;
        objects::pv_info(&pv, &self.driver_name).ok_or_else(|| {
            ClusterError::Other(format!(
                "PV {pv_name} is not a CSI volume of {}",
                self.driver_name
            ))
        })
    }

    async fn list_volume_attachments(&self) -> Result<Vec<VolumeAttachmentInfo>, ClusterError> {
        let vas: Vec<VolumeAttachment> = self.list_all("listing VolumeAttachments").await?;
        let now = Timestamp::now();
        Ok(vas
            .iter()
            .filter_map(|va| objects::attachment_info(va, &self.driver_name, now))
            .collect())
    }

    async fn finish_volume_attachment(&self, name: &str, node: &str) -> Result<bool, ClusterError> {
        let api: Api<VolumeAttachment> = Api::all(self.client.clone());
        let what = format!("reading VolumeAttachment {name}");
        let Some(va) = bounded(&what, self.timeout, api.get_opt(name)).await? else {
            return Ok(false);
        };
        let finalizer = objects::attacher_finalizer(&self.driver_name);
        let finalizers = va.metadata.finalizers.clone().unwrap_or_default();
        if va.spec.attacher != self.driver_name
            || va.spec.node_name != node
            || va.metadata.deletion_timestamp.is_none()
            || !finalizers.contains(&finalizer)
        {
            return Ok(false);
        }
        let Some(resource_version) = va.metadata.resource_version.clone() else {
            return Err(ClusterError::Other(format!(
                "VolumeAttachment {name} has no resourceVersion; not changing it unconditionally"
            )));
        };
        let rest: Vec<String> = finalizers.into_iter().filter(|f| *f != finalizer).collect();
        // A merge patch replaces the whole list; the resourceVersion makes it apply only to
        // the list just read (409 otherwise), so another controller's finalizer is never lost.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": resource_version, "finalizers": rest}
        });
        let what = format!("removing the attacher's finalizer from VolumeAttachment {name}");
        match bounded(
            &what,
            self.timeout,
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(ClusterError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn node_state(&self, node: &str) -> Result<NodeState, ClusterError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let what = format!("reading Node {node}");
        let found = bounded(&what, self.timeout, api.get_opt(node)).await?;
        Ok(objects::node_state(found.as_ref()))
    }

    async fn attach_limit(&self, node: &str) -> Result<Option<u32>, ClusterError> {
        let api: Api<CSINode> = Api::all(self.client.clone());
        let what = format!("reading CSINode {node}");
        let found = bounded(&what, self.timeout, api.get_opt(node)).await?;
        Ok(found.and_then(|n| objects::attach_limit(&n, &self.driver_name)))
    }

    /// From the node cache when it holds the Node (and has listed the CSINodes), else read as
    /// without it.
    async fn node_for_attach(&self, node: &str) -> Result<(NodeState, Option<u32>), ClusterError> {
        let state = match self.node_cache.node(node) {
            Some(state) => state,
            None => self.node_state(node).await?,
        };
        if state == NodeState::Absent {
            return Ok((state, None));
        }
        let limit = match self.node_cache.limit(node) {
            Some(limit) => limit,
            None => self.attach_limit(node).await?,
        };
        Ok((state, limit))
    }

    /// Queued (see `EventRecorder::enqueue`): the operation that caused it does not wait.
    async fn post_event(&self, event: VolumeEvent) {
        self.events.enqueue(event);
    }

    fn dropped_events(&self) -> u64 {
        self.events.dropped_events()
    }
}

/// The PV name the provisioner gives a volume with this handle (its slot), when the slot is a
/// valid object name at all.
fn slot_name(volume_handle: &str) -> Option<&str> {
    let slot = volume_handle
        .rsplit_once(':')
        .map_or(volume_handle, |(_, s)| s);
    let valid = !slot.is_empty()
        && slot.len() <= 253
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && slot.starts_with(|c: char| c.is_ascii_alphanumeric())
        && slot.ends_with(|c: char| c.is_ascii_alphanumeric());
    valid.then_some(slot)
}

#[cfg(test)]
mod tests {
    use super::slot_name;

    #[test]
    fn the_slot_of_a_handle_is_the_pv_name_to_try_when_it_can_be_one() {
        let uuid = "pvc-1c7e0a8e-0c55-4e55-9d6b-2b1f6f6c9a10";
        assert_eq!(slot_name(&format!("default:{uuid}")), Some(uuid));
        assert_eq!(slot_name(uuid), Some(uuid));
        assert_eq!(slot_name("default:pvc-UPPER"), None);
        assert_eq!(slot_name("default:"), None);
        assert_eq!(slot_name("default:pvc-a/b"), None);
    }
}
