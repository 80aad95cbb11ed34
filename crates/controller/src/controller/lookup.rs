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
        let (id, _backend, disk, _) = self.existing(&req.volume_id, Access::Report).await?;
        Ok(pb::ControllerGetVolumeResponse {
            volume: Some(self.volume_of(&id, &disk)),
            status: Some(pb::controller_get_volume_response::VolumeStatus {
                published_node_ids: vec![],
                volume_condition: None,
            }),
        })
    }
}
