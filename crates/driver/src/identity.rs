//! CSI Identity service.

use std::sync::Arc;
use std::time::Duration;

use csi::v1 as pb;
use csi::v1::plugin_capability::service::Type as ServiceType;
use csi::v1::plugin_capability::volume_expansion::Type as ExpansionType;
use tonic::{Request, Response, Status};
use tracing::{error, warn};

use crate::backend::Backends;

pub struct IdentityService {
    name: String,
    version: String,
    /// Present in controller mode: Probe is ready only when every RDS answers.
    backends: Option<Arc<Backends>>,
    probe_timeout: Duration,
}

impl IdentityService {
    pub fn new(
        name: String,
        version: String,
        backends: Option<Arc<Backends>>,
        probe_timeout: Duration,
    ) -> Self {
        IdentityService {
            name,
            version,
            backends,
            probe_timeout,
        }
    }

    /// Pings every backend; returns the names and errors of those that did not answer.
    pub async fn unreachable_backends(&self) -> Vec<(String, String)> {
        let Some(backends) = &self.backends else {
            return vec![];
        };
        let checks = backends.all().map(|b| {
            let b = b.clone();
            let limit = self.probe_timeout;
            async move {
                if b.insecure {
                    warn!(backend = %b.name, target = %b.target, "SSH host key verification is DISABLED for this backend (--rds-insecure-skip-verify); anyone on the path can impersonate the RDS");
                }
                let r = tokio::time::timeout(limit, b.client.ping()).await;
                match r {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some((b.name.clone(), e.to_string())),
                    Err(_) => Some((b.name.clone(), format!("no answer within {limit:?}"))),
                }
            }
        });
        let mut out = Vec::new();
        for c in checks {
            if let Some(bad) = c.await {
                out.push(bad);
            }
        }
        out
    }
}

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<pb::GetPluginInfoRequest>,
    ) -> Result<Response<pb::GetPluginInfoResponse>, Status> {
        Ok(Response::new(pb::GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: self.version.clone(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<pb::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<pb::GetPluginCapabilitiesResponse>, Status> {
        let mut capabilities = Vec::new();
        if self.backends.is_some() {
            capabilities.push(pb::PluginCapability {
                r#type: Some(pb::plugin_capability::Type::Service(
                    pb::plugin_capability::Service {
                        r#type: ServiceType::ControllerService as i32,
                    },
                )),
            });
            // ONLINE: the VM suite proves it on the real kernel — `/disk set` grows the backing
            // file, the target revalidates the namespace, the attached initiator sees the new
            // size and NodeExpandVolume grows the mounted filesystem (docs/vm-suite.md).
            capabilities.push(pb::PluginCapability {
                r#type: Some(pb::plugin_capability::Type::VolumeExpansion(
                    pb::plugin_capability::VolumeExpansion {
                        r#type: ExpansionType::Online as i32,
                    },
                )),
            });
        }
        Ok(Response::new(pb::GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn probe(
        &self,
        _request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        let bad = self.unreachable_backends().await;
        for (name, why) in &bad {
            error!(backend = %name, error = %why, "probe: RDS not reachable");
        }
        Ok(Response::new(pb::ProbeResponse {
            ready: Some(bad.is_empty()),
        }))
    }
}
