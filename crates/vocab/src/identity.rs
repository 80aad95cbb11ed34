//! CSI Identity service.

use std::sync::Arc;
use std::time::Duration;

use csi::v1 as pb;
use csi::v1::plugin_capability::service::Type as ServiceType;
use csi::v1::plugin_capability::volume_expansion::Type as ExpansionType;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::backend::Backends;
use crate::health::RdsHealth;

pub struct IdentityService {
    name: String,
    version: String,
    /// Present in controller mode.
    backends: Option<Arc<Backends>>,
    /// RDS reachability, shared with `/readyz` and the metrics so that together they cost the
    /// RDS at most one login per backend per freshness period.
    health: Option<Arc<RdsHealth>>,
}

impl IdentityService {
    pub fn new(
        name: String,
        version: String,
        backends: Option<Arc<Backends>>,
        probe_timeout: Duration,
    ) -> Self {
        let health = backends
            .as_ref()
            .map(|b| RdsHealth::new(b.clone(), probe_timeout));
        IdentityService {
            name,
            version,
            backends,
            health,
        }
    }

    /// The reachability checker Probe uses; hand it to the other health surfaces.
    pub fn health(&self) -> Option<Arc<RdsHealth>> {
        self.health.clone()
    }

    /// Backends that did not answer the latest check (run now unless a fresh result exists),
    /// with why.
    pub async fn unreachable_backends(&self) -> Vec<(String, String)> {
        let Some(health) = &self.health else {
            return vec![];
        };
        health
            .check()
            .await
            .unreachable()
            .map(|(n, e)| (n.to_string(), e.to_string()))
            .collect()
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

    /// Ready whenever the process serves. RDS reachability is reported (logs, metrics,
    /// `/readyz` detail) but never makes Probe fail: sidecars wait for ready before their first
    /// call, and a controller restarted during an RDS outage must still serve what needs no RDS
    /// (ControllerUnpublish above all). Probe never waits for the RDS either: it starts a check
    /// in the background when the last one is stale and reports the last result.
    async fn probe(
        &self,
        _request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        if let Some(health) = &self.health {
            health.refresh_in_background();
            if let Some(report) = health.last() {
                for (name, why) in report.unreachable() {
                    warn!(backend = %name, error = %why, "probe: RDS not reachable (reported, not a reason to be unready)");
                }
            }
        }
        Ok(Response::new(pb::ProbeResponse { ready: Some(true) }))
    }
}
