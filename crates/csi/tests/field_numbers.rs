//! Independent check of the transcription in `proto/csi.proto`.
//!
//! The table below was typed by hand from the upstream CSI v1.12.0
//! `csi.proto`, separately from the transcription itself. Every message
//! of the Identity, Controller and Node services must match it exactly:
//! same fields, same numbers, same types. A renumbered field would
//! otherwise be a silent wire incompatibility with kubelet and sidecars.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// `Message.Nested field number type` — type is a scalar name, `map`
/// (map<string,string>), `[]T` for repeated, or a fully qualified name.
const TABLE: &str = "
GetPluginInfoRequest
GetPluginInfoResponse name 1 string
GetPluginInfoResponse vendor_version 2 string
GetPluginInfoResponse manifest 3 map
GetPluginCapabilitiesRequest
GetPluginCapabilitiesResponse capabilities 1 []csi.v1.PluginCapability
PluginCapability service 1 csi.v1.PluginCapability.Service
PluginCapability volume_expansion 2 csi.v1.PluginCapability.VolumeExpansion
PluginCapability.Service type 1 csi.v1.PluginCapability.Service.Type
PluginCapability.VolumeExpansion type 1 csi.v1.PluginCapability.VolumeExpansion.Type
ProbeRequest
ProbeResponse ready 1 google.protobuf.BoolValue
CreateVolumeRequest name 1 string
CreateVolumeRequest capacity_range 2 csi.v1.CapacityRange
CreateVolumeRequest volume_capabilities 3 []csi.v1.VolumeCapability
CreateVolumeRequest parameters 4 map
CreateVolumeRequest secrets 5 map
CreateVolumeRequest volume_content_source 6 csi.v1.VolumeContentSource
CreateVolumeRequest accessibility_requirements 7 csi.v1.TopologyRequirement
CreateVolumeRequest mutable_parameters 8 map
VolumeContentSource snapshot 1 csi.v1.VolumeContentSource.SnapshotSource
VolumeContentSource volume 2 csi.v1.VolumeContentSource.VolumeSource
VolumeContentSource.SnapshotSource snapshot_id 1 string
VolumeContentSource.VolumeSource volume_id 1 string
CreateVolumeResponse volume 1 csi.v1.Volume
VolumeCapability block 1 csi.v1.VolumeCapability.BlockVolume
VolumeCapability mount 2 csi.v1.VolumeCapability.MountVolume
VolumeCapability access_mode 3 csi.v1.VolumeCapability.AccessMode
VolumeCapability.BlockVolume
VolumeCapability.MountVolume fs_type 1 string
VolumeCapability.MountVolume mount_flags 2 []string
VolumeCapability.MountVolume volume_mount_group 3 string
VolumeCapability.AccessMode mode 1 csi.v1.VolumeCapability.AccessMode.Mode
CapacityRange required_bytes 1 int64
CapacityRange limit_bytes 2 int64
Volume capacity_bytes 1 int64
Volume volume_id 2 string
Volume volume_context 3 map
Volume content_source 4 csi.v1.VolumeContentSource
Volume accessible_topology 5 []csi.v1.Topology
TopologyRequirement requisite 1 []csi.v1.Topology
TopologyRequirement preferred 2 []csi.v1.Topology
Topology segments 1 map
DeleteVolumeRequest volume_id 1 string
DeleteVolumeRequest secrets 2 map
DeleteVolumeResponse
ControllerPublishVolumeRequest volume_id 1 string
ControllerPublishVolumeRequest node_id 2 string
ControllerPublishVolumeRequest volume_capability 3 csi.v1.VolumeCapability
ControllerPublishVolumeRequest readonly 4 bool
ControllerPublishVolumeRequest secrets 5 map
ControllerPublishVolumeRequest volume_context 6 map
ControllerPublishVolumeResponse publish_context 1 map
ControllerUnpublishVolumeRequest volume_id 1 string
ControllerUnpublishVolumeRequest node_id 2 string
ControllerUnpublishVolumeRequest secrets 3 map
ControllerUnpublishVolumeResponse
ValidateVolumeCapabilitiesRequest volume_id 1 string
ValidateVolumeCapabilitiesRequest volume_context 2 map
ValidateVolumeCapabilitiesRequest volume_capabilities 3 []csi.v1.VolumeCapability
ValidateVolumeCapabilitiesRequest parameters 4 map
ValidateVolumeCapabilitiesRequest secrets 5 map
ValidateVolumeCapabilitiesRequest mutable_parameters 6 map
ValidateVolumeCapabilitiesResponse confirmed 1 csi.v1.ValidateVolumeCapabilitiesResponse.Confirmed
ValidateVolumeCapabilitiesResponse message 2 string
ValidateVolumeCapabilitiesResponse.Confirmed volume_context 1 map
ValidateVolumeCapabilitiesResponse.Confirmed volume_capabilities 2 []csi.v1.VolumeCapability
ValidateVolumeCapabilitiesResponse.Confirmed parameters 3 map
ValidateVolumeCapabilitiesResponse.Confirmed mutable_parameters 4 map
ListVolumesRequest max_entries 1 int32
ListVolumesRequest starting_token 2 string
ListVolumesResponse entries 1 []csi.v1.ListVolumesResponse.Entry
ListVolumesResponse next_token 2 string
ListVolumesResponse.VolumeStatus published_node_ids 1 []string
ListVolumesResponse.VolumeStatus volume_condition 2 csi.v1.VolumeCondition
ListVolumesResponse.Entry volume 1 csi.v1.Volume
ListVolumesResponse.Entry status 2 csi.v1.ListVolumesResponse.VolumeStatus
ControllerGetVolumeRequest volume_id 1 string
ControllerGetVolumeResponse volume 1 csi.v1.Volume
ControllerGetVolumeResponse status 2 csi.v1.ControllerGetVolumeResponse.VolumeStatus
ControllerGetVolumeResponse.VolumeStatus published_node_ids 1 []string
ControllerGetVolumeResponse.VolumeStatus volume_condition 2 csi.v1.VolumeCondition
ControllerModifyVolumeRequest volume_id 1 string
ControllerModifyVolumeRequest secrets 2 map
ControllerModifyVolumeRequest mutable_parameters 3 map
ControllerModifyVolumeResponse
GetCapacityRequest volume_capabilities 1 []csi.v1.VolumeCapability
GetCapacityRequest parameters 2 map
GetCapacityRequest accessible_topology 3 csi.v1.Topology
GetCapacityResponse available_capacity 1 int64
GetCapacityResponse maximum_volume_size 2 google.protobuf.Int64Value
GetCapacityResponse minimum_volume_size 3 google.protobuf.Int64Value
ControllerGetCapabilitiesRequest
ControllerGetCapabilitiesResponse capabilities 1 []csi.v1.ControllerServiceCapability
ControllerServiceCapability rpc 1 csi.v1.ControllerServiceCapability.RPC
ControllerServiceCapability.RPC type 1 csi.v1.ControllerServiceCapability.RPC.Type
CreateSnapshotRequest source_volume_id 1 string
CreateSnapshotRequest name 2 string
CreateSnapshotRequest secrets 3 map
CreateSnapshotRequest parameters 4 map
CreateSnapshotResponse snapshot 1 csi.v1.Snapshot
Snapshot size_bytes 1 int64
Snapshot snapshot_id 2 string
Snapshot source_volume_id 3 string
Snapshot creation_time 4 google.protobuf.Timestamp
Snapshot ready_to_use 5 bool
Snapshot group_snapshot_id 6 string
DeleteSnapshotRequest snapshot_id 1 string
DeleteSnapshotRequest secrets 2 map
DeleteSnapshotResponse
ListSnapshotsRequest max_entries 1 int32
ListSnapshotsRequest starting_token 2 string
ListSnapshotsRequest source_volume_id 3 string
ListSnapshotsRequest snapshot_id 4 string
ListSnapshotsRequest secrets 5 map
ListSnapshotsResponse entries 1 []csi.v1.ListSnapshotsResponse.Entry
ListSnapshotsResponse next_token 2 string
ListSnapshotsResponse.Entry snapshot 1 csi.v1.Snapshot
GetSnapshotRequest snapshot_id 1 string
GetSnapshotRequest secrets 2 map
GetSnapshotResponse snapshot 1 csi.v1.Snapshot
ControllerExpandVolumeRequest volume_id 1 string
ControllerExpandVolumeRequest capacity_range 2 csi.v1.CapacityRange
ControllerExpandVolumeRequest secrets 3 map
ControllerExpandVolumeRequest volume_capability 4 csi.v1.VolumeCapability
ControllerExpandVolumeResponse capacity_bytes 1 int64
ControllerExpandVolumeResponse node_expansion_required 2 bool
NodeStageVolumeRequest volume_id 1 string
NodeStageVolumeRequest publish_context 2 map
NodeStageVolumeRequest staging_target_path 3 string
NodeStageVolumeRequest volume_capability 4 csi.v1.VolumeCapability
NodeStageVolumeRequest secrets 5 map
NodeStageVolumeRequest volume_context 6 map
NodeStageVolumeResponse
NodeUnstageVolumeRequest volume_id 1 string
NodeUnstageVolumeRequest staging_target_path 2 string
NodeUnstageVolumeResponse
NodePublishVolumeRequest volume_id 1 string
NodePublishVolumeRequest publish_context 2 map
NodePublishVolumeRequest staging_target_path 3 string
NodePublishVolumeRequest target_path 4 string
NodePublishVolumeRequest volume_capability 5 csi.v1.VolumeCapability
NodePublishVolumeRequest readonly 6 bool
NodePublishVolumeRequest secrets 7 map
NodePublishVolumeRequest volume_context 8 map
NodePublishVolumeResponse
NodeUnpublishVolumeRequest volume_id 1 string
NodeUnpublishVolumeRequest target_path 2 string
NodeUnpublishVolumeResponse
NodeGetVolumeStatsRequest volume_id 1 string
NodeGetVolumeStatsRequest volume_path 2 string
NodeGetVolumeStatsRequest staging_target_path 3 string
NodeGetVolumeStatsResponse usage 1 []csi.v1.VolumeUsage
NodeGetVolumeStatsResponse volume_condition 2 csi.v1.VolumeCondition
VolumeUsage available 1 int64
VolumeUsage total 2 int64
VolumeUsage used 3 int64
VolumeUsage unit 4 csi.v1.VolumeUsage.Unit
VolumeCondition abnormal 1 bool
VolumeCondition message 2 string
NodeGetCapabilitiesRequest
NodeGetCapabilitiesResponse capabilities 1 []csi.v1.NodeServiceCapability
NodeServiceCapability rpc 1 csi.v1.NodeServiceCapability.RPC
NodeServiceCapability.RPC type 1 csi.v1.NodeServiceCapability.RPC.Type
NodeGetInfoRequest
NodeGetInfoResponse node_id 1 string
NodeGetInfoResponse max_volumes_per_node 2 int64
NodeGetInfoResponse accessible_topology 3 csi.v1.Topology
NodeExpandVolumeRequest volume_id 1 string
NodeExpandVolumeRequest volume_path 2 string
NodeExpandVolumeRequest capacity_range 3 csi.v1.CapacityRange
NodeExpandVolumeRequest staging_target_path 4 string
NodeExpandVolumeRequest volume_capability 5 csi.v1.VolumeCapability
NodeExpandVolumeRequest secrets 6 map
NodeExpandVolumeResponse capacity_bytes 1 int64
";

/// `Enum VALUE number`, same provenance as `TABLE`.
const ENUMS: &str = "
PluginCapability.Service.Type UNKNOWN 0
PluginCapability.Service.Type CONTROLLER_SERVICE 1
PluginCapability.Service.Type VOLUME_ACCESSIBILITY_CONSTRAINTS 2
PluginCapability.Service.Type GROUP_CONTROLLER_SERVICE 3
PluginCapability.Service.Type SNAPSHOT_METADATA_SERVICE 4
PluginCapability.VolumeExpansion.Type UNKNOWN 0
PluginCapability.VolumeExpansion.Type ONLINE 1
PluginCapability.VolumeExpansion.Type OFFLINE 2
VolumeCapability.AccessMode.Mode UNKNOWN 0
VolumeCapability.AccessMode.Mode SINGLE_NODE_WRITER 1
VolumeCapability.AccessMode.Mode SINGLE_NODE_READER_ONLY 2
VolumeCapability.AccessMode.Mode MULTI_NODE_READER_ONLY 3
VolumeCapability.AccessMode.Mode MULTI_NODE_SINGLE_WRITER 4
VolumeCapability.AccessMode.Mode MULTI_NODE_MULTI_WRITER 5
VolumeCapability.AccessMode.Mode SINGLE_NODE_SINGLE_WRITER 6
VolumeCapability.AccessMode.Mode SINGLE_NODE_MULTI_WRITER 7
ControllerServiceCapability.RPC.Type UNKNOWN 0
ControllerServiceCapability.RPC.Type CREATE_DELETE_VOLUME 1
ControllerServiceCapability.RPC.Type PUBLISH_UNPUBLISH_VOLUME 2
ControllerServiceCapability.RPC.Type LIST_VOLUMES 3
ControllerServiceCapability.RPC.Type GET_CAPACITY 4
ControllerServiceCapability.RPC.Type CREATE_DELETE_SNAPSHOT 5
ControllerServiceCapability.RPC.Type LIST_SNAPSHOTS 6
ControllerServiceCapability.RPC.Type CLONE_VOLUME 7
ControllerServiceCapability.RPC.Type PUBLISH_READONLY 8
ControllerServiceCapability.RPC.Type EXPAND_VOLUME 9
ControllerServiceCapability.RPC.Type LIST_VOLUMES_PUBLISHED_NODES 10
ControllerServiceCapability.RPC.Type VOLUME_CONDITION 11
ControllerServiceCapability.RPC.Type GET_VOLUME 12
ControllerServiceCapability.RPC.Type SINGLE_NODE_MULTI_WRITER 13
ControllerServiceCapability.RPC.Type MODIFY_VOLUME 14
ControllerServiceCapability.RPC.Type GET_SNAPSHOT 15
NodeServiceCapability.RPC.Type UNKNOWN 0
NodeServiceCapability.RPC.Type STAGE_UNSTAGE_VOLUME 1
NodeServiceCapability.RPC.Type GET_VOLUME_STATS 2
NodeServiceCapability.RPC.Type EXPAND_VOLUME 3
NodeServiceCapability.RPC.Type VOLUME_CONDITION 4
NodeServiceCapability.RPC.Type SINGLE_NODE_MULTI_WRITER 5
NodeServiceCapability.RPC.Type VOLUME_MOUNT_GROUP 6
VolumeUsage.Unit UNKNOWN 0
VolumeUsage.Unit BYTES 1
VolumeUsage.Unit INODES 2
";

/// `Service Method Input Output`.
const RPCS: &str = "
Identity GetPluginInfo GetPluginInfoRequest GetPluginInfoResponse
Identity GetPluginCapabilities GetPluginCapabilitiesRequest GetPluginCapabilitiesResponse
Identity Probe ProbeRequest ProbeResponse
Controller CreateVolume CreateVolumeRequest CreateVolumeResponse
Controller DeleteVolume DeleteVolumeRequest DeleteVolumeResponse
Controller ControllerPublishVolume ControllerPublishVolumeRequest ControllerPublishVolumeResponse
Controller ControllerUnpublishVolume ControllerUnpublishVolumeRequest ControllerUnpublishVolumeResponse
Controller ValidateVolumeCapabilities ValidateVolumeCapabilitiesRequest ValidateVolumeCapabilitiesResponse
Controller ListVolumes ListVolumesRequest ListVolumesResponse
Controller GetCapacity GetCapacityRequest GetCapacityResponse
Controller ControllerGetCapabilities ControllerGetCapabilitiesRequest ControllerGetCapabilitiesResponse
Controller CreateSnapshot CreateSnapshotRequest CreateSnapshotResponse
Controller DeleteSnapshot DeleteSnapshotRequest DeleteSnapshotResponse
Controller ListSnapshots ListSnapshotsRequest ListSnapshotsResponse
Controller GetSnapshot GetSnapshotRequest GetSnapshotResponse
Controller ControllerExpandVolume ControllerExpandVolumeRequest ControllerExpandVolumeResponse
Controller ControllerGetVolume ControllerGetVolumeRequest ControllerGetVolumeResponse
Controller ControllerModifyVolume ControllerModifyVolumeRequest ControllerModifyVolumeResponse
Node NodeStageVolume NodeStageVolumeRequest NodeStageVolumeResponse
Node NodeUnstageVolume NodeUnstageVolumeRequest NodeUnstageVolumeResponse
Node NodePublishVolume NodePublishVolumeRequest NodePublishVolumeResponse
Node NodeUnpublishVolume NodeUnpublishVolumeRequest NodeUnpublishVolumeResponse
Node NodeGetVolumeStats NodeGetVolumeStatsRequest NodeGetVolumeStatsResponse
Node NodeExpandVolume NodeExpandVolumeRequest NodeExpandVolumeResponse
Node NodeGetCapabilities NodeGetCapabilitiesRequest NodeGetCapabilitiesResponse
Node NodeGetInfo NodeGetInfoRequest NodeGetInfoResponse
";

fn csi_file() -> prost_types::FileDescriptorProto {
    let fds = FileDescriptorSet::decode(csi::FILE_DESCRIPTOR_SET).unwrap();
    fds.file
        .into_iter()
        .find(|f| f.package() == "csi.v1")
        .expect("csi.v1 file in descriptor set")
}

/// Flattens nested messages into `Outer.Inner` names, skipping the
/// synthetic `*Entry` messages protobuf creates for maps.
fn collect<'a>(
    prefix: &str,
    msgs: &'a [DescriptorProto],
    out: &mut BTreeMap<String, &'a DescriptorProto>,
) {
    for m in msgs {
        if m.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        let name = if prefix.is_empty() {
            m.name().to_string()
        } else {
            format!("{prefix}.{}", m.name())
        };
        collect(&name, &m.nested_type, out);
        out.insert(name, m);
    }
}

fn describe(m: &DescriptorProto, f: &prost_types::FieldDescriptorProto) -> String {
    let repeated = f.label() == Label::Repeated;
    let base = match f.r#type() {
        Type::String => "string".to_string(),
        Type::Int64 => "int64".to_string(),
        Type::Int32 => "int32".to_string(),
        Type::Bool => "bool".to_string(),
        Type::Message | Type::Enum => f.type_name().trim_start_matches('.').to_string(),
        other => format!("{other:?}"),
    };
    // A map<string,string> is a repeated nested *Entry with map_entry set.
    let entry = m.nested_type.iter().find(|n| {
        n.options.as_ref().is_some_and(|o| o.map_entry())
            && base.ends_with(&format!(".{}", n.name()))
    });
    if let Some(entry) = entry {
        let kv: Vec<Type> = entry.field.iter().map(|x| x.r#type()).collect();
        assert_eq!(
            kv,
            vec![Type::String, Type::String],
            "{}.{} map types",
            m.name(),
            f.name()
        );
        return "map".into();
    }
    if repeated { format!("[]{base}") } else { base }
}

#[test]
fn every_message_matches_the_hand_written_table() {
    let file = csi_file();
    let mut msgs = BTreeMap::new();
    collect("", &file.message_type, &mut msgs);

    let mut expected: BTreeMap<String, BTreeMap<String, (i32, String)>> = BTreeMap::new();
    for line in TABLE.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let fields = expected.entry(parts[0].to_string()).or_default();
        if let [_, name, number, ty] = parts[..] {
            fields.insert(name.to_string(), (number.parse().unwrap(), ty.to_string()));
        }
    }

    let actual_names: Vec<&String> = msgs.keys().collect();
    let expected_names: Vec<&String> = expected.keys().collect();
    assert_eq!(
        actual_names, expected_names,
        "set of messages differs from the table"
    );

    for (name, fields) in &expected {
        let m = msgs[name];
        let actual: BTreeMap<String, (i32, String)> = m
            .field
            .iter()
            .map(|f| (f.name().to_string(), (f.number(), describe(m, f))))
            .collect();
        assert_eq!(&actual, fields, "fields of {name}");
    }
}

#[test]
fn every_enum_matches_the_hand_written_table() {
    let file = csi_file();
    let mut msgs = BTreeMap::new();
    collect("", &file.message_type, &mut msgs);
    let mut actual: BTreeMap<String, i32> = BTreeMap::new();
    for (name, m) in &msgs {
        for e in &m.enum_type {
            for v in &e.value {
                actual.insert(format!("{name}.{} {}", e.name(), v.name()), v.number());
            }
        }
    }
    assert!(
        file.enum_type.is_empty(),
        "no top-level enums in the Identity/Controller/Node subset"
    );
    let expected: BTreeMap<String, i32> = ENUMS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            (format!("{} {}", p[0], p[1]), p[2].parse().unwrap())
        })
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn every_rpc_matches_the_hand_written_table() {
    let file = csi_file();
    let mut actual = Vec::new();
    for s in &file.service {
        for m in &s.method {
            assert!(
                !m.client_streaming() && !m.server_streaming(),
                "{} is unary upstream",
                m.name()
            );
            actual.push(format!(
                "{} {} {} {}",
                s.name(),
                m.name(),
                m.input_type().trim_start_matches(".csi.v1."),
                m.output_type().trim_start_matches(".csi.v1.")
            ));
        }
    }
    let expected: Vec<String> = RPCS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(actual, expected);
}

/// Proves the generated Rust code (not just the descriptor) puts fields on
/// the wire under the upstream tags: one byte per key, `(number << 3) | wire_type`.
#[test]
fn generated_code_uses_upstream_tags_on_the_wire() {
    use csi::v1::*;
    use std::collections::HashMap;

    let one = |k: &str| HashMap::from([(k.to_string(), "v".to_string())]);
    let req = CreateVolumeRequest {
        name: "n".into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 1,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability::default()],
        parameters: one("p"),
        secrets: one("s"),
        volume_content_source: Some(VolumeContentSource::default()),
        accessibility_requirements: Some(TopologyRequirement::default()),
        mutable_parameters: one("m"),
    };
    let bytes = req.encode_to_vec();
    let mut keys = Vec::new();
    let mut buf = &bytes[..];
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).unwrap();
        keys.push(key >> 3);
        assert_eq!(
            key & 7,
            2,
            "every CreateVolumeRequest field used here is length-delimited"
        );
        let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
        buf = &buf[len..];
    }
    assert_eq!(keys, vec![1, 2, 3, 4, 5, 6, 7, 8]);

    // NodeStageVolumeRequest.staging_target_path is field 3: key 0x1a.
    let stage = NodeStageVolumeRequest {
        staging_target_path: "/x".into(),
        ..Default::default()
    };
    assert_eq!(stage.encode_to_vec(), vec![0x1a, 2, b'/', b'x']);

    // VolumeCapability.access_mode is field 3, mount is field 2.
    let cap = VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(volume_capability::AccessMode { mode: 1 }),
    };
    assert_eq!(cap.encode_to_vec(), vec![0x12, 0, 0x1a, 2, 0x08, 1]);
}
