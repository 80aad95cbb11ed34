//! DeleteVolume, including a delete that stopped between `/disk remove` and `/file remove`.

use super::*;

impl ControllerService {
    pub(super) async fn delete(
        &self,
        req: pb::DeleteVolumeRequest,
    ) -> Result<pb::DeleteVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        let id = match self.parse_id(&req.volume_id) {
            Ok(id) => id,
            Err(why) => {
                // Nothing this driver made can have such an id, so it does not exist (CSI: OK).
                info!(volume = %req.volume_id, %why, "delete of a volume id that is not ours: nothing to do");
                return Ok(pb::DeleteVolumeResponse {});
            }
        };
        let backend = self.backend_of(&id)?;
        let _guard = self.fencing.locks().lock(&req.volume_id).await;
        // A disk removed under a live attachment is I/O errors on a node, or data written by
        // a node that kept it: the CO must unpublish first (CSI: FAILED_PRECONDITION).
        let mut holders = self.fencing.holders(&req.volume_id).await?;
        if holders.is_empty() && req.volume_id != id.to_string() {
            holders = self.fencing.holders(&id.to_string()).await?;
        }
        if !holders.is_empty() {
            return Err(DriverError::FailedPrecondition(format!(
                "volume {id} is still attached to node(s) {}; unpublish it (delete its VolumeAttachments) before deleting it",
                holders.join(", ")
            )));
        }
        let disk = backend.client.get_disk(&id.slot).await.map_err(|e| {
            DriverError::rds(format!("looking up volume {id} before deleting it"), e)
        })?;
        let Some(disk) = disk else {
            remove_leftover_files(&id, backend).await?;
            return Ok(pb::DeleteVolumeResponse {});
        };
        ownership::owned(backend, &disk).map_err(|why| {
            DriverError::FailedPrecondition(format!("{why}; refusing to delete it"))
        })?;
        let outcome = backend
            .client
            .delete_found_disk(&disk)
            .await
            .map_err(|e| DriverError::rds(format!("deleting volume {id}"), e))?;
        if let Some(file) = &outcome.leftover_file {
            warn!(volume = %id, file, "disk removed but its backing file could not be; the orphan reconciler will report it");
        }
        Ok(pb::DeleteVolumeResponse {})
    }
}

/// Finishes a delete that stopped between `/disk remove` and `/file remove` (a controller
/// killed there, or a `/file remove` the RDS refused): with the disk gone the retry would
/// otherwise answer OK and leave `<slot>.img` on the RDS for good. Only files named exactly
/// `<slot>.img` under the backend's volume paths are removed, the names this driver gives its
/// volumes; snapshot files (`snap-…`) and anything elsewhere never match. A failed lookup or
/// removal is an error, so the CO retries rather than hearing OK with the file still there.
async fn remove_leftover_files(id: &VolumeId, backend: &Backend) -> Result<()> {
    let files = backend.client.image_files(&id.slot).await.map_err(|e| {
        DriverError::rds(
            format!("looking for a backing file left by volume {id} before answering its delete"),
            e,
        )
    })?;
    let mut removed = 0;
    for file in files {
        let Ok(path) = FilePath::new(&file.name) else {
            continue;
        };
        let named_by_us = path
            .as_str()
            .rsplit_once('/')
            .is_some_and(|(_, base)| ownership::parse_file_name(id.slot.as_str(), base).is_some());
        if !named_by_us || !backend.allowed_paths.iter().any(|dir| path.is_under(dir)) {
            continue;
        }
        backend.client.remove_file(&path).await.map_err(|e| {
            DriverError::rds(
                format!(
                    "removing {} left behind by the disk of volume {id}",
                    path.as_str()
                ),
                e,
            )
        })?;
        warn!(volume = %id, file = path.as_str(), "disk was already gone; removed the backing file it left");
        removed += 1;
    }
    if removed == 0 {
        info!(volume = %id, "volume does not exist: nothing to delete");
    }
    Ok(())
}
