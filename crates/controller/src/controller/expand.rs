//! ControllerExpandVolume: grows the disk on the RDS; never shrinks.

use super::*;

impl ControllerService {
    pub(super) async fn expand(
        &self,
        req: pb::ControllerExpandVolumeRequest,
    ) -> Result<pb::ControllerExpandVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        let range = req
            .capacity_range
            .as_ref()
            .filter(|r| r.required_bytes > 0 || r.limit_bytes > 0)
            .ok_or_else(|| {
                DriverError::InvalidArgument(
                    "capacity_range with required_bytes is required".into(),
                )
            })?;
        let bytes = size::allocation(Some(range))?;
        let id = self.known_id(&req.volume_id)?;
        self.backend_of(&id)?;
        let block = req
            .volume_capability
            .as_ref()
            .is_some_and(|c| capability::all_block(std::slice::from_ref(c)));
        let _guard = self.fencing.locks().lock(&req.volume_id).await;
        let (id, backend, found, _) = self.existing(&req.volume_id, Access::Act("expand")).await?;
        let disk = match backend
            .client
            .resize_found_disk(&id.slot, found, ByteSize(bytes))
            .await
        {
            Ok(disk) => disk,
            // Already larger than asked: CSI wants OK with the real size, and the RDS is
            // never asked to shrink.
            Err(rds::RdsError::WouldShrink { disk, .. }) => *disk,
            Err(e) => {
                return Err(DriverError::rds(
                    format!("expanding volume {id} to {bytes} bytes"),
                    e,
                ));
            }
        };
        let capacity = disk.capacity_bytes().ok_or_else(|| {
            DriverError::Internal(format!("RDS did not report a size for volume {id}"))
        })?;
        Ok(pb::ControllerExpandVolumeResponse {
            capacity_bytes: capacity as i64,
            // Always ask for the node step on filesystems: it is idempotent, and answering
            // `false` on a retried expansion would leave a filesystem smaller than its device.
            node_expansion_required: !block,
        })
    }
}
