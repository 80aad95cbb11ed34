//! Hand-written `Debug` for every message with a `csi_secret` field.
//!
//! `build.rs` turns off prost's derived `Debug` for these so that a
//! `tracing::debug!(?request)` anywhere in the driver cannot leak
//! credentials. The macro destructures without `..`, so adding a field to
//! the proto without listing it here is a compile error, not a silent gap.

use std::collections::HashMap;
use std::fmt;

use crate::v1::*;

/// Shows which secret keys were sent, never the values.
struct Keys<'a>(&'a HashMap<String, String>);

impl fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        f.debug_map()
            .entries(keys.into_iter().map(|k| (k, crate::json::REDACTED)))
            .finish()
    }
}

macro_rules! debug_without_secrets {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $ty { $($field,)* secrets } = self;
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), $field))*
                    .field("secrets", &Keys(secrets))
                    .finish()
            }
        }
    };
}

debug_without_secrets!(CreateVolumeRequest {
    name,
    capacity_range,
    volume_capabilities,
    parameters,
    volume_content_source,
    accessibility_requirements,
    mutable_parameters,
});
debug_without_secrets!(DeleteVolumeRequest { volume_id });
debug_without_secrets!(ControllerPublishVolumeRequest {
    volume_id,
    node_id,
    volume_capability,
    readonly,
    volume_context,
});
debug_without_secrets!(ControllerUnpublishVolumeRequest { volume_id, node_id });
debug_without_secrets!(ValidateVolumeCapabilitiesRequest {
    volume_id,
    volume_context,
    volume_capabilities,
    parameters,
    mutable_parameters,
});
debug_without_secrets!(ControllerModifyVolumeRequest {
    volume_id,
    mutable_parameters,
});
debug_without_secrets!(CreateSnapshotRequest {
    source_volume_id,
    name,
    parameters,
});
debug_without_secrets!(DeleteSnapshotRequest { snapshot_id });
debug_without_secrets!(ListSnapshotsRequest {
    max_entries,
    starting_token,
    source_volume_id,
    snapshot_id,
});
debug_without_secrets!(GetSnapshotRequest { snapshot_id });
debug_without_secrets!(ControllerExpandVolumeRequest {
    volume_id,
    capacity_range,
    volume_capability,
});
debug_without_secrets!(NodeStageVolumeRequest {
    volume_id,
    publish_context,
    staging_target_path,
    volume_capability,
    volume_context,
});
debug_without_secrets!(NodePublishVolumeRequest {
    volume_id,
    publish_context,
    staging_target_path,
    target_path,
    volume_capability,
    readonly,
    volume_context,
});
debug_without_secrets!(NodeExpandVolumeRequest {
    volume_id,
    volume_path,
    capacity_range,
    staging_target_path,
    volume_capability,
});

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_json_show_secret_keys_but_not_values() {
        let req = NodeStageVolumeRequest {
            volume_id: "pvc-1".into(),
            secrets: HashMap::from([("password".to_string(), "hunter2".to_string())]),
            ..Default::default()
        };
        let dbg = format!("{req:?}");
        assert!(dbg.contains("pvc-1"), "{dbg}");
        assert!(dbg.contains("password"), "{dbg}");
        assert!(!dbg.contains("hunter2"), "{dbg}");

        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("password"), "{json}");
        assert!(!json.contains("hunter2"), "{json}");
    }
}
