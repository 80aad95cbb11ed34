//! The background reconciler: repairs what no RPC will repair.
//!
//! Deleted and out-of-service nodes are normally released within seconds by the Node watch
//! (`k8s::watch_nodes`, through `release_node`); the periodic pass is the safety net for
//! whatever a watch missed, and the only check outside Kubernetes.
//!
//! Each pass (one at start, then every `reconcile_interval`):
//! - clears the attachments of nodes whose Node object is gone, or that carry the
//!   `node.kubernetes.io/out-of-service` taint (the operator declared them down; Kubernetes
//!   force-detaches their volumes), so their volumes can move;
//! - finishes VolumeAttachments stuck in deletion whose Node object is gone (releases the
//!   attachment and takes off the external-attacher's finalizer, so Kubernetes deletes them),
//!   and reports the other stuck ones (log + Warning event + counter, once each), because that
//!   is what kept volumes unusable for hours after an RDS or node crash;
//! - reports live migrations running past their timeout (once each), never detaching either node:
//!   only KubeVirt knows which side is live.
//!
//! Every API error is fail-open: the attachment stays, and the next pass tries again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::cluster::{EventKind, NodeState, VolumeAttachmentInfo};
use super::manager::AttachmentManager;
use super::state::EventTarget;
use super::stats::bump;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// (volume, node) attachments cleared.
    pub cleared: Vec<(String, String)>,
    /// Checks skipped because the API failed (nothing was cleared for them).
    pub errors: usize,
    /// VolumeAttachments newly reported as stuck in deletion.
    pub stuck_volume_attachments: Vec<String>,
    /// VolumeAttachments stuck in deletion for a deleted node, finished by this pass.
    pub finished_volume_attachments: Vec<String>,
    /// Volumes whose migration was newly reported as overdue.
    pub overdue_migrations: Vec<String>,
}

impl AttachmentManager {
    /// Starts the periodic reconciler; abort the handle to stop it.
    pub fn spawn_reconciler(self: &Arc<Self>) -> JoinHandle<()> {
        let me = Arc::clone(self);
        let every = if me.config.reconcile_interval.is_zero() {
            super::manager::FencingConfig::default().reconcile_interval
        } else {
            me.config.reconcile_interval
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let r = me.reconcile_once().await;
                debug!(?r, "attachment reconcile pass done");
            }
        })
    }

    /// One reconciler pass.
    pub async fn reconcile_once(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        if !self.is_ready() {
            return report;
        }
        let snapshot: Vec<(String, Vec<String>)> = self
            .map()
            .iter()
            .map(|(v, a)| (v.clone(), a.node_names()))
            .collect();
        let mut nodes: HashMap<String, Option<NodeState>> = HashMap::new();
        for (volume, holders) in snapshot {
            for node in holders {
                if !nodes.contains_key(&node) {
                    let state = match self
                        .call("looking up a node", self.cluster.node_state(&node))
                        .await
                    {
                        Ok(s) => Some(s),
                        Err(e) => {
                            warn!(node = %node, error = %e, "reconciler: cannot check node; keeping its attachments");
                            None
                        }
                    };
                    nodes.insert(node.clone(), state);
                }
                let why = match nodes.get(&node).copied().flatten() {
                    None => {
                        report.errors += 1;
                        bump(&self.counters.reconcile_errors, 1);
                        continue;
                    }
                    Some(NodeState::Present {
                        out_of_service: false,
                    }) => continue,
                    Some(NodeState::Absent) => "deleted",
                    Some(NodeState::Present {
                        out_of_service: true,
                    }) => "out-of-service",
                };
                match self.clear_node(&volume, &node, why).await {
                    Ok(true) => report.cleared.push((volume.clone(), node.clone())),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(volume = %volume, node = %node, error = %e, "reconciler: could not record clearing the attachment; keeping it");
                        report.errors += 1;
                        bump(&self.counters.reconcile_errors, 1);
                    }
                }
            }
        }
        self.report_stuck_detaches(&mut report).await;
        self.report_overdue_migrations(&mut report).await;
        report
    }

    /// Every node holding at least one volume.
    pub fn nodes_holding_volumes(&self) -> HashSet<String> {
        self.map().values().flat_map(|a| a.node_names()).collect()
    }

    /// Clears `node`'s attachments when Kubernetes says it is deleted or out of service, read
    /// afresh here whatever prompted the call (a watch event only says where to look). Nothing
    /// is read for a node that holds no volume. API errors keep the attachments (fail-open, as
    /// in a pass); returns the (volume, node) pairs cleared.
    pub async fn release_node(&self, node: &str) -> Vec<(String, String)> {
        if !self.is_ready() {
            return Vec::new();
        }
        let volumes: Vec<String> = self
            .map()
            .iter()
            .filter(|(_, a)| a.holds(node))
            .map(|(v, _)| v.clone())
            .collect();
        if volumes.is_empty() {
            return Vec::new();
        }
        let why = match self
            .call("looking up a node", self.cluster.node_state(node))
            .await
        {
            Ok(NodeState::Absent) => "deleted",
            Ok(NodeState::Present {
                out_of_service: true,
            }) => "out-of-service",
            Ok(NodeState::Present { .. }) => return Vec::new(),
            Err(e) => {
                warn!(node, error = %e, "cannot check node; keeping its attachments");
                bump(&self.counters.reconcile_errors, 1);
                return Vec::new();
            }
        };
        let mut cleared = Vec::new();
        for volume in volumes {
            match self.clear_node(&volume, node, why).await {
                Ok(true) => cleared.push((volume, node.to_string())),
                Ok(false) => {}
                Err(e) => {
                    warn!(volume = %volume, node, error = %e, "could not record clearing the attachment; keeping it");
                    bump(&self.counters.reconcile_errors, 1);
                }
            }
        }
        cleared
    }

    /// Removes `node` from `volume` if it still holds it; `Ok(false)` when it no longer did.
    async fn clear_node(&self, volume: &str, node: &str, why: &str) -> vocab::error::Result<bool> {
        let doing = format!("clearing the attachment of {why} node {node} from volume {volume}");
        let _lock = self.locks.lock(volume).await;
        let Some(current) = self.attachment(volume) else {
            return Ok(false);
        };
        if !current.holds(node) {
            return Ok(false);
        }
        let mut next = current.clone();
        next.nodes.retain(|n| n.node != node);
        if next.nodes.len() < 2 {
            next.migration = None;
        }
        let next = (!next.nodes.is_empty()).then_some(next);
        self.persist(volume, next.as_ref(), &doing).await?;
        {
            let mut map = self.map();
            match &next {
                Some(a) => map.insert(volume.to_string(), a.clone()),
                None => map.remove(volume),
            };
        }
        bump(&self.counters.stale_cleared, 1);
        info!(volume, node, why, "reconciler cleared a stale attachment");
        self.post(
            &current.target,
            EventKind::Normal,
            "StaleAttachmentCleared",
            format!("[{volume}]: Cleared stale attachment from {why} node {node}"),
        )
        .await;
        Ok(true)
    }

    async fn report_stuck_detaches(&self, report: &mut ReconcileReport) {
        let vas = match self
            .call(
                "listing VolumeAttachments",
                self.cluster.list_volume_attachments(),
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "reconciler: cannot list VolumeAttachments; stuck detaches not checked this pass");
                report.errors += 1;
                bump(&self.counters.reconcile_errors, 1);
                return;
            }
        };
        let limit = self.config.stuck_detach_after.as_secs();
        let mut stuck: Vec<_> = vas
            .iter()
            .filter(|va| va.deleting_for_secs.is_some_and(|s| s >= limit))
            .collect();
        let mut nodes: HashMap<String, Option<NodeState>> = HashMap::new();
        let mut finished = HashSet::new();
        for va in &stuck {
            if self.finish_if_node_gone(va, &mut nodes, report).await {
                finished.insert(va.name.clone());
            }
        }
        stuck.retain(|va| !finished.contains(&va.name));
        let fresh: Vec<_> = {
            let mut seen = self.reported_vas.lock().unwrap_or_else(|p| p.into_inner());
            let now_stuck: HashSet<String> = stuck.iter().map(|va| va.name.clone()).collect();
            // Forget VolumeAttachments that are gone, so a new one with the same name is reported.
            seen.retain(|n| now_stuck.contains(n));
            stuck
                .into_iter()
                .filter(|va| seen.insert(va.name.clone()))
                .collect()
        };
        for va in fresh {
            bump(&self.counters.stale_va_reports, 1);
            let secs = va.deleting_for_secs.unwrap_or_default();
            let pv = va.pv_name.clone().unwrap_or_default();
            warn!(va = %va.name, pv = %pv, node = %va.node, secs, "VolumeAttachment stuck in deletion");
            let target = self
                .map()
                .values()
                .find(|a| a.target.pv_name.as_deref() == va.pv_name.as_deref())
                .map(|a| a.target.clone())
                .unwrap_or_else(|| EventTarget {
                    pv_name: va.pv_name.clone(),
                    ..EventTarget::default()
                });
            self.post(
                &target,
                EventKind::Warning,
                "VolumeAttachmentStuck",
                format!(
                    "[{pv}]: VolumeAttachment {} for node {} has been deleting for {secs}s; the detach is not completing (node unreachable or NodeUnstage failing). If the node is gone for good, taint it node.kubernetes.io/out-of-service so Kubernetes force-detaches.",
                    va.name, va.node
                ),
            )
            .await;
            report.stuck_volume_attachments.push(va.name.clone());
        }
    }

    /// The VolumeAttachment watch's entry point (`k8s::watch_volume_attachments`):
    /// finishes `va` as the periodic pass would, if it is in deletion and its Node is gone.
    /// Acts only while this replica decides attachments (rebuilt, and the leader with HA), as
    /// the Node watch does; the Node is read afresh and the VolumeAttachment re-read before
    /// its finalizer is taken off.
    pub async fn finish_deleting_volume_attachment(&self, va: &VolumeAttachmentInfo) -> bool {
        if va.deleting_for_secs.is_none()
            || !self.is_ready()
            || self.leader.as_ref().is_some_and(|g| g.refusal().is_some())
        {
            return false;
        }
        let mut nodes = HashMap::new();
        let mut report = ReconcileReport::default();
        self.finish_if_node_gone(va, &mut nodes, &mut report).await
    }

    /// Finishes a VolumeAttachment stuck in deletion whose Node object is gone: the node's
    /// attachment of the volume is released here (as ControllerUnpublish would) and the
    /// external-attacher's finalizer taken off, so Kubernetes deletes the VA and the volume
    /// can attach elsewhere. Nothing can still use the volume through a node Kubernetes no
    /// longer has, which is the same rule a publish applies to a holder whose Node is gone.
    /// Any API error leaves the VA as it is (reported as stuck; the next pass tries again).
    async fn finish_if_node_gone(
        &self,
        va: &VolumeAttachmentInfo,
        nodes: &mut HashMap<String, Option<NodeState>>,
        report: &mut ReconcileReport,
    ) -> bool {
        if !nodes.contains_key(&va.node) {
            let state = self
                .call("looking up a node", self.cluster.node_state(&va.node))
                .await
                .map_err(|e| warn!(node = %va.node, error = %e, "reconciler: cannot check the node of a stuck VolumeAttachment"))
                .ok();
            nodes.insert(va.node.clone(), state);
        }
        if nodes.get(&va.node).copied().flatten() != Some(NodeState::Absent) {
            return false;
        }
        let volumes: Vec<(String, EventTarget)> = self
            .map()
            .iter()
            .filter(|(_, a)| {
                a.holds(&va.node)
                    && va.pv_name.is_some()
                    && a.target.pv_name.as_deref() == va.pv_name.as_deref()
            })
            .map(|(v, a)| (v.clone(), a.target.clone()))
            .collect();
        for (volume, _) in &volumes {
            match self.clear_node(volume, &va.node, "deleted").await {
                Ok(true) => report.cleared.push((volume.clone(), va.node.clone())),
                Ok(false) => {}
                Err(e) => {
                    warn!(va = %va.name, volume = %volume, error = %e, "could not release the attachment of a stuck VolumeAttachment; leaving it");
                    report.errors += 1;
                    bump(&self.counters.reconcile_errors, 1);
                    return false;
                }
            }
        }
        match self
            .call(
                "finishing a VolumeAttachment",
                self.cluster.finish_volume_attachment(&va.name, &va.node),
            )
            .await
        {
            Ok(true) => {
                let pv = va.pv_name.clone().unwrap_or_default();
                info!(va = %va.name, pv = %pv, node = %va.node, "finished a VolumeAttachment stuck in deletion for a deleted node");
                let target = volumes
                    .into_iter()
                    .next()
                    .map(|(_, t)| t)
                    .unwrap_or_else(|| EventTarget {
                        pv_name: va.pv_name.clone(),
                        ..EventTarget::default()
                    });
                self.post(
                    &target,
                    EventKind::Normal,
                    "VolumeAttachmentFinished",
                    format!(
                        "[{pv}]: VolumeAttachment {} was stuck in deletion for node {}, which no longer exists; the attachment was released so the volume can attach elsewhere",
                        va.name, va.node
                    ),
                )
                .await;
                report.finished_volume_attachments.push(va.name.clone());
                true
            }
            Ok(false) => false,
            Err(e) => {
                warn!(va = %va.name, error = %e, "could not finish a VolumeAttachment stuck in deletion");
                report.errors += 1;
                bump(&self.counters.reconcile_errors, 1);
                false
            }
        }
    }

    async fn report_overdue_migrations(&self, report: &mut ReconcileReport) {
        let now = self.clock.now();
        let overdue: Vec<(String, crate::fencing::state::Attachment)> = {
            let mut map = self.map();
            map.iter_mut()
                .filter(|(_, a)| a.migration_overdue(now))
                .filter_map(|(v, a)| {
                    let m = a.migration.as_mut()?;
                    if m.timeout_reported {
                        return None;
                    }
                    m.timeout_reported = true;
                    Some((v.clone(), a.clone()))
                })
                .collect()
        };
        for (volume, a) in overdue {
            bump(&self.counters.migration_timeouts, 1);
            let names = a.node_names();
            let source = names.first().cloned().unwrap_or_default();
            let target = names.get(1).cloned().unwrap_or_default();
            let (elapsed, timeout) = a
                .migration
                .as_ref()
                .map(|m| {
                    (
                        now.duration_since(m.started_at).unwrap_or_default(),
                        m.timeout,
                    )
                })
                .unwrap_or_default();
            warn!(volume = %volume, source = %source, target = %target, ?elapsed, ?timeout, "live migration overdue; both nodes stay attached");
            self.post(
                &a.target,
                EventKind::Warning,
                "MigrationTimeout",
                format!(
                    "[{volume}]: KubeVirt live migration has not finished - source: {source}, target: {target}, elapsed: {}s, timeout: {}s. Both nodes stay attached; the driver never detaches either. Check the VirtualMachineInstanceMigration.",
                    elapsed.as_secs(),
                    timeout.as_secs()
                ),
            )
            .await;
            report.overdue_migrations.push(volume);
        }
    }
}
