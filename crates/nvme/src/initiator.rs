//! The async facade the node plugin uses: connect, disconnect, resolve, health, cleanup, repair.
//!
//! Every kernel write and external command runs under a deadline from [`InitiatorConfig`];
//! every sysfs scan runs on the blocking pool under its own deadline so that a wedged sysfs
//! read cannot pin an async worker. Destructive operations act only on controllers whose
//! `subsysnqn` is re-read immediately before the write, and only for NQNs under the managed
//! prefix.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cli;
use crate::deadline;
use crate::error::{NvmeError, Result};
use crate::fabrics::{EALREADY, FabricsAnswer, FabricsDevice, FabricsFile};
use crate::health::{Health, SubsystemReport, assess};
use crate::host_identity::HostIdentity;
use crate::nqn::{ManagedPrefix, Nqn};
use crate::params::{ConnectParams, TargetAddress};
use crate::resolver::Resolver;
use crate::sysfs::{Device, Multipath, PathState, Subsystem, Sysfs, path_states};
use crate::view::HostView;

/// How connections are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectMethod {
    /// Write the option string to the fabrics control file (no external binary needed).
    Fabrics,
    /// Run `nvme connect`; for hosts where the direct write is unwanted.
    NvmeCli { program: PathBuf },
}

/// Paths, deadlines and policy; the defaults are the node plugin's (docs/configuration.md).
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    pub sysfs_root: PathBuf,
    pub dev_root: PathBuf,
    pub fabrics_path: PathBuf,
    pub method: ConnectMethod,
    pub connect_timeout: Duration,
    pub disconnect_timeout: Duration,
    pub sysfs_timeout: Duration,
    pub managed_prefix: ManagedPrefix,
}

impl InitiatorConfig {
    pub fn new(managed_prefix: ManagedPrefix) -> Self {
        InitiatorConfig {
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            fabrics_path: PathBuf::from("/dev/nvme-fabrics"),
            method: ConnectMethod::Fabrics,
            connect_timeout: Duration::from_secs(30),
            disconnect_timeout: Duration::from_secs(15),
            sysfs_timeout: Duration::from_secs(10),
            managed_prefix,
        }
    }
}

/// Result of a successful connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// A new controller was created. `controller` is `None` only for nvme-cli when sysfs did not
    /// show it yet.
    Connected { controller: Option<String> },
    /// The kernel refused a duplicate and sysfs confirms a controller for this NQN and address.
    AlreadyConnected { controllers: Vec<String> },
}

/// Result of a disconnect: which controllers were asked to delete themselves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectOutcome {
    pub deleted: Vec<String>,
}

/// Result of [`Initiator::repair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairOutcome {
    /// Not orphaned (or not present at all): nothing was touched.
    NotNeeded(Option<Health>),
    Repaired {
        was: Health,
        disconnected: DisconnectOutcome,
        connected: ConnectOutcome,
    },
}

/// Result of one orphan in [`Initiator::cleanup_orphans`].
#[derive(Debug)]
pub struct CleanupResult {
    pub nqn: String,
    pub health: Health,
    pub outcome: Result<DisconnectOutcome>,
}

/// NVMe-oF initiator for one node.
pub struct Initiator {
    cfg: InitiatorConfig,
    host: HostIdentity,
    resolver: Arc<Resolver>,
    fabrics: Arc<dyn FabricsDevice>,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("cfg", &self.cfg)
            .field("host", &self.host)
            .field("fabrics", &self.fabrics.path())
            .finish()
    }
}

impl Initiator {
    pub fn new(cfg: InitiatorConfig, host: HostIdentity) -> Self {
        let fabrics = Arc::new(FabricsFile::new(cfg.fabrics_path.clone()));
        Initiator::with_fabrics(cfg, host, fabrics)
    }

    /// Same as [`Initiator::new`] with a substitute control file (tests, or an alternative
    /// kernel interface).
    pub fn with_fabrics(
        cfg: InitiatorConfig,
        host: HostIdentity,
        fabrics: Arc<dyn FabricsDevice>,
    ) -> Self {
        let resolver = Arc::new(Resolver::new(Sysfs::new(&cfg.sysfs_root, &cfg.dev_root)));
        Initiator {
            cfg,
            host,
            resolver,
            fabrics,
        }
    }

    pub fn host(&self) -> &HostIdentity {
        &self.host
    }

    pub fn config(&self) -> &InitiatorConfig {
        &self.cfg
    }

    /// Runs a sysfs read under the sysfs deadline, at most one per `what` and `subject` (the NQN
    /// it is about) at a time, so a read stuck on one volume's controller never holds up another
    /// volume and a retry never starts a second one.
    async fn scan<T, F>(&self, what: &'static str, subject: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Resolver) -> Result<T> + Send + 'static,
    {
        let resolver = Arc::clone(&self.resolver);
        let target = format!("{} for {subject}", self.cfg.sysfs_root.display());
        deadline::blocking(what, target, self.cfg.sysfs_timeout, move || f(&resolver)).await
    }

    /// Connects `p`. Idempotent: a duplicate is success when sysfs shows a controller for the
    /// same NQN and address. Does not wait for the block device; see [`Initiator::wait_for_device`].
    pub async fn connect(&self, p: &ConnectParams) -> Result<ConnectOutcome> {
        match &self.cfg.method {
            ConnectMethod::Fabrics => self.connect_fabrics(p).await,
            ConnectMethod::NvmeCli { program } => self.connect_cli(program, p).await,
        }
    }

    async fn connect_fabrics(&self, p: &ConnectParams) -> Result<ConnectOutcome> {
        let options = p.fabrics_options(&self.host);
        let device = Arc::clone(&self.fabrics);
        let path = device.path().to_path_buf();
        tracing::info!(nqn = %p.nqn, target = %p.target.ip(), port = p.target.port(), "connecting via fabrics");
        // Keyed by NQN and address: a connect stuck on one target (or on one path of a
        // multipath subsystem) must not hold up another's.
        let answer = deadline::blocking(
            "connect",
            format!(
                "{} for {} via {}",
                path.display(),
                p.nqn,
                std::net::SocketAddr::new(p.target.ip(), p.target.port())
            ),
            self.cfg.connect_timeout,
            move || device.submit(&options),
        )
        .await;
        match answer {
            Ok(text) => {
                let a = FabricsAnswer::parse(&path, &text)?;
                Ok(ConnectOutcome::Connected {
                    controller: Some(a.controller()),
                })
            }
            Err(NvmeError::KernelRefused { errno, .. }) if errno == EALREADY => self
                .confirm_existing(p)
                .await?
                .ok_or_else(|| NvmeError::KernelRefused {
                    op: "connect (kernel says already connected, sysfs shows no controller)",
                    path,
                    errno,
                    source: std::io::Error::from_raw_os_error(errno),
                }),
            Err(e) => Err(e),
        }
    }

    async fn connect_cli(
        &self,
        program: &std::path::Path,
        p: &ConnectParams,
    ) -> Result<ConnectOutcome> {
        let args = p.nvme_cli_args(&self.host);
        tracing::info!(nqn = %p.nqn, target = %p.target.ip(), port = p.target.port(), "connecting via nvme-cli");
        let run = cli::run(program, &args, self.cfg.connect_timeout).await?;
        if run.success {
            let controller = self.existing_controllers(p).await?.into_iter().next();
            return Ok(ConnectOutcome::Connected { controller });
        }
        if run.already_connected()
            && let Some(found) = self.confirm_existing(p).await?
        {
            return Ok(found);
        }
        Err(run.into_error())
    }

    /// Controllers (live first) for the NQN at the requested address that are not going away.
    async fn existing_controllers(&self, p: &ConnectParams) -> Result<Vec<String>> {
        let nqn = p.nqn.clone();
        let (ip, port) = (p.target.ip(), p.target.port());
        self.scan("find controllers", p.nqn.as_str(), move |r| {
            let Some(sub) = r.sysfs().subsystem(nqn.as_str())? else {
                return Ok(Vec::new());
            };
            let mut ctrls: Vec<_> = sub
                .controllers_at(ip, port)
                .filter(|c| c.state.is_live() || c.state.is_recovering())
                .collect();
            ctrls.sort_by_key(|c| !c.state.is_live());
            Ok(ctrls.into_iter().map(|c| c.name.clone()).collect())
        })
        .await
    }

    async fn confirm_existing(&self, p: &ConnectParams) -> Result<Option<ConnectOutcome>> {
        let controllers = self.existing_controllers(p).await?;
        if controllers.is_empty() {
            return Ok(None);
        }
        tracing::info!(nqn = %p.nqn, ?controllers, "already connected");
        Ok(Some(ConnectOutcome::AlreadyConnected { controllers }))
    }

    /// Deletes every controller of `nqn` (managed NQNs only). Not connected → empty outcome.
    /// The caller must make sure nothing is mounted from the device first.
    pub async fn disconnect(&self, nqn: &Nqn) -> Result<DisconnectOutcome> {
        self.cfg.managed_prefix.ensure(nqn)?;
        let key = nqn.clone();
        let names = self
            .scan("list controllers", nqn.as_str(), move |r| {
                Ok(r.sysfs()
                    .subsystem(key.as_str())?
                    .map(|s| {
                        s.controllers
                            .into_iter()
                            .map(|c| c.name)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default())
            })
            .await?;
        let mut out = DisconnectOutcome::default();
        for name in names {
            if self.delete_controller(nqn, &name).await? {
                out.deleted.push(name);
            }
        }
        self.resolver.invalidate(nqn);
        if !out.deleted.is_empty() {
            tracing::info!(nqn = %nqn, controllers = ?out.deleted, "disconnected");
        }
        Ok(out)
    }

    /// Writes `1` to `delete_controller` after re-reading that the controller still belongs to
    /// `nqn` (it may have been renumbered since the scan). `false` if it was gone or foreign.
    async fn delete_controller(&self, nqn: &Nqn, name: &str) -> Result<bool> {
        let dir = Sysfs::new(&self.cfg.sysfs_root, &self.cfg.dev_root).controller_dir(name);
        let path = dir.join("delete_controller");
        let nqn_path = dir.join("subsysnqn");
        let expected = nqn.as_str().to_string();
        let write_path = path.clone();
        let res = deadline::blocking(
            "delete_controller",
            path.display().to_string(),
            self.cfg.disconnect_timeout,
            move || {
                let owner = match std::fs::read_to_string(&nqn_path) {
                    Ok(s) => s.trim().to_string(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(NvmeError::from_kernel_io("read", nqn_path, e)),
                };
                if owner != expected {
                    tracing::warn!(path = %nqn_path.display(), owner, expected, "controller renumbered, not deleting");
                    return Ok(false);
                }
                let mut f = OpenOptions::new()
                    .write(true)
                    .open(&write_path)
                    .map_err(|e| NvmeError::from_kernel_io("open", write_path.clone(), e))?;
                f.write_all(b"1")
                    .map_err(|e| NvmeError::from_kernel_io("delete controller", write_path.clone(), e))?;
                Ok(true)
            },
        )
        .await;
        match res {
            // Gone between the scan and the write: the goal is reached.
            Err(NvmeError::NotConnected { .. }) => Ok(false),
            other => other,
        }
    }

    /// Uncached resolution (refreshes the cache).
    pub async fn resolve(&self, nqn: &Nqn) -> Result<Option<Device>> {
        let subject = nqn.to_string();
        let nqn = nqn.clone();
        self.scan("resolve", &subject, move |r| r.resolve(&nqn))
            .await
    }

    /// Resolution safe for destructive use: cached answers are re-verified against the NQN.
    pub async fn resolve_verified(&self, nqn: &Nqn) -> Result<Option<Device>> {
        let subject = nqn.to_string();
        let nqn = nqn.clone();
        self.scan("resolve verified", &subject, move |r| {
            r.resolve_verified(&nqn)
        })
        .await
    }

    /// Polls until the NQN has a block device behind a live controller, or `timeout` passes.
    pub async fn wait_for_device(
        &self,
        nqn: &Nqn,
        timeout: Duration,
        poll: Duration,
    ) -> Result<Device> {
        let wait = async {
            loop {
                if let Some(d) = self.resolve(nqn).await?
                    && d.has_live_controller()
                {
                    return Ok(d);
                }
                tokio::time::sleep(poll).await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(res) => res,
            Err(_) => Err(NvmeError::Timeout {
                op: "wait for block device",
                target: nqn.to_string(),
                after: timeout,
            }),
        }
    }

    /// The kernel's native multipath setting (see [`Multipath`]).
    pub async fn multipath(&self) -> Result<Multipath> {
        self.scan("read nvme_core multipath", "nvme_core", |r| {
            r.sysfs().multipath()
        })
        .await
    }

    /// The state of each configured path (`targets`, in order) of `nqn`: which controllers the
    /// kernel has at that address. A host without the NQN reports every path absent.
    pub async fn paths(&self, nqn: &Nqn, targets: &[TargetAddress]) -> Result<Vec<PathState>> {
        let key = nqn.clone();
        let targets = targets.to_vec();
        self.scan("read paths", nqn.as_str(), move |r| {
            let controllers = r
                .sysfs()
                .subsystem(key.as_str())?
                .map(|s| s.controllers)
                .unwrap_or_default();
            Ok(path_states(&controllers, &targets))
        })
        .await
    }

    /// Every subsystem on the host in one walk (see [`HostView`]), for a caller about to look
    /// at many NQNs.
    pub async fn host_view(&self) -> Result<HostView> {
        self.scan("read every subsystem", "the host view", |r| {
            let sysfs = r.sysfs();
            Ok(HostView::new(
                sysfs.subsystems()?,
                sysfs.dev_root().to_path_buf(),
            ))
        })
        .await
    }

    /// Health of one NQN; `None` when the host has no trace of it.
    pub async fn health(&self, nqn: &Nqn) -> Result<Option<Health>> {
        let key = nqn.clone();
        self.scan("assess subsystem", nqn.as_str(), move |r| {
            Ok(r.sysfs().subsystem(key.as_str())?.as_ref().map(assess))
        })
        .await
    }

    /// Subsystems under the managed prefix, with health. Everything else on the host is left out
    /// so that no caller can act on it.
    pub async fn managed_subsystems(&self) -> Result<Vec<SubsystemReport>> {
        let prefix = self.cfg.managed_prefix.clone();
        self.scan("enumerate subsystems", "all managed subsystems", move |r| {
            Ok(r.sysfs()
                .subsystems()?
                .into_iter()
                .filter(|s| prefix.matches(&s.nqn))
                .map(|s: Subsystem| SubsystemReport {
                    health: assess(&s),
                    subsystem: s,
                })
                .collect())
        })
        .await
    }

    /// Managed subsystems that are orphaned.
    pub async fn orphans(&self) -> Result<Vec<SubsystemReport>> {
        Ok(self
            .managed_subsystems()
            .await?
            .into_iter()
            .filter(|r| r.health.is_orphaned())
            .collect())
    }

    /// Startup cleanup: disconnects every managed orphan. One failure does not stop the rest.
    pub async fn cleanup_orphans(&self) -> Result<Vec<CleanupResult>> {
        let mut results = Vec::new();
        for report in self.orphans().await? {
            let nqn_text = report.subsystem.nqn.clone();
            tracing::warn!(nqn = %nqn_text, health = ?report.health, "orphaned NVMe subsystem");
            let outcome = match Nqn::new(nqn_text.clone()) {
                Ok(nqn) => self.disconnect(&nqn).await,
                Err(e) => Err(e.into()),
            };
            results.push(CleanupResult {
                nqn: nqn_text,
                health: report.health,
                outcome,
            });
        }
        Ok(results)
    }

    /// Disconnects and reconnects `p.nqn` if, and only if, it is orphaned and managed.
    pub async fn repair(&self, p: &ConnectParams) -> Result<RepairOutcome> {
        self.cfg.managed_prefix.ensure(&p.nqn)?;
        let health = self.health(&p.nqn).await?;
        let Some(was) = health.clone().filter(Health::is_orphaned) else {
            return Ok(RepairOutcome::NotNeeded(health));
        };
        tracing::warn!(nqn = %p.nqn, health = ?was, "repairing orphaned subsystem");
        let disconnected = self.disconnect(&p.nqn).await?;
        let connected = self.connect(p).await?;
        Ok(RepairOutcome::Repaired {
            was,
            disconnected,
            connected,
        })
    }
}
