//! ListVolumes (paged from a kept listing, `crate::paging`) and GetCapacity.

use super::*;

impl ControllerService {
    pub(super) async fn list(
        &self,
        req: pb::ListVolumesRequest,
    ) -> Result<pb::ListVolumesResponse> {
        let token = match paging::parse_token(req.max_entries, &req.starting_token)? {
            None => None,
            Some(t) => {
                self.parse_id(t.after)
                    .map_err(|why| paging::invalid_token(&req.starting_token, why))?;
                Some(t)
            }
        };
        let (page, next_token) = paging::walk(
            &self.listings,
            token,
            req.max_entries,
            |(id, _): &(VolumeId, Disk)| id.to_string(),
            || self.all_volumes(),
        )
        .await?;
        let entries = page
            .iter()
            .map(|(id, disk)| pb::list_volumes_response::Entry {
                volume: Some(self.volume_of(id, disk)),
                // VOLUME_CONDITION is declared, so every entry carries one; published_node_ids
                // stays empty (LIST_VOLUMES_PUBLISHED_NODES is not declared: COs ignore it).
                status: Some(pb::list_volumes_response::VolumeStatus {
                    published_node_ids: vec![],
                    volume_condition: Some(super::lookup::condition(&id.backend, disk)),
                }),
            })
            .collect();
        Ok(pb::ListVolumesResponse {
            entries,
            next_token,
        })
    }

    /// Every volume of every backend, sorted by id (the order pages are cut in).
    pub(super) async fn all_volumes(&self) -> Result<Vec<(VolumeId, Disk)>> {
        let mut all: Vec<(VolumeId, Disk)> = Vec::new();
        for backend in self.backends.all() {
            let prefix = routeros::Slot::new(volume_id::SLOT_PREFIX)
                .map_err(|e| DriverError::Internal(format!("slot prefix: {e}")))?;
            let disks = backend.client.list_disks(&prefix).await.map_err(|e| {
                DriverError::rds(format!("listing volumes on backend {}", backend.name), e)
            })?;
            for disk in disks {
                if ownership::owned(backend, &disk).is_err() {
                    continue;
                }
                if let Ok(id) = VolumeId::parse(&format!("{}:{}", backend.name, disk.slot), "") {
                    all.push((id, disk));
                }
            }
        }
        all.sort_by_cached_key(|(id, _)| id.to_string());
        Ok(all)
    }

    pub(super) fn volume_of(&self, id: &VolumeId, disk: &Disk) -> pb::Volume {
        let mut ctx = HashMap::new();
        if let Some(b) = self.backends.get(&id.backend) {
            ctx.insert(params::C_BACKEND.to_string(), b.name.clone());
            ctx.insert(
                params::C_NVME_ADDRESS.to_string(),
                b.nvme_address().to_string(),
            );
            ctx.insert(
                params::C_NVME_ADDRESSES.to_string(),
                b.nvme_addresses_text(),
            );
        }
        if let Some(port) = disk.nvme_port {
            ctx.insert(params::C_NVME_PORT.to_string(), port.to_string());
        }
        if let Some(nqn) = &disk.nvme_nqn {
            ctx.insert(params::C_NQN.to_string(), nqn.clone());
        }
        if let Some(path) = &disk.file_path {
            ctx.insert(params::C_VOLUME_PATH.to_string(), path.clone());
        }
        pb::Volume {
            capacity_bytes: disk.capacity_bytes().unwrap_or(0) as i64,
            volume_id: id.to_string(),
            volume_context: ctx,
            content_source: None,
            accessible_topology: vec![],
        }
    }

    pub(super) async fn capacity(
        &self,
        req: pb::GetCapacityRequest,
    ) -> Result<pb::GetCapacityResponse> {
        let (p, backend) = params::parse(&req.parameters, &self.backends)?;
        if !req.volume_capabilities.is_empty()
            && capability::check_all(&req.volume_capabilities).is_err()
        {
            // CSI: capacity for capabilities we cannot serve is zero, not an error.
            return Ok(pb::GetCapacityResponse {
                available_capacity: 0,
                ..Default::default()
            });
        }
        let cap = backend
            .client
            .capacity(&p.volume_dir.mount_point())
            .await
            .map_err(|e| {
                DriverError::rds(
                    format!("querying free space on backend {}", backend.name),
                    e,
                )
            })?;
        let free = cap.free_bytes;
        Ok(pb::GetCapacityResponse {
            available_capacity: free.min(i64::MAX as u64) as i64,
            maximum_volume_size: Some(free.min(size::MAX_VOLUME) as i64),
            minimum_volume_size: Some(size::MIN_VOLUME as i64),
        })
    }
}
