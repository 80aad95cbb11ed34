//! CSI Controller service: volumes on the RDS.
//!
//! Policy lives here (which slot, which size, what is idempotent, which code to answer); the RDS
//! client does the RouterOS work and never decides CSI semantics.

mod create;
mod delete;
mod expand;
mod list;
mod lookup;
mod publish;

use std::collections::HashMap;
use std::sync::Arc;

use csi::v1 as pb;
use csi::v1::controller_service_capability::rpc::Type as RpcType;
use csi::v1::volume_capability::AccessType;
use csi::v1::volume_capability::access_mode::Mode;
use routeros::{ByteSize, Disk, DiskAdd, FilePath, NvmeExport};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::create_check::{Wanted, check_same_volume, request_fingerprint};
use crate::paging;
use crate::snapshots::{self, SnapshotService};
use fencing::{AclTarget, AttachmentManager, HostAcl, PublishRequest, Sharing};
use vocab::backend::{Backend, Backends};
use vocab::capability;
use vocab::error::{DriverError, Result};
use vocab::node_id::NodeId;
use vocab::ownership::{self, Marks, Owned};
use vocab::params;
use vocab::rpc::{traced, traced_on_node};
use vocab::size;
use vocab::volume_id::{self, VolumeId};

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
    RpcType::VolumeCondition,
    RpcType::SingleNodeMultiWriter,
    RpcType::PublishUnpublishVolume,
    RpcType::CreateDeleteSnapshot,
    RpcType::ListSnapshots,
    RpcType::CloneVolume,
];

pub use vocab::params::{
    PC_FS_TYPE, PC_NVME_ADDRESS, PC_NVME_ADDRESSES, PC_NVME_NQN, PC_NVME_PORT,
};

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
}

/// How an RPC uses the disk it looks up (which code a foreign disk gets).
#[derive(Clone, Copy)]
enum Access {
    /// Only reports the disk (ControllerGetVolume, ValidateVolumeCapabilities).
    Report,
    /// Changes or hands out the disk; the verb goes into the refusal.
    Act(&'static str),
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
