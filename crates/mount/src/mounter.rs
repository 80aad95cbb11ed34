//! Idempotent, deadline-bounded mount operations for the node plugin, built on [`MountSys`] and
//! the mount table.
//!
//! Rules this layer enforces (breaking any of them loses data or exposes the node):
//! - the mount table decides "already mounted"; a retry never stacks a second mount;
//! - a bind mount only happens from a source that is itself a mount point, so a missing staging
//!   mount cannot silently publish the node's root disk;
//! - block volumes are published by `mknod`, never by bind-mounting `/dev`;
//! - targets are removed with `remove_dir`/`remove_file` only, and only when not mounted;
//! - lazy unmount only after a bounded wait and only when nothing visible uses the device.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fstype::FsType;
use crate::inuse::{InUseProbe, InUseQuery};
use crate::mountinfo::{
    DEFAULT_MOUNTINFO, DevNum, DeviceRef, MountEntry, MountTable, read_mount_table,
};
use crate::options::MountOptions;
use crate::sys::{FsUsage, MountSys, NodeKind, UnmountMode, with_deadline};

/// Paths, deadlines and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MounterConfig {
    pub mountinfo: PathBuf,
    /// Deadline for each mount/umount/mknod/statvfs call.
    pub syscall_deadline: Duration,
    /// Deadline for reading the mount table.
    pub read_deadline: Duration,
    /// How long a normal unmount may take to show up in the mount table before escalating.
    pub unmount_wait: Duration,
    pub poll_interval: Duration,
    /// Refuse to add a mount of a device that already has this many (mount-storm guard).
    pub mount_storm_threshold: usize,
    pub in_use: InUseProbe,
}

impl Default for MounterConfig {
    fn default() -> Self {
        MounterConfig {
            mountinfo: PathBuf::from(DEFAULT_MOUNTINFO),
            syscall_deadline: Duration::from_secs(30),
            read_deadline: Duration::from_secs(10),
            unmount_wait: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            mount_storm_threshold: 100,
            in_use: InUseProbe::default(),
        }
    }
}

/// Result of a mount-like operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    Mounted,
    /// The exact requested state was already in place; nothing was changed.
    AlreadyMounted,
}

/// Result of [`Mounter::unmount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmountOutcome {
    NotMounted,
    Unmounted,
    /// Normal unmount did not take effect in time; detached lazily after the in-use check.
    Detached,
}

/// The node's mount operations.
pub struct Mounter {
    sys: Arc<dyn MountSys>,
    cfg: MounterConfig,
}

impl Mounter {
    pub fn new(sys: Arc<dyn MountSys>, cfg: MounterConfig) -> Self {
        Mounter { sys, cfg }
    }

    pub fn config(&self) -> &MounterConfig {
        &self.cfg
    }

    pub async fn mount_table(&self) -> Result<MountTable> {
        let table = read_mount_table(&self.cfg.mountinfo, self.cfg.read_deadline).await?;
        if !table.skipped_lines().is_empty() {
            tracing::warn!(lines = ?table.skipped_lines(), "unparsable mountinfo lines skipped");
        }
        Ok(table)
    }

    async fn node_kind(&self, path: &Path) -> Result<NodeKind> {
        let p = path.to_path_buf();
        with_deadline(
            &self.sys,
            "lstat",
            path,
            self.cfg.syscall_deadline,
            move |s| s.node_kind(&p),
        )
        .await
    }

    /// Mounts `device` (already formatted) at `target`. Idempotent: the same device already on
    /// top of `target` is success; a different one is an error.
    pub async fn mount_filesystem(
        &self,
        device: &Path,
        target: &Path,
        fs: FsType,
        opts: &MountOptions,
    ) -> Result<MountOutcome> {
        let table = self.mount_table().await?;
        let device_num = match self.node_kind(device).await? {
            NodeKind::BlockDevice(d) => Some(d),
            _ => None,
        };
        if let Some(top) = table.top_mount_at(target) {
            let same = top.source == device.to_string_lossy() || Some(top.dev) == device_num;
            if same && top.is_read_only() == opts.flags.read_only {
                return Ok(MountOutcome::AlreadyMounted);
            }
            return Err(Error::Target {
                path: target.to_path_buf(),
                reason: format!(
                    "already mounted from {} ({}, {}), wanted {} ({})",
                    top.source,
                    top.dev,
                    if top.is_read_only() { "ro" } else { "rw" },
                    device.display(),
                    if opts.flags.read_only { "ro" } else { "rw" },
                ),
            });
        }
        self.storm_guard(&table, device, device_num)?;
        let (dev, tgt, flags, data) = (
            device.to_path_buf(),
            target.to_path_buf(),
            opts.flags,
            opts.data_string(),
        );
        with_deadline(
            &self.sys,
            "mount",
            target,
            self.cfg.syscall_deadline,
            move |s| s.mount(&dev, &tgt, fs.as_str(), flags, &data),
        )
        .await?;
        Ok(MountOutcome::Mounted)
    }

    fn storm_guard(&self, table: &MountTable, device: &Path, num: Option<DevNum>) -> Result<()> {
        let count = match num {
            Some(n) => table.mounts_of_device(&DeviceRef::Number(n)).len(),
            None => table
                .mounts_of_device(&DeviceRef::Source(device.to_string_lossy().into_owned()))
                .len(),
        };
        if count >= self.cfg.mount_storm_threshold {
            return Err(Error::Target {
                path: device.to_path_buf(),
                reason: format!(
                    "already has {count} mounts (limit {}); refusing to add more (mount storm)",
                    self.cfg.mount_storm_threshold
                ),
            });
        }
        Ok(())
    }

    /// Bind-mounts the mount at `source` onto `target`, then remounts the bind with the per-mount
    /// flags (`MS_REMOUNT|MS_BIND|…`) because the kernel ignores flags on the bind itself — this
    /// is how a read-only (and nosuid/nodev/noexec) bind is made. If the remount fails the bind is
    /// undone so no writable mount is left behind.
    pub async fn bind_mount(
        &self,
        source: &Path,
        target: &Path,
        opts: &MountOptions,
    ) -> Result<MountOutcome> {
        let table = self.mount_table().await?;
        let Some(src) = table.top_mount_at(source).cloned() else {
            return Err(Error::Target {
                path: source.to_path_buf(),
                reason: "bind source is not a mount point (volume not staged?)".to_string(),
            });
        };
        if let Some(top) = table.top_mount_at(target) {
            if same_mount(top, &src) && has_flags(top, opts) {
                return Ok(MountOutcome::AlreadyMounted);
            }
            return Err(Error::Target {
                path: target.to_path_buf(),
                reason: format!(
                    "already mounted from {} ({}) with options {}",
                    top.source,
                    top.dev,
                    top.mount_options.join(",")
                ),
            });
        }
        self.storm_guard(&table, Path::new(&src.source), Some(src.dev))?;
        let (s, t) = (source.to_path_buf(), target.to_path_buf());
        with_deadline(
            &self.sys,
            "bind mount",
            target,
            self.cfg.syscall_deadline,
            move |sys| sys.bind(&s, &t),
        )
        .await?;
        let (t, flags) = (target.to_path_buf(), opts.flags);
        let remount = with_deadline(
            &self.sys,
            "remount",
            target,
            self.cfg.syscall_deadline,
            move |sys| sys.remount_bind(&t, flags),
        )
        .await;
        if let Err(e) = remount {
            let t = target.to_path_buf();
            let undo = with_deadline(
                &self.sys,
                "umount",
                target,
                self.cfg.syscall_deadline,
                move |sys| sys.unmount(&t, UnmountMode::Normal),
            )
            .await;
            if let Err(undo) = undo {
                tracing::error!(target = %target.display(), error = %undo, "could not undo bind mount after failed remount");
            }
            return Err(e);
        }
        Ok(MountOutcome::Mounted)
    }

    /// Publishes a block volume as a device node at `target` (mode 0660, or 0440 read-only),
    /// creating the parent directory (0750) if needed. An existing node for the same device is
    /// success; an empty regular file (left by a CO) is replaced; anything else is an error.
    pub async fn publish_block(
        &self,
        dev: DevNum,
        target: &Path,
        read_only: bool,
    ) -> Result<MountOutcome> {
        let table = self.mount_table().await?;
        if table.is_mount_point(target) {
            return Err(Error::Target {
                path: target.to_path_buf(),
                reason: "is a mount point (bind-mounted device from an older driver?); unpublish it first"
                    .to_string(),
            });
        }
        if let Some(parent) = target.parent() {
            let parent = parent.to_path_buf();
            blocking(
                target,
                self.cfg.syscall_deadline,
                "mkdir parent of",
                move || {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o750)
                        .create(&parent)
                },
            )
            .await?;
        }
        match self.node_kind(target).await? {
            NodeKind::BlockDevice(existing) if existing == dev => {
                return Ok(MountOutcome::AlreadyMounted);
            }
            NodeKind::BlockDevice(existing) => {
                return Err(Error::Target {
                    path: target.to_path_buf(),
                    reason: format!("is a node for device {existing}, expected {dev}"),
                });
            }
            NodeKind::File => {
                let t = target.to_path_buf();
                blocking(
                    target,
                    self.cfg.syscall_deadline,
                    "replace empty file",
                    move || {
                        if std::fs::metadata(&t)?.len() != 0 {
                            return Err(io::Error::other("regular file is not empty"));
                        }
                        std::fs::remove_file(&t)
                    },
                )
                .await?;
            }
            NodeKind::Missing => {}
            other => {
                return Err(Error::Target {
                    path: target.to_path_buf(),
                    reason: format!("exists as {other:?}, expected nothing or a device node"),
                });
            }
        }
        let mode = if read_only { 0o440 } else { 0o660 };
        let t = target.to_path_buf();
        with_deadline(
            &self.sys,
            "mknod",
            target,
            self.cfg.syscall_deadline,
            move |s| s.mknod_block(&t, dev, mode),
        )
        .await?;
        Ok(MountOutcome::Mounted)
    }

    /// Unmounts the top-most mount at `target`, waiting up to `unmount_wait` for it to leave the
    /// mount table (retrying busy unmounts). With `escalate`, a mount still present after the wait
    /// is lazily detached — but only if [`InUseProbe`] finds no user of the device or mount;
    /// otherwise, and without `escalate`, the call fails and the mount stays.
    pub async fn unmount(&self, target: &Path, escalate: bool) -> Result<UnmountOutcome> {
        let table = self.mount_table().await?;
        let Some(entry) = table.top_mount_at(target).cloned() else {
            return Ok(UnmountOutcome::NotMounted);
        };
        let started = tokio::time::Instant::now();
        let mut last_error: Option<Error> = None;
        let mut pending = false;
        loop {
            if !pending {
                let t = target.to_path_buf();
                match with_deadline(
                    &self.sys,
                    "umount",
                    target,
                    self.cfg.syscall_deadline,
                    move |s| s.unmount(&t, UnmountMode::Normal),
                )
                .await
                {
                    Ok(()) => {}
                    // A call still stuck in the kernel: don't pile more threads on it.
                    Err(e @ Error::SyscallTimeout { .. }) => {
                        pending = true;
                        last_error = Some(e);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let now = self.mount_table().await?;
            if !now.entries().iter().any(|e| e.mount_id == entry.mount_id) {
                return Ok(UnmountOutcome::Unmounted);
            }
            if started.elapsed() >= self.cfg.unmount_wait {
                break;
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
        if !escalate {
            if let Some(e) = last_error {
                return Err(e);
            }
            return Err(Error::StillMounted {
                target: target.to_path_buf(),
                waited: self.cfg.unmount_wait,
            });
        }
        let table = self.mount_table().await?;
        let mut device_paths = Vec::new();
        if entry.source.starts_with('/') {
            device_paths.push(PathBuf::from(&entry.source));
        }
        let query = InUseQuery {
            mount_path: target.to_path_buf(),
            dev: Some(entry.dev),
            device_paths,
        };
        let report = self.cfg.in_use.check(&table, &query).await?;
        if report.in_use() {
            return Err(Error::InUse {
                target: target.to_path_buf(),
                users: report.summary(),
            });
        }
        tracing::warn!(target = %target.display(), cause = ?last_error.map(|e| e.to_string()), "normal unmount did not complete; detaching lazily");
        let t = target.to_path_buf();
        with_deadline(
            &self.sys,
            "umount (detach)",
            target,
            self.cfg.syscall_deadline,
            move |s| s.unmount(&t, UnmountMode::Detach),
        )
        .await?;
        Ok(UnmountOutcome::Detached)
    }

    /// Removes exactly `target` — an empty directory (`remove_dir`) or a file/device node
    /// (`remove_file`) — and only when the mount table shows nothing mounted there. Never
    /// recursive: a non-empty directory is an error, because its contents may be volume data.
    pub async fn remove_target(&self, target: &Path) -> Result<()> {
        let table = self.mount_table().await?;
        if table.is_mount_point(target) {
            return Err(Error::Target {
                path: target.to_path_buf(),
                reason: "still a mount point; not removing".to_string(),
            });
        }
        let kind = self.node_kind(target).await?;
        let t = target.to_path_buf();
        match kind {
            NodeKind::Missing => Ok(()),
            NodeKind::Directory => {
                blocking(target, self.cfg.syscall_deadline, "rmdir", move || {
                    std::fs::remove_dir(&t)
                })
                .await
            }
            NodeKind::File | NodeKind::BlockDevice(_) => {
                blocking(target, self.cfg.syscall_deadline, "unlink", move || {
                    std::fs::remove_file(&t)
                })
                .await
            }
            NodeKind::Other => Err(Error::Target {
                path: target.to_path_buf(),
                reason: "neither directory, file nor block device; not removing".to_string(),
            }),
        }
    }

    /// Space and inode usage of a mounted volume.
    pub async fn usage(&self, path: &Path) -> Result<FsUsage> {
        let p = path.to_path_buf();
        with_deadline(
            &self.sys,
            "statvfs",
            path,
            self.cfg.syscall_deadline,
            move |s| s.statvfs(&p),
        )
        .await
    }
}

fn same_mount(a: &MountEntry, b: &MountEntry) -> bool {
    a.dev == b.dev && a.root == b.root
}

fn has_flags(entry: &MountEntry, opts: &MountOptions) -> bool {
    let has = |o: &str| entry.mount_options.iter().any(|x| x == o);
    has("ro") == opts.flags.read_only
        && (!opts.flags.noexec || has("noexec"))
        && has("nosuid") == opts.flags.nosuid
        && has("nodev") == opts.flags.nodev
}

/// Filesystem calls on kubelet paths, through the one executor under a deadline.
async fn blocking<F, T>(path: &Path, deadline: Duration, op: &'static str, f: F) -> Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    crate::sys::blocking(op, path, deadline, f).await
}
