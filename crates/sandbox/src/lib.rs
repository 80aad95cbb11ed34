//! A complete controller against simulated RDS appliances on one machine: rds-sim SSH servers,
//! the production SSH client with host keys pinned, and the CSI services on a real unix socket
//! with real gRPC clients. The demo, the benchmarks and the integration tests all start from
//! here, so what they exercise is exactly what production runs, minus the appliance.
//!
//! A crate of its own so that the driver library links neither the simulator nor `tempfile`:
//! only the `rds-csi` binary (for `demo`) and tests depend on it.

use std::sync::Arc;
use std::time::Duration;

use csi::v1::controller_client::ControllerClient;
use csi::v1::identity_client::IdentityClient;
use rds::CommandObserver;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use controller::ControllerService;
use fencing::{AttachmentManager, FencingConfig, MemoryCluster};
use observability::audit::Audit;
use vocab::config::{BackendSettings, build_backend, default_volume_path};
use vocab::error::{DriverError, Result};
use vocab::rpc::Observers;
use vocab::server::{Services, serve};
use vocab::{Backends, IdentityService};

#[derive(Clone)]
pub struct SandboxOptions {
    /// One simulated appliance per name; the first is the default backend.
    pub backends: Vec<String>,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub capacity: u64,
    pub max_sessions: usize,
    pub observer: Option<Arc<dyn CommandObserver>>,
    /// The Kubernetes the fencing manager sees: in memory, so tests can add PVs, nodes and
    /// VolumeAttachments (and inject API faults) before or while the controller runs.
    pub cluster: Arc<MemoryCluster>,
    pub fencing: FencingConfig,
    /// Where the simulators keep disk contents; `Dir(d)` puts backend `name` under `d/name`, so
    /// tests can read what a copy really wrote.
    pub storage: rds_sim::Storage,
    /// Told about every RPC; by default the audit trail, into the log (as a program that opened
    /// no audit sink has it).
    pub rpc_observers: Observers,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            backends: vec!["default".into()],
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            capacity: 1 << 40,
            max_sessions: 4,
            observer: None,
            cluster: Arc::new(MemoryCluster::new()),
            fencing: FencingConfig::default(),
            storage: rds_sim::Storage::Memory,
            rpc_observers: Observers::new(vec![Arc::new(Audit::default())]),
        }
    }
}

/// A simulated appliance and the settings that reach it.
pub struct SimBackend {
    pub sim: rds_sim::Sim,
    pub settings: BackendSettings,
}

fn setup(what: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Config(format!("sandbox: {what}: {e}"))
}

/// Starts a simulator that accepts only a freshly made client key, and settings that pin its
/// host key by fingerprint.
pub async fn start_sim(
    dir: &std::path::Path,
    name: &str,
    o: &SandboxOptions,
) -> Result<SimBackend> {
    let (private_key, public_line) =
        rds_sim::generate_client_key().map_err(|e| setup("client key", e))?;
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&key_file, private_key).map_err(|e| setup("writing the client key", e))?;
    let mut cfg = rds_sim::SimConfig::for_tests();
    cfg.authorized_keys = vec![public_line];
    cfg.capacity_bytes = o.capacity;
    if let rds_sim::Storage::Dir(d) = &o.storage {
        cfg.storage = rds_sim::Storage::Dir(d.join(name));
    }
    let sim = rds_sim::Sim::start(cfg)
        .await
        .map_err(|e| setup("starting rds-sim", e))?;
    let settings = BackendSettings {
        name: name.to_string(),
        address: sim.addr().ip().to_string(),
        port: sim.addr().port(),
        user: "admin".into(),
        key_file,
        host_key: Some(sim.host_key_fingerprint()),
        insecure_skip_host_key_verify: false,
        nvme_address: None,
        nvme_addresses: None,
        nvme_port: 4420,
        volume_path: default_volume_path(),
        extra_volume_paths: vec!["/storage-pool/other".into()],
        max_sessions: o.max_sessions,
        connect_timeout: Duration::from_secs(5),
        read_timeout: o.read_timeout,
        write_timeout: o.write_timeout,
    };
    Ok(SimBackend { sim, settings })
}

pub struct Sandbox {
    pub sims: Vec<SimBackend>,
    pub identity: IdentityClient<Channel>,
    pub controller: ControllerClient<Channel>,
    pub socket: std::path::PathBuf,
    pub cluster: Arc<MemoryCluster>,
    pub fencing: Arc<AttachmentManager>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub async fn start(o: SandboxOptions) -> Result<Sandbox> {
        let dir = tempfile::tempdir().map_err(|e| setup("temporary directory", e))?;
        let mut sims = Vec::new();
        for name in &o.backends {
            sims.push(start_sim(dir.path(), name, &o).await?);
        }
        let settings: Vec<BackendSettings> = sims.iter().map(|s| s.settings.clone()).collect();
        Self::serve_with(dir, sims, &settings, &o).await
    }

    /// Serves a controller for `settings` (which may deliberately differ from the sims').
    pub async fn serve(
        dir: tempfile::TempDir,
        sims: Vec<SimBackend>,
        settings: &[BackendSettings],
        observer: Option<Arc<dyn CommandObserver>>,
    ) -> Result<Sandbox> {
        let o = SandboxOptions {
            observer,
            ..SandboxOptions::default()
        };
        Self::serve_with(dir, sims, settings, &o).await
    }

    /// [`Sandbox::serve`] with the observer, cluster and fencing settings from `o`.
    pub async fn serve_with(
        dir: tempfile::TempDir,
        sims: Vec<SimBackend>,
        settings: &[BackendSettings],
        o: &SandboxOptions,
    ) -> Result<Sandbox> {
        let observer = o.observer.clone();
        let mut built = Vec::new();
        for s in settings {
            built.push(build_backend(s, observer.clone())?);
        }
        let default = settings.first().map(|s| s.name.clone()).unwrap_or_default();
        let backends = Arc::new(Backends::new(&default, built)?);
        let socket = dir.path().join("csi.sock");
        // As in production: the attachment state is rebuilt before the socket opens.
        let cluster = o.cluster.clone();
        let fencing = Arc::new(AttachmentManager::new(cluster.clone(), o.fencing.clone()));
        fencing.rebuild().await?;
        let services = Services {
            identity: IdentityService::new(
                "rds.csi.srvlab.io".into(),
                env!("CARGO_PKG_VERSION").into(),
                Some(backends.clone()),
                Duration::from_secs(3),
            ),
            controller: Some(ControllerService::new(backends, fencing.clone())),
            node: None::<node::NodeService>,
            observers: o.rpc_observers.clone(),
        };
        let (stop, stop_rx) = oneshot::channel::<()>();
        let sock = socket.clone();
        let server = tokio::spawn(async move {
            serve(&sock, services, async {
                let _ = stop_rx.await;
            })
            .await
        });
        let channel = connect_when_ready(&socket).await?;
        Ok(Sandbox {
            sims,
            identity: IdentityClient::new(channel.clone()),
            controller: ControllerClient::new(channel),
            socket,
            cluster,
            fencing,
            stop: Some(stop),
            server: Some(server),
            dir,
        })
    }

    pub fn sim(&self) -> &rds_sim::Sim {
        &self.sims[0].sim
    }

    /// Stops the controller (draining RPCs) and the simulators.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
        for s in std::mem::take(&mut self.sims) {
            s.sim.shutdown().await;
        }
    }
}

async fn connect_when_ready(socket: &std::path::Path) -> Result<Channel> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match csi::uds::connect(socket, Duration::from_secs(60)).await {
            Ok(ch) => return Ok(ch),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(setup("the controller socket never came up", e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
