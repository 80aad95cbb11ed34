//! Rebuilding the attachment state after a controller restart.
//!
//! VolumeAttachments are the authority on which node holds a volume (Kubernetes keeps them until
//! ControllerUnpublish succeeded); PV annotations only add what VolumeAttachments cannot say:
//! attach order and times, the access mode and the migration window. An annotation naming a node
//! without a VolumeAttachment is stale (hand edits, a lost write) and is ignored, so it can never
//! resurrect a fence. A VolumeAttachment not yet marked attached counts only when the annotations
//! record its node: the publish succeeded, but the attacher had not recorded it before we stopped.
//!
//! VolumeAttachments name PVs, not volume handles; each is mapped through its PV to the handle
//! (PV names and handles differ: handles are `<backend>:<slot>`).
//!
//! Failure policy: if anything cannot be read, `rebuild` returns an error and the manager stays
//! not-ready, refusing every publish and unpublish (UNAVAILABLE). The binary calls it before the
//! gRPC socket opens and does not serve when it fails, so the controller never runs on a guessed
//! (empty) state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::annotations;
use super::cluster::{PvInfo, VolumeAttachmentInfo};
use super::manager::AttachmentManager;
use super::state::{Attachment, EventTarget, Migration, NodeAttachment, Sharing};
use vocab::error::{DriverError, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Volumes attached to at least one node.
    pub volumes: usize,
    /// Node attachments restored.
    pub attachments: usize,
    /// Annotation entries naming a node without a VolumeAttachment (ignored as stale).
    pub stale_annotations: usize,
    /// VolumeAttachments whose PV is unknown (ignored: their volume handle cannot be known).
    pub unresolved: usize,
}

impl AttachmentManager {
    /// Replaces the in-memory state with what Kubernetes records, then marks the manager ready.
    pub async fn rebuild(&self) -> Result<RebuildReport> {
        let fail = |what: &str, e| {
            DriverError::Unavailable(format!(
                "rebuilding attachment state: {what}: {e}; the controller must not serve without it"
            ))
        };
        let vas = self
            .call(
                "listing VolumeAttachments",
                self.cluster.list_volume_attachments(),
            )
            .await
            .map_err(|e| fail("listing VolumeAttachments", e))?;
        let pvs = self
            .call("listing PersistentVolumes", self.cluster.list_pvs())
            .await
            .map_err(|e| fail("listing PersistentVolumes", e))?;
        let (state, report) = self.assemble(&vas, &pvs);
        *self.map() = state;
        self.ready.store(true, Ordering::SeqCst);
        info!(
            volumes = report.volumes,
            attachments = report.attachments,
            stale_annotations = report.stale_annotations,
            unresolved = report.unresolved,
            "attachment state rebuilt from VolumeAttachments and PV annotations"
        );
        Ok(report)
    }

    fn assemble(
        &self,
        vas: &[VolumeAttachmentInfo],
        pvs: &[PvInfo],
    ) -> (HashMap<String, Attachment>, RebuildReport) {
        let now = self.clock.now();
        let mut report = RebuildReport::default();
        let by_name: HashMap<&str, &PvInfo> = pvs.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut per_pv: BTreeMap<&str, Vec<&VolumeAttachmentInfo>> = BTreeMap::new();
        for va in vas {
            match va.pv_name.as_deref() {
                Some(pv) => per_pv.entry(pv).or_default().push(va),
                None => {
                    warn!(va = %va.name, node = %va.node, "VolumeAttachment without a PersistentVolume (inline volume?); this driver does not serve those, ignored");
                    report.unresolved += 1;
                }
            }
        }
        // PVs whose annotations name nodes but have no VolumeAttachment at all.
        for pv in pvs {
            if !per_pv.contains_key(pv.name.as_str()) {
                let stale = annotations::read(&pv.annotations).nodes.len();
                if stale > 0 {
                    warn!(pv = %pv.name, "PV annotations record an attachment but no VolumeAttachment exists; ignored as stale");
                    report.stale_annotations += stale;
                }
            }
        }

        let mut state = HashMap::new();
        for (pv_name, group) in per_pv {
            let Some(pv) = by_name.get(pv_name).filter(|p| !p.volume_handle.is_empty()) else {
                warn!(
                    pv = pv_name,
                    vas = group.len(),
                    "VolumeAttachments name a PersistentVolume that does not exist (or has no volume handle); ignored"
                );
                report.unresolved += group.len();
                continue;
            };
            let rec = annotations::read(&pv.annotations);
            let recorded = |node: &str| rec.nodes.iter().position(|(n, _)| n == node);
            let mut held: Vec<&VolumeAttachmentInfo> = group
                .iter()
                .copied()
                .filter(|va| va.attached || recorded(&va.node).is_some())
                .collect();
            held.sort_by_key(|va| (recorded(&va.node).unwrap_or(usize::MAX), va.name.clone()));
            held.dedup_by(|a, b| a.node == b.node);
            for (node, _) in &rec.nodes {
                if !group.iter().any(|va| &va.node == node) {
                    warn!(pv = pv_name, node = %node, "PV annotation names a node without a VolumeAttachment; ignored as stale");
                    report.stale_annotations += 1;
                }
            }
            if held.is_empty() {
                continue;
            }
            let nodes: Vec<NodeAttachment> = held
                .iter()
                .map(|va| NodeAttachment {
                    node: va.node.clone(),
                    attached_at: rec.time_of(&va.node).unwrap_or(now),
                })
                .collect();
            let sharing = rec.sharing.unwrap_or(if nodes.len() > 1 {
                Sharing::MultiNode
            } else {
                Sharing::SingleNode
            });
            if nodes.len() > 1 && sharing == Sharing::SingleNode {
                warn!(pv = pv_name, nodes = ?nodes.iter().map(|n| &n.node).collect::<Vec<_>>(), "a single-node volume is attached to several nodes; all are kept fenced until they detach");
            }
            let migration = (nodes.len() > 1).then(|| Migration {
                started_at: rec.migration_started_at.unwrap_or(now),
                timeout: rec
                    .migration_timeout
                    .unwrap_or(self.config.default_migration_timeout),
                timeout_reported: false,
            });
            report.volumes += 1;
            report.attachments += nodes.len();
            state.insert(
                pv.volume_handle.clone(),
                Attachment {
                    nodes,
                    sharing,
                    migration,
                    target: {
                        let mut target = EventTarget::default();
                        target.follow_pv(pv);
                        target
                    },
                },
            );
        }
        (state, report)
    }
}
