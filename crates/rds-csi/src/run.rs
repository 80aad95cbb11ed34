//! `controller`, `node` and `all`: build the services from flags and serve them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controller::orphans::{OrphanConfig, OrphanReconciler};
use fencing::serialize::PublishSerializer;
use fencing::{
    AttachmentManager, Cluster, FencingConfig, LeaderGate, MemoryCluster, VmiGrouper,
    VmiGrouperConfig,
};
use k8s::{
    ClientSettings, EventRecorder, HaGate, KubeCluster, KubeVmiLookup, LeaderConfig, LeaderElector,
    component, follow_leadership, leader,
};
use observability::audit::Audit;
use observability::metrics::Metrics;
use vocab::config::{BackendSettings, build_backend, read_backends_file};
use vocab::rpc::Observers;
use vocab::server::serve_with;

/// The server with this driver's two services.
type Services = vocab::server::Services<ControllerService, NodeService>;
use controller::ControllerService;
use node::NodeService;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use vocab::{Backends, IdentityService};

use crate::args::{
    AllArgs, ControllerArgs, KubeArgs, NodeArgs, NodeOnlyArgs, OrphanArgs, RdsArgs, ServeArgs,
};
use crate::error::CliError;
use crate::http::{self, Endpoints};
use crate::shutdown;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn controller(a: ControllerArgs, audit: Audit) -> Result<(), CliError> {
    let metrics = Metrics::new();
    let kube = kube_client(&a.kube).await?;
    let c = controller_parts(
        &a.serve, &a.rds, &a.kube, &a.orphans, kube, &metrics, &audit,
    )
    .await?;
    let services = Services {
        identity: c.identity,
        controller: Some(c.controller),
        node: None,
        observers: rpc_observers(&metrics, audit),
    };
    let background = Background::start(&c.fencing, &c.orphans, c.ha.clone());
    let result =
        serve_until_signal(&a.serve, services, metrics, Some(c.rds), Some(c.orphans)).await;
    background.stop().await;
    result
}

pub async fn node(a: NodeArgs, audit: Audit) -> Result<(), CliError> {
    let metrics = Metrics::new();
    let kube = kube_client(&a.kube).await?;
    let identity = IdentityService::new(
        a.serve.driver_name.clone(),
        VERSION.into(),
        None,
        Default::default(),
    );
    warn_if_kubelet_too_old(&a.node, &a.kube, kube.as_ref());
    let services = Services {
        identity,
        controller: None,
        node: Some(node_service(&a.node, kube, &metrics, &audit)?),
        observers: rpc_observers(&metrics, audit),
    };
    serve_until_signal(&a.serve, services, metrics, None, None).await
}

pub async fn all(a: AllArgs, audit: Audit) -> Result<(), CliError> {
    let metrics = Metrics::new();
    let kube = kube_client(&a.kube).await?;
    let c = controller_parts(
        &a.serve,
        &a.rds,
        &a.kube,
        &a.orphans,
        kube.clone(),
        &metrics,
        &audit,
    )
    .await?;
    warn_if_kubelet_too_old(&a.node, &a.kube, kube.as_ref());
    let services = Services {
        identity: c.identity,
        controller: Some(c.controller),
        node: Some(node_service(&a.node, kube, &metrics, &audit)?),
        observers: rpc_observers(&metrics, audit),
    };
    let background = Background::start(&c.fencing, &c.orphans, c.ha.clone());
    let result =
        serve_until_signal(&a.serve, services, metrics, Some(c.rds), Some(c.orphans)).await;
    background.stop().await;
    result
}

/// What controller mode serves, built in the order that keeps fencing safe.
struct ControllerParts {
    identity: IdentityService,
    controller: ControllerService,
    fencing: Arc<AttachmentManager>,
    orphans: Arc<OrphanReconciler>,
    rds: Arc<vocab::health::RdsHealth>,
    /// The election, when this replica must win a Lease before serving publish.
    ha: Option<Arc<HaGate>>,
}

async fn controller_parts(
    s: &ServeArgs,
    r: &RdsArgs,
    k: &KubeArgs,
    o: &OrphanArgs,
    kube: Option<::kube::Client>,
    metrics: &Arc<Metrics>,
    audit: &Audit,
) -> Result<ControllerParts, CliError> {
    let ha = ha_gate(s, k, kube.clone())?;
    let backends = backends_from(r, metrics)?;
    metrics.watch_pools(backends.clone());
    metrics.watch_leadership(ha.clone().map(|g| g as Arc<dyn LeaderGate>));
    let identity = IdentityService::new(
        s.driver_name.clone(),
        VERSION.into(),
        Some(backends.clone()),
        r.probe_timeout,
    );
    let rds = identity.health().ok_or(CliError::NoHealthChecker)?;
    metrics.watch_health(rds.clone());
    if let Some(client) = kube.clone() {
        report_reachability_as_events(&rds, client, k.kube_timeout);
    }
    check_reachable(&backends, &rds).await;
    let orphans = Arc::new(
        orphan_reconciler(s, k, o, kube.clone(), backends.clone(), ha.clone())
            .with_observer(Arc::new(audit.clone())),
    );
    metrics.watch_orphans(orphans.clone());
    let fencing = start_fencing(s, k, kube, ha.clone()).await?;
    metrics.watch_fencing(fencing.clone());
    Ok(ControllerParts {
        identity,
        controller: ControllerService::new(backends, fencing.clone()),
        fencing,
        orphans,
        rds,
        ha,
    })
}

/// The election, when on: only with a Kubernetes API (there is no Lease without one).
fn ha_gate(
    s: &ServeArgs,
    k: &KubeArgs,
    kube: Option<::kube::Client>,
) -> Result<Option<Arc<HaGate>>, CliError> {
    let Some(client) = kube.filter(|_| k.leader_election) else {
        if !k.leader_election {
            warn!(
                "leader election off (--leader-election=false): run ONE controller replica only, or two could attach a volume to two nodes"
            );
        }
        return Ok(None);
    };
    let config = LeaderConfig {
        namespace: k.leader_election_namespace.clone(),
        lease_name: leader::lease_name(&s.driver_name),
        identity: leader::default_identity(),
        lease_duration: k.leader_election_lease_duration,
        renew_deadline: k.leader_election_renew_deadline,
        retry_period: k.leader_election_retry_period,
        api_timeout: k.kube_timeout,
    };
    let elector = LeaderElector::new(client, config)?;
    Ok(Some(Arc::new(HaGate::new(elector))))
}

/// What runs beside the RPCs: the reconcilers, and with HA the election and the task that
/// rebuilds the attachment state on gaining leadership and suspends it on losing it.
struct Background {
    orphans: Option<JoinHandle<()>>,
    reconciler: Arc<Mutex<Option<JoinHandle<()>>>>,
    election: Option<(watch::Sender<bool>, JoinHandle<()>, JoinHandle<()>)>,
}

impl Background {
    fn start(
        fencing: &Arc<AttachmentManager>,
        orphans: &Arc<OrphanReconciler>,
        ha: Option<Arc<HaGate>>,
    ) -> Background {
        // The orphan reconciler checks leadership itself before each pass.
        let orphans = orphans.spawn();
        let reconciler = Arc::new(Mutex::new(None));
        let Some(gate) = ha else {
            // Without HA the state was rebuilt before the socket opened (controller_parts).
            *lock(&reconciler) = Some(fencing.spawn_reconciler());
            return Background {
                orphans,
                reconciler,
                election: None,
            };
        };
        let (stop, stop_rx) = watch::channel(false);
        let leading = gate.elector().subscribe();
        let elector = gate.elector().spawn(stop_rx);
        let follower = tokio::spawn(follow_leadership(
            gate,
            fencing.clone(),
            leading,
            reconciler.clone(),
        ));
        Background {
            orphans,
            reconciler,
            election: Some((stop, elector, follower)),
        }
    }

    /// Stops everything; a leader releases its Lease so a follower takes over at once.
    async fn stop(self) {
        if let Some((stop, elector, follower)) = self.election {
            let _ = stop.send(true);
            // The elector bounds its own API calls; this only guards against a bug there.
            if tokio::time::timeout(Duration::from_secs(30), elector)
                .await
                .is_err()
            {
                warn!("leader election did not stop within 30s; the Lease expires on its own");
            }
            follower.abort();
        }
        if let Some(r) = lock(&self.reconciler).take() {
            r.abort();
        }
        if let Some(o) = self.orphans {
            o.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The orphan reconciler (built always, so its report and metrics say whether it runs). It
/// runs only with a Kubernetes API: without PVs to compare with, every volume would look
/// orphaned.
fn orphan_reconciler(
    s: &ServeArgs,
    k: &KubeArgs,
    o: &OrphanArgs,
    kube: Option<::kube::Client>,
    backends: Arc<Backends>,
    ha: Option<Arc<HaGate>>,
) -> OrphanReconciler {
    let config = OrphanConfig {
        grace_period: o.orphan_grace_period,
        interval: o.orphan_check_interval,
        delete: o.orphan_delete,
        api_timeout: k.kube_timeout,
    };
    let (cluster, enabled): (Arc<dyn Cluster>, bool) = match kube {
        Some(client) => (
            Arc::new(KubeCluster::new(client, s.driver_name.clone()).with_timeout(k.kube_timeout)),
            o.enable_orphan_reconciler,
        ),
        None => {
            if o.enable_orphan_reconciler {
                warn!(
                    "orphan reconciler off: without Kubernetes (--no-kubernetes) there are no PersistentVolumes to compare volumes with"
                );
            }
            (Arc::new(MemoryCluster::new()), false)
        }
    };
    // Deleting on two replicas at once would race; only the serving leader reconciles.
    let is_leader: Arc<dyn Fn() -> bool + Send + Sync> = match ha {
        Some(gate) => Arc::new(move || gate.serving()),
        None => Arc::new(|| true),
    };
    OrphanReconciler::new(backends, cluster, config, enabled).with_leader_check(is_leader)
}

/// The Kubernetes client, unless the operator explicitly runs without one. A controller that
/// cannot reach the API server must not start: its fences would not survive a restart.
async fn kube_client(k: &KubeArgs) -> Result<Option<::kube::Client>, CliError> {
    if k.no_kubernetes {
        warn!(
            "running without Kubernetes (--no-kubernetes): no events are posted, and a controller keeps attachment fences in this process only (forgotten on restart)"
        );
        return Ok(None);
    }
    let settings = ClientSettings {
        kubeconfig: k.kubeconfig.clone(),
        connect_timeout: k.kube_timeout.min(Duration::from_secs(5)),
        read_timeout: k.kube_timeout,
        write_timeout: k.kube_timeout,
    };
    let client = k8s::client(&settings).await.map_err(CliError::KubeClient)?;
    Ok(Some(client))
}

/// The Kubernetes API fencing works against: the real one, or (with `--no-kubernetes` only)
/// this process's memory.
fn fencing_cluster(s: &ServeArgs, k: &KubeArgs, kube: Option<::kube::Client>) -> Arc<dyn Cluster> {
    match kube {
        Some(client) => {
            let events = Arc::new(EventRecorder::new(client.clone(), component::CONTROLLER));
            let cluster = KubeCluster::new(client, s.driver_name.clone())
                .with_events(events)
                .with_timeout(k.kube_timeout);
            // Runs for the life of the process, as the cluster it serves does.
            drop(cluster.start_pv_index());
            drop(cluster.start_node_cache());
            Arc::new(cluster)
        }
        None => {
            error!(driver = %s.driver_name, "attachment fences are kept in memory only (--no-kubernetes) and are forgotten on restart");
            Arc::new(MemoryCluster::new())
        }
    }
}

/// Builds the attachment manager and rebuilds its state BEFORE the socket opens: a controller
/// that answered ControllerPublish on an empty state could attach a volume to a second node.
/// If the state cannot be read, the controller does not start (the error names the cause and
/// Kubernetes restarts it with backoff).
///
/// With leader election the rebuild waits for leadership instead (`Background`): a follower's
/// state would be stale by the time it leads.
async fn start_fencing(
    s: &ServeArgs,
    k: &KubeArgs,
    kube: Option<::kube::Client>,
    ha: Option<Arc<HaGate>>,
) -> Result<Arc<AttachmentManager>, CliError> {
    let pods = kube.clone().filter(|_| k.enable_vmi_serialization);
    let nodes = kube.clone();
    let cluster = fencing_cluster(s, k, kube);
    let config = FencingConfig {
        api_timeout: k.kube_timeout,
        reconcile_interval: k.attachment_reconcile_interval,
        ..FencingConfig::default()
    };
    let mut manager = AttachmentManager::new(cluster.clone(), config);
    if let Some(grouper) = vmi_grouper(k, pods, cluster) {
        manager = manager.with_serializer(grouper);
    }
    // The Node and VolumeAttachment watches act only while the manager is ready (rebuilt, and
    // leading with HA).
    let watch = |m: &Arc<AttachmentManager>| {
        if let Some(client) = nodes {
            drop(k8s::watch_nodes(client.clone(), m.clone(), k.kube_timeout));
            drop(k8s::watch_volume_attachments(
                client,
                s.driver_name.clone(),
                m.clone(),
                k.kube_timeout,
                k8s::VA_FINISH_GRACE,
            ));
        }
    };
    if let Some(gate) = ha {
        let manager = Arc::new(manager.with_leader_gate(gate));
        watch(&manager);
        info!(
            "leader election on: attachment state is rebuilt when this replica becomes the leader"
        );
        return Ok(manager);
    }
    let manager = Arc::new(manager);
    watch(&manager);
    let report = manager.rebuild().await.map_err(CliError::ControllerStart)?;
    info!(
        volumes = report.volumes,
        attachments = report.attachments,
        "attachment state restored"
    );
    Ok(manager)
}

/// The KubeVirt VMI grouper when `--enable-vmi-serialization` is on and a Kubernetes client
/// exists (without one there are no pods to read, so the flag is reported and ignored).
fn vmi_grouper(
    k: &KubeArgs,
    client: Option<::kube::Client>,
    cluster: Arc<dyn Cluster>,
) -> Option<Arc<dyn PublishSerializer>> {
    if !k.enable_vmi_serialization {
        return None;
    }
    let Some(client) = client else {
        warn!(
            "--enable-vmi-serialization needs the Kubernetes API to find a volume's VM; ignored with --no-kubernetes"
        );
        return None;
    };
    let lookup = Arc::new(KubeVmiLookup::new(client).with_timeout(k.kube_timeout));
    let config = VmiGrouperConfig {
        cache_ttl: k.vmi_cache_ttl,
        lookup_timeout: k.kube_timeout,
        ..VmiGrouperConfig::default()
    };
    info!(cache_ttl = ?k.vmi_cache_ttl, "KubeVirt VMI serialization on: publishes of one VM's volumes run one at a time");
    Some(Arc::new(
        VmiGrouper::new(lookup, config).with_claim_lookup(cluster),
    ))
}

/// A kubelet older than 1.26 cannot talk to the plugin at all and says only "RST_STREAM" in its
/// own logs, so the node plugin says why, once, in its log (in the background: it never delays
/// serving).
fn warn_if_kubelet_too_old(n: &NodeOnlyArgs, k: &KubeArgs, kube: Option<&::kube::Client>) {
    if let Some(client) = kube {
        tokio::spawn(k8s::check_kubelet_version(
            client.clone(),
            n.node_id.clone(),
            k.kube_timeout,
        ));
    }
}

fn node_service(
    n: &NodeOnlyArgs,
    kube: Option<::kube::Client>,
    metrics: &Metrics,
    audit: &Audit,
) -> Result<NodeService, CliError> {
    if n.node_id.trim().is_empty() {
        return Err(CliError::EmptyNodeId);
    }
    let mut cfg = node::NodeConfig::new(n.node_id.clone());
    cfg.max_volumes = n.max_volumes_per_node;
    cfg.managed_prefix = n.managed_nqn_prefix.clone();
    cfg.state_dir = n.state_dir.clone();
    cfg.kubelet_dir = n.kubelet_dir.clone();
    cfg.connect_method = match n.nvme_connect_method.as_str() {
        "nvme-cli" => node::ConnectMethod::NvmeCli {
            program: n.nvme_cli.clone(),
        },
        _ => node::ConnectMethod::Fabrics,
    };
    cfg.sysfs_root = n.sysfs_root.clone();
    cfg.dev_root = n.dev_root.clone();
    cfg.proc_root = n.proc_root.clone();
    cfg.mountinfo = n.mountinfo.clone();
    cfg.fabrics_path = n.nvme_fabrics.clone();
    cfg.deadlines.connect = n.nvme_connect_timeout;
    cfg.deadlines.device_wait = n.nvme_device_timeout;
    cfg.deadlines.syscall = n.mount_timeout;
    cfg.deadlines.unmount_wait = n.unmount_wait;
    cfg.monitor_interval = n.node_monitor_interval;
    // Automatic stale-mount recovery is not an RPC, so `traced` cannot audit it.
    let audit: Arc<dyn node::NodeObserver> = Arc::new(observability::audit::RecoveryAudit::new(
        n.node_id.clone(),
        Arc::new(node::NoopObserver),
        audit.clone(),
    ));
    let observer: Arc<dyn node::NodeObserver> = match kube {
        Some(client) => {
            let recorder = EventRecorder::new(client, component::NODE).with_host(n.node_id.clone());
            Arc::new(k8s::NodeEvents::new(Arc::new(recorder), audit))
        }
        None => audit,
    };
    // Outermost, so every observation is counted whatever the inner observers forward.
    let observer = metrics.node_observer(observer);
    metrics.watch_nvme(&cfg).map_err(CliError::NodeMetrics)?;
    NodeService::new_observed(cfg, observer).map_err(CliError::NodePlugin)
}

pub fn socket_path(endpoint: &str) -> Result<PathBuf, CliError> {
    Ok(csi::uds::parse_endpoint(endpoint)?)
}

/// What every served RPC is told to: the metrics, then the audit trail.
fn rpc_observers(metrics: &Metrics, audit: Audit) -> Observers {
    Observers::new(vec![metrics.rpc_observer(), Arc::new(audit)])
}

/// Serves CSI until SIGTERM/SIGINT, with the HTTP endpoint alongside: it stays up while RPCs
/// drain (liveness must not fail during a graceful stop) and stops after them.
async fn serve_until_signal(
    s: &ServeArgs,
    services: Services,
    metrics: Arc<Metrics>,
    rds: Option<Arc<vocab::health::RdsHealth>>,
    orphans: Option<Arc<OrphanReconciler>>,
) -> Result<(), CliError> {
    let socket = socket_path(&s.endpoint)?;
    info!(version = VERSION, driver = %s.driver_name, "rds-csi starting");
    let endpoints = Endpoints {
        metrics,
        ready: http::socket_ready(socket.clone()),
        orphans,
        rds,
        expose_details: s.http_expose_details,
    };
    let (stop_http, stop_rx) = tokio::sync::watch::channel(false);
    // A taken port must not take storage down with it; the liveness probe reports it instead.
    let http_server = http::start(&s.metrics_address, endpoints, stop_rx)
        .await
        .unwrap_or_else(|e| {
            error!(error = %e, "no /metrics, /healthz or /readyz; serving CSI without them");
            None
        });
    let access = csi::uds::SocketAccess {
        group: s.csi_socket_group,
    };
    let result = serve_with(
        &socket,
        access,
        services,
        shutdown::signal(s.shutdown_timeout),
    )
    .await;
    let _ = stop_http.send(true);
    if let Some(h) = http_server {
        h.join().await;
    }
    result?;
    info!("rds-csi stopped");
    Ok(())
}

/// The default backend from flags, plus any from the backends file.
pub fn settings_from(r: &RdsArgs) -> Result<Vec<BackendSettings>, CliError> {
    let mut all = match &r.backends_file {
        Some(p) => read_backends_file(p)?,
        None => Vec::new(),
    };
    let file_has_default = all.iter().any(|b| b.name == r.backend_name);
    match (&r.rds_address, file_has_default) {
        (Some(_), true) => {
            return Err(CliError::BackendTwice {
                name: r.backend_name.clone(),
            });
        }
        (None, false) => {
            return Err(CliError::NoRds {
                name: r.backend_name.clone(),
            });
        }
        (None, true) => {}
        (Some(address), false) => all.push(BackendSettings {
            name: r.backend_name.clone(),
            address: address.clone(),
            port: r.rds_port,
            user: r.rds_user.clone(),
            key_file: r.rds_key_file.clone(),
            host_key: r.rds_host_key.clone(),
            insecure_skip_host_key_verify: r.rds_insecure_skip_verify,
            nvme_address: r.nvme_address,
            nvme_addresses: Some(r.nvme_addresses.clone()).filter(|a| !a.is_empty()),
            nvme_port: r.nvme_port,
            volume_path: r.volume_base_path.clone(),
            extra_volume_paths: r.extra_volume_paths.clone(),
            max_sessions: r.rds_max_sessions,
            connect_timeout: r.rds_connect_timeout,
            read_timeout: r.rds_read_timeout,
            write_timeout: r.rds_write_timeout,
        }),
    }
    Ok(all)
}

pub fn backends_from(r: &RdsArgs, metrics: &Metrics) -> Result<Arc<Backends>, CliError> {
    let settings = settings_from(r)?;
    let mut built = Vec::new();
    for s in &settings {
        let observer = metrics.command_observer(&s.name);
        built.push(build_backend(s, Some(observer))?);
    }
    let backends = Backends::new(&r.backend_name, built).map(Arc::new)?;
    metrics.watch_backends(backends.clone());
    Ok(backends)
}

/// Posts a Warning event on the controller's own Pod when a backend becomes unreachable and a
/// Normal one when it is back, so `kubectl describe pod` shows an outage that no longer makes
/// the pod unready. Needs the Pod's name and namespace from the downward API (`POD_NAME`,
/// `POD_NAMESPACE`, as the manifests set them); without them the log and the metrics say it.
fn report_reachability_as_events(
    rds: &vocab::health::RdsHealth,
    client: ::kube::Client,
    timeout: Duration,
) {
    let (Ok(pod), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        info!("POD_NAME/POD_NAMESPACE not set: RDS reachability changes are not posted as events");
        return;
    };
    let recorder =
        Arc::new(EventRecorder::new(client, component::CONTROLLER).with_timeout(timeout));
    rds.set_observer(Arc::new(move |backend: &str, error: Option<&str>| {
        let event = match error {
            Some(e) => fencing::cluster::VolumeEvent {
                pv_name: None,
                pvc: None,
                kind: fencing::cluster::EventKind::Warning,
                reason: "RDSUnreachable".into(),
                message: format!(
                    "backend {backend} does not answer: {}; operations that need it fail until it does, detaches go on",
                    vocab::rpc::clip(e, 512)
                ),
                pv_uid: None,
                pvc_uid: None,
            },
            None => fencing::cluster::VolumeEvent {
                pv_name: None,
                pvc: None,
                kind: fencing::cluster::EventKind::Normal,
                reason: "RDSReachable".into(),
                message: format!("backend {backend} answers again"),
                pv_uid: None,
                pvc_uid: None,
            },
        };
        let (recorder, pod, namespace) = (recorder.clone(), pod.clone(), namespace.clone());
        tokio::spawn(async move { recorder.post_on_pod(&namespace, &pod, &event).await });
    }));
}

/// Checks every backend once at start (the health checker's first result, so metrics and
/// `/readyz` have one at once). A failure is logged, not fatal: the controller serves what needs
/// no RDS and the rest fails with UNAVAILABLE until it answers, instead of a crash loop that
/// hides the cause.
async fn check_reachable(backends: &Backends, health: &Arc<vocab::health::RdsHealth>) {
    let report = health.check().await;
    for b in backends.all() {
        if b.insecure {
            warn!(backend = %b.name, target = %b.target, "SSH host key verification is DISABLED (--rds-insecure-skip-verify)");
        }
        match report.backends.iter().find(|h| h.name == b.name) {
            Some(h) if h.error.is_none() => {
                info!(backend = %b.name, target = %b.target, "RDS reachable")
            }
            Some(h) => {
                error!(backend = %b.name, target = %b.target, error = h.error.as_deref().unwrap_or_default(), "RDS not reachable at start; serving anyway (Probe stays ready, operations that need the RDS answer UNAVAILABLE until it does)")
            }
            None => {}
        }
    }
}
