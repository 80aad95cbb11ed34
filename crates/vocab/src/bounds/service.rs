//! The services behind the limits: every RPC's request is checked before the wrapped service
//! sees it. Wrapping (rather than a check in each handler) means a new RPC cannot forget it.

use csi::v1 as pb;
use tonic::{Request, Response, Status};

use super::Limits;
use crate::rpc::{Observers, observed};

/// A CSI service whose requests are checked against the limits first, each call run with the
/// server's RPC observers in scope (see [`crate::rpc`]).
pub struct Bounded<S>(pub S, pub Observers);

fn admit<T: Limits>(method: &'static str, request: &Request<T>) -> Result<(), Status> {
    request
        .get_ref()
        .check_limits()
        .map_err(|e| crate::rpc::refused(method, e))
}

#[tonic::async_trait]
impl<S: pb::identity_server::Identity> pb::identity_server::Identity for Bounded<S> {
    async fn get_plugin_info(
        &self,
        request: Request<pb::GetPluginInfoRequest>,
    ) -> Result<Response<pb::GetPluginInfoResponse>, Status> {
        observed(self.1.clone(), async {
            admit("GetPluginInfo", &request)?;
            self.0.get_plugin_info(request).await
        })
        .await
    }

    async fn get_plugin_capabilities(
        &self,
        request: Request<pb::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<pb::GetPluginCapabilitiesResponse>, Status> {
        observed(self.1.clone(), async {
            admit("GetPluginCapabilities", &request)?;
            self.0.get_plugin_capabilities(request).await
        })
        .await
    }

    async fn probe(
        &self,
        request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("Probe", &request)?;
            self.0.probe(request).await
        })
        .await
    }
}

#[tonic::async_trait]
impl<S: pb::controller_server::Controller> pb::controller_server::Controller for Bounded<S> {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("CreateVolume", &request)?;
            self.0.create_volume(request).await
        })
        .await
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("DeleteVolume", &request)?;
            self.0.delete_volume(request).await
        })
        .await
    }

    async fn controller_publish_volume(
        &self,
        request: Request<pb::ControllerPublishVolumeRequest>,
    ) -> Result<Response<pb::ControllerPublishVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ControllerPublishVolume", &request)?;
            self.0.controller_publish_volume(request).await
        })
        .await
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<pb::ControllerUnpublishVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ControllerUnpublishVolume", &request)?;
            self.0.controller_unpublish_volume(request).await
        })
        .await
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<pb::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<pb::ValidateVolumeCapabilitiesResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ValidateVolumeCapabilities", &request)?;
            self.0.validate_volume_capabilities(request).await
        })
        .await
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ListVolumes", &request)?;
            self.0.list_volumes(request).await
        })
        .await
    }

    async fn get_capacity(
        &self,
        request: Request<pb::GetCapacityRequest>,
    ) -> Result<Response<pb::GetCapacityResponse>, Status> {
        observed(self.1.clone(), async {
            admit("GetCapacity", &request)?;
            self.0.get_capacity(request).await
        })
        .await
    }

    async fn controller_get_capabilities(
        &self,
        request: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<pb::ControllerGetCapabilitiesResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ControllerGetCapabilities", &request)?;
            self.0.controller_get_capabilities(request).await
        })
        .await
    }

    async fn create_snapshot(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        observed(self.1.clone(), async {
            admit("CreateSnapshot", &request)?;
            self.0.create_snapshot(request).await
        })
        .await
    }

    async fn delete_snapshot(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        observed(self.1.clone(), async {
            admit("DeleteSnapshot", &request)?;
            self.0.delete_snapshot(request).await
        })
        .await
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ListSnapshots", &request)?;
            self.0.list_snapshots(request).await
        })
        .await
    }

    async fn get_snapshot(
        &self,
        request: Request<pb::GetSnapshotRequest>,
    ) -> Result<Response<pb::GetSnapshotResponse>, Status> {
        observed(self.1.clone(), async {
            admit("GetSnapshot", &request)?;
            self.0.get_snapshot(request).await
        })
        .await
    }

    async fn controller_expand_volume(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> Result<Response<pb::ControllerExpandVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ControllerExpandVolume", &request)?;
            self.0.controller_expand_volume(request).await
        })
        .await
    }

    async fn controller_get_volume(
        &self,
        request: Request<pb::ControllerGetVolumeRequest>,
    ) -> Result<Response<pb::ControllerGetVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ControllerGetVolume", &request)?;
            self.0.controller_get_volume(request).await
        })
        .await
    }

    async fn controller_modify_volume(
        &self,
        request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> Result<Response<pb::ControllerModifyVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("ControllerModifyVolume", &request)?;
            self.0.controller_modify_volume(request).await
        })
        .await
    }
}

#[tonic::async_trait]
impl<S: pb::node_server::Node> pb::node_server::Node for Bounded<S> {
    async fn node_stage_volume(
        &self,
        request: Request<pb::NodeStageVolumeRequest>,
    ) -> Result<Response<pb::NodeStageVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodeStageVolume", &request)?;
            self.0.node_stage_volume(request).await
        })
        .await
    }

    async fn node_unstage_volume(
        &self,
        request: Request<pb::NodeUnstageVolumeRequest>,
    ) -> Result<Response<pb::NodeUnstageVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodeUnstageVolume", &request)?;
            self.0.node_unstage_volume(request).await
        })
        .await
    }

    async fn node_publish_volume(
        &self,
        request: Request<pb::NodePublishVolumeRequest>,
    ) -> Result<Response<pb::NodePublishVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodePublishVolume", &request)?;
            self.0.node_publish_volume(request).await
        })
        .await
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<pb::NodeUnpublishVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodeUnpublishVolume", &request)?;
            self.0.node_unpublish_volume(request).await
        })
        .await
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<pb::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<pb::NodeGetVolumeStatsResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodeGetVolumeStats", &request)?;
            self.0.node_get_volume_stats(request).await
        })
        .await
    }

    async fn node_expand_volume(
        &self,
        request: Request<pb::NodeExpandVolumeRequest>,
    ) -> Result<Response<pb::NodeExpandVolumeResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodeExpandVolume", &request)?;
            self.0.node_expand_volume(request).await
        })
        .await
    }

    async fn node_get_capabilities(
        &self,
        request: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<pb::NodeGetCapabilitiesResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodeGetCapabilities", &request)?;
            self.0.node_get_capabilities(request).await
        })
        .await
    }

    async fn node_get_info(
        &self,
        request: Request<pb::NodeGetInfoRequest>,
    ) -> Result<Response<pb::NodeGetInfoResponse>, Status> {
        observed(self.1.clone(), async {
            admit("NodeGetInfo", &request)?;
            self.0.node_get_info(request).await
        })
        .await
    }
}
