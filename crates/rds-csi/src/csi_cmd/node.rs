//! `rds-csi csi` subcommands of the Node service.

use std::collections::HashMap;
use std::time::Duration;

use clap::Subcommand;
use csi::v1::node_client::NodeClient;
use csi::v1::*;
use tonic::transport::Channel;

use super::{CapabilityArgs, CsiCmdError, call, map, parse_kv, parse_size};

#[derive(Debug, Subcommand)]
#[allow(
    clippy::enum_variant_names,
    reason = "variant names are the subcommand names (node-stage, node-info, …)"
)]
pub enum NodeCommand {
    /// Node.NodeStageVolume.
    NodeStage {
        /// Volume id to stage.
        id: String,
        /// Staging directory (global mount point) for the volume.
        #[arg(long = "staging-path")]
        staging_path: String,
        /// Publish context `key=value` from ControllerPublishVolume; repeatable.
        #[arg(long = "publish-context", value_parser = parse_kv)]
        publish_context: Vec<(String, String)>,
        /// Volume context `key=value` from CreateVolume; repeatable.
        #[arg(long = "context", value_parser = parse_kv)]
        context: Vec<(String, String)>,
        #[command(flatten)]
        capability: CapabilityArgs,
    },
    /// Node.NodeUnstageVolume.
    NodeUnstage {
        /// Volume id to unstage.
        id: String,
        /// Staging directory used by node-stage.
        #[arg(long = "staging-path")]
        staging_path: String,
    },
    /// Node.NodePublishVolume.
    NodePublish {
        /// Volume id to publish.
        id: String,
        /// Where the pod sees the volume (mount point or block device file).
        #[arg(long = "target-path")]
        target_path: String,
        /// Staging directory used by node-stage, if the plugin stages.
        #[arg(long = "staging-path")]
        staging_path: Option<String>,
        /// Publish read-only.
        #[arg(long)]
        readonly: bool,
        /// Publish context `key=value` from ControllerPublishVolume; repeatable.
        #[arg(long = "publish-context", value_parser = parse_kv)]
        publish_context: Vec<(String, String)>,
        /// Volume context `key=value` from CreateVolume; repeatable.
        #[arg(long = "context", value_parser = parse_kv)]
        context: Vec<(String, String)>,
        #[command(flatten)]
        capability: CapabilityArgs,
    },
    /// Node.NodeUnpublishVolume.
    NodeUnpublish {
        /// Volume id to unpublish.
        id: String,
        /// Path used by node-publish.
        #[arg(long = "target-path")]
        target_path: String,
    },
    /// Node.NodeGetVolumeStats.
    NodeStats {
        /// Volume id to report on.
        id: String,
        /// Any path where the volume is staged or published.
        #[arg(long = "volume-path")]
        volume_path: String,
        /// Staging directory, if the plugin stages.
        #[arg(long = "staging-path")]
        staging_path: Option<String>,
    },
    /// Node.NodeExpandVolume.
    NodeExpand {
        /// Volume id to grow on this node.
        id: String,
        /// Path where the volume is available.
        #[arg(long = "volume-path")]
        volume_path: String,
        /// New minimum size: `10Gi`, `512Mi`, `1Ti`, `1G` (decimal) or bytes.
        #[arg(long, value_parser = parse_size)]
        size: Option<i64>,
        /// Staging directory, if the plugin stages.
        #[arg(long = "staging-path")]
        staging_path: Option<String>,
        #[command(flatten)]
        capability: CapabilityArgs,
    },
    /// Node.NodeGetCapabilities.
    NodeCapabilities,
    /// Node.NodeGetInfo: node id, volume limit and topology.
    NodeInfo,
}

impl NodeCommand {
    pub(super) async fn run(self, channel: Channel, t: Duration) -> Result<(), CsiCmdError> {
        let mut node = NodeClient::new(channel);
        match self {
            Self::NodeStage {
                id,
                staging_path,
                publish_context,
                context,
                capability,
            } => {
                let req = NodeStageVolumeRequest {
                    volume_id: id,
                    publish_context: map(publish_context),
                    staging_target_path: staging_path,
                    volume_capability: capability.to_request(),
                    secrets: HashMap::new(),
                    volume_context: map(context),
                };
                call(t, "NodeStageVolume", node.node_stage_volume(req)).await
            }
            Self::NodeUnstage { id, staging_path } => {
                let req = NodeUnstageVolumeRequest {
                    volume_id: id,
                    staging_target_path: staging_path,
                };
                call(t, "NodeUnstageVolume", node.node_unstage_volume(req)).await
            }
            Self::NodePublish {
                id,
                target_path,
                staging_path,
                readonly,
                publish_context,
                context,
                capability,
            } => {
                let req = NodePublishVolumeRequest {
                    volume_id: id,
                    publish_context: map(publish_context),
                    staging_target_path: staging_path.unwrap_or_default(),
                    target_path,
                    volume_capability: capability.to_request(),
                    readonly,
                    secrets: HashMap::new(),
                    volume_context: map(context),
                };
                call(t, "NodePublishVolume", node.node_publish_volume(req)).await
            }
            Self::NodeUnpublish { id, target_path } => {
                let req = NodeUnpublishVolumeRequest {
                    volume_id: id,
                    target_path,
                };
                call(t, "NodeUnpublishVolume", node.node_unpublish_volume(req)).await
            }
            Self::NodeStats {
                id,
                volume_path,
                staging_path,
            } => {
                let req = NodeGetVolumeStatsRequest {
                    volume_id: id,
                    volume_path,
                    staging_target_path: staging_path.unwrap_or_default(),
                };
                call(t, "NodeGetVolumeStats", node.node_get_volume_stats(req)).await
            }
            Self::NodeExpand {
                id,
                volume_path,
                size,
                staging_path,
                capability,
            } => {
                let req = NodeExpandVolumeRequest {
                    volume_id: id,
                    volume_path,
                    capacity_range: size.map(|required_bytes| CapacityRange {
                        required_bytes,
                        limit_bytes: 0,
                    }),
                    staging_target_path: staging_path.unwrap_or_default(),
                    volume_capability: capability.to_request(),
                    secrets: HashMap::new(),
                };
                call(t, "NodeExpandVolume", node.node_expand_volume(req)).await
            }
            Self::NodeCapabilities => {
                let req = NodeGetCapabilitiesRequest {};
                call(t, "NodeGetCapabilities", node.node_get_capabilities(req)).await
            }
            Self::NodeInfo => {
                call(t, "NodeGetInfo", node.node_get_info(NodeGetInfoRequest {})).await
            }
        }
    }
}
