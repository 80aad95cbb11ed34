//! The attachment manager: which node(s) each volume is attached to, and the rules that keep a
//! single-node volume on at most one node.
//!
//! NVMe/TCP has no reservations, so this bookkeeping is the only fence: a wrong "yes" here lets
//! two kernels write one filesystem. Every decision therefore fails closed (an API error refuses
//! the publish), every change reaches the PV before the RPC answers (so a restart cannot forget
//! a fence), and nothing here ever detaches a live attachment on its own except for nodes that
//! Kubernetes says are gone.
//!
//! **Lock order.** (1) the KubeVirt serializer guard, if any (see `serialize`); (2) the
//! per-volume lock (`locks`, whose map mutex is only held to find the entry, never while waiting).
//! This is the ONE per-volume lock of the controller: CreateVolume, DeleteVolume, expansion,
//! host ACL changes and CreateSnapshot (on its source) take the same lock through
//! [`AttachmentManager::locks`], so a Delete racing a Publish or a snapshot of the same volume
//! runs after it, never beside it. A caller that must hold the lock across its own work and a
//! fencing step takes it with [`AttachmentManager::hold_for_publish`] or
//! [`AttachmentManager::hold_for_unpublish`] (which keep this order) and passes the [`Held`]
//! on; a snapshot's own lock key is taken only after its source volume's;
//! (3) the `state` map mutex, held only to read or write the map and never across an `.await`;
//! (4) `reported_vas`, never held together with `state`. Nobody holds two volume locks at once
//! (CreateSnapshot holds its source volume's lock and then its snapshot key, never a second volume).
//! The per-volume lock IS held across Kubernetes calls for that volume: the decision, the PV
//! write and the in-memory commit form one step, so two publishes of one volume cannot both win.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::annotations;
use super::clock::{Clock, SystemClock};
use super::cluster::{Cluster, ClusterError, EventKind, NodeState, PvInfo, VolumeEvent};
use super::publish_plan::{self, Plan, Repeat};
use super::serialize::{NoSerialization, PublishSerializer};
use super::state::{Attachment, EventTarget, Sharing};
use super::stats::{Counters, FencingStats, bump};
use vocab::error::{DriverError, Result};
use vocab::locks::{VolumeGuard, VolumeLocks};
use vocab::params;

/// Proof that the caller holds a volume's serializer guard and lock, in the documented order.
pub struct Held<'a> {
    _serial: Option<super::serialize::SerialGuard>,
    _lock: VolumeGuard<'a>,
    volume_id: String,
}

/// Migration windows outside this range are clamped (a StorageClass typo must neither report
/// every migration at once nor hide a stuck one for days).
const MIGRATION_TIMEOUT_RANGE: (u64, u64) = (30, 3600);

#[derive(Debug, Clone)]
pub struct FencingConfig {
    /// Deadline for each Kubernetes API call; the error names the call that hung.
    pub api_timeout: Duration,
    /// Migration window when the volume_context has no `migrationTimeoutSeconds`.
    pub default_migration_timeout: Duration,
    /// Attempts at an annotation write when the PV keeps changing underneath (resourceVersion
    /// conflicts); each retry re-reads the PV.
    pub conflict_attempts: u32,
    /// Pause before a retry, multiplied by the attempt number.
    pub conflict_backoff: Duration,
    /// How often the background reconciler runs (zero means the default).
    pub reconcile_interval: Duration,
    /// A VolumeAttachment deleting for longer than this is reported as stuck.
    pub stuck_detach_after: Duration,
}

impl Default for FencingConfig {
    fn default() -> Self {
        FencingConfig {
            api_timeout: Duration::from_secs(10),
            default_migration_timeout: Duration::from_secs(300),
            conflict_attempts: 5,
            conflict_backoff: Duration::from_millis(10),
            reconcile_interval: Duration::from_secs(300),
            stuck_detach_after: Duration::from_secs(600),
        }
    }
}

/// One ControllerPublishVolume, as fencing sees it.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The CSI volume id exactly as the CO sent it (it equals the PV's `volumeHandle`).
    pub volume_id: String,
    pub node: String,
    pub sharing: Sharing,
    pub volume_context: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The node already held the volume (a retry): nothing changed.
    AlreadyAttached,
    Attached,
    /// A second node joined a multi-node block volume.
    MigrationStarted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpublishOutcome {
    /// The node did not hold the volume (a retry, or never published): nothing changed.
    NotAttached,
    /// No node holds the volume any more: it is free for any node at once.
    Detached,
    /// The named node was removed; another node still holds the volume.
    StillAttached,
}

pub struct AttachmentManager {
    pub(super) cluster: Arc<dyn Cluster>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) serializer: Arc<dyn PublishSerializer>,
    pub(super) config: FencingConfig,
    pub(super) locks: VolumeLocks,
    /// Volume id → attachment; a volume without nodes has no entry.
    pub(super) state: Mutex<HashMap<String, Attachment>>,
    /// False until `rebuild` succeeded: until then publish and unpublish are refused.
    pub(super) ready: AtomicBool,
    pub(super) counters: Counters,
    /// VolumeAttachments already reported as stuck, so each is reported once.
    pub(super) reported_vas: Mutex<HashSet<String>>,
    /// With controller HA, only the Lease holder may decide attachments.
    pub(super) leader: Option<Arc<dyn LeaderGate>>,
}

/// Says whether this replica may serve publish/unpublish (controller HA). Two replicas deciding
/// on two in-memory states could attach one volume to two nodes, so a follower refuses.
pub trait LeaderGate: Send + Sync {
    /// `Some(why)` while this replica must not serve, e.g. "not the leader; the leader is X".
    fn refusal(&self) -> Option<String>;
}

impl AttachmentManager {
    pub fn new(cluster: Arc<dyn Cluster>, config: FencingConfig) -> Self {
        AttachmentManager {
            cluster,
            clock: Arc::new(SystemClock),
            serializer: Arc::new(NoSerialization),
            config,
            locks: VolumeLocks::default(),
            state: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            counters: Counters::default(),
            reported_vas: Mutex::new(HashSet::new()),
            leader: None,
        }
    }

    /// Refuses publish/unpublish (UNAVAILABLE, so the CO retries) while `gate` says so.
    pub fn with_leader_gate(mut self, gate: Arc<dyn LeaderGate>) -> Self {
        self.leader = Some(gate);
        self
    }

    /// Marks the state stale (leadership lost): publishes are refused and the reconciler idles
    /// until `rebuild` reads the state afresh, since the new leader may change it meanwhile.
    pub fn suspend(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Installs per-VM publish serialization (KubeVirt); off by default.
    pub fn with_serializer(mut self, serializer: Arc<dyn PublishSerializer>) -> Self {
        self.serializer = serializer;
        self
    }

    pub fn config(&self) -> &FencingConfig {
        &self.config
    }

    /// True once the state was rebuilt from Kubernetes; Probe and startup use it.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn attachment(&self, volume_id: &str) -> Option<Attachment> {
        self.map().get(volume_id).cloned()
    }

    /// Nodes holding the volume, in attach order.
    pub fn attached_nodes(&self, volume_id: &str) -> Vec<String> {
        self.attachment(volume_id)
            .map(|a| a.node_names())
            .unwrap_or_default()
    }

    pub fn stats(&self) -> FencingStats {
        let (volumes, migrations) = {
            let map = self.map();
            let migrations = map.values().filter(|a| a.nodes.len() > 1).count();
            (map.len() as u64, migrations as u64)
        };
        self.counters
            .snapshot(volumes, migrations, self.cluster.dropped_events())
    }

    pub(super) fn map(&self) -> MutexGuard<'_, HashMap<String, Attachment>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_ready(&self, doing: &str) -> Result<()> {
        if let Some(why) = self.leader.as_ref().and_then(|g| g.refusal()) {
            return Err(DriverError::Unavailable(format!("{doing}: {why}")));
        }
        if self.is_ready() {
            Ok(())
        } else {
            Err(DriverError::Unavailable(format!(
                "{doing}: attachment state has not been rebuilt from Kubernetes yet; deciding on empty state could attach a volume to two nodes"
            )))
        }
    }

    /// Runs one Kubernetes call under the API deadline.
    pub(super) async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = std::result::Result<T, ClusterError>>,
    ) -> std::result::Result<T, ClusterError> {
        let limit = self.config.api_timeout;
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::Unavailable(format!(
                "{what}: no answer from the Kubernetes API within {limit:?}"
            ))),
        }
    }

    /// Posts an event without ever failing or hanging the operation it describes.
    pub(super) async fn post(
        &self,
        target: &EventTarget,
        kind: EventKind,
        reason: &str,
        message: String,
    ) {
        let event = VolumeEvent {
            pv_name: target.pv_name.clone(),
            pvc: target.pvc.clone(),
            kind,
            reason: reason.to_string(),
            message,
            pv_uid: target.pv_uid.clone(),
            pvc_uid: target.pvc_uid.clone(),
        };
        let limit = self.config.api_timeout;
        if tokio::time::timeout(limit, self.cluster.post_event(event))
            .await
            .is_err()
        {
            warn!(
                reason,
                "posting an event took longer than {limit:?}; dropped"
            );
        }
    }

    /// Writes the annotations describing `next` to the volume's PV, re-reading and retrying on
    /// resourceVersion conflicts. `Ok(None)`: the volume has no PV (kept in memory only).
    pub(super) async fn persist(
        &self,
        volume_id: &str,
        next: Option<&Attachment>,
        doing: &str,
    ) -> Result<Option<PvInfo>> {
        let result = self.persist_inner(volume_id, next, doing).await;
        if result.is_err() {
            bump(&self.counters.persist_failures, 1);
        }
        result
    }

    async fn persist_inner(
        &self,
        volume_id: &str,
        next: Option<&Attachment>,
        doing: &str,
    ) -> Result<Option<PvInfo>> {
        let attempts = self.config.conflict_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let pv = self
                .call(
                    "looking up the PersistentVolume",
                    self.cluster.pv_by_handle(volume_id),
                )
                .await
                .map_err(|e| api_error(doing, "looking up its PersistentVolume", e))?;
            let Some(pv) = pv else {
                bump(&self.counters.unpersisted, 1);
                warn!(
                    volume = volume_id,
                    "no PersistentVolume has this volume handle, so the attachment is kept IN MEMORY ONLY and will not survive a controller restart (expected only for CSI clients calling the driver directly)"
                );
                return Ok(None);
            };
            let changes = annotations::changes(next, &pv.annotations);
            if changes.is_empty() {
                return Ok(Some(pv));
            }
            let patch = self
                .cluster
                .patch_pv_annotations(&pv.name, &pv.resource_version, &changes);
            match self
                .call("patching PersistentVolume annotations", patch)
                .await
            {
                Ok(updated) => return Ok(Some(updated)),
                Err(ClusterError::Conflict(why)) | Err(ClusterError::NotFound(why)) => {
                    // Someone else wrote (or deleted) the PV since we read it: read it again.
                    debug!(volume = volume_id, pv = %pv.name, attempt, %why, "PV changed underneath; retrying");
                    last = why;
                    if attempt < attempts {
                        tokio::time::sleep(self.config.conflict_backoff * attempt).await;
                    }
                }
                Err(e) => {
                    return Err(api_error(
                        doing,
                        &format!("writing annotations on PersistentVolume {}", pv.name),
                        e,
                    ));
                }
            }
        }
        Err(DriverError::Unavailable(format!(
            "{doing}: the PersistentVolume of volume {volume_id} kept changing while its annotations were written; gave up after {attempts} attempts (last: {last})"
        )))
    }

    /// The per-volume lock every controller operation shares (see the lock order above).
    pub fn locks(&self) -> &VolumeLocks {
        &self.locks
    }

    /// The serializer guard and the volume lock a publish of `req` needs, in that order.
    pub async fn hold_for_publish(&self, req: &PublishRequest) -> Held<'_> {
        let ctx_pvc = pvc_from_context(&req.volume_context);
        let serial = self
            .serializer
            .enter(&req.volume_id, ctx_pvc.as_ref())
            .await;
        Held {
            _serial: serial,
            _lock: self.locks.lock(&req.volume_id).await,
            volume_id: req.volume_id.clone(),
        }
    }

    /// The serializer guard and the volume lock an unpublish of `volume_id` needs. The PVC
    /// comes from the attachment's event target; without one the serializer looks it up.
    pub async fn hold_for_unpublish(&self, volume_id: &str) -> Held<'_> {
        let pvc = self.attachment(volume_id).and_then(|a| a.target.pvc);
        let serial = self.serializer.enter(volume_id, pvc.as_ref()).await;
        Held {
            _serial: serial,
            _lock: self.locks.lock(volume_id).await,
            volume_id: volume_id.to_string(),
        }
    }

    /// Nodes that hold `volume_id` as far as fencing knows: the in-memory state once rebuilt,
    /// else (a replica that is not the leader, or before the rebuild) the PV's annotations, so
    /// a delete is never let through on empty state. An API failure is UNAVAILABLE.
    pub async fn holders(&self, volume_id: &str) -> Result<Vec<String>> {
        if self.is_ready() && self.leader.as_ref().is_none_or(|g| g.refusal().is_none()) {
            return Ok(self.attached_nodes(volume_id));
        }
        let pv = self
            .call("looking up a PV", self.cluster.pv_by_handle(volume_id))
            .await
            .map_err(|e| {
                DriverError::Unavailable(format!(
                    "cannot tell whether volume {volume_id} is attached (reading its PV failed): {e}"
                ))
            })?;
        Ok(pv
            .map(|pv| annotations::read(&pv.annotations).nodes)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Attaches `req.node`, or explains why not.
    pub async fn publish(&self, req: &PublishRequest) -> Result<PublishOutcome> {
        let held = self.hold_for_publish(req).await;
        self.publish_held(req, &held).await
    }

    /// [`AttachmentManager::publish`] under a [`Held`] the caller took for this volume.
    pub async fn publish_held(
        &self,
        req: &PublishRequest,
        held: &Held<'_>,
    ) -> Result<PublishOutcome> {
        debug_assert_eq!(held.volume_id, req.volume_id);
        let doing = format!("attaching volume {} to node {}", req.volume_id, req.node);
        self.ensure_ready(&doing)?;
        let current = self.attachment(&req.volume_id);
        match publish_plan::repeat(current.as_ref(), req) {
            // CSI: a publish to the node that holds the volume with an incompatible access mode
            // is not a retry of the one that attached it.
            Some(Repeat::OtherAccess(held)) => {
                return Err(DriverError::AlreadyExists(format!(
                    "{doing}: the node already holds the volume with access {held:?}, and this publish asks for {:?}; unpublish it first",
                    req.sharing
                )));
            }
            Some(Repeat::Retry) => {
                debug!(volume = %req.volume_id, node = %req.node, "already attached to this node");
                return Ok(PublishOutcome::AlreadyAttached);
            }
            None => {}
        }
        self.admit_node(req, &doing).await?;
        let now = self.clock.now();

        // A holder whose Node object is gone releases the volume; if we cannot tell, the fence
        // stays (fail closed).
        let mut stale = Vec::new();
        for holder in current.iter().flat_map(Attachment::node_names) {
            let state = self
                .call("looking up a node", self.cluster.node_state(&holder))
                .await
                .map_err(|e| {
                    DriverError::Unavailable(format!(
                        "{doing}: cannot verify that node {holder}, which holds the volume, still exists, so the volume stays fenced: {e}"
                    ))
                })?;
            if state == NodeState::Absent {
                stale.push(holder);
            }
        }
        let plan = publish_plan::plan(
            current.as_ref(),
            &stale,
            req,
            now,
            self.config.default_migration_timeout,
        );
        let (next, outcome) = match plan {
            Plan::Record { next, outcome } => (next, outcome),
            Plan::Refuse { held, target, why } => {
                return Err(self.conflict(req, &held, &target, &why).await);
            }
        };

        let pv = self.persist(&req.volume_id, Some(&next), &doing).await?;
        let mut next = next;
        if let Some(pv) = &pv {
            next.target.follow_pv(pv);
        }
        self.map().insert(req.volume_id.clone(), next.clone());

        let v = &req.volume_id;
        for node in &stale {
            bump(&self.counters.stale_cleared, 1);
            info!(volume = %v, node = %node, "cleared the attachment of a deleted node");
            self.post(
                &next.target,
                EventKind::Normal,
                "StaleAttachmentCleared",
                format!("[{v}]: Cleared stale attachment from deleted node {node}"),
            )
            .await;
        }
        bump(&self.counters.attaches, 1);
        match outcome {
            PublishOutcome::MigrationStarted => {
                bump(&self.counters.migrations_started, 1);
                let source = next.nodes.first().map(|n| n.node.as_str()).unwrap_or("");
                let timeout = next
                    .migration
                    .as_ref()
                    .map(|m| m.timeout)
                    .unwrap_or_default();
                info!(volume = %v, source, target = %req.node, ?timeout, "live migration started: volume attached to two nodes");
                self.post(
                    &next.target,
                    EventKind::Normal,
                    "MigrationStarted",
                    format!(
                        "[{v}]: KubeVirt live migration started - source: {source}, target: {}, timeout: {}s",
                        req.node,
                        timeout.as_secs()
                    ),
                )
                .await;
            }
            _ => {
                info!(volume = %v, node = %req.node, "attached");
                self.post(
                    &next.target,
                    EventKind::Normal,
                    "VolumeAttached",
                    format!("[{v}]: Attached to node {}", req.node),
                )
                .await;
            }
        }
        Ok(outcome)
    }

    /// A new attachment needs a node that exists (CSI: NOT_FOUND otherwise) and has room
    /// under its attach limit (RESOURCE_EXHAUSTED). Both are asked of the cluster, so an API
    /// failure refuses the publish (UNAVAILABLE) rather than guessing. In Kubernetes a node
    /// exists while its Node object does and its limit is its CSINode's allocatable count; the
    /// trial mode's in-memory cluster has no registry, so there every node exists, unlimited.
    async fn admit_node(&self, req: &PublishRequest, doing: &str) -> Result<()> {
        let node = &req.node;
        let (state, limit) = self
            .call(
                "looking up a node and its attach limit",
                self.cluster.node_for_attach(node),
            )
            .await
            .map_err(|e| {
                DriverError::Unavailable(format!(
                    "{doing}: cannot verify that node {node} exists and read its attach limit: {e}"
                ))
            })?;
        if state == NodeState::Absent {
            return Err(DriverError::NotFound(format!(
                "{doing}: node {node} does not exist (no Node object)"
            )));
        }
        if let Some(limit) = limit {
            let held = self
                .map()
                .iter()
                .filter(|(id, a)| *id != &req.volume_id && a.holds(node))
                .count();
            if held >= limit as usize {
                return Err(DriverError::ResourceExhausted(format!(
                    "{doing}: node {node} already holds {held} volumes of this driver, its limit (CSINode allocatable count) is {limit}; detach one first or schedule elsewhere"
                )));
            }
        }
        Ok(())
    }

    async fn conflict(
        &self,
        req: &PublishRequest,
        held: &Attachment,
        target: &EventTarget,
        why: &str,
    ) -> DriverError {
        bump(&self.counters.conflicts, 1);
        let holders = held.node_names().join(", ");
        let v = &req.volume_id;
        warn!(volume = %v, requested = %req.node, attached = %holders, why, "attachment refused");
        self.post(
            target,
            EventKind::Warning,
            "AttachmentConflict",
            format!(
                "[{v}]: Attachment to node {} rejected - volume already attached to node {holders}. Delete the pod on {holders} to release the volume.",
                req.node
            ),
        )
        .await;
        DriverError::FailedPrecondition(format!(
            "volume {v} is already attached to node {holders}; refusing to attach it to node {} as well: {why}",
            req.node
        ))
    }

    /// Detaches `node` (all nodes when `None`, CSI's force-detach form). Only the named node is
    /// removed, so a late call for an old node never drops a newer node's fence.
    pub async fn unpublish(&self, volume_id: &str, node: Option<&str>) -> Result<UnpublishOutcome> {
        let held = self.hold_for_unpublish(volume_id).await;
        self.unpublish_held(volume_id, node, &held).await
    }

    /// [`AttachmentManager::unpublish`] under a [`Held`] the caller took for this volume.
    pub async fn unpublish_held(
        &self,
        volume_id: &str,
        node: Option<&str>,
        held: &Held<'_>,
    ) -> Result<UnpublishOutcome> {
        debug_assert_eq!(held.volume_id, volume_id);
        let doing = match node {
            Some(n) => format!("detaching volume {volume_id} from node {n}"),
            None => format!("detaching volume {volume_id} from every node"),
        };
        self.ensure_ready(&doing)?;
        let Some(current) = self.attachment(volume_id) else {
            debug!(
                volume = volume_id,
                "not attached anywhere; nothing to detach"
            );
            return Ok(UnpublishOutcome::NotAttached);
        };
        let removed: Vec<String> = current
            .node_names()
            .into_iter()
            .filter(|n| node.is_none_or(|want| want == n))
            .collect();
        if removed.is_empty() {
            debug!(
                volume = volume_id,
                ?node,
                "node does not hold the volume; nothing to detach"
            );
            return Ok(UnpublishOutcome::NotAttached);
        }
        let mut next = current.clone();
        next.nodes.retain(|n| !removed.contains(&n.node));
        if next.nodes.len() < 2 {
            next.migration = None;
        }
        let next = (!next.nodes.is_empty()).then_some(next);
        self.persist(volume_id, next.as_ref(), &doing).await?;
        {
            let mut map = self.map();
            match &next {
                Some(a) => map.insert(volume_id.to_string(), a.clone()),
                None => map.remove(volume_id),
            };
        }
        bump(&self.counters.detaches, removed.len() as u64);
        let target = &current.target;
        if let (Some(m), Some(left)) = (&current.migration, &next) {
            bump(&self.counters.migrations_completed, 1);
            let elapsed = self
                .clock
                .now()
                .duration_since(m.started_at)
                .unwrap_or_default();
            let remaining = left.node_names().join(", ");
            let gone = removed.join(", ");
            info!(volume = volume_id, detached = %gone, remaining = %remaining, ?elapsed, "live migration ended");
            self.post(
                target,
                EventKind::Normal,
                "MigrationCompleted",
                format!(
                    "[{volume_id}]: KubeVirt live migration completed - source: {gone} -> target: {remaining} (duration: {}s)",
                    elapsed.as_secs()
                ),
            )
            .await;
        }
        for n in &removed {
            info!(volume = volume_id, node = %n, "detached");
            self.post(
                target,
                EventKind::Normal,
                "VolumeDetached",
                format!("[{volume_id}]: Detached from node {n}"),
            )
            .await;
        }
        Ok(if next.is_some() {
            UnpublishOutcome::StillAttached
        } else {
            UnpublishOutcome::Detached
        })
    }
}

fn api_error(doing: &str, step: &str, e: ClusterError) -> DriverError {
    match e {
        // RBAC is a deployment mistake, not something a retry fixes.
        ClusterError::Forbidden(_) => DriverError::Internal(format!("{doing}: {step}: {e}")),
        _ => DriverError::Unavailable(format!("{doing}: {step}: {e}")),
    }
}

/// The PVC a volume belongs to, from the keys CreateVolume copies into the volume_context.
pub fn pvc_from_context(ctx: &HashMap<String, String>) -> Option<(String, String)> {
    let ns = ctx.get(params::PVC_NAMESPACE).filter(|s| !s.is_empty())?;
    let name = ctx.get(params::PVC_NAME).filter(|s| !s.is_empty())?;
    Some((ns.clone(), name.clone()))
}

/// The migration window from the volume_context, clamped, or `default`.
pub fn migration_timeout(ctx: &HashMap<String, String>, default: Duration) -> Duration {
    let Some(raw) = ctx.get(params::C_MIGRATION_TIMEOUT) else {
        return default;
    };
    match raw.trim().parse::<u64>() {
        Ok(secs) if secs > 0 => {
            let clamped = secs.clamp(MIGRATION_TIMEOUT_RANGE.0, MIGRATION_TIMEOUT_RANGE.1);
            if clamped != secs {
                warn!(
                    value = secs,
                    used = clamped,
                    "migrationTimeoutSeconds out of range; clamped"
                );
            }
            Duration::from_secs(clamped)
        }
        _ => {
            warn!(value = %raw, "migrationTimeoutSeconds is not a positive whole number; using the default");
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_timeout_is_read_clamped_or_defaulted() {
        let d = Duration::from_secs(300);
        let mut ctx = HashMap::new();
        assert_eq!(migration_timeout(&ctx, d), d);
        ctx.insert(params::C_MIGRATION_TIMEOUT.to_string(), "120".to_string());
        assert_eq!(migration_timeout(&ctx, d), Duration::from_secs(120));
        ctx.insert(params::C_MIGRATION_TIMEOUT.to_string(), "5".to_string());
        assert_eq!(migration_timeout(&ctx, d), Duration::from_secs(30));
        ctx.insert(params::C_MIGRATION_TIMEOUT.to_string(), "99999".to_string());
        assert_eq!(migration_timeout(&ctx, d), Duration::from_secs(3600));
        ctx.insert(params::C_MIGRATION_TIMEOUT.to_string(), "soon".to_string());
        assert_eq!(migration_timeout(&ctx, d), d);
    }

    struct Gate(std::sync::atomic::AtomicBool);
    impl LeaderGate for Gate {
        fn refusal(&self) -> Option<String> {
            (!self.0.load(Ordering::SeqCst)).then(|| "not the leader; the leader is pod-b".into())
        }
    }

    #[tokio::test]
    async fn a_follower_refuses_publish_naming_the_leader_and_serves_once_leading() {
        let gate = Arc::new(Gate(AtomicBool::new(false)));
        let cluster = Arc::new(super::super::MemoryCluster::new());
        let m = AttachmentManager::new(cluster, FencingConfig::default())
            .with_leader_gate(gate.clone());
        m.rebuild().await.unwrap();
        let req = PublishRequest {
            volume_id: "default:pvc-1".into(),
            node: "n1".into(),
            sharing: Sharing::SingleNode,
            volume_context: HashMap::new(),
        };
        let err = m.publish(&req).await.unwrap_err();
        assert!(matches!(err, DriverError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("the leader is pod-b"), "{err}");
        let err = m.unpublish("default:pvc-1", Some("n1")).await.unwrap_err();
        assert!(matches!(err, DriverError::Unavailable(_)), "{err:?}");
        gate.0.store(true, Ordering::SeqCst);
        assert_eq!(m.publish(&req).await.unwrap(), PublishOutcome::Attached);
        m.suspend();
        let err = m.publish(&req).await.unwrap_err();
        assert!(err.to_string().contains("not been rebuilt"), "{err}");
    }

    #[test]
    fn pvc_identity_needs_both_keys() {
        let mut ctx = HashMap::new();
        ctx.insert(params::PVC_NAME.to_string(), "data".to_string());
        assert_eq!(pvc_from_context(&ctx), None);
        ctx.insert(params::PVC_NAMESPACE.to_string(), "apps".to_string());
        assert_eq!(
            pvc_from_context(&ctx),
            Some(("apps".to_string(), "data".to_string()))
        );
    }
}
