//! CreateVolume: a new volume on the RDS, or the one a retry already made (compared by
//! size and the create-time parameters recorded in its file name), or a clone/restore.

use super::*;

impl ControllerService {
    pub(super) async fn create(
        &self,
        req: pb::CreateVolumeRequest,
    ) -> Result<pb::CreateVolumeResponse> {
        if req.name.is_empty() {
            return Err(DriverError::InvalidArgument(
                "volume name is required".into(),
            ));
        }
        capability::check_all(&req.volume_capabilities).map_err(|why| {
            DriverError::InvalidArgument(format!("invalid volume capabilities: {why}"))
        })?;
        let bytes = size::allocation(req.capacity_range.as_ref())?;
        let (p, backend) = params::parse(&req.parameters, &self.backends)?;
        let copy = match &req.volume_content_source {
            Some(src) => Some(self.snapshots.copy_source(src, backend).await?),
            None => None,
        };
        let bytes = match &copy {
            Some(c) => snapshots::restore_size(bytes, c.bytes, req.capacity_range.as_ref())?,
            None => bytes,
        };
        let slot = volume_id::slot_for_name(&req.name).map_err(|e| {
            DriverError::Internal(format!("deriving a slot for {:?}: {e}", req.name))
        })?;
        let id = VolumeId {
            backend: backend.name.clone(),
            slot,
        };
        let nqn = id
            .nqn()
            .map_err(|e| DriverError::Internal(format!("deriving the NQN of {id}: {e}")))?;
        let marks = Marks {
            host_fencing: p.host_fencing,
            fingerprint: request_fingerprint(&req),
        };
        let file_path = p
            .volume_dir
            .join(&ownership::file_name(&id.slot, &marks))
            .map_err(|e| {
                DriverError::InvalidArgument(format!("backing file path for {id}: {e}"))
            })?;

        let _guard = self.fencing.locks().lock(&id.to_string()).await;
        let spec = DiskAdd {
            slot: id.slot.clone(),
            file_path: file_path.clone(),
            file_size: Some(ByteSize(bytes)),
            nvme: Some(NvmeExport {
                port: p.nvme_port,
                nqn: nqn.clone(),
            }),
            copy_from: copy.map(|c| c.slot),
        };
        info!(volume = %id, name = %req.name, bytes, path = file_path.as_str(), "creating volume");
        let outcome = backend.client.create_disk(&spec).await.map_err(|e| {
            DriverError::rds(
                format!("creating volume {id} on backend {}", backend.name),
                e,
            )
        })?;
        let disk = outcome.disk;
        let owned = ownership::owned(backend, &disk).map_err(|why| {
            DriverError::AlreadyExists(format!(
                "cannot create volume {id} for name {:?}: its slot is taken and the driver will not adopt the disk there; {why}",
                req.name
            ))
        })?;
        let mut capacity = disk.capacity_bytes().ok_or_else(|| {
            DriverError::Internal(format!("RDS did not report a size for volume {id}"))
        })?;
        if !outcome.created {
            let wanted = Wanted {
                dir: &p.volume_dir,
                marks: &marks,
                port: p.nvme_port.get(),
                bytes,
                range: req.capacity_range.as_ref(),
            };
            capacity = check_same_volume(&id, &disk, &owned, &wanted)?;
            info!(volume = %id, "volume already existed with the same parameters");
        }
        let port = disk.nvme_port.unwrap_or(p.nvme_port.get());
        let nqn_text = disk
            .nvme_nqn
            .clone()
            .unwrap_or_else(|| nqn.as_str().to_string());
        let path = disk
            .file_path
            .clone()
            .unwrap_or_else(|| file_path.as_str().to_string());
        Ok(pb::CreateVolumeResponse {
            volume: Some(pb::Volume {
                capacity_bytes: capacity as i64,
                volume_id: id.to_string(),
                volume_context: params::volume_context(&p, port, &nqn_text, &path),
                content_source: req.volume_content_source.clone(),
                accessible_topology: vec![],
            }),
        })
    }
}
