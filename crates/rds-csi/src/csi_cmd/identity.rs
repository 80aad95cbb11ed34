//! `rds-csi csi` subcommands of the Identity service.

use std::time::Duration;

use clap::Subcommand;
use csi::v1::identity_client::IdentityClient;
use csi::v1::*;
use tonic::transport::Channel;

use super::{CsiCmdError, call};

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Identity.GetPluginInfo: driver name and version.
    PluginInfo,
    /// Identity.GetPluginCapabilities: which services the plugin serves.
    Capabilities,
    /// Identity.Probe: is the plugin ready.
    Probe,
}

impl IdentityCommand {
    pub(super) async fn run(self, channel: Channel, t: Duration) -> Result<(), CsiCmdError> {
        let mut identity = IdentityClient::new(channel);
        match self {
            Self::PluginInfo => {
                call(
                    t,
                    "GetPluginInfo",
                    identity.get_plugin_info(GetPluginInfoRequest {}),
                )
                .await
            }
            Self::Capabilities => {
                let req = GetPluginCapabilitiesRequest {};
                call(
                    t,
                    "GetPluginCapabilities",
                    identity.get_plugin_capabilities(req),
                )
                .await
            }
            Self::Probe => call(t, "Probe", identity.probe(ProbeRequest {})).await,
        }
    }
}
