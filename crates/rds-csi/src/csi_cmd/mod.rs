//! `rds-csi csi …`: call any CSI RPC on a driver socket and print the reply
//! as JSON, so an operator can exercise a running plugin exactly the way
//! kubelet and the sidecars do, without a cluster.

mod controller;
mod identity;
mod node;
mod snapshots;

pub use controller::ControllerCommand;
pub use identity::IdentityCommand;
pub use node::NodeCommand;
pub use snapshots::SnapshotCommand;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi::v1::*;
use tonic::transport::Channel;

use crate::error::{CliError, SizeProblem};

/// One subcommand per CSI RPC of the Identity, Controller and Node services, grouped by
/// service in the modules below (the command line is flat: `rds-csi csi probe`).
#[derive(Debug, Subcommand)]
pub enum CsiCommand {
    #[command(flatten)]
    Identity(IdentityCommand),
    #[command(flatten)]
    Controller(ControllerCommand),
    #[command(flatten)]
    Snapshot(SnapshotCommand),
    #[command(flatten)]
    Node(NodeCommand),
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
pub fn parse_size(s: &str) -> Result<i64, CliError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let refuse = |problem| CliError::Size {
        input: s.to_string(),
        problem,
    };
    if digits.is_empty() {
        return Err(refuse(SizeProblem::NoNumber));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| refuse(SizeProblem::NumberTooLarge))?;
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
        other => return Err(refuse(SizeProblem::UnknownUnit(other.to_string()))),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| refuse(SizeProblem::TooLarge))?;
    if bytes == 0 {
        return Err(refuse(SizeProblem::Zero));
    }
    Ok(bytes)
}

/// Parses `key=value` (the value may itself contain `=`).
pub fn parse_kv(s: &str) -> Result<(String, String), CliError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(CliError::KeyValue {
            input: s.to_string(),
        }),
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
    match cmd {
        CsiCommand::Identity(c) => c.run(channel, timeout).await,
        CsiCommand::Controller(c) => c.run(channel, timeout).await,
        CsiCommand::Snapshot(c) => c.run(channel, timeout).await,
        CsiCommand::Node(c) => c.run(channel, timeout).await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn sizes_accept_binary_decimal_and_plain_bytes() {
        assert_eq!(parse_size("10Gi").unwrap(), 10 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("512Mi").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("1Ti").unwrap(), 1 << 40);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size(" 2k ").unwrap(), 2000);
    }

    #[test]
    fn sizes_reject_garbage_zero_and_overflow() {
        assert!(parse_size("").is_err());
        assert!(parse_size("Gi").is_err());
        assert!(
            parse_size("10GB")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(parse_size("-1Gi").is_err());
        assert!(parse_size("1.5Gi").is_err());
        assert!(
            parse_size("0")
                .unwrap_err()
                .to_string()
                .contains("greater than zero")
        );
        assert!(
            parse_size("9000000Pi")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn params_split_on_the_first_equals_sign() {
        assert_eq!(parse_kv("fs=ext4").unwrap(), ("fs".into(), "ext4".into()));
        assert_eq!(parse_kv("opts=a=b").unwrap(), ("opts".into(), "a=b".into()));
        assert_eq!(parse_kv("empty=").unwrap(), ("empty".into(), String::new()));
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
        let CsiCommand::Controller(ControllerCommand::CreateVolume(a)) = h.cmd else {
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
            CsiCommand::Identity(IdentityCommand::Probe),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().starts_with("INVALID_ARGUMENT: "), "{err}");
    }

    #[test]
    fn empty_ids_and_no_capability_reach_the_request_for_conformance_checks() {
        let h = Harness::try_parse_from(["x", "node-stage", "", "--staging-path", ""]).unwrap();
        let CsiCommand::Node(NodeCommand::NodeStage {
            id,
            staging_path,
            capability,
            ..
        }) = h.cmd
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
        let CsiCommand::Node(NodeCommand::NodePublish { capability, .. }) = h.cmd else {
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
