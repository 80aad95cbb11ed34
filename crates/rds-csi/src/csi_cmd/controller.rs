//! `rds-csi csi` subcommands of the Controller service: volumes and publishing.

use std::collections::HashMap;
use std::time::Duration;

use clap::Subcommand;
use csi::v1::controller_client::ControllerClient;
use csi::v1::volume_content_source::{SnapshotSource, Type as SourceType, VolumeSource};
use csi::v1::*;
use tonic::transport::Channel;

use super::{CapabilityArgs, CreateVolumeArgs, CsiCmdError, call, map, parse_kv, parse_size};

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Controller.CreateVolume.
    CreateVolume(CreateVolumeArgs),
    /// Controller.DeleteVolume.
    DeleteVolume {
        /// Volume id to delete.
        id: String,
    },
    /// Controller.ValidateVolumeCapabilities.
    Validate {
        /// Volume id to validate.
        id: String,
        #[command(flatten)]
        capability: CapabilityArgs,
        /// StorageClass-style parameter `key=value`; repeatable.
        #[arg(long = "param", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// Volume context `key=value` as returned by CreateVolume; repeatable.
        #[arg(long = "context", value_parser = parse_kv)]
        context: Vec<(String, String)>,
    },
    /// Controller.ListVolumes (one page).
    ListVolumes {
        /// Page size; 0 or absent means no limit.
        #[arg(long)]
        max_entries: Option<i32>,
        /// `next_token` from the previous page.
        #[arg(long)]
        starting_token: Option<String>,
    },
    /// Controller.GetCapacity.
    GetCapacity {
        /// StorageClass-style parameter `key=value`; repeatable.
        #[arg(long = "param", value_parser = parse_kv)]
        params: Vec<(String, String)>,
    },
    /// Controller.ControllerGetCapabilities.
    ControllerCapabilities,
    /// Controller.ControllerExpandVolume.
    ExpandVolume {
        /// Volume id to grow.
        id: String,
        /// New minimum size: `10Gi`, `512Mi`, `1Ti`, `1G` (decimal) or bytes.
        #[arg(long, value_parser = parse_size)]
        size: i64,
        /// Upper bound for the new size (same units as --size).
        #[arg(long, value_parser = parse_size)]
        limit: Option<i64>,
        #[command(flatten)]
        capability: CapabilityArgs,
    },
    /// Controller.ControllerGetVolume.
    GetVolume {
        /// Volume id to look up.
        id: String,
    },
    /// Controller.ControllerModifyVolume.
    ModifyVolume {
        /// Volume id to modify.
        id: String,
        /// Desired mutable parameter `key=value`; repeatable. Keys left out are removed.
        #[arg(long = "mutable", value_parser = parse_kv)]
        mutable: Vec<(String, String)>,
    },
    /// Controller.ControllerPublishVolume.
    Publish {
        /// Volume id to attach.
        id: String,
        /// Node id as reported by node-info.
        #[arg(long)]
        node: String,
        /// Attach read-only.
        #[arg(long)]
        readonly: bool,
        /// Volume context `key=value` as returned by CreateVolume; repeatable.
        #[arg(long = "context", value_parser = parse_kv)]
        context: Vec<(String, String)>,
        #[command(flatten)]
        capability: CapabilityArgs,
    },
    /// Controller.ControllerUnpublishVolume.
    Unpublish {
        /// Volume id to detach.
        id: String,
        /// Node to detach from; absent means every node.
        #[arg(long)]
        node: Option<String>,
    },
}

impl ControllerCommand {
    pub(super) async fn run(self, channel: Channel, t: Duration) -> Result<(), CsiCmdError> {
        let mut controller = ControllerClient::new(channel);
        match self {
            Self::CreateVolume(a) => {
                let source = match (a.snapshot, a.source_volume) {
                    (Some(snapshot_id), _) => Some(VolumeContentSource {
                        r#type: Some(SourceType::Snapshot(SnapshotSource { snapshot_id })),
                    }),
                    (None, Some(volume_id)) => Some(VolumeContentSource {
                        r#type: Some(SourceType::Volume(VolumeSource { volume_id })),
                    }),
                    (None, None) => None,
                };
                let req = CreateVolumeRequest {
                    name: a.name,
                    capacity_range: Some(CapacityRange {
                        required_bytes: a.size,
                        limit_bytes: a.limit.unwrap_or(0),
                    }),
                    volume_capabilities: a.capability.to_request_list(),
                    parameters: map(a.params),
                    secrets: HashMap::new(),
                    volume_content_source: source,
                    accessibility_requirements: None,
                    mutable_parameters: map(a.mutable),
                };
                call(t, "CreateVolume", controller.create_volume(req)).await
            }
            Self::DeleteVolume { id } => {
                let req = DeleteVolumeRequest {
                    volume_id: id,
                    secrets: HashMap::new(),
                };
                call(t, "DeleteVolume", controller.delete_volume(req)).await
            }
            Self::Validate {
                id,
                capability,
                params,
                context,
            } => {
                let req = ValidateVolumeCapabilitiesRequest {
                    volume_id: id,
                    volume_context: map(context),
                    volume_capabilities: capability.to_request_list(),
                    parameters: map(params),
                    secrets: HashMap::new(),
                    mutable_parameters: HashMap::new(),
                };
                call(
                    t,
                    "ValidateVolumeCapabilities",
                    controller.validate_volume_capabilities(req),
                )
                .await
            }
            Self::ListVolumes {
                max_entries,
                starting_token,
            } => {
                let req = ListVolumesRequest {
                    max_entries: max_entries.unwrap_or(0),
                    starting_token: starting_token.unwrap_or_default(),
                };
                call(t, "ListVolumes", controller.list_volumes(req)).await
            }
            Self::GetCapacity { params } => {
                let req = GetCapacityRequest {
                    volume_capabilities: Vec::new(),
                    parameters: map(params),
                    accessible_topology: None,
                };
                call(t, "GetCapacity", controller.get_capacity(req)).await
            }
            Self::ControllerCapabilities => {
                let req = ControllerGetCapabilitiesRequest {};
                call(
                    t,
                    "ControllerGetCapabilities",
                    controller.controller_get_capabilities(req),
                )
                .await
            }
            Self::ExpandVolume {
                id,
                size,
                limit,
                capability,
            } => {
                let req = ControllerExpandVolumeRequest {
                    volume_id: id,
                    capacity_range: Some(CapacityRange {
                        required_bytes: size,
                        limit_bytes: limit.unwrap_or(0),
                    }),
                    secrets: HashMap::new(),
                    volume_capability: capability.to_request(),
                };
                call(
                    t,
                    "ControllerExpandVolume",
                    controller.controller_expand_volume(req),
                )
                .await
            }
            Self::GetVolume { id } => {
                let req = ControllerGetVolumeRequest { volume_id: id };
                call(
                    t,
                    "ControllerGetVolume",
                    controller.controller_get_volume(req),
                )
                .await
            }
            Self::ModifyVolume { id, mutable } => {
                let req = ControllerModifyVolumeRequest {
                    volume_id: id,
                    secrets: HashMap::new(),
                    mutable_parameters: map(mutable),
                };
                call(
                    t,
                    "ControllerModifyVolume",
                    controller.controller_modify_volume(req),
                )
                .await
            }
            Self::Publish {
                id,
                node: node_id,
                readonly,
                context,
                capability,
            } => {
                let req = ControllerPublishVolumeRequest {
                    volume_id: id,
                    node_id,
                    volume_capability: capability.to_request(),
                    readonly,
                    secrets: HashMap::new(),
                    volume_context: map(context),
                };
                call(
                    t,
                    "ControllerPublishVolume",
                    controller.controller_publish_volume(req),
                )
                .await
            }
            Self::Unpublish { id, node: node_id } => {
                let req = ControllerUnpublishVolumeRequest {
                    volume_id: id,
                    node_id: node_id.unwrap_or_default(),
                    secrets: HashMap::new(),
                };
                call(
                    t,
                    "ControllerUnpublishVolume",
                    controller.controller_unpublish_volume(req),
                )
                .await
            }
        }
    }
}
