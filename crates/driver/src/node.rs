//! CSI Node service, as far as it goes in this version: it identifies the node and says that
//! staging and publishing are not available yet, rather than pretending to work.

use csi::v1 as pb;
use tonic::{Request, Response, Status};

pub struct NodeService {
    node_id: String,
    max_volumes: i64,
}

impl NodeService {
    pub fn new(node_id: String, max_volumes: i64) -> Self {
        NodeService {
            node_id,
            max_volumes,
        }
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not implemented in this version of rds-csi: the node data path (NVMe/TCP attach, format, mount) is not available yet"
    ))
}

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn node_stage_volume(
        &self,
        _r: Request<pb::NodeStageVolumeRequest>,
    ) -> Result<Response<pb::NodeStageVolumeResponse>, Status> {
        Err(not_yet("NodeStageVolume"))
    }
    async fn node_unstage_volume(
        &self,
        _r: Request<pb::NodeUnstageVolumeRequest>,
    ) -> Result<Response<pb::NodeUnstageVolumeResponse>, Status> {
        Err(not_yet("NodeUnstageVolume"))
    }
    async fn node_publish_volume(
        &self,
        _r: Request<pb::NodePublishVolumeRequest>,
    ) -> Result<Response<pb::NodePublishVolumeResponse>, Status> {
        Err(not_yet("NodePublishVolume"))
    }
    async fn node_unpublish_volume(
        &self,
        _r: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<pb::NodeUnpublishVolumeResponse>, Status> {
        Err(not_yet("NodeUnpublishVolume"))
    }
    async fn node_get_volume_stats(
        &self,
        _r: Request<pb::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<pb::NodeGetVolumeStatsResponse>, Status> {
        Err(not_yet("NodeGetVolumeStats"))
    }
    async fn node_expand_volume(
        &self,
        _r: Request<pb::NodeExpandVolumeRequest>,
    ) -> Result<Response<pb::NodeExpandVolumeResponse>, Status> {
        Err(not_yet("NodeExpandVolume"))
    }
    async fn node_get_capabilities(
        &self,
        _r: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<pb::NodeGetCapabilitiesResponse>, Status> {
        // Declares nothing: kubelet then skips staging, which this version cannot do anyway.
        Ok(Response::new(pb::NodeGetCapabilitiesResponse {
            capabilities: vec![],
        }))
    }
    async fn node_get_info(
        &self,
        _r: Request<pb::NodeGetInfoRequest>,
    ) -> Result<Response<pb::NodeGetInfoResponse>, Status> {
        Ok(Response::new(pb::NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: self.max_volumes,
            accessible_topology: None,
        }))
    }
}
