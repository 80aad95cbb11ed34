//! Compiles `proto/csi.proto` with protox so no `protoc` binary is needed
//! on developer machines or in CI.

use std::path::PathBuf;

/// Every field upstream marks `csi_secret`: these get a redacting
/// serializer so printed or logged JSON never carries credentials.
const SECRET_FIELDS: &[&str] = &[
    ".csi.v1.CreateVolumeRequest.secrets",
    ".csi.v1.DeleteVolumeRequest.secrets",
    ".csi.v1.ControllerPublishVolumeRequest.secrets",
    ".csi.v1.ControllerUnpublishVolumeRequest.secrets",
    ".csi.v1.ValidateVolumeCapabilitiesRequest.secrets",
    ".csi.v1.ControllerModifyVolumeRequest.secrets",
    ".csi.v1.CreateSnapshotRequest.secrets",
    ".csi.v1.DeleteSnapshotRequest.secrets",
    ".csi.v1.ListSnapshotsRequest.secrets",
    ".csi.v1.GetSnapshotRequest.secrets",
    ".csi.v1.ControllerExpandVolumeRequest.secrets",
    ".csi.v1.NodeStageVolumeRequest.secrets",
    ".csi.v1.NodePublishVolumeRequest.secrets",
    ".csi.v1.NodeExpandVolumeRequest.secrets",
];

/// Enum-typed fields are plain `i32` in prost; these print the enum's
/// proto name instead so JSON output is readable.
const ENUM_FIELDS: &[(&str, &str)] = &[
    (
        ".csi.v1.PluginCapability.Service.type",
        "plugin_service_type",
    ),
    (
        ".csi.v1.PluginCapability.VolumeExpansion.type",
        "volume_expansion_type",
    ),
    (".csi.v1.VolumeCapability.AccessMode.mode", "access_mode"),
    (
        ".csi.v1.ControllerServiceCapability.RPC.type",
        "controller_rpc_type",
    ),
    (".csi.v1.NodeServiceCapability.RPC.type", "node_rpc_type"),
    (".csi.v1.VolumeUsage.unit", "volume_usage_unit"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest.join("../../proto");
    let proto = proto_dir.join("csi.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let fds = protox::compile([&proto], [&proto_dir])?;

    // The descriptor set is also shipped in the crate so tests (and any
    // reflection user) can check field numbers without re-parsing.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("csi_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let mut builder = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".csi.v1", "#[derive(serde::Serialize)]")
        .field_attribute(
            ".csi.v1.Snapshot.creation_time",
            "#[serde(serialize_with = \"crate::json::timestamp\")]",
        );
    for path in SECRET_FIELDS {
        builder = builder.field_attribute(
            path,
            "#[serde(serialize_with = \"crate::json::redacted_secrets\")]",
        );
    }
    for (path, func) in ENUM_FIELDS {
        builder = builder.field_attribute(
            path,
            format!("#[serde(serialize_with = \"crate::json::{func}\")]"),
        );
    }
    // Debug is written by hand for messages with secrets (see
    // `src/redact.rs`) so `{:?}` in a log line cannot leak credentials.
    builder = builder.skip_debug(
        SECRET_FIELDS
            .iter()
            .filter_map(|f| f.rsplit_once('.').map(|(m, _)| m)),
    );
    builder.compile_fds(fds)?;
    Ok(())
}
