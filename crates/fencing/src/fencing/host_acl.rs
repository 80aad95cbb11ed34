//! RDS-side host fencing: the disk's `nvme-tcp-server-allow-host-name` follows the attachment.
//!
//! The attachment manager only stops the CO from attaching a volume twice; a stale or
//! misbehaving node can still `nvme connect` to any export. For volumes whose StorageClass says
//! `hostFencing: "true"`, ControllerPublish therefore restricts the export to the publishing
//! node's host NQN (carried in its node id, see `vocab::node_id`) before it answers, and
//! ControllerUnpublish opens it again (or narrows it to the node that remains).
//!
//! **Order.** Publish decides and records the attachment first, then sets the ACL, and undoes
//! the record when the ACL cannot be set. The reverse order would change the ACL before the
//! fence said yes: a publish that the fence then refuses would already have locked the
//! rightful holder out. With this order a crash between the two steps leaves the attachment
//! recorded and the ACL as the previous unpublish left it (open); the CO never got an answer,
//! so it retries, and the retry (AlreadyAttached) sets the ACL. The ACL is therefore never
//! narrower than the fence allows, and never silently open once a publish answered OK: every
//! set is verified by printing the disk.
//!
//! **Migration.** RouterOS prints one `allow-host-name`; whether it accepts a list is unknown
//! (docs/fencing.md), so while two nodes hold a volume (KubeVirt live migration) the ACL is
//! left open with a Warning event, and narrowed to the remaining node when one detaches.
//!
//! **Unpublish** never fails on the RDS: a detach must work during an RDS outage (and for a
//! disk deleted on the RDS). An ACL that could not be cleared still names the departed node,
//! which is narrower than open, and the next publish replaces it anyway.
//!
//! Locking: the caller holds the volume's one lock (a [`Held`] from the attachment manager,
//! which took the serializer guard first) for the whole publish or unpublish; nothing here
//! takes a lock of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nvme::Nqn;
use rds::RdsClient;
use routeros::{HostNqn, Slot};
use tracing::{info, warn};

use super::cluster::EventKind;
use super::manager::{AttachmentManager, Held, PublishOutcome, PublishRequest, UnpublishOutcome};
use super::state::EventTarget;
use vocab::error::{DriverError, Result};
use vocab::node_id::NodeId;
use vocab::params;

/// Longest an unpublish waits for the RDS before giving up on the ACL (and still succeeding).
const UNPUBLISH_BUDGET: Duration = Duration::from_secs(15);

/// Where a volume's ACL lives: its slot on one RDS.
pub struct AclTarget<'a> {
    pub slot: &'a Slot,
    pub client: &'a RdsClient,
}

pub struct HostAcl {
    fencing: Arc<AttachmentManager>,
    /// Node name → host NQN, from every publish: what the ACL narrows to when a migration ends.
    nqns: Mutex<HashMap<String, Nqn>>,
    /// Volume id → hostFencing, from its publishes (unpublish carries no volume_context).
    fenced: Mutex<HashMap<String, bool>>,
    unpublish_budget: Duration,
}

/// Whether the volume asks for host fencing (`hostFencing` in its volume_context).
pub fn wanted(ctx: &HashMap<String, String>) -> Result<bool> {
    match ctx.get(params::C_HOST_FENCING) {
        None => Ok(false),
        Some(v) => params::parse_bool(params::C_HOST_FENCING, v),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HostAcl {
    pub fn new(fencing: Arc<AttachmentManager>) -> Self {
        HostAcl {
            fencing,
            nqns: Mutex::new(HashMap::new()),
            fenced: Mutex::new(HashMap::new()),
            unpublish_budget: UNPUBLISH_BUDGET,
        }
    }

    /// The attachment manager's publish, plus the ACL for host-fenced volumes. `req.node` must
    /// be `node.name`. `fenced` is the volume's own fencing mode as recorded on the RDS
    /// (`vocab::ownership`); a volume_context that says otherwise is ignored with a warning, so
    /// a caller can neither open a fenced volume nor fence a plain one.
    pub async fn publish(
        &self,
        req: &PublishRequest,
        node: &NodeId,
        fenced: bool,
        target: AclTarget<'_>,
        held: &Held<'_>,
    ) -> Result<PublishOutcome> {
        match wanted(&req.volume_context) {
            Ok(asked) if asked == fenced => {}
            Ok(asked) if req.volume_context.contains_key(params::C_HOST_FENCING) => {
                warn!(volume = %req.volume_id, volume_context = asked, recorded = fenced, "host fencing: the volume_context disagrees with the mode recorded on the RDS; using the recorded mode");
            }
            Ok(_) => {}
            Err(e) => {
                warn!(volume = %req.volume_id, error = %e, recorded = fenced, "host fencing: unreadable hostFencing in the volume_context; using the mode recorded on the RDS");
            }
        }
        lock(&self.fenced).insert(req.volume_id.clone(), fenced);
        if let Some(nqn) = &node.host_nqn {
            lock(&self.nqns).insert(node.name.clone(), nqn.clone());
        }
        if !fenced {
            return self.fencing.publish_held(req, held).await;
        }
        let Some(nqn) = &node.host_nqn else {
            return Err(DriverError::FailedPrecondition(format!(
                "volume {} uses host fencing (StorageClass hostFencing: \"true\"), but node {} did not report its NVMe host NQN (its node id has no \"/<host-nqn>\" part); upgrade the rds-csi node plugin on that node so it re-registers with the new node id",
                req.volume_id, node.name
            )));
        };
        let host = HostNqn::new(nqn.as_str()).map_err(|e| {
            DriverError::InvalidArgument(format!(
                "node {}: host NQN cannot be written to the RDS: {e}",
                node.name
            ))
        })?;
        let outcome = self.fencing.publish_held(req, held).await?;
        let holders = self.fencing.attached_nodes(&req.volume_id);
        let want = if holders.len() > 1 { None } else { Some(&host) };
        let v = &req.volume_id;
        if let Err(e) = target.client.set_allowed_host(target.slot, want).await {
            let mut msg = format!(
                "volume {v}: restricting its NVMe/TCP export to node {} ({host}) failed, so it was not attached: {e}",
                node.name
            );
            if outcome != PublishOutcome::AlreadyAttached
                && let Err(undo) = self.fencing.unpublish_held(v, Some(&node.name), held).await
            {
                warn!(volume = %v, node = %node.name, error = %undo, "host fencing: undoing the attachment after the ACL failed also failed; it stays recorded until the CO retries or detaches");
                msg.push_str(&format!(
                    "; undoing the attachment record failed too ({undo}), retry or detach"
                ));
            }
            warn!(volume = %v, node = %node.name, error = %e, "host fencing: ACL not set; publish refused");
            return Err(DriverError::Unavailable(msg));
        }
        match want {
            Some(h) => {
                info!(volume = %v, node = %node.name, host = %h, "host fencing: export restricted to the node")
            }
            None => {
                let nodes = holders.join(", ");
                warn!(volume = %v, nodes = %nodes, "host fencing suspended: two nodes hold the volume (live migration) and RouterOS takes one allowed host, so the export is open to any host until one detaches");
                if outcome == PublishOutcome::MigrationStarted {
                    self.event(
                        self.fencing.attachment(v).map(|a| a.target),
                        "HostFencingSuspended",
                        format!(
                            "[{v}]: Host fencing suspended during live migration: the RDS export accepts any host while nodes {nodes} both hold the volume"
                        ),
                    )
                    .await;
                }
            }
        }
        Ok(outcome)
    }

    /// The attachment manager's unpublish, then the ACL for host-fenced volumes (best effort:
    /// see the module docs). `target` is `None` when the volume id names no configured backend.
    pub async fn unpublish(
        &self,
        volume_id: &str,
        node: Option<&NodeId>,
        target: Option<AclTarget<'_>>,
        held: &Held<'_>,
    ) -> Result<UnpublishOutcome> {
        let name = node.map(|n| n.name.as_str());
        let known = lock(&self.fenced).get(volume_id).copied();
        if known == Some(false) {
            return self.fencing.unpublish_held(volume_id, name, held).await;
        }
        let before = self.fencing.attachment(volume_id);
        let event_target = before.as_ref().map(|a| a.target.clone());
        let outcome = self.fencing.unpublish_held(volume_id, name, held).await?;
        if outcome == UnpublishOutcome::NotAttached {
            return Ok(outcome);
        }
        let Some(target) = target else {
            return Ok(outcome);
        };
        // Who left: the named node, or every former holder on a force-detach.
        let departed: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => before.map(|a| a.node_names()).unwrap_or_default(),
        };
        if let Some(n) = node.and_then(|n| n.host_nqn.as_ref().map(|q| (n, q))) {
            lock(&self.nqns).insert(n.0.name.clone(), n.1.clone());
        }
        let work = self.after_detach(volume_id, known, &departed, &target);
        let problem = match tokio::time::timeout(self.unpublish_budget, work).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "the RDS did not answer within {:?}",
                self.unpublish_budget
            )),
        };
        if let Some(why) = problem {
            warn!(volume = volume_id, departed = ?departed, error = %why, "host fencing: the RDS ACL was not updated after the detach; it still names the departed node until the next publish");
            self.event(
                event_target,
                "HostFencingNotUpdated",
                format!(
                    "[{volume_id}]: Detached, but the RDS host ACL could not be updated ({why}); the next attach sets it"
                ),
            )
            .await;
        }
        Ok(outcome)
    }

    /// Sets the ACL to what the remaining holders need. `known` is the mode publish read from
    /// the RDS; `None` (publish was before this controller started) is read from the disk's
    /// file name now. A volume that is not host fenced keeps whatever ACL it has.
    async fn after_detach(
        &self,
        volume_id: &str,
        known: Option<bool>,
        departed: &[String],
        target: &AclTarget<'_>,
    ) -> std::result::Result<(), rds::RdsError> {
        let Some(disk) = target.client.get_disk(target.slot).await? else {
            return Ok(());
        };
        let recorded = disk
            .file_path
            .as_deref()
            .and_then(|p| p.rsplit_once('/'))
            .and_then(|(_, base)| vocab::ownership::parse_file_name(target.slot.as_str(), base))
            .is_some_and(|m| m.host_fencing);
        if !known.unwrap_or(recorded) {
            return Ok(());
        }
        let current = disk.allow_host.unwrap_or_default();
        let remaining = self.fencing.attached_nodes(volume_id);
        let want: Option<HostNqn> = match remaining.as_slice() {
            [] => None,
            [one] => match self.nqn_of(one) {
                Some(h) => Some(h),
                None => {
                    // The remaining node's NQN is unknown (published before a restart). Keep a
                    // value that does not name a departed node; open one that does, or the
                    // remaining node would be locked out.
                    let names_departed = departed
                        .iter()
                        .filter_map(|d| self.nqn_of(d))
                        .any(|h| h.as_str() == current);
                    if !names_departed {
                        return Ok(());
                    }
                    warn!(volume = volume_id, node = %one, "host fencing: the remaining node's host NQN is unknown to this controller; export left open until its next publish");
                    None
                }
            },
            _ => None,
        };
        if want.as_ref().map_or("", HostNqn::as_str) == current {
            return Ok(());
        }
        target
            .client
            .set_allowed_host(target.slot, want.as_ref())
            .await?;
        match &want {
            Some(h) => {
                info!(volume = volume_id, host = %h, "host fencing: export narrowed to the remaining node")
            }
            None => info!(volume = volume_id, "host fencing: export open again"),
        }
        Ok(())
    }

    fn nqn_of(&self, node: &str) -> Option<HostNqn> {
        let nqn = lock(&self.nqns).get(node).cloned()?;
        HostNqn::new(nqn.as_str()).ok()
    }

    /// A Warning on the volume's PVC (or PV); volumes without either only get the log line.
    async fn event(&self, target: Option<EventTarget>, reason: &str, message: String) {
        let Some(target) = target.filter(|t| t.pv_name.is_some() || t.pvc.is_some()) else {
            return;
        };
        self.fencing
            .post(&target, EventKind::Warning, reason, message)
            .await;
    }
}
