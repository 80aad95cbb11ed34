//! Size limits on every request field, checked at the gRPC boundary before a handler runs.
//!
//! A caller decides nothing about how much memory, log or audit space a request costs: an
//! oversize field is refused with INVALID_ARGUMENT naming the field and the limit (never the
//! value, which may be megabytes or a secret), so nothing downstream ever echoes more than a
//! limit's worth of request data. Names, ids and paths may not contain control characters
//! either: no id this driver issues has one, and a newline in a logged id could forge a line.
//!
//! The limits follow the CSI spec's general size limits (strings 128 bytes, maps 4 KiB) where
//! it has them; docs/conformance.md lists them all.

mod service;

use std::collections::HashMap;

use csi::v1 as pb;

use crate::error::{DriverError, Result};

pub use service::Bounded;

/// Names and ids: volume and snapshot names and ids (CSI: 128 bytes).
pub const MAX_ID: usize = 128;
/// Node ids (CSI: NodeGetInfo's node_id, 256 bytes).
pub const MAX_NODE_ID: usize = 256;
/// Key plus value bytes of one map (parameters, secrets, volume_context, …) (CSI: 4 KiB).
pub const MAX_MAP: usize = 4096;
/// Staging, target and volume paths (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// List paging tokens (this driver's are `after:<id>`).
pub const MAX_TOKEN: usize = 256;
/// Mount flags of one capability, all flags' bytes together (CSI: 4 KiB).
pub const MAX_MOUNT_FLAGS: usize = 4096;
/// Entries of a repeated field (capabilities, topologies, mount flags).
pub const MAX_ENTRIES: usize = 64;

/// A request whose every field is within the limits above.
pub trait Limits {
    fn check_limits(&self) -> Result<()>;
}

fn too_long(field: &str, len: usize, limit: usize) -> DriverError {
    DriverError::InvalidArgument(format!(
        "{field} is {len} bytes; the limit is {limit} bytes"
    ))
}

fn no_control(field: &str, v: &str) -> Result<()> {
    if v.chars().any(char::is_control) {
        return Err(DriverError::InvalidArgument(format!(
            "{field} contains a control character; none are allowed"
        )));
    }
    Ok(())
}

fn bounded_text(field: &str, v: &str, limit: usize) -> Result<()> {
    if v.len() > limit {
        return Err(too_long(field, v.len(), limit));
    }
    no_control(field, v)
}

fn id(field: &str, v: &str) -> Result<()> {
    bounded_text(field, v, MAX_ID)
}

fn node(field: &str, v: &str) -> Result<()> {
    bounded_text(field, v, MAX_NODE_ID)
}

fn path(field: &str, v: &str) -> Result<()> {
    bounded_text(field, v, MAX_PATH)
}

fn token(field: &str, v: &str) -> Result<()> {
    bounded_text(field, v, MAX_TOKEN)
}

fn map(field: &str, m: &HashMap<String, String>) -> Result<()> {
    let total: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_MAP {
        return Err(DriverError::InvalidArgument(format!(
            "{field} holds {total} bytes of keys and values; the limit is {MAX_MAP} bytes"
        )));
    }
    Ok(())
}

fn entries(field: &str, n: usize) -> Result<()> {
    if n > MAX_ENTRIES {
        return Err(DriverError::InvalidArgument(format!(
            "{field} has {n} entries; the limit is {MAX_ENTRIES}"
        )));
    }
    Ok(())
}

fn cap(field: &str, c: &Option<pb::VolumeCapability>) -> Result<()> {
    use pb::volume_capability::AccessType;
    let Some(AccessType::Mount(m)) = c.as_ref().and_then(|c| c.access_type.as_ref()) else {
        return Ok(());
    };
    id(&format!("{field}.mount.fs_type"), &m.fs_type)?;
    id(
        &format!("{field}.mount.volume_mount_group"),
        &m.volume_mount_group,
    )?;
    entries(&format!("{field}.mount.mount_flags"), m.mount_flags.len())?;
    let total: usize = m.mount_flags.iter().map(String::len).sum();
    if total > MAX_MOUNT_FLAGS {
        return Err(too_long(
            &format!("{field}.mount.mount_flags"),
            total,
            MAX_MOUNT_FLAGS,
        ));
    }
    Ok(())
}

fn caps(field: &str, list: &[pb::VolumeCapability]) -> Result<()> {
    entries(field, list.len())?;
    for c in list {
        cap(field, &Some(c.clone()))?;
    }
    Ok(())
}

fn topology(field: &str, t: &Option<pb::Topology>) -> Result<()> {
    match t {
        Some(t) => map(&format!("{field}.segments"), &t.segments),
        None => Ok(()),
    }
}

fn topologies(field: &str, t: &Option<pb::TopologyRequirement>) -> Result<()> {
    let Some(t) = t else { return Ok(()) };
    for (name, list) in [("requisite", &t.requisite), ("preferred", &t.preferred)] {
        let field = format!("{field}.{name}");
        entries(&field, list.len())?;
        for one in list {
            map(&format!("{field}.segments"), &one.segments)?;
        }
    }
    Ok(())
}

fn source(field: &str, s: &Option<pb::VolumeContentSource>) -> Result<()> {
    use pb::volume_content_source::Type;
    match s.as_ref().and_then(|s| s.r#type.as_ref()) {
        Some(Type::Snapshot(s)) => id(&format!("{field}.snapshot.snapshot_id"), &s.snapshot_id),
        Some(Type::Volume(v)) => id(&format!("{field}.volume.volume_id"), &v.volume_id),
        None => Ok(()),
    }
}

/// `limits!(Request { kind field, … })`: each field checked by the function `kind`.
macro_rules! limits {
    ($($ty:ident { $($kind:ident $field:ident),* $(,)? })*) => {$(
        impl Limits for pb::$ty {
            fn check_limits(&self) -> Result<()> {
                $($kind(stringify!($field), &self.$field)?;)*
                Ok(())
            }
        }
    )*};
}

limits! {
    GetPluginInfoRequest {}
    GetPluginCapabilitiesRequest {}
    ProbeRequest {}
    CreateVolumeRequest {
        id name, caps volume_capabilities, map parameters, map secrets,
        source volume_content_source, topologies accessibility_requirements,
        map mutable_parameters,
    }
    DeleteVolumeRequest { id volume_id, map secrets }
    ControllerPublishVolumeRequest {
        id volume_id, node node_id, cap volume_capability, map secrets, map volume_context,
    }
    ControllerUnpublishVolumeRequest { id volume_id, node node_id, map secrets }
    ValidateVolumeCapabilitiesRequest {
        id volume_id, map volume_context, caps volume_capabilities, map parameters,
        map secrets, map mutable_parameters,
    }
    ListVolumesRequest { token starting_token }
    ControllerGetVolumeRequest { id volume_id }
    ControllerModifyVolumeRequest { id volume_id, map secrets, map mutable_parameters }
    GetCapacityRequest {
        caps volume_capabilities, map parameters, topology accessible_topology,
    }
    ControllerGetCapabilitiesRequest {}
    CreateSnapshotRequest { id source_volume_id, id name, map secrets, map parameters }
    DeleteSnapshotRequest { id snapshot_id, map secrets }
    ListSnapshotsRequest {
        token starting_token, id source_volume_id, id snapshot_id, map secrets,
    }
    GetSnapshotRequest { id snapshot_id, map secrets }
    ControllerExpandVolumeRequest { id volume_id, map secrets, cap volume_capability }
    NodeStageVolumeRequest {
        id volume_id, map publish_context, path staging_target_path, cap volume_capability,
        map secrets, map volume_context,
    }
    NodeUnstageVolumeRequest { id volume_id, path staging_target_path }
    NodePublishVolumeRequest {
        id volume_id, map publish_context, path staging_target_path, path target_path,
        cap volume_capability, map secrets, map volume_context,
    }
    NodeUnpublishVolumeRequest { id volume_id, path target_path }
    NodeGetVolumeStatsRequest { id volume_id, path volume_path, path staging_target_path }
    NodeExpandVolumeRequest {
        id volume_id, path volume_path, path staging_target_path, cap volume_capability,
        map secrets,
    }
    NodeGetCapabilitiesRequest {}
    NodeGetInfoRequest {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<()>) -> String {
        match r {
            Err(DriverError::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn an_oversize_field_is_named_with_its_limit_and_never_echoed() {
        let huge = "v".repeat(1 << 20);
        let req = pb::DeleteVolumeRequest {
            volume_id: huge.clone(),
            ..Default::default()
        };
        let m = message(req.check_limits());
        assert_eq!(m, "volume_id is 1048576 bytes; the limit is 128 bytes");

        let mut secrets = HashMap::new();
        secrets.insert("password".to_string(), huge);
        let req = pb::NodeStageVolumeRequest {
            volume_id: "default:pvc-1".into(),
            secrets,
            ..Default::default()
        };
        let m = message(req.check_limits());
        assert!(m.starts_with("secrets holds 1048584 bytes"), "{m}");
        assert!(!m.contains("vvv"), "{m}");
    }

    #[test]
    fn limits_are_inclusive_and_control_characters_are_refused() {
        let req = |name: String| pb::CreateVolumeRequest {
            name,
            ..Default::default()
        };
        assert!(req("n".repeat(MAX_ID)).check_limits().is_ok());
        assert!(req("n".repeat(MAX_ID + 1)).check_limits().is_err());
        let m = message(req("pvc-1\nlevel=ERROR forged".into()).check_limits());
        assert_eq!(m, "name contains a control character; none are allowed");
        let node = pb::ControllerUnpublishVolumeRequest {
            volume_id: "default:pvc-1".into(),
            node_id: "n".repeat(MAX_NODE_ID),
            ..Default::default()
        };
        assert!(node.check_limits().is_ok());
    }

    #[test]
    fn nested_fields_are_named_by_their_path() {
        let capability = pb::VolumeCapability {
            access_type: Some(pb::volume_capability::AccessType::Mount(
                pb::volume_capability::MountVolume {
                    mount_flags: vec!["x".repeat(MAX_MOUNT_FLAGS + 1)],
                    ..Default::default()
                },
            )),
            access_mode: None,
        };
        let req = pb::NodePublishVolumeRequest {
            volume_id: "default:pvc-1".into(),
            volume_capability: Some(capability),
            ..Default::default()
        };
        let m = message(req.check_limits());
        assert_eq!(
            m,
            "volume_capability.mount.mount_flags is 4097 bytes; the limit is 4096 bytes"
        );
        let req = pb::CreateVolumeRequest {
            name: "pvc-1".into(),
            volume_content_source: Some(pb::VolumeContentSource {
                r#type: Some(pb::volume_content_source::Type::Volume(
                    pb::volume_content_source::VolumeSource {
                        volume_id: "v".repeat(200),
                    },
                )),
            }),
            ..Default::default()
        };
        let m = message(req.check_limits());
        assert!(
            m.starts_with("volume_content_source.volume.volume_id is 200 bytes"),
            "{m}"
        );
    }
}
