//! The kernel-call boundary: every mount-table change and filesystem query the node makes goes
//! through [`MountSys`], so logic above it is testable rootless with [`crate::fake::RecordingSys`].
//!
//! The trait is synchronous on purpose: these are plain syscalls. Callers that may hit a dead
//! device (mount, umount, statvfs) run them through [`with_deadline`], which moves the call to the
//! blocking pool and stops waiting after a deadline.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mountinfo::DevNum;

/// Per-mount flags the driver sets. Kept as our own type so the trait does not leak rustix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountFlags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub noatime: bool,
    pub nodiratime: bool,
    pub relatime: bool,
    pub strictatime: bool,
    pub lazytime: bool,
    pub sync: bool,
}

impl MountFlags {
    /// The flags every volume mount carries: no setuid binaries and no device nodes from volume
    /// contents, whatever the user asked for.
    pub fn secure() -> Self {
        MountFlags {
            nosuid: true,
            nodev: true,
            ..MountFlags::default()
        }
    }
}

/// How hard to unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmountMode {
    Normal,
    /// `MNT_DETACH`: detach now, clean up when the last user goes away.
    Detach,
    /// `MNT_FORCE`: abort in-flight requests (meaningful for network filesystems).
    Force,
}

/// Space and inode usage from `statvfs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// Available to unprivileged users (what a pod can actually write).
    pub available_bytes: u64,
    pub total_inodes: u64,
    pub used_inodes: u64,
    pub available_inodes: u64,
}

/// What a path is, as far as the node cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Missing,
    Directory,
    File,
    BlockDevice(DevNum),
    Other,
}

/// Kernel operations used by the node plugin.
pub trait MountSys: Send + Sync + 'static {
    /// `mount(source, target, fs_type, flags, data)`.
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fs_type: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()>;

    /// `mount(source, target, NULL, MS_BIND, NULL)`. The kernel ignores per-mount flags here;
    /// use [`MountSys::remount_bind`] afterwards to apply them.
    fn bind(&self, source: &Path, target: &Path) -> io::Result<()>;

    /// `mount(NULL, target, NULL, MS_REMOUNT|MS_BIND|flags, NULL)`: changes only the per-mount
    /// flags of an existing (bind) mount. Flags not given are cleared, so pass the full set.
    fn remount_bind(&self, target: &Path, flags: MountFlags) -> io::Result<()>;

    /// `umount2(target, mode)`.
    fn unmount(&self, target: &Path, mode: UnmountMode) -> io::Result<()>;

    /// Creates a block device node with exactly `mode` (umask does not apply).
    fn mknod_block(&self, path: &Path, dev: DevNum, mode: u32) -> io::Result<()>;

    /// `statvfs(path)`.
    fn statvfs(&self, path: &Path) -> io::Result<FsUsage>;

    /// `lstat`-based classification; missing paths are not an error.
    fn node_kind(&self, path: &Path) -> io::Result<NodeKind>;
}

/// Runs a (possibly hanging) kernel call through the process-wide [`kcall`] executor and gives
/// up waiting after `deadline`. The call itself cannot be cancelled: the error says it may still
/// be pending, and a retry of `op` on the same `path` waits for it instead of adding a thread.
pub async fn with_deadline<T, F>(
    sys: &Arc<dyn MountSys>,
    op: &'static str,
    path: &Path,
    deadline: Duration,
    call: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn MountSys) -> io::Result<T> + Send + 'static,
{
    let sys = Arc::clone(sys);
    blocking(op, path, deadline, move || call(sys.as_ref())).await
}

/// [`kcall::global`] with this crate's errors: a call of `op` on `path` runs at most once at a
/// time, and every wait ends at `deadline`.
pub(crate) async fn blocking<T, F>(
    op: &'static str,
    path: &Path,
    deadline: Duration,
    f: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let owned: PathBuf = path.to_path_buf();
    let key = kcall::CallKey::new(op, owned.display().to_string());
    match kcall::global().run(key, deadline, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Syscall {
            op,
            path: owned,
            source,
        }),
        Err(kcall::CallError::Timeout { .. }) => Err(Error::SyscallTimeout {
            op,
            path: owned,
            deadline,
        }),
        Err(cause) => Err(Error::NotStarted {
            op,
            path: owned,
            cause,
        }),
    }
}

/// The real implementation on top of rustix (no `unsafe`).
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

fn to_rustix(flags: MountFlags) -> rustix::mount::MountFlags {
    use rustix::mount::MountFlags as F;
    let mut out = F::empty();
    let pairs = [
        (flags.read_only, F::RDONLY),
        (flags.nosuid, F::NOSUID),
        (flags.nodev, F::NODEV),
        (flags.noexec, F::NOEXEC),
        (flags.noatime, F::NOATIME),
        (flags.nodiratime, F::NODIRATIME),
        (flags.relatime, F::RELATIME),
        (flags.strictatime, F::STRICTATIME),
        (flags.lazytime, F::LAZYTIME),
        (flags.sync, F::SYNCHRONOUS),
    ];
    for (on, f) in pairs {
        if on {
            out |= f;
        }
    }
    out
}

impl MountSys for RealSys {
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fs_type: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        let data = std::ffi::CString::new(data)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount data"))?;
        rustix::mount::mount(source, target, fs_type, to_rustix(flags), data.as_c_str())
            .map_err(io::Error::from)
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        rustix::mount::mount_bind(source, target).map_err(io::Error::from)
    }

    fn remount_bind(&self, target: &Path, flags: MountFlags) -> io::Result<()> {
        let f = to_rustix(flags) | rustix::mount::MountFlags::BIND;
        rustix::mount::mount_remount(target, f, "").map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path, mode: UnmountMode) -> io::Result<()> {
        use rustix::mount::UnmountFlags as U;
        let flags = match mode {
            UnmountMode::Normal => U::empty(),
            UnmountMode::Detach => U::DETACH,
            UnmountMode::Force => U::FORCE,
        };
        // NOFOLLOW: a pod could replace the target with a symlink pointing at a host path.
        rustix::mount::unmount(target, flags | U::NOFOLLOW).map_err(io::Error::from)
    }

    fn mknod_block(&self, path: &Path, dev: DevNum, mode: u32) -> io::Result<()> {
        use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
        let mode = Mode::from_raw_mode(mode & 0o7777);
        mknodat(
            CWD,
            path,
            FileType::BlockDevice,
            mode,
            makedev(dev.major, dev.minor),
        )?;
        // mknod is subject to the umask; set the exact mode the caller asked for.
        rustix::fs::chmod(path, mode)?;
        Ok(())
    }

    fn statvfs(&self, path: &Path) -> io::Result<FsUsage> {
        let s = rustix::fs::statvfs(path)?;
        Ok(usage_from(
            s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_favail,
        ))
    }

    fn node_kind(&self, path: &Path) -> io::Result<NodeKind> {
        use rustix::fs::FileType;
        let st = match rustix::fs::lstat(path) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(NodeKind::Missing),
            Err(e) => return Err(e.into()),
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => NodeKind::Directory,
            FileType::RegularFile => NodeKind::File,
            FileType::BlockDevice => NodeKind::BlockDevice(DevNum {
                major: rustix::fs::major(st.st_rdev),
                minor: rustix::fs::minor(st.st_rdev),
            }),
            _ => NodeKind::Other,
        })
    }
}

/// Converts statvfs counters to bytes. "Used" is total minus free (not minus available), as df
/// does, so root-reserved blocks count as used rather than vanishing.
pub(crate) fn usage_from(
    frsize: u64,
    blocks: u64,
    bfree: u64,
    bavail: u64,
    files: u64,
    ffree: u64,
    favail: u64,
) -> FsUsage {
    FsUsage {
        total_bytes: blocks.saturating_mul(frsize),
        used_bytes: blocks.saturating_sub(bfree).saturating_mul(frsize),
        available_bytes: bavail.saturating_mul(frsize),
        total_inodes: files,
        used_inodes: files.saturating_sub(ffree),
        available_inodes: favail,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::usage_from;

    #[test]
    fn used_counts_reserved_blocks_and_available_is_user_view() {
        let u = usage_from(4096, 1000, 300, 250, 100, 60, 60);
        assert_eq!(u.total_bytes, 4096 * 1000);
        assert_eq!(u.used_bytes, 4096 * 700);
        assert_eq!(u.available_bytes, 4096 * 250);
        assert_eq!(
            (u.total_inodes, u.used_inodes, u.available_inodes),
            (100, 40, 60)
        );
    }

    #[test]
    fn inconsistent_counters_saturate_instead_of_wrapping() {
        let u = usage_from(4096, 10, 20, 20, 5, 9, 9);
        assert_eq!(u.used_bytes, 0);
        assert_eq!(u.used_inodes, 0);
    }
}
