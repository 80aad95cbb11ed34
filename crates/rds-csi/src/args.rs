//! Command-line and environment configuration. Every flag documents itself for `--help`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::csi_cmd::CsiCommand;
use crate::error::CliError;

pub const DEFAULT_ENDPOINT: &str = "unix:///var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock";
pub const DEFAULT_DRIVER_NAME: &str = "rds.csi.srvlab.io";

/// rds-csi: Kubernetes CSI driver for MikroTik ROSE Data Server (RDS) NVMe/TCP storage.
#[derive(Debug, Parser)]
#[command(name = "rds-csi", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at startup and never moved around: boxing the big variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve CSI Identity + Controller: create, delete, expand and list volumes on the RDS over SSH.
    Controller(ControllerArgs),
    /// Serve CSI Identity + Node on this host.
    Node(NodeArgs),
    /// Serve Identity, Controller and Node on one socket (single-host setups and tests).
    All(AllArgs),
    /// Run the built-in RouterOS simulator as a standalone SSH server.
    Sim(SimArgs),
    /// Start the simulator and a controller, then walk a volume through its life over real gRPC,
    /// printing each step, the RouterOS commands it caused and their timings.
    Demo(DemoArgs),
    /// Call any CSI RPC on a driver socket and print the reply as JSON.
    Csi(CsiArgs),
    /// Print the orphan reconciler's latest findings (JSON) from a controller's HTTP endpoint.
    Orphans(OrphansArgs),
    /// Serve the KubeVirt hotplug handoff guard: a validating webhook that delays deleting an
    /// old hotplug attachment pod until its replacement holds every volume (docs/kubevirt.md).
    HotplugGuard(crate::guard_cmd::GuardArgs),
    /// Prove on a real RDS that it speaks the RouterOS dialect the driver expects: every command
    /// shape the controller uses, on scratch disks it creates and removes (docs/operations.md).
    Selftest(crate::selftest::SelftestArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter in `tracing` syntax (e.g. `info`, `debug`, `rds=debug,info`).
    #[arg(long, env = "RDS_CSI_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Log line format.
    #[arg(
        long,
        env = "RDS_CSI_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// CSI endpoint to listen on: `unix:///path/csi.sock` or a plain path. A stale socket file
    /// left by a previous run is removed first.
    #[arg(long, env = "CSI_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// CSI driver name reported by GetPluginInfo (must match the CSIDriver object).
    #[arg(long, env = "CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME)]
    pub driver_name: String,
    /// Numeric group id that may also connect to the CSI socket (mode 0660 instead of 0600),
    /// for sidecars running under another user.
    #[arg(long, env = "CSI_SOCKET_GROUP")]
    pub csi_socket_group: Option<u32>,
    /// How long in-flight RPCs may take to finish after SIGTERM/SIGINT before the process exits.
    #[arg(long, env = "RDS_CSI_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz (`host:port` or
    /// `:port`); empty disables it. The node plugin runs with hostNetwork, so this is a host port.
    #[arg(long, env = "RDS_CSI_METRICS_ADDRESS", default_value = "0.0.0.0:9809")]
    pub metrics_address: String,
    /// Serve `/orphans` and the reasons in `/readyz` (RDS addresses, host-key fingerprints,
    /// slots, file paths) to every peer of the HTTP endpoint; by default only loopback peers
    /// (`kubectl port-forward`, `kubectl exec`) get them.
    #[arg(long, env = "RDS_CSI_HTTP_EXPOSE_DETAILS")]
    pub http_expose_details: bool,
    /// Append the audit trail (JSON lines, one per mutating operation or security event) to this
    /// file instead of writing it to stderr.
    #[arg(long, env = "RDS_CSI_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RdsArgs {
    /// Name of the default RDS backend (the one StorageClasses without `backend` use).
    #[arg(long, env = "RDS_BACKEND_NAME", default_value = "default")]
    pub backend_name: String,
    /// RDS management (SSH) address of the default backend. Not needed when the backends file
    /// defines the default backend.
    #[arg(long, env = "RDS_ADDRESS")]
    pub rds_address: Option<String>,
    /// RDS SSH port.
    #[arg(long, env = "RDS_PORT", default_value_t = 22)]
    pub rds_port: u16,
    /// RDS SSH user.
    #[arg(long, env = "RDS_USER", default_value = "admin")]
    pub rds_user: String,
    /// SSH private key file (OpenSSH or PEM; ed25519 or RSA; no passphrase).
    #[arg(
        long,
        env = "RDS_KEY_FILE",
        default_value = "/etc/rds-csi/ssh/id_ed25519"
    )]
    pub rds_key_file: PathBuf,
    /// Pinned RDS host key: a file holding the key line (`ssh-keyscan` output or known_hosts
    /// line), or a `SHA256:…` fingerprint. Required unless --rds-insecure-skip-verify.
    #[arg(long, env = "RDS_HOST_KEY")]
    pub rds_host_key: Option<String>,
    /// Accept any RDS host key. Dangerous: anyone on the network path can impersonate the RDS.
    #[arg(long, env = "RDS_INSECURE_SKIP_VERIFY")]
    pub rds_insecure_skip_verify: bool,
    /// NVMe/TCP (storage network) address nodes connect to; defaults to --rds-address when that
    /// is an IP address.
    #[arg(long, env = "RDS_NVME_ADDRESS")]
    pub nvme_address: Option<IpAddr>,
    /// Every NVMe/TCP (storage network) address of the default RDS, comma-separated in order
    /// of preference: one NVMe multipath path each (docs/multipath.md). With --nvme-address,
    /// that must be the first of these.
    #[arg(long, env = "RDS_NVME_ADDRESSES", value_delimiter = ',')]
    pub nvme_addresses: Vec<IpAddr>,
    /// NVMe/TCP port for new volumes.
    #[arg(long, env = "RDS_NVME_PORT", default_value_t = 4420)]
    pub nvme_port: u16,
    /// Directory on the RDS for backing files of new volumes.
    #[arg(
        long,
        env = "RDS_VOLUME_BASE_PATH",
        default_value = "/storage-pool/metal-csi"
    )]
    pub volume_base_path: String,
    /// Further directories a StorageClass may choose with `volumePath` (repeatable).
    #[arg(
        long = "extra-volume-path",
        env = "RDS_EXTRA_VOLUME_PATHS",
        value_delimiter = ','
    )]
    pub extra_volume_paths: Vec<String>,
    /// Most SSH sessions open at once on the RDS connection (RouterOS stalls with many).
    #[arg(long, env = "RDS_MAX_SESSIONS", default_value_t = 4)]
    pub rds_max_sessions: usize,
    /// Deadline for TCP connect + SSH handshake + authentication.
    #[arg(long, env = "RDS_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub rds_connect_timeout: Duration,
    /// Deadline for one read-only RouterOS command (`print`).
    #[arg(long, env = "RDS_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub rds_read_timeout: Duration,
    /// Deadline for one mutating RouterOS command (`add`, `set`, `remove`).
    #[arg(long, env = "RDS_WRITE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub rds_write_timeout: Duration,
    /// TOML file with more RDS backends (`[[backend]]` tables; see docs/configuration.md).
    #[arg(long, env = "RDS_BACKENDS_FILE")]
    pub backends_file: Option<PathBuf>,
    /// Deadline for Probe's reachability check of each RDS.
    #[arg(long, env = "RDS_PROBE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// kubeconfig for the Kubernetes API; without it the in-cluster service account is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Run without a Kubernetes API: attachment fences are kept in this process only and are
    /// forgotten on restart, and no events are posted. For tests, the demo and single-host
    /// trials only; a controller in a cluster must not use it.
    #[arg(long, env = "RDS_CSI_NO_KUBERNETES")]
    pub no_kubernetes: bool,
    /// Deadline for each Kubernetes API call.
    #[arg(long, env = "RDS_CSI_KUBE_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub kube_timeout: Duration,
    /// How often the controller clears attachments of deleted or out-of-service nodes and
    /// reports stuck detaches and overdue migrations.
    #[arg(long, env = "RDS_CSI_ATTACHMENT_RECONCILE_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub attachment_reconcile_interval: Duration,
    /// KubeVirt: publish the volumes of one VirtualMachineInstance one at a time (concurrent
    /// hotplug attaches could pause the VM). Needs `list` on pods
    /// (deploy/kubernetes/rbac/kubevirt); a PVC whose VM cannot be found is not serialized.
    #[arg(long, env = "RDS_CSI_ENABLE_VMI_SERIALIZATION")]
    pub enable_vmi_serialization: bool,
    /// How long a PVC's VirtualMachineInstance (or the absence of one) is remembered by
    /// `--enable-vmi-serialization`; 0 means the default.
    #[arg(long, env = "RDS_CSI_VMI_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub vmi_cache_ttl: Duration,
    /// Controller HA: elect one replica through a coordination.k8s.io Lease; only the leader
    /// serves ControllerPublish/Unpublish and runs the reconcilers (followers answer
    /// UNAVAILABLE). Always off with `--no-kubernetes`; ignored by the node.
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (the controller's own namespace in a pod).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    pub leader_election_namespace: String,
    /// How long a leader's Lease stays valid without renewal: the failover time after a
    /// leader dies without releasing it (SIGKILL, node loss), plus one retry period.
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,
    /// A leader that cannot renew its Lease for this long stops serving; must be shorter than
    /// the lease duration so it has stopped before anyone else may lead.
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,
    /// Pause between attempts to acquire or renew the Lease.
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,
}

/// The orphan reconciler. On by default in dry-run: reporting costs three prints per backend
/// per interval and deletes nothing, while deletion needs an explicit `--orphan-delete`.
#[derive(Debug, Clone, Args)]
pub struct OrphanArgs {
    /// Look for disks and backing files under the volume paths that no PersistentVolume refers
    /// to, and report them (logs, metrics, GET /orphans). Needs the Kubernetes API.
    #[arg(long, env = "RDS_CSI_ENABLE_ORPHAN_RECONCILER", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_orphan_reconciler: bool,
    /// Delete orphans whose grace period has passed (default: report only, dry-run).
    #[arg(long, env = "RDS_CSI_ORPHAN_DELETE")]
    pub orphan_delete: bool,
    /// How long an orphan must have been seen by this controller before it is due; the clock
    /// starts over after a restart.
    #[arg(long, env = "RDS_CSI_ORPHAN_GRACE_PERIOD", default_value = "1h", value_parser = parse_duration)]
    pub orphan_grace_period: Duration,
    /// Pause between orphan passes.
    #[arg(long, env = "RDS_CSI_ORPHAN_CHECK_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub orphan_check_interval: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub rds: RdsArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub orphans: OrphanArgs,
}

#[derive(Debug, Clone, Args)]
pub struct NodeOnlyArgs {
    /// This node's name (the Kubernetes node name; kubelet passes it via the downward API).
    #[arg(long, env = "NODE_ID")]
    pub node_id: String,
    /// Most volumes this node may attach (0 = no limit).
    #[arg(long, env = "RDS_MAX_VOLUMES_PER_NODE", default_value_t = 0)]
    pub max_volumes_per_node: i64,
    /// NQN prefix of the volumes this driver manages: only these are ever connected,
    /// disconnected or cleaned up on this node (hosts booting from NVMe-oF are never touched).
    #[arg(
        long,
        env = "CSI_MANAGED_NQN_PREFIX",
        default_value = "nqn.2000-02.com.mikrotik:pvc-"
    )]
    pub managed_nqn_prefix: String,
    /// Directory for the node plugin's own state (NVMe host identity, staged-volume records used
    /// to recover after a reconnect or a restart); must be a hostPath that survives restarts.
    #[arg(long, env = "RDS_CSI_STATE_DIR", default_value = "/var/lib/rds-csi")]
    pub state_dir: PathBuf,
    /// kubelet's root directory: staging and target paths outside it are refused, and no path
    /// below it is resolved through a symlink.
    #[arg(long, env = "RDS_CSI_KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
    /// How NVMe/TCP connections are made: `fabrics` writes /dev/nvme-fabrics directly,
    /// `nvme-cli` runs `nvme connect`.
    #[arg(long, env = "RDS_CSI_NVME_CONNECT_METHOD", default_value = "fabrics", value_parser = ["fabrics", "nvme-cli"])]
    pub nvme_connect_method: String,
    /// nvme-cli binary used with `--nvme-connect-method nvme-cli`.
    #[arg(long, env = "RDS_CSI_NVME_CLI", default_value = "nvme")]
    pub nvme_cli: PathBuf,
    /// Root of sysfs as seen by the plugin (tests and VMs may point elsewhere).
    #[arg(long, env = "RDS_CSI_SYSFS_ROOT", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Directory holding the block device nodes.
    #[arg(long, env = "RDS_CSI_DEV_ROOT", default_value = "/dev")]
    pub dev_root: PathBuf,
    /// Root of procfs, scanned for processes still using a device before it is detached.
    #[arg(long, env = "RDS_CSI_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Mount table the plugin trusts for "is it mounted, and from what".
    #[arg(
        long,
        env = "RDS_CSI_MOUNTINFO",
        default_value = "/proc/self/mountinfo"
    )]
    pub mountinfo: PathBuf,
    /// The NVMe-oF fabrics control file.
    #[arg(
        long,
        env = "RDS_CSI_NVME_FABRICS",
        default_value = "/dev/nvme-fabrics"
    )]
    pub nvme_fabrics: PathBuf,
    /// Deadline for one NVMe connect (kernel write or nvme-cli run).
    #[arg(long, env = "RDS_CSI_NVME_CONNECT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub nvme_connect_timeout: Duration,
    /// How long to wait for the block device of a freshly connected NQN.
    #[arg(long, env = "RDS_CSI_NVME_DEVICE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub nvme_device_timeout: Duration,
    /// Deadline for each mount, umount, mknod or statvfs call (a dead device can hang them).
    #[arg(long, env = "RDS_CSI_MOUNT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub mount_timeout: Duration,
    /// How long an unmount may take to show up in the mount table before the in-use check
    /// decides whether a lazy detach is safe.
    #[arg(long, env = "RDS_CSI_UNMOUNT_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub unmount_wait: Duration,
    /// Pause between background checks of staged volumes (controller state, stale mounts).
    #[arg(long, env = "RDS_CSI_NODE_MONITOR_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub node_monitor_interval: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub node: NodeOnlyArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub rds: RdsArgs,
    #[command(flatten)]
    pub node: NodeOnlyArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub orphans: OrphanArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Address the simulated RDS SSH server listens on.
    #[arg(long, env = "RDS_SIM_LISTEN", default_value = "127.0.0.1:2222")]
    pub listen: SocketAddr,
    /// Host key file (OpenSSH private key); created on first start so the fingerprint stays stable.
    #[arg(long, env = "RDS_SIM_HOST_KEY_FILE")]
    pub host_key_file: Option<PathBuf>,
    /// authorized_keys file with the public keys allowed to log in.
    #[arg(long, env = "RDS_SIM_AUTHORIZED_KEYS")]
    pub authorized_keys: PathBuf,
    /// Keep sparse backing files in this directory (default: sizes only, in memory).
    #[arg(long, env = "RDS_SIM_STORAGE_DIR")]
    pub storage_dir: Option<PathBuf>,
    /// Pool capacity, e.g. `1Ti`, `500G`, `512GiB`, or bytes (binary units).
    #[arg(long, env = "RDS_SIM_CAPACITY", default_value = "1T", value_parser = parse_capacity)]
    pub capacity: u64,
    /// Pool mount point name (first component of volume paths).
    #[arg(long, env = "RDS_SIM_POOL", default_value = "storage-pool")]
    pub pool: String,
    /// Really export disks added with nvme-tcp-export=yes through the Linux NVMe target (nvmet
    /// configfs; needs root, the nvmet and nvmet-tcp modules, and --storage-dir).
    #[arg(long, env = "RDS_SIM_NVMET", requires = "storage_dir")]
    pub nvmet: bool,
    /// Addresses the nvmet TCP ports listen on (what nodes connect to): one port per address,
    /// every disk exported on each, like an RDS's several interfaces (NVMe/TCP multipath).
    /// Comma-separated or repeated; the first is the preferred path.
    #[arg(
        long,
        env = "RDS_SIM_NVMET_ADDRESS",
        default_value = "127.0.0.1",
        value_delimiter = ','
    )]
    pub nvmet_address: Vec<IpAddr>,
    /// Where configfs is mounted (holds the `nvmet` tree).
    #[arg(
        long,
        env = "RDS_SIM_NVMET_CONFIGFS",
        default_value = "/sys/kernel/config"
    )]
    pub nvmet_configfs: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Latency the simulator adds to every RouterOS command (shows what the driver's round trips cost).
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub latency: Duration,
}

#[derive(Debug, Args)]
pub struct CsiArgs {
    /// CSI endpoint of the driver to call.
    #[arg(long, env = "CSI_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Deadline for the call.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: CsiCommand,
}

#[derive(Debug, Clone, Args)]
pub struct OrphansArgs {
    /// Base URL of the controller's HTTP endpoint (its --metrics-address); `/orphans` is added.
    #[arg(long, env = "RDS_CSI_URL", default_value = "http://127.0.0.1:9809")]
    pub url: String,
    /// Deadline for connecting and reading the answer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `250ms`, `10s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, CliError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| CliError::DurationNumber {
        input: s.to_string(),
    })?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(CliError::DurationUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    Ok(d)
}

/// `--capacity`: what RouterOS accepts and prints (`500G`, `512GiB`, bytes) plus the
/// Kubernetes-style `Ki`/`Mi`/`Gi`/`Ti` people type from habit, so the help's examples work.
pub fn parse_capacity(s: &str) -> Result<u64, CliError> {
    let t = s.trim();
    let routeros = match t.strip_suffix('i') {
        Some(head) if head.ends_with(['K', 'M', 'G', 'T']) => format!("{t}B"),
        _ => t.to_string(),
    };
    let bytes = routeros::size::parse_size(&routeros).map_err(|_| CliError::Capacity {
        input: s.to_string(),
    })?;
    if bytes == 0 {
        return Err(CliError::ZeroCapacity);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `--help` is the reference for operators: every flag of every subcommand says what it does.
    #[test]
    fn every_flag_is_documented() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (subcommand)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "rds-csi", &mut missing);
        assert!(missing.is_empty(), "undocumented: {missing:#?}");
    }

    /// `--nvme-addresses` (repeated or comma-separated) reaches the default backend's settings,
    /// and a disagreeing `--nvme-address` is the backend's configuration error.
    #[test]
    fn storage_address_flags_reach_the_default_backend() {
        let rds = |extra: &[&str]| {
            let mut argv = vec!["rds-csi", "controller", "--rds-address", "10.0.0.2"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Controller(c) => c.rds,
                _ => unreachable!(),
            }
        };
        let addresses = |extra: &[&str]| {
            let all = crate::run::settings_from(&rds(extra)).unwrap();
            all[0]
                .storage_addresses()
                .map(|a| vocab::params::format_addresses(&a))
                .map_err(|e| e.to_string())
        };
        assert_eq!(addresses(&[]).unwrap(), "10.0.0.2");
        assert_eq!(
            addresses(&["--nvme-address", "10.0.1.2"]).unwrap(),
            "10.0.1.2"
        );
        let listed = ["--nvme-addresses", "10.0.1.2,10.0.2.2"];
        assert_eq!(addresses(&listed).unwrap(), "10.0.1.2,10.0.2.2");
        let repeated = [
            "--nvme-addresses",
            "10.0.1.2",
            "--nvme-addresses",
            "10.0.2.2",
        ];
        assert_eq!(addresses(&repeated).unwrap(), "10.0.1.2,10.0.2.2");
        let e = addresses(&[
            "--nvme-address",
            "10.0.2.2",
            "--nvme-addresses",
            "10.0.1.2,10.0.2.2",
        ])
        .unwrap_err();
        assert!(e.contains("disagree"), "{e}");
        assert!(
            Cli::try_parse_from(["rds-csi", "controller", "--nvme-addresses", "rds.local"])
                .is_err()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
