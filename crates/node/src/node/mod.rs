//! CSI Node service on the real NVMe/TCP stack: connect by NQN (`nvme` crate), format only an
//! empty device and mount safely (`mount` crate), publish by bind mount or mknod, and keep
//! staged volumes working across reconnects (stale-mount recovery, background monitor).
//!
//! Layout: [`context`] parses requests, [`stage`]/[`publish`]/[`stats`]/[`expand`] implement
//! the RPCs, [`recovery`] repairs stale mounts and lost controllers, [`monitor`] looks for
//! trouble between RPCs, [`startup`] cleans up leftovers once, [`state`] remembers how every
//! volume was staged so all of this survives a plugin restart. Every RPC that touches a volume
//! holds that volume's lock, and so does the monitor while it repairs one; only adding a missing
//! path of a multipath volume runs without it ([`multipath`]), since a path that never answers
//! must not hold up that volume's unstage.

pub mod config;
pub mod context;
mod expand;
pub mod monitor;
mod multipath;
pub mod observer;
pub mod paths;
mod publish;
pub mod recovery;
mod stage;
pub mod startup;
pub mod state;
mod stats;
mod sysio;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use csi::v1 as pb;
use csi::v1::node_service_capability::rpc::Type as RpcType;
use mount::{CommandRunner, MountSys, Mounter, RealSys, TokioRunner};
use nvme::{ErrorClass, Initiator, ManagedPrefix, NvmeError};
use tokio::sync::{Notify, watch};
use tonic::{Request, Response, Status};

use vocab::error::{DriverError, Result};
use vocab::locks::VolumeLocks;
use vocab::rpc::traced;

pub use config::{NodeConfig, NodeDeadlines, RecoveryPolicy};
pub use monitor::{MonitorReport, VolumeCheck};
pub use nvme::ConnectMethod;
pub use observer::{NodeObserver, NoopObserver};
pub use startup::StartupReport;
pub use state::{StagedKind, StagedVolume};

/// The replaceable effects of the node service. Production uses [`NodeService::new`]; tests
/// hand in a fake sysfs-backed initiator, `mount::fake::RecordingSys` and a scripted runner.
pub struct NodeParts {
    pub initiator: Arc<Initiator>,
    pub sys: Arc<dyn MountSys>,
    pub runner: Arc<dyn CommandRunner>,
    pub observer: Arc<dyn NodeObserver>,
}

/// Capabilities are declared only for what is implemented: kubelet relies on each one.
const CAPABILITIES: &[RpcType] = &[
    RpcType::StageUnstageVolume,
    RpcType::GetVolumeStats,
    RpcType::VolumeCondition,
    RpcType::ExpandVolume,
    RpcType::SingleNodeMultiWriter,
];

/// Per-volume memory of the monitor (not persisted: rebuilt by the first pass after a restart).
#[derive(Debug, Default, Clone)]
pub(crate) struct Watch {
    /// Whether a live controller was seen on the previous pass.
    pub live: Option<bool>,
    /// The volume's recovery: skipped by the monitor while it backs off.
    pub recovery: Retry,
    /// The live paths (`address:port`) last reported to the observer.
    pub live_paths: Option<Vec<String>>,
    /// Background repairs that left a path unconnected, apart from `recovery` (a dead
    /// secondary address is not a failed recovery: the volume is fine).
    pub paths: Retry,
}

/// Consecutive failures of one kind of attempt, and when the next may start.
#[derive(Debug, Default, Clone)]
pub(crate) struct Retry {
    failures: u32,
    next_try: Option<tokio::time::Instant>,
}

impl Retry {
    pub fn due(&self, now: tokio::time::Instant) -> bool {
        self.next_try.is_none_or(|t| t <= now)
    }

    /// After an attempt: a failure pauses the next one by the policy's doubling backoff, a
    /// success clears the pause.
    pub fn record(&mut self, failed: bool, policy: &RecoveryPolicy) {
        if failed {
            self.failures = self.failures.saturating_add(1);
            self.next_try = Some(tokio::time::Instant::now() + policy.backoff(self.failures));
        } else {
            *self = Retry::default();
        }
    }
}

pub(crate) struct Inner {
    pub cfg: NodeConfig,
    /// What NodeGetInfo reports: `<node name>/<host NQN>` (see `vocab::node_id`).
    pub reported_id: String,
    pub prefix: ManagedPrefix,
    pub initiator: Arc<Initiator>,
    pub mounter: Mounter,
    pub sys: Arc<dyn MountSys>,
    pub runner: Arc<dyn CommandRunner>,
    pub observer: Arc<dyn NodeObserver>,
    pub locks: VolumeLocks,
    pub state: state::StateStore,
    pub ready: watch::Sender<bool>,
    pub kick: Notify,
    pub watches: Mutex<HashMap<String, Watch>>,
    /// Background path repairs in flight at once: each may wait out a connect deadline, and they
    /// must leave the blocking-call executor's slots to stage and recovery.
    pub path_repairs: tokio::sync::Semaphore,
}

/// The CSI Node service. Cheap to clone; clones share state, locks and background tasks.
#[derive(Clone)]
pub struct NodeService {
    inner: Arc<Inner>,
}

impl NodeService {
    /// Production wiring: host identity from `/etc/nvme` or the state dir, the kernel fabrics
    /// interface (or nvme-cli), real syscalls and tools. Spawns the startup cleanup and the
    /// monitor on the current tokio runtime; volume RPCs wait for the cleanup to finish.
    pub fn new(cfg: NodeConfig) -> Result<NodeService> {
        NodeService::new_observed(cfg, Arc::new(NoopObserver))
    }

    /// [`NodeService::new`] reporting connection and stale-mount changes to `observer`
    /// (Kubernetes events, metrics).
    pub fn new_observed(cfg: NodeConfig, observer: Arc<dyn NodeObserver>) -> Result<NodeService> {
        let prefix = managed_prefix(&cfg)?;
        let identity = nvme::load_host_identity(&nvme::HostIdentityConfig {
            state_dir: cfg.state_dir.join("nvme"),
            ..nvme::HostIdentityConfig::default()
        })
        .map_err(|e| DriverError::Config(format!("NVMe host identity: {e}")))?;
        for note in &identity.notes {
            tracing::warn!(note = %note, "NVMe host identity repaired");
        }
        tracing::info!(hostnqn = %identity.identity.hostnqn(), source = ?identity.source, "NVMe host identity");
        let initiator = Initiator::new(cfg.initiator_config(prefix), identity.identity);
        let parts = NodeParts {
            initiator: Arc::new(initiator),
            sys: Arc::new(RealSys),
            runner: Arc::new(TokioRunner),
            observer,
        };
        let svc = NodeService::build(cfg, parts, false)?;
        let bg = svc.clone();
        tokio::spawn(async move {
            let report = bg.startup().await;
            tracing::info!(?report, "node startup finished");
            bg.run_monitor().await;
        });
        Ok(svc)
    }

    /// Wiring with injected effects and no background tasks: call [`NodeService::startup`] and
    /// [`NodeService::monitor_pass`] (or [`NodeService::spawn_monitor`]) explicitly. RPCs do
    /// not wait for a startup that was never asked for.
    pub fn with_parts(cfg: NodeConfig, parts: NodeParts) -> Result<NodeService> {
        NodeService::build(cfg, parts, true)
    }

    fn build(cfg: NodeConfig, parts: NodeParts, ready: bool) -> Result<NodeService> {
        if cfg.node_id.trim().is_empty() {
            return Err(DriverError::Config("node id must not be empty".into()));
        }
        if !cfg.kubelet_dir.is_absolute() {
            return Err(DriverError::Config(format!(
                "kubelet directory {} must be an absolute path",
                cfg.kubelet_dir.display()
            )));
        }
        let prefix = managed_prefix(&cfg)?;
        let reported_id =
            vocab::node_id::NodeId::compose(&cfg.node_id, parts.initiator.host().hostnqn())?;
        let state = state::StateStore::load(&cfg.state_dir, cfg.deadlines.state_write)?;
        let mounter = Mounter::new(Arc::clone(&parts.sys), cfg.mounter_config());
        let (ready_tx, _) = watch::channel(ready);
        Ok(NodeService {
            inner: Arc::new(Inner {
                reported_id,
                prefix,
                initiator: parts.initiator,
                mounter,
                sys: parts.sys,
                runner: parts.runner,
                observer: parts.observer,
                locks: VolumeLocks::default(),
                state,
                ready: ready_tx,
                kick: Notify::new(),
                watches: Mutex::new(HashMap::new()),
                path_repairs: tokio::sync::Semaphore::new(multipath::PATH_REPAIRS_IN_FLIGHT),
                cfg,
            }),
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// Startup cleanup of leftover managed connections; opens the gate for volume RPCs.
    pub async fn startup(&self) -> StartupReport {
        let report = self.inner.startup().await;
        self.inner.ready.send_replace(true);
        report
    }

    /// One monitor pass over every staged volume (what the background loop runs each interval).
    pub async fn monitor_pass(&self) -> MonitorReport {
        self.inner.monitor_pass().await
    }

    /// Runs the monitor loop forever (until the runtime shuts down).
    pub async fn run_monitor(&self) {
        self.inner.run_monitor().await
    }

    /// Spawns [`NodeService::run_monitor`].
    pub fn spawn_monitor(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run_monitor().await })
    }

    /// The staged-volume records (what recovery would act on).
    pub fn staged_volumes(&self) -> Vec<StagedVolume> {
        self.inner.state.all()
    }
}

fn managed_prefix(cfg: &NodeConfig) -> Result<ManagedPrefix> {
    ManagedPrefix::new(cfg.managed_prefix.clone()).map_err(|e| {
        DriverError::Config(format!("managed NQN prefix {:?}: {e}", cfg.managed_prefix))
    })
}

impl Inner {
    /// A request path checked against the kubelet directory (see [`paths`]).
    pub(crate) fn confine(&self, field: &str, raw: &str) -> Result<std::path::PathBuf> {
        paths::confine(field, context::required(field, raw)?, &self.cfg.kubelet_dir)
    }

    /// Volume RPCs wait (bounded) until startup cleanup is done, so cleanup never races a stage.
    pub async fn wait_ready(&self) -> Result<()> {
        let mut rx = self.ready.subscribe();
        let wait = rx.wait_for(|r| *r);
        match tokio::time::timeout(self.cfg.deadlines.startup, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(DriverError::Unavailable(
                "node plugin is still cleaning up leftover NVMe connections after start; retry"
                    .into(),
            )),
        }
    }
}

/// Maps an `nvme` error; `doing` says what the node was doing.
pub(crate) fn nvme_err(doing: &str, e: NvmeError) -> DriverError {
    let msg = format!("{doing}: {e}");
    match e.class() {
        ErrorClass::Invalid => DriverError::InvalidArgument(msg),
        ErrorClass::Timeout => DriverError::Unavailable(msg),
        ErrorClass::NotManaged | ErrorClass::NotConnected => DriverError::FailedPrecondition(msg),
        ErrorClass::KernelRefused | ErrorClass::Other => DriverError::Internal(msg),
    }
}

/// Maps a `mount` error; `doing` says what the node was doing.
pub(crate) fn mount_err(doing: &str, e: mount::Error) -> DriverError {
    use mount::Error as E;
    let msg = format!("{doing}: {e}");
    match e {
        E::MountOption { .. } | E::UnsupportedFilesystem(_) => DriverError::InvalidArgument(msg),
        E::InUse { .. }
        | E::StillMounted { .. }
        | E::FilesystemMismatch { .. }
        | E::Target { .. } => DriverError::FailedPrecondition(msg),
        E::SyscallTimeout { .. }
        | E::ReadTimeout { .. }
        | E::CommandTimeout { .. }
        | E::NotStarted { .. } => DriverError::Unavailable(msg),
        _ => DriverError::Internal(msg),
    }
}

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn node_stage_volume(
        &self,
        r: Request<pb::NodeStageVolumeRequest>,
    ) -> std::result::Result<Response<pb::NodeStageVolumeResponse>, Status> {
        let req = r.into_inner();
        let vol = req.volume_id.clone();
        let pvc = match (
            req.volume_context.get(vocab::params::PVC_NAMESPACE),
            req.volume_context.get(vocab::params::PVC_NAME),
        ) {
            (Some(ns), Some(name)) => Some((ns.clone(), name.clone())),
            _ => None,
        };
        let result = traced("NodeStageVolume", &vol, self.inner.stage(req)).await;
        if let Err(status) = &result {
            self.inner
                .observer
                .stage_failed(&vol, pvc, status.message());
        }
        result
    }

    async fn node_unstage_volume(
        &self,
        r: Request<pb::NodeUnstageVolumeRequest>,
    ) -> std::result::Result<Response<pb::NodeUnstageVolumeResponse>, Status> {
        let req = r.into_inner();
        let vol = req.volume_id.clone();
        traced("NodeUnstageVolume", &vol, self.inner.unstage(req)).await
    }

    async fn node_publish_volume(
        &self,
        r: Request<pb::NodePublishVolumeRequest>,
    ) -> std::result::Result<Response<pb::NodePublishVolumeResponse>, Status> {
        let req = r.into_inner();
        let vol = req.volume_id.clone();
        traced("NodePublishVolume", &vol, self.inner.publish(req)).await
    }

    async fn node_unpublish_volume(
        &self,
        r: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> std::result::Result<Response<pb::NodeUnpublishVolumeResponse>, Status> {
        let req = r.into_inner();
        let vol = req.volume_id.clone();
        traced("NodeUnpublishVolume", &vol, self.inner.unpublish(req)).await
    }

    async fn node_get_volume_stats(
        &self,
        r: Request<pb::NodeGetVolumeStatsRequest>,
    ) -> std::result::Result<Response<pb::NodeGetVolumeStatsResponse>, Status> {
        let req = r.into_inner();
        let vol = req.volume_id.clone();
        traced("NodeGetVolumeStats", &vol, self.inner.stats(req)).await
    }

    async fn node_expand_volume(
        &self,
        r: Request<pb::NodeExpandVolumeRequest>,
    ) -> std::result::Result<Response<pb::NodeExpandVolumeResponse>, Status> {
        let req = r.into_inner();
        let vol = req.volume_id.clone();
        traced("NodeExpandVolume", &vol, self.inner.expand(req)).await
    }

    async fn node_get_capabilities(
        &self,
        _r: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> std::result::Result<Response<pb::NodeGetCapabilitiesResponse>, Status> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|t| pb::NodeServiceCapability {
                r#type: Some(pb::node_service_capability::Type::Rpc(
                    pb::node_service_capability::Rpc { r#type: *t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(pb::NodeGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn node_get_info(
        &self,
        _r: Request<pb::NodeGetInfoRequest>,
    ) -> std::result::Result<Response<pb::NodeGetInfoResponse>, Status> {
        Ok(Response::new(pb::NodeGetInfoResponse {
            node_id: self.inner.reported_id.clone(),
            max_volumes_per_node: self.inner.cfg.max_volumes,
            accessible_topology: None,
        }))
    }
}
