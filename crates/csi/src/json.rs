//! `serialize_with` helpers wired onto generated fields by `build.rs`.
//!
//! They exist because the derived `Serialize` would print enums as bare
//! integers, cannot serialize `prost_types::Timestamp` at all, and would
//! print `csi_secret` maps verbatim.

use std::collections::HashMap;

use serde::Serializer;
use serde::ser::SerializeMap;

use crate::names;

/// Placeholder printed instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// Keeps secret *keys* (useful to see which credentials were sent) but
/// never their values.
pub fn redacted_secrets<S: Serializer>(
    secrets: &HashMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut keys: Vec<&String> = secrets.keys().collect();
    keys.sort();
    let mut map = s.serialize_map(Some(keys.len()))?;
    for k in keys {
        map.serialize_entry(k, REDACTED)?;
    }
    map.end()
}

/// RFC 3339 in UTC, the same text the upstream JSON mapping uses.
pub fn timestamp<S: Serializer>(
    ts: &Option<prost_types::Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match ts {
        None => s.serialize_none(),
        Some(ts) => s.serialize_str(&ts.to_string()),
    }
}

macro_rules! enum_name_serializer {
    ($fn:ident, $name:path) => {
        #[doc = concat!("Serializes the `i32` as its proto name via `", stringify!($name), "`.")]
        pub fn $fn<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str($name(*value))
        }
    };
}

enum_name_serializer!(plugin_service_type, names::plugin_service_name);
enum_name_serializer!(volume_expansion_type, names::volume_expansion_name);
enum_name_serializer!(access_mode, names::access_mode_name);
enum_name_serializer!(controller_rpc_type, names::controller_rpc_name);
enum_name_serializer!(node_rpc_type, names::node_rpc_name);
enum_name_serializer!(volume_usage_unit, names::volume_usage_unit_name);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::v1::*;

    #[test]
    fn json_prints_enum_names_and_rfc3339_timestamps() {
        let snap = Snapshot {
            snapshot_id: "snap-1".into(),
            creation_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["creation_time"], "1970-01-01T00:00:00Z");

        let cap = volume_capability::AccessMode { mode: 1 };
        assert_eq!(
            serde_json::to_value(cap).unwrap()["mode"],
            "SINGLE_NODE_WRITER"
        );
    }
}
