//! Node plugin settings. Every path is configurable so the same code runs against the real
//! kernel, a VM, or a fake tree in a temp dir; every wait has a deadline because a dead NVMe
//! target turns unbounded waits into hung kubelet operations.

use std::path::PathBuf;
use std::time::Duration;

use nvme::ConnectMethod;

/// Default managed NQN prefix: every volume NQN the controller creates starts with it.
pub const DEFAULT_MANAGED_PREFIX: &str = "nqn.2000-02.com.mikrotik:pvc-";
/// Default directory for the plugin's own state (host identity, staged-volume records).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rds-csi";

/// Deadlines of the node data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDeadlines {
    /// One write to the fabrics file / one `nvme connect`.
    pub connect: Duration,
    /// One `delete_controller` write.
    pub disconnect: Duration,
    /// One sysfs scan.
    pub sysfs: Duration,
    /// Waiting for the block device after a connect. Shorter than a kubelet RPC deadline so a
    /// retry still has time within the same budget.
    pub device_wait: Duration,
    pub device_poll: Duration,
    /// Each mount/umount/mknod/statvfs call.
    pub syscall: Duration,
    /// Reading the mount table.
    pub mount_table: Duration,
    /// How long a normal unmount may take before the in-use check decides about detaching.
    pub unmount_wait: Duration,
    pub unmount_poll: Duration,
    /// Scanning /proc and holders for users of a device.
    pub in_use: Duration,
    /// Startup cleanup as a whole; RPCs wait at most this long for it.
    pub startup: Duration,
    /// Waiting for the kernel to show a grown namespace after a rescan.
    pub expand_settle: Duration,
    /// Writing the state file.
    pub state_write: Duration,
}

impl Default for NodeDeadlines {
    fn default() -> Self {
        NodeDeadlines {
            connect: Duration::from_secs(30),
            disconnect: Duration::from_secs(15),
            sysfs: Duration::from_secs(10),
            device_wait: Duration::from_secs(30),
            device_poll: Duration::from_millis(500),
            syscall: Duration::from_secs(30),
            mount_table: Duration::from_secs(10),
            unmount_wait: Duration::from_secs(10),
            unmount_poll: Duration::from_millis(500),
            in_use: Duration::from_secs(10),
            startup: Duration::from_secs(120),
            expand_settle: Duration::from_secs(15),
            state_write: Duration::from_secs(10),
        }
    }
}

/// How hard automatic stale-mount recovery tries before reporting failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Attempts inside one RPC (NodePublishVolume) before it fails.
    pub attempts: u32,
    /// First pause; doubles after every failure (in an RPC and across monitor passes).
    pub initial_backoff: Duration,
    /// Upper bound of the pause, so a volume that comes back is noticed within this time.
    pub max_backoff: Duration,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RecoveryPolicy {
    /// Pause after `failures` consecutive failures (1-based), bounded by `max_backoff`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff)
    }
}

/// Everything the node service needs to know about its host.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    /// NodeGetInfo max_volumes_per_node (0 = no limit).
    pub max_volumes: i64,
    /// Only NQNs under this prefix are ever connected, disconnected or cleaned up.
    pub managed_prefix: String,
    pub sysfs_root: PathBuf,
    pub dev_root: PathBuf,
    pub mountinfo: PathBuf,
    pub proc_root: PathBuf,
    pub fabrics_path: PathBuf,
    /// Host identity and `node-volumes.json` live here; must survive plugin restarts.
    pub state_dir: PathBuf,
    /// kubelet's root directory: every staging and target path must lie below it.
    pub kubelet_dir: PathBuf,
    pub connect_method: ConnectMethod,
    pub deadlines: NodeDeadlines,
    /// Pause between background health passes over staged volumes.
    pub monitor_interval: Duration,
    pub recovery: RecoveryPolicy,
    pub format: mount::FormatConfig,
}

impl NodeConfig {
    /// Production defaults for a node named `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        NodeConfig {
            node_id: node_id.into(),
            max_volumes: 0,
            managed_prefix: DEFAULT_MANAGED_PREFIX.to_string(),
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            proc_root: PathBuf::from("/proc"),
            fabrics_path: PathBuf::from("/dev/nvme-fabrics"),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            kubelet_dir: PathBuf::from(super::paths::DEFAULT_KUBELET_DIR),
            connect_method: ConnectMethod::Fabrics,
            deadlines: NodeDeadlines::default(),
            monitor_interval: Duration::from_secs(10),
            recovery: RecoveryPolicy::default(),
            format: mount::FormatConfig::default(),
        }
    }

    /// Initiator settings derived from this config.
    pub fn initiator_config(&self, prefix: nvme::ManagedPrefix) -> nvme::InitiatorConfig {
        let mut c = nvme::InitiatorConfig::new(prefix);
        c.sysfs_root = self.sysfs_root.clone();
        c.dev_root = self.dev_root.clone();
        c.fabrics_path = self.fabrics_path.clone();
        c.method = self.connect_method.clone();
        c.connect_timeout = self.deadlines.connect;
        c.disconnect_timeout = self.deadlines.disconnect;
        c.sysfs_timeout = self.deadlines.sysfs;
        c
    }

    /// Mounter settings derived from this config.
    pub fn mounter_config(&self) -> mount::MounterConfig {
        mount::MounterConfig {
            mountinfo: self.mountinfo.clone(),
            syscall_deadline: self.deadlines.syscall,
            read_deadline: self.deadlines.mount_table,
            unmount_wait: self.deadlines.unmount_wait,
            poll_interval: self.deadlines.unmount_poll,
            mount_storm_threshold: 100,
            in_use: mount::InUseProbe {
                proc_root: self.proc_root.clone(),
                sys_root: self.sysfs_root.clone(),
                own_pid: std::process::id(),
                deadline: self.deadlines.in_use,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let p = RecoveryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        };
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
        assert_eq!(p.backoff(4), Duration::from_secs(5));
        assert_eq!(p.backoff(400), Duration::from_secs(5));
    }
}
