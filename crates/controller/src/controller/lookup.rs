//! Finding the volume an RPC names: id checks, the disk and whose it is (`vocab::ownership`),
//! and the read-only RPCs built on that (ValidateVolumeCapabilities, ControllerGetVolume).

use super::*;

impl ControllerService {
    /// A volume id an RPC must find: malformed is INVALID_ARGUMENT, well formed but never one
    /// of ours (`fake-vol-id-1`) is NOT_FOUND.
    pub(super) fn known_id(&self, raw_id: &str) -> Result<VolumeId> {
        if raw_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        if let Some(why) = VolumeId::malformed(raw_id) {
            return Err(DriverError::InvalidArgument(why));
        }
        self.parse_id(raw_id)
            .map_err(|why| DriverError::NotFound(format!("volume {raw_id:?} not found: {why}")))
    }

    /// The volume's disk, when it exists and is the driver's (`vocab::ownership`). A disk under
    /// the slot that is not the driver's is reported as absent (`Access::Report`, as ListVolumes
    /// omits it) or refused with FAILED_PRECONDITION (`Access::Act`: the caller means a real
    /// disk, and must learn why nothing happens to it).
    pub(super) async fn existing(
        &self,
        raw_id: &str,
        access: Access,
    ) -> Result<(VolumeId, Arc<Backend>, Disk, Owned)> {
        let id = self.known_id(raw_id)?;
        let backend = self.backend_of(&id)?.clone();
        let disk = backend
            .client
            .get_disk(&id.slot)
            .await
            .map_err(|e| DriverError::rds(format!("looking up volume {id}"), e))?
            .ok_or_else(|| {
                DriverError::NotFound(format!("volume {id} not found on backend {}", backend.name))
            })?;
        let owned = ownership::owned(&backend, &disk).map_err(|why| match access {
            Access::Report => DriverError::NotFound(format!("volume {id} not found: {why}")),
            Access::Act(doing) => {
                DriverError::FailedPrecondition(format!("{why}; refusing to {doing} it"))
            }
        })?;
        Ok((id, backend, disk, owned))
    }

    pub(super) async fn validate(
        &self,
        req: pb::ValidateVolumeCapabilitiesRequest,
    ) -> Result<pb::ValidateVolumeCapabilitiesResponse> {
        if req.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        if req.volume_capabilities.is_empty() {
            return Err(DriverError::InvalidArgument(
                "volume capabilities are required".into(),
            ));
        }
        self.existing(&req.volume_id, Access::Report).await?;
        if let Err(why) = capability::check_all(&req.volume_capabilities) {
            return Ok(pb::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: why,
            });
        }
        Ok(pb::ValidateVolumeCapabilitiesResponse {
            confirmed: Some(pb::validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: String::new(),
        })
    }

    pub(super) async fn get(
        &self,
        req: pb::ControllerGetVolumeRequest,
    ) -> Result<pb::ControllerGetVolumeResponse> {
        let (id, backend, disk, _) = self.existing(&req.volume_id, Access::Report).await?;
        Ok(pb::ControllerGetVolumeResponse {
            volume: Some(self.volume_of(&id, &disk)),
            status: Some(pb::controller_get_volume_response::VolumeStatus {
                published_node_ids: vec![],
                volume_condition: Some(condition(&backend.name, &disk)),
            }),
        })
    }
}

/// What the controller can tell of a volume's health from the RDS's `/disk print` record
/// (VOLUME_CONDITION): abnormal when nodes could not connect to the disk however healthy the
/// network is, because its NVMe/TCP export is off or has no port. A volume whose disk is gone
/// is not reported here: ControllerGetVolume answers NOT_FOUND and ListVolumes omits it, as
/// CSI requires. What only a node can see (paths, mounts) is the node's VolumeCondition.
pub(super) fn condition(backend: &str, disk: &Disk) -> pb::VolumeCondition {
    let (abnormal, message) = if !disk.nvme_export {
        (
            true,
            format!(
                "the disk exists on backend {backend} but its NVMe/TCP export is off (nvme-tcp-export=no): no node can connect to it until it is exported again"
            ),
        )
    } else if disk.nvme_port.is_none() {
        (
            true,
            format!(
                "the disk on backend {backend} is exported over NVMe/TCP without a port (no nvme-tcp-server-port): nodes cannot connect to it"
            ),
        )
    } else {
        (
            false,
            format!("the disk is on backend {backend} and exported over NVMe/TCP"),
        )
    };
    pb::VolumeCondition { abnormal, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(fields: &str) -> Disk {
        let line = format!(
            "slot=pvc-1 type=file file-path=/storage-pool/metal-csi/pvc-1.img size=1073741824 {fields}"
        );
        routeros::disk::parse_disks(&line).unwrap().remove(0)
    }

    #[test]
    fn a_disk_nodes_cannot_connect_to_is_abnormal_and_says_why() {
        let ok = condition(
            "rds1",
            &disk(
                "nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-1",
            ),
        );
        assert!(!ok.abnormal);
        assert!(ok.message.contains("rds1"), "{}", ok.message);
        let off = condition("rds1", &disk("nvme-tcp-export=no"));
        assert!(off.abnormal);
        assert!(off.message.contains("export is off"), "{}", off.message);
        let no_port = condition(
            "rds1",
            &disk("nvme-tcp-export=yes nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-1"),
        );
        assert!(no_port.abnormal);
        assert!(
            no_port.message.contains("without a port"),
            "{}",
            no_port.message
        );
    }
}
