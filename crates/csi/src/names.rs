//! Human names for CSI enum values, for log lines and error messages
//! where a bare integer would be meaningless to an operator.

use crate::v1::{
    controller_service_capability, node_service_capability, plugin_capability, volume_capability,
    volume_usage,
};

/// Name of a `VolumeCapability.AccessMode.Mode` value, `"UNRECOGNIZED"`
/// for numbers this build does not know (a newer CO may send them).
pub fn access_mode_name(mode: i32) -> &'static str {
    volume_capability::access_mode::Mode::try_from(mode)
        .map(|m| m.as_str_name())
        .unwrap_or("UNRECOGNIZED")
}

/// Name of a `ControllerServiceCapability.RPC.Type` value.
pub fn controller_rpc_name(value: i32) -> &'static str {
    controller_service_capability::rpc::Type::try_from(value)
        .map(|m| m.as_str_name())
        .unwrap_or("UNRECOGNIZED")
}

/// Name of a `NodeServiceCapability.RPC.Type` value.
pub fn node_rpc_name(value: i32) -> &'static str {
    node_service_capability::rpc::Type::try_from(value)
        .map(|m| m.as_str_name())
        .unwrap_or("UNRECOGNIZED")
}

/// Name of a `PluginCapability.Service.Type` value.
pub fn plugin_service_name(value: i32) -> &'static str {
    plugin_capability::service::Type::try_from(value)
        .map(|m| m.as_str_name())
        .unwrap_or("UNRECOGNIZED")
}

/// Name of a `PluginCapability.VolumeExpansion.Type` value.
pub fn volume_expansion_name(value: i32) -> &'static str {
    plugin_capability::volume_expansion::Type::try_from(value)
        .map(|m| m.as_str_name())
        .unwrap_or("UNRECOGNIZED")
}

/// Name of a `VolumeUsage.Unit` value.
pub fn volume_usage_unit_name(value: i32) -> &'static str {
    volume_usage::Unit::try_from(value)
        .map(|m| m.as_str_name())
        .unwrap_or("UNRECOGNIZED")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn access_mode_names_follow_the_proto() {
        assert_eq!(access_mode_name(1), "SINGLE_NODE_WRITER");
        assert_eq!(access_mode_name(5), "MULTI_NODE_MULTI_WRITER");
        assert_eq!(access_mode_name(7), "SINGLE_NODE_MULTI_WRITER");
        assert_eq!(access_mode_name(99), "UNRECOGNIZED");
    }

    #[test]
    fn capability_names_follow_the_proto() {
        assert_eq!(controller_rpc_name(9), "EXPAND_VOLUME");
        assert_eq!(controller_rpc_name(15), "GET_SNAPSHOT");
        assert_eq!(node_rpc_name(1), "STAGE_UNSTAGE_VOLUME");
        assert_eq!(plugin_service_name(1), "CONTROLLER_SERVICE");
        assert_eq!(volume_expansion_name(1), "ONLINE");
        assert_eq!(volume_usage_unit_name(2), "INODES");
    }
}
