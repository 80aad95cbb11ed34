//! CSI Controller service: volumes on the RDS.
//!
//! Policy lives here (which slot, which size, what is idempotent, which code to answer); the RDS
//! client does the RouterOS work and never decides CSI semantics.

use std::collections::HashMap;
use std::sync::Arc;

use csi::v1 as pb;
use csi::v1::controller_service_capability::rpc::Type as RpcType;
use csi::v1::volume_capability::AccessType;
use csi::v1::volume_capability::access_mode::Mode;
use routeros::{ByteSize, Disk, DiskAdd, FilePath, NvmeExport};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::backend::{Backend, Backends};
use crate::capability;
use crate::create_check::{Wanted, check_same_volume, request_fingerprint};
use crate::error::{DriverError, Result};
use crate::fencing::{AclTarget, AttachmentManager, HostAcl, PublishRequest, Sharing};
use crate::node_id::NodeId;
use crate::ownership::{self, Marks, Owned};
use crate::paging;
use crate::params;
use crate::rpc::{traced, traced_on_node};
use crate::size;
use crate::snapshots::{self, SnapshotService};
use crate::volume_id::{self, VolumeId};

pub struct ControllerService {
    backends: Arc<Backends>,
    /// Always present: publishing without a fence is how two nodes end up writing one volume.
    fencing: Arc<AttachmentManager>,
    /// RDS-side host ACL around `fencing` for volumes with `hostFencing` (docs/fencing.md).
    host_acl: HostAcl,
    /// Snapshot RPCs and CreateVolume content sources (logic in `crate::snapshots`).
    snapshots: SnapshotService,
    /// Listings of paged ListVolumes walks in progress.
    listings: paging::Snapshots<(VolumeId, Disk)>,
}

/// Only what is implemented is declared: a CO that sees a capability relies on it.
const CAPABILITIES: &[RpcType] = &[
    RpcType::CreateDeleteVolume,
    RpcType::ListVolumes,
    RpcType::GetCapacity,
    RpcType::ExpandVolume,
    RpcType::GetVolume,
    RpcType::SingleNodeMultiWriter,
    RpcType::PublishUnpublishVolume,
    RpcType::CreateDeleteSnapshot,
    RpcType::ListSnapshots,
    RpcType::CloneVolume,
];

/// publish_context keys (snake_case, as the earlier driver wrote them).
pub const PC_NVME_ADDRESS: &str = "nvme_address";
pub const PC_NVME_PORT: &str = "nvme_port";
pub const PC_NVME_NQN: &str = "nvme_nqn";
/// Only for filesystem volumes; absent for raw block.
pub const PC_FS_TYPE: &str = "fs_type";

impl ControllerService {
    pub fn new(backends: Arc<Backends>, fencing: Arc<AttachmentManager>) -> Self {
        ControllerService {
            snapshots: SnapshotService::new(backends.clone(), Arc::clone(&fencing)),
            backends,
            host_acl: HostAcl::new(Arc::clone(&fencing)),
            fencing,
            listings: paging::Snapshots::default(),
        }
    }

    pub fn fencing(&self) -> &Arc<AttachmentManager> {
        &self.fencing
    }

    fn backend_of(&self, id: &VolumeId) -> Result<&Arc<Backend>> {
        self.backends.get(&id.backend).ok_or_else(|| {
            DriverError::FailedPrecondition(format!(
                "volume {id} lives on backend {:?}, which is not configured in this controller; configured: {}",
                id.backend,
                self.backends.names().join(", ")
            ))
        })
    }

    fn parse_id(&self, raw: &str) -> std::result::Result<VolumeId, volume_id::NotOurs> {
        VolumeId::parse(raw, self.backends.default_name())
    }

    async fn create(&self, req: pb::CreateVolumeRequest) -> Result<pb::CreateVolumeResponse> {
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

    async fn delete(&self, req: pb::DeleteVolumeRequest) -> Result<pb::DeleteVolumeResponse> {
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

    /// A volume id an RPC must find: malformed is INVALID_ARGUMENT, well formed but never one
    /// of ours (`fake-vol-id-1`) is NOT_FOUND.
    fn known_id(&self, raw_id: &str) -> Result<VolumeId> {
        if raw_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        if let Some(why) = VolumeId::malformed(raw_id) {
            return Err(DriverError::InvalidArgument(why));
        }
        self.parse_id(raw_id)
            .map_err(|why| DriverError::NotFound(format!("volume {raw_id:?} not found: {why}")))
    }

    /// The volume's disk, when it exists and is the driver's (`crate::ownership`). A disk under
    /// the slot that is not the driver's is reported as absent (`Access::Report`, as ListVolumes
    /// omits it) or refused with FAILED_PRECONDITION (`Access::Act`: the caller means a real
    /// disk, and must learn why nothing happens to it).
    async fn existing(
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

    async fn validate(
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

    async fn list(&self, req: pb::ListVolumesRequest) -> Result<pb::ListVolumesResponse> {
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
                status: None,
            })
            .collect();
        Ok(pb::ListVolumesResponse {
            entries,
            next_token,
        })
    }

    /// Every volume of every backend, sorted by id (the order pages are cut in).
    async fn all_volumes(&self) -> Result<Vec<(VolumeId, Disk)>> {
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

    fn volume_of(&self, id: &VolumeId, disk: &Disk) -> pb::Volume {
        let mut ctx = HashMap::new();
        if let Some(b) = self.backends.get(&id.backend) {
            ctx.insert(params::C_BACKEND.to_string(), b.name.clone());
            ctx.insert(
                params::C_NVME_ADDRESS.to_string(),
                b.nvme_address.to_string(),
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

    async fn capacity(&self, req: pb::GetCapacityRequest) -> Result<pb::GetCapacityResponse> {
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

    async fn expand(
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

    async fn publish(
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

    async fn unpublish(
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

    async fn get(
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

/// How an RPC uses the disk it looks up (which code a foreign disk gets).
#[derive(Clone, Copy)]
enum Access {
    /// Only reports the disk (ControllerGetVolume, ValidateVolumeCapabilities).
    Report,
    /// Changes or hands out the disk; the verb goes into the refusal.
    Act(&'static str),
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

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported by this version of rds-csi"
    ))
}

#[tonic::async_trait]
impl pb::controller_server::Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> std::result::Result<Response<pb::CreateVolumeResponse>, Status> {
        let req = request.into_inner();
        let name = req.name.clone();
        traced("CreateVolume", &name, self.create(req)).await
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> std::result::Result<Response<pb::DeleteVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = req.volume_id.clone();
        traced("DeleteVolume", &id, self.delete(req)).await
    }

    async fn controller_publish_volume(
        &self,
        request: Request<pb::ControllerPublishVolumeRequest>,
    ) -> std::result::Result<Response<pb::ControllerPublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let (id, node) = (req.volume_id.clone(), req.node_id.clone());
        traced_on_node(
            "ControllerPublishVolume",
            &id,
            Some(&node),
            self.publish(req),
        )
        .await
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> std::result::Result<Response<pb::ControllerUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let (id, node) = (req.volume_id.clone(), req.node_id.clone());
        let node = Some(node.as_str()).filter(|n| !n.is_empty());
        traced_on_node("ControllerUnpublishVolume", &id, node, self.unpublish(req)).await
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<pb::ValidateVolumeCapabilitiesRequest>,
    ) -> std::result::Result<Response<pb::ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        let id = req.volume_id.clone();
        traced("ValidateVolumeCapabilities", &id, self.validate(req)).await
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> std::result::Result<Response<pb::ListVolumesResponse>, Status> {
        traced("ListVolumes", "", self.list(request.into_inner())).await
    }

    async fn get_capacity(
        &self,
        request: Request<pb::GetCapacityRequest>,
    ) -> std::result::Result<Response<pb::GetCapacityResponse>, Status> {
        traced("GetCapacity", "", self.capacity(request.into_inner())).await
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> std::result::Result<Response<pb::ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|t| pb::ControllerServiceCapability {
                r#type: Some(pb::controller_service_capability::Type::Rpc(
                    pb::controller_service_capability::Rpc { r#type: *t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(pb::ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> std::result::Result<Response<pb::CreateSnapshotResponse>, Status> {
        let req = request.into_inner();
        let name = req.name.clone();
        traced("CreateSnapshot", &name, self.snapshots.create(req)).await
    }

    async fn delete_snapshot(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> std::result::Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let req = request.into_inner();
        let id = req.snapshot_id.clone();
        traced("DeleteSnapshot", &id, self.snapshots.delete(req)).await
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> std::result::Result<Response<pb::ListSnapshotsResponse>, Status> {
        traced(
            "ListSnapshots",
            "",
            self.snapshots.list(request.into_inner()),
        )
        .await
    }

    /// Served, but GET_SNAPSHOT (alpha) is not declared: the capability's enum value was
    /// transcribed from memory and not checked against the published proto.
    async fn get_snapshot(
        &self,
        request: Request<pb::GetSnapshotRequest>,
    ) -> std::result::Result<Response<pb::GetSnapshotResponse>, Status> {
        let req = request.into_inner();
        let id = req.snapshot_id.clone();
        traced("GetSnapshot", &id, self.snapshots.get(req)).await
    }

    async fn controller_expand_volume(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> std::result::Result<Response<pb::ControllerExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = req.volume_id.clone();
        traced("ControllerExpandVolume", &id, self.expand(req)).await
    }

    async fn controller_get_volume(
        &self,
        request: Request<pb::ControllerGetVolumeRequest>,
    ) -> std::result::Result<Response<pb::ControllerGetVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = req.volume_id.clone();
        traced("ControllerGetVolume", &id, self.get(req)).await
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> std::result::Result<Response<pb::ControllerModifyVolumeResponse>, Status> {
        Err(unimplemented("ControllerModifyVolume"))
    }
}
