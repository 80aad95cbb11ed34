//! "Is this device or mount still in use?" from host-level facts.
//!
//! Used only to decide whether a lazy/forced unmount is acceptable after a normal unmount did not
//! take effect. An error here means "cannot prove it is unused", and callers must not escalate.
//!
//! Signals checked:
//! - other mounts of the same device in the mount table (another staging/bind mount);
//! - `/sys/dev/block/<maj:min>/holders/*` (device-mapper, md, … stacked on the device);
//! - `/proc/<pid>/{fd/*,cwd,root}` of every visible process except our own, matched by link text
//!   (the device node or a path under the mount) *and* by device number of the open file, which
//!   also catches processes in other mount namespaces whose paths look different.
//!
//! What it cannot see:
//! - processes in PID namespaces whose /proc is not visible to the plugin (run with
//!   `hostPID: true` to see pods);
//! - in-kernel users without a holder link: loop devices backed by a file on the mount, swap files,
//!   NFS exports, io_uring registered files, memory mappings without an open fd (`/proc/<pid>/maps`
//!   is not read);
//! - a VM doing I/O through a different device path or passthrough (e.g. a KubeVirt disk attached
//!   by another node);
//! - anything that opens the device after the check (the check is a snapshot).

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mountinfo::{DevNum, DeviceRef, MountTable, normalize};

/// Where to look; roots are configurable so tests run on a fake tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUseProbe {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    /// Our own process, whose fds on the device are not "users".
    pub own_pid: u32,
    pub deadline: Duration,
}

impl Default for InUseProbe {
    fn default() -> Self {
        InUseProbe {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            own_pid: std::process::id(),
            deadline: Duration::from_secs(10),
        }
    }
}

/// What is being asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUseQuery {
    /// The mount whose removal is considered (its own table entry is not counted as a user).
    pub mount_path: PathBuf,
    /// Device number backing the mount, if known.
    pub dev: Option<DevNum>,
    /// Paths by which the device node may be open (`/dev/nvme1n1`, …).
    pub device_paths: Vec<PathBuf>,
}

/// One process using the device or mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcessUse {
    pub pid: u32,
    /// The link that matched (`fd/3 -> /data/file`, `cwd -> …`).
    pub what: String,
}

/// Everything found. Empty means "no user visible to us".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InUseReport {
    pub other_mounts: Vec<PathBuf>,
    pub holders: Vec<String>,
    pub processes: Vec<ProcessUse>,
}

impl InUseReport {
    pub fn in_use(&self) -> bool {
        !(self.other_mounts.is_empty() && self.holders.is_empty() && self.processes.is_empty())
    }

    /// A short human summary for errors and events.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.other_mounts.is_empty() {
            let m: Vec<String> = self
                .other_mounts
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            parts.push(format!("other mounts: {}", m.join(", ")));
        }
        if !self.holders.is_empty() {
            parts.push(format!("holders: {}", self.holders.join(", ")));
        }
        if !self.processes.is_empty() {
            let pids: BTreeSet<u32> = self.processes.iter().map(|p| p.pid).collect();
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            parts.push(format!("processes: {}", pids.join(", ")));
        }
        if parts.is_empty() {
            "not in use".to_string()
        } else {
            parts.join("; ")
        }
    }
}

impl InUseProbe {
    /// Runs the check on the blocking pool under the deadline (reading /proc links of processes
    /// stuck on a dead device can block).
    pub async fn check(&self, table: &MountTable, query: &InUseQuery) -> Result<InUseReport> {
        let mount_path = normalize(&query.mount_path);
        let other_mounts: Vec<PathBuf> = match query.dev {
            Some(dev) => table
                .mounts_of_device(&DeviceRef::Number(dev))
                .into_iter()
                .map(|e| e.mount_point.clone())
                .filter(|p| normalize(p) != mount_path)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        let probe = self.clone();
        let query = query.clone();
        let deadline = self.deadline;
        let key = kcall::CallKey::new("in-use scan", query.mount_path.display().to_string());
        let scan = move || probe.scan_host(&query);
        let (holders, processes) = match kcall::global().run(key, deadline, scan).await {
            Ok(r) => r?,
            Err(kcall::CallError::Timeout { .. }) => {
                return Err(Error::ReadTimeout {
                    path: self.proc_root.clone(),
                    deadline,
                });
            }
            Err(cause) => {
                return Err(Error::NotStarted {
                    op: "in-use scan of",
                    path: self.proc_root.clone(),
                    cause,
                });
            }
        };
        Ok(InUseReport {
            other_mounts,
            holders,
            processes,
        })
    }

    fn scan_host(&self, query: &InUseQuery) -> Result<(Vec<String>, Vec<ProcessUse>)> {
        let holders = match query.dev {
            Some(dev) => self.holders(dev)?,
            None => Vec::new(),
        };
        Ok((holders, self.processes(query)?))
    }

    fn holders(&self, dev: DevNum) -> Result<Vec<String>> {
        let dir = self
            .sys_root
            .join("dev/block")
            .join(dev.to_string())
            .join("holders");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // No sysfs entry: the device is gone, so nothing can hold it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Read { path: dir, source }),
        };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    fn processes(&self, query: &InUseQuery) -> Result<Vec<ProcessUse>> {
        let entries = std::fs::read_dir(&self.proc_root).map_err(|source| Error::Read {
            path: self.proc_root.clone(),
            source,
        })?;
        let mount_path = normalize(&query.mount_path);
        let device_paths: Vec<PathBuf> = query.device_paths.iter().map(|p| normalize(p)).collect();
        let mut found = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == self.own_pid {
                continue;
            }
            let pid_dir = entry.path();
            let mut links: Vec<(String, PathBuf)> = vec![
                ("cwd".to_string(), pid_dir.join("cwd")),
                ("root".to_string(), pid_dir.join("root")),
            ];
            // Processes exit and fds close while we look: unreadable entries are skipped.
            if let Ok(fds) = std::fs::read_dir(pid_dir.join("fd")) {
                for fd in fds.filter_map(|e| e.ok()) {
                    links.push((
                        format!("fd/{}", fd.file_name().to_string_lossy()),
                        fd.path(),
                    ));
                }
            }
            for (label, link) in links {
                let Ok(target) = std::fs::read_link(&link) else {
                    continue;
                };
                if link_matches(&target, &mount_path, &device_paths)
                    || dev_matches(&link, query.dev)
                {
                    found.push(ProcessUse {
                        pid,
                        what: format!("{label} -> {}", target.display()),
                    });
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

fn link_matches(target: &Path, mount_path: &Path, device_paths: &[PathBuf]) -> bool {
    let target = normalize(target);
    target.starts_with(mount_path) || device_paths.contains(&target)
}

/// Matches the open file by device number: `st_dev` for a file on the filesystem, `st_rdev` for
/// the block device node itself. Works across mount namespaces, where link text differs.
fn dev_matches(link: &Path, dev: Option<DevNum>) -> bool {
    let Some(dev) = dev else {
        return false;
    };
    let Ok(meta) = std::fs::metadata(link) else {
        return false;
    };
    let as_num = |raw: u64| DevNum {
        major: rustix::fs::major(raw),
        minor: rustix::fs::minor(raw),
    };
    if meta.file_type().is_block_device() {
        return as_num(meta.rdev()) == dev;
    }
    as_num(meta.dev()) == dev
}
