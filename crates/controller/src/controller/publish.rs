//! ControllerPublish/Unpublish: the fence (`fencing`), the RDS host ACL for
//! host-fenced volumes, and the publish_context the node connects with.

use super::*;

impl ControllerService {
    pub(super) async fn publish(
        &self,
        req: pb::ControllerPublishVolumeRequest,
    ) -> Result<pb::ControllerPublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        if req.node_id.is_empty() {
            return Err(DriverError::InvalidArgument("node ID is required".into()));
        }
        let node = NodeId::parse(&req.node_id)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| DriverError::InvalidArgument("volume capability is required".into()))?;
        if let Some(why) = capability::unsupported(cap) {
            return Err(DriverError::InvalidArgument(format!(
                "invalid volume capability: {why}"
            )));
        }
        let multi = cap
            .access_mode
            .as_ref()
            .is_some_and(|m| m.mode == Mode::MultiNodeMultiWriter as i32);
        let request = PublishRequest {
            volume_id: req.volume_id.clone(),
            node: node.name.clone(),
            sharing: if multi {
                Sharing::MultiNode
            } else {
                Sharing::SingleNode
            },
            volume_context: req.volume_context.clone(),
        };
        // Held from the existence check to the recorded attachment, so a DeleteVolume of the
        // same volume runs wholly before (NOT_FOUND here) or after (refused while attached).
        let held = self.fencing.hold_for_publish(&request).await;
        // The volume must exist before anyone is fenced onto it; an RDS outage is UNAVAILABLE.
        let (id, backend, disk, owned) =
            self.existing(&req.volume_id, Access::Act("attach")).await?;
        let publish_context = publish_context(&id, &backend, &disk, &req.volume_context, cap)?;
        let acl = AclTarget {
            slot: &id.slot,
            client: &backend.client,
        };
        let fenced = owned.marks.host_fencing;
        self.host_acl
            .publish(&request, &node, fenced, acl, &held)
            .await?;
        Ok(pb::ControllerPublishVolumeResponse { publish_context })
    }

    pub(super) async fn unpublish(
        &self,
        req: pb::ControllerUnpublishVolumeRequest,
    ) -> Result<pb::ControllerUnpublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        // The RDS is only asked about host-fenced volumes, and its failure never fails the
        // detach: a volume deleted on the RDS must still be detachable. An empty node id is
        // CSI's "detach from every node".
        let node = Some(req.node_id.as_str())
            .filter(|n| !n.is_empty())
            .map(NodeId::parse)
            .transpose()?;
        let found = self
            .parse_id(&req.volume_id)
            .ok()
            .and_then(|id| Some((self.backends.get(&id.backend)?.client.clone(), id.slot)));
        let acl = found
            .as_ref()
            .map(|(client, slot)| AclTarget { slot, client });
        let held = self.fencing.hold_for_unpublish(&req.volume_id).await;
        self.host_acl
            .unpublish(&req.volume_id, node.as_ref(), acl, &held)
            .await?;
        Ok(pb::ControllerUnpublishVolumeResponse {})
    }
}

/// What the node needs to connect, from the RDS's own record of the export (the volume_context
/// may predate a change of port or address).
fn publish_context(
    id: &VolumeId,
    backend: &Backend,
    disk: &Disk,
    volume_context: &HashMap<String, String>,
    cap: &pb::VolumeCapability,
) -> Result<HashMap<String, String>> {
    let address = volume_context
        .get(params::C_NVME_ADDRESS)
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| backend.nvme_address.to_string());
    let port = disk.nvme_port.ok_or_else(|| {
        DriverError::FailedPrecondition(format!(
            "volume {id} exists on backend {} but is not exported over NVMe/TCP (no nvme-tcp-port)",
            backend.name
        ))
    })?;
    let nqn = match &disk.nvme_nqn {
        Some(nqn) => nqn.clone(),
        None => id
            .nqn()
            .map_err(|e| DriverError::Internal(format!("deriving the NQN of {id}: {e}")))?
            .as_str()
            .to_string(),
    };
    let mut ctx = HashMap::new();
    ctx.insert(PC_NVME_ADDRESS.to_string(), address);
    ctx.insert(PC_NVME_PORT.to_string(), port.to_string());
    ctx.insert(PC_NVME_NQN.to_string(), nqn);
    if let Some(AccessType::Mount(m)) = &cap.access_type {
        let fs = if m.fs_type.is_empty() {
            "ext4"
        } else {
            m.fs_type.as_str()
        };
        ctx.insert(PC_FS_TYPE.to_string(), fs.to_string());
    }
    Ok(ctx)
}
