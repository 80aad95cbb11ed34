//! `rds-csi csi …`: call any CSI RPC on a driver socket and print the reply
//! as JSON, so an operator can exercise a running plugin exactly the way
//! kubelet and the sidecars do, without a cluster.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use csi::v1::controller_client::ControllerClient;
use csi::v1::identity_client::IdentityClient;
use csi::v1::node_client::NodeClient;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi::v1::volume_content_source::{SnapshotSource, Type as SourceType, VolumeSource};
use csi::v1::*;
use tonic::transport::Channel;

/// One subcommand per CSI RPC of the Identity, Controller and Node services.
#[derive(Debug, Subcommand)]
pub enum CsiCommand {
    /// Identity.GetPluginInfo: driver name and version.
    PluginInfo,
    /// Identity.GetPluginCapabilities: which services the plugin serves.
    Capabilities,
    /// Identity.Probe: is the plugin ready.
    Probe,
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
    /// Controller.CreateSnapshot.
    CreateSnapshot {
        /// Snapshot name (the idempotency key).
        #[arg(long)]
        name: String,
        /// Volume id to snapshot.
        #[arg(long = "source-volume")]
        source_volume: String,
        /// Snapshot parameter `key=value`; repeatable.
        #[arg(long = "param", value_parser = parse_kv)]
        params: Vec<(String, String)>,
    },
    /// Controller.DeleteSnapshot.
    DeleteSnapshot {
        /// Snapshot id to delete.
        id: String,
    },
    /// Controller.ListSnapshots (one page).
    ListSnapshots {
        /// Page size; 0 or absent means no limit.
        #[arg(long)]
        max_entries: Option<i32>,
        /// `next_token` from the previous page.
        #[arg(long)]
        starting_token: Option<String>,
        /// Only snapshots of this volume.
        #[arg(long = "source-volume")]
        source_volume: Option<String>,
        /// Only this snapshot.
        #[arg(long = "snapshot")]
        snapshot: Option<String>,
    },
    /// Controller.GetSnapshot.
    GetSnapshot {
        /// Snapshot id to look up.
        id: String,
    },
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

/// Flags of `create-volume`.
#[derive(Debug, Args)]
pub struct CreateVolumeArgs {
    /// Volume name (the idempotency key, e.g. `pvc-<uid>`).
    #[arg(long)]
    pub name: String,
    /// Required size: `10Gi`, `512Mi`, `1Ti`, `1G` (decimal) or bytes.
    #[arg(long, value_parser = parse_size)]
    pub size: i64,
    /// Upper bound for the size (same units as --size).
    #[arg(long, value_parser = parse_size)]
    pub limit: Option<i64>,
    /// StorageClass-style parameter `key=value`; repeatable.
    #[arg(long = "param", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// Mutable parameter `key=value` (VolumeAttributesClass); repeatable.
    #[arg(long = "mutable", value_parser = parse_kv)]
    pub mutable: Vec<(String, String)>,
    /// Restore from this snapshot id.
    #[arg(long, conflicts_with = "source_volume")]
    pub snapshot: Option<String>,
    /// Clone this volume id.
    #[arg(long = "source-volume")]
    pub source_volume: Option<String>,
    #[command(flatten)]
    pub capability: CapabilityArgs,
}

/// How the volume will be used: builds one `VolumeCapability`.
#[derive(Debug, Args)]
pub struct CapabilityArgs {
    /// Raw block device instead of a mounted filesystem.
    #[arg(long, conflicts_with_all = ["fs_type", "mount_flags"])]
    pub block: bool,
    /// Filesystem for a mount volume (empty lets the plugin choose).
    #[arg(long = "fs-type")]
    pub fs_type: Option<String>,
    /// Mount option for a mount volume; repeatable.
    #[arg(long = "mount-flag")]
    pub mount_flags: Vec<String>,
    /// Access mode of the volume.
    #[arg(long = "access-mode", value_enum, default_value_t = AccessModeArg::SingleNodeWriter)]
    pub access_mode: AccessModeArg,
    /// Send the request without any volume capability, to see the plugin's own answer to a
    /// request missing that required field (conformance checks); ids and paths can be sent
    /// empty as `""` for the same reason.
    #[arg(long = "no-capability", conflicts_with_all = ["block", "fs_type", "mount_flags"])]
    pub no_capability: bool,
}

/// CLI spelling of `VolumeCapability.AccessMode.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessModeArg {
    /// Read/write on one node.
    SingleNodeWriter,
    /// Read-only on one node.
    SingleNodeReaderOnly,
    /// Read-only on many nodes.
    MultiNodeReaderOnly,
    /// Many nodes, one writer.
    MultiNodeSingleWriter,
    /// Read/write on many nodes.
    MultiNodeMultiWriter,
    /// Read/write by one workload on one node.
    SingleNodeSingleWriter,
    /// Read/write by several workloads on one node.
    SingleNodeMultiWriter,
}

impl From<AccessModeArg> for volume_capability::access_mode::Mode {
    fn from(a: AccessModeArg) -> Self {
        use volume_capability::access_mode::Mode;
        match a {
            AccessModeArg::SingleNodeWriter => Mode::SingleNodeWriter,
            AccessModeArg::SingleNodeReaderOnly => Mode::SingleNodeReaderOnly,
            AccessModeArg::MultiNodeReaderOnly => Mode::MultiNodeReaderOnly,
            AccessModeArg::MultiNodeSingleWriter => Mode::MultiNodeSingleWriter,
            AccessModeArg::MultiNodeMultiWriter => Mode::MultiNodeMultiWriter,
            AccessModeArg::SingleNodeSingleWriter => Mode::SingleNodeSingleWriter,
            AccessModeArg::SingleNodeMultiWriter => Mode::SingleNodeMultiWriter,
        }
    }
}

impl CapabilityArgs {
    /// The capability as the request carries it: none with `--no-capability`.
    fn to_request(&self) -> Option<VolumeCapability> {
        (!self.no_capability).then(|| self.to_capability())
    }

    /// The capabilities list of a request: empty with `--no-capability`.
    fn to_request_list(&self) -> Vec<VolumeCapability> {
        self.to_request().into_iter().collect()
    }

    fn to_capability(&self) -> VolumeCapability {
        let access_type = if self.block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: self.fs_type.clone().unwrap_or_default(),
                mount_flags: self.mount_flags.clone(),
                volume_mount_group: String::new(),
            })
        };
        VolumeCapability {
            access_type: Some(access_type),
            access_mode: Some(AccessMode {
                mode: volume_capability::access_mode::Mode::from(self.access_mode) as i32,
            }),
        }
    }
}

/// Failure of one `rds-csi csi` invocation. `Display` is
/// `<GRPC_CODE>: <message>`, which the binary prints after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CsiCmdError {
    /// The plugin answered with a non-OK status.
    #[error("{}: {}", code_name(.0.code()), status_message(.0))]
    Rpc(tonic::Status),
    /// The endpoint string is not a unix socket, or nothing answers there.
    #[error("{}: {}", code_name(connect_code(.0)), .0)]
    Connect(#[from] csi::Error),
    /// The reply could not be rendered as JSON.
    #[error("INTERNAL: encoding reply as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Exit statuses for failed calls are this plus the gRPC code's number (NOT_FOUND, 5, exits
/// 105), clear of 1 (any other failure) and 2 (a usage error, from the argument parser).
pub const EXIT_CODE_BASE: u8 = 100;

impl CsiCmdError {
    /// The gRPC code this failure corresponds to.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Rpc(s) => s.code(),
            Self::Connect(e) => connect_code(e),
            Self::Json(_) => tonic::Code::Internal,
        }
    }

    /// The process exit status, so scripts can branch on the code (treat NOT_FOUND as done
    /// on delete, retry UNAVAILABLE) without parsing the message (docs/configuration.md).
    pub fn exit_status(&self) -> u8 {
        // gRPC codes are 0..=16, so this cannot overflow.
        EXIT_CODE_BASE + self.code() as u8
    }
}

/// A bad endpoint string is the caller's mistake; anything else means
/// the plugin cannot be reached.
fn connect_code(e: &csi::Error) -> tonic::Code {
    match e {
        csi::Error::UnsupportedScheme { .. } | csi::Error::InvalidEndpoint { .. } => {
            tonic::Code::InvalidArgument
        }
        _ => tonic::Code::Unavailable,
    }
}

/// tonic answers unknown services/methods with an empty message; say so
/// rather than print a dangling colon.
fn status_message(s: &tonic::Status) -> &str {
    if s.message().is_empty() {
        "(no message from the plugin)"
    } else {
        s.message()
    }
}

/// Canonical upper-case gRPC code names, as operators see them in
/// kubelet and sidecar logs.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Parses `10Gi`, `512Mi`, `1Ti` (binary), `1G`, `500M` (decimal), or a
/// plain byte count. Kubernetes quantity spelling, because that is what
/// operators copy from PVCs.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!("invalid size {s:?}: expected a number like 10Gi"));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("invalid size {s:?}: number too large"))?;
    let mult: i64 = match unit {
        "" | "B" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use Ki, Mi, Gi, Ti, Pi, k, M, G, T, P or none)"
            ));
        }
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))?;
    if bytes == 0 {
        return Err(format!("invalid size {s:?}: must be greater than zero"));
    }
    Ok(bytes)
}

/// Parses `key=value` (the value may itself contain `=`).
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

fn map(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    pairs.into_iter().collect()
}

/// Awaits one RPC under `timeout` and prints the reply as pretty JSON.
///
/// The channel already carries the same per-request timeout; this outer
/// bound also covers time spent before the request reaches the wire.
async fn call<T, F>(timeout: Duration, rpc: &'static str, fut: F) -> Result<(), CsiCmdError>
where
    T: serde::Serialize,
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let reply = match tokio::time::timeout(timeout, fut).await {
        Err(_) => {
            return Err(CsiCmdError::Rpc(tonic::Status::deadline_exceeded(format!(
                "{rpc} did not answer within {timeout:?}"
            ))));
        }
        Ok(Err(status)) => return Err(CsiCmdError::Rpc(status)),
        Ok(Ok(reply)) => reply.into_inner(),
    };
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}

/// Runs one subcommand against the plugin at `endpoint`
/// (`unix:///path/csi.sock`, `unix:/path` or a plain path).
pub async fn run(endpoint: &str, timeout: Duration, cmd: CsiCommand) -> Result<(), CsiCmdError> {
    let path = csi::uds::parse_endpoint(endpoint)?;
    let channel: Channel = csi::uds::connect(&path, timeout).await?;
    let mut identity = IdentityClient::new(channel.clone());
    let mut controller = ControllerClient::new(channel.clone());
    let mut node = NodeClient::new(channel);
    let t = timeout;

    match cmd {
        CsiCommand::PluginInfo => {
            call(
                t,
                "GetPluginInfo",
                identity.get_plugin_info(GetPluginInfoRequest {}),
            )
            .await
        }
        CsiCommand::Capabilities => {
            let req = GetPluginCapabilitiesRequest {};
            call(
                t,
                "GetPluginCapabilities",
                identity.get_plugin_capabilities(req),
            )
            .await
        }
        CsiCommand::Probe => call(t, "Probe", identity.probe(ProbeRequest {})).await,
        CsiCommand::CreateVolume(a) => {
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
        CsiCommand::DeleteVolume { id } => {
            let req = DeleteVolumeRequest {
                volume_id: id,
                secrets: HashMap::new(),
            };
            call(t, "DeleteVolume", controller.delete_volume(req)).await
        }
        CsiCommand::Validate {
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
        CsiCommand::ListVolumes {
            max_entries,
            starting_token,
        } => {
            let req = ListVolumesRequest {
                max_entries: max_entries.unwrap_or(0),
                starting_token: starting_token.unwrap_or_default(),
            };
            call(t, "ListVolumes", controller.list_volumes(req)).await
        }
        CsiCommand::GetCapacity { params } => {
            let req = GetCapacityRequest {
                volume_capabilities: Vec::new(),
                parameters: map(params),
                accessible_topology: None,
            };
            call(t, "GetCapacity", controller.get_capacity(req)).await
        }
        CsiCommand::ControllerCapabilities => {
            let req = ControllerGetCapabilitiesRequest {};
            call(
                t,
                "ControllerGetCapabilities",
                controller.controller_get_capabilities(req),
            )
            .await
        }
        CsiCommand::ExpandVolume {
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
        CsiCommand::GetVolume { id } => {
            let req = ControllerGetVolumeRequest { volume_id: id };
            call(
                t,
                "ControllerGetVolume",
                controller.controller_get_volume(req),
            )
            .await
        }
        CsiCommand::ModifyVolume { id, mutable } => {
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
        CsiCommand::Publish {
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
        CsiCommand::Unpublish { id, node: node_id } => {
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
        CsiCommand::CreateSnapshot {
            name,
            source_volume,
            params,
        } => {
            let req = CreateSnapshotRequest {
                source_volume_id: source_volume,
                name,
                secrets: HashMap::new(),
                parameters: map(params),
            };
            call(t, "CreateSnapshot", controller.create_snapshot(req)).await
        }
        CsiCommand::DeleteSnapshot { id } => {
            let req = DeleteSnapshotRequest {
                snapshot_id: id,
                secrets: HashMap::new(),
            };
            call(t, "DeleteSnapshot", controller.delete_snapshot(req)).await
        }
        CsiCommand::ListSnapshots {
            max_entries,
            starting_token,
            source_volume,
            snapshot,
        } => {
            let req = ListSnapshotsRequest {
                max_entries: max_entries.unwrap_or(0),
                starting_token: starting_token.unwrap_or_default(),
                source_volume_id: source_volume.unwrap_or_default(),
                snapshot_id: snapshot.unwrap_or_default(),
                secrets: HashMap::new(),
            };
            call(t, "ListSnapshots", controller.list_snapshots(req)).await
        }
        CsiCommand::GetSnapshot { id } => {
            let req = GetSnapshotRequest {
                snapshot_id: id,
                secrets: HashMap::new(),
            };
            call(t, "GetSnapshot", controller.get_snapshot(req)).await
        }
        CsiCommand::NodeStage {
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
        CsiCommand::NodeUnstage { id, staging_path } => {
            let req = NodeUnstageVolumeRequest {
                volume_id: id,
                staging_target_path: staging_path,
            };
            call(t, "NodeUnstageVolume", node.node_unstage_volume(req)).await
        }
        CsiCommand::NodePublish {
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
        CsiCommand::NodeUnpublish { id, target_path } => {
            let req = NodeUnpublishVolumeRequest {
                volume_id: id,
                target_path,
            };
            call(t, "NodeUnpublishVolume", node.node_unpublish_volume(req)).await
        }
        CsiCommand::NodeStats {
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
        CsiCommand::NodeExpand {
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
        CsiCommand::NodeCapabilities => {
            let req = NodeGetCapabilitiesRequest {};
            call(t, "NodeGetCapabilities", node.node_get_capabilities(req)).await
        }
        CsiCommand::NodeInfo => {
            call(t, "NodeGetInfo", node.node_get_info(NodeGetInfoRequest {})).await
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn sizes_accept_binary_decimal_and_plain_bytes() {
        assert_eq!(parse_size("10Gi"), Ok(10 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("1Ti"), Ok(1 << 40));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 2k "), Ok(2000));
    }

    #[test]
    fn sizes_reject_garbage_zero_and_overflow() {
        assert!(parse_size("").is_err());
        assert!(parse_size("Gi").is_err());
        assert!(parse_size("10GB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("-1Gi").is_err());
        assert!(parse_size("1.5Gi").is_err());
        assert!(parse_size("0").unwrap_err().contains("greater than zero"));
        assert!(parse_size("9000000Pi").unwrap_err().contains("too large"));
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn params_split_on_the_first_equals_sign() {
        assert_eq!(parse_kv("fs=ext4"), Ok(("fs".into(), "ext4".into())));
        assert_eq!(parse_kv("opts=a=b"), Ok(("opts".into(), "a=b".into())));
        assert_eq!(parse_kv("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=v").is_err());
    }

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(subcommand)]
        cmd: CsiCommand,
    }

    #[test]
    fn create_volume_flags_build_the_expected_capability() {
        let h = Harness::try_parse_from([
            "x",
            "create-volume",
            "--name",
            "pvc-1",
            "--size",
            "10Gi",
            "--param",
            "a=b",
            "--block",
            "--access-mode",
            "multi-node-multi-writer",
            "--snapshot",
            "snap-1",
        ])
        .unwrap();
        let CsiCommand::CreateVolume(a) = h.cmd else {
            panic!("parsed into the wrong subcommand");
        };
        assert_eq!(a.size, 10 << 30);
        assert_eq!(a.params, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(a.snapshot.as_deref(), Some("snap-1"));
        let cap = a.capability.to_capability();
        assert!(matches!(cap.access_type, Some(AccessType::Block(_))));
        assert_eq!(cap.access_mode.unwrap().mode, 5);
    }

    #[test]
    fn block_conflicts_with_fs_type_and_snapshot_with_source_volume() {
        let block_and_fs = [
            "x",
            "create-volume",
            "--name",
            "n",
            "--size",
            "1Gi",
            "--block",
            "--fs-type",
            "ext4",
        ];
        assert!(Harness::try_parse_from(block_and_fs).is_err());
        let two_sources = [
            "x",
            "create-volume",
            "--name",
            "n",
            "--size",
            "1Gi",
            "--snapshot",
            "s",
            "--source-volume",
            "v",
        ];
        assert!(Harness::try_parse_from(two_sources).is_err());
    }

    #[test]
    fn rpc_errors_display_the_canonical_code_name() {
        let e = CsiCmdError::Rpc(tonic::Status::not_found("volume pvc-1 not found"));
        assert_eq!(e.to_string(), "NOT_FOUND: volume pvc-1 not found");
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(e.exit_status(), 105);
        let empty = CsiCmdError::Rpc(tonic::Status::unimplemented(""));
        assert_eq!(
            empty.to_string(),
            "UNIMPLEMENTED: (no message from the plugin)"
        );
    }

    #[tokio::test]
    async fn tcp_endpoint_is_refused_before_any_network_io() {
        let err = run(
            "tcp://127.0.0.1:1",
            Duration::from_secs(1),
            CsiCommand::Probe,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().starts_with("INVALID_ARGUMENT: "), "{err}");
    }

    #[test]
    fn empty_ids_and_no_capability_reach_the_request_for_conformance_checks() {
        let h = Harness::try_parse_from(["x", "node-stage", "", "--staging-path", ""]).unwrap();
        let CsiCommand::NodeStage {
            id,
            staging_path,
            capability,
            ..
        } = h.cmd
        else {
            panic!("parsed into the wrong subcommand");
        };
        assert!(id.is_empty() && staging_path.is_empty());
        assert!(capability.to_request().is_some());
        let h = Harness::try_parse_from([
            "x",
            "node-publish",
            "v",
            "--target-path",
            "/t",
            "--no-capability",
        ])
        .unwrap();
        let CsiCommand::NodePublish { capability, .. } = h.cmd else {
            panic!("parsed into the wrong subcommand");
        };
        assert!(capability.to_request().is_none());
        assert!(capability.to_request_list().is_empty());
        let both = [
            "x",
            "node-stage",
            "v",
            "--staging-path",
            "/s",
            "--no-capability",
            "--block",
        ];
        assert!(Harness::try_parse_from(both).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Harness::command().debug_assert();
    }
}
