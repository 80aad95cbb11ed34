//! The crate's single error type.
//!
//! Every variant carries the path, device or command it is about, because these errors end up in
//! CSI responses and Kubernetes events where the operator has nothing else to go on.

use std::path::PathBuf;
use std::time::Duration;

/// Errors of the mount layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a host file (mountinfo, /proc, /sys) failed.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A host file took longer than its deadline to read (a wedged /proc or a hung mount).
    #[error("reading {path} did not finish within {deadline:?}")]
    ReadTimeout { path: PathBuf, deadline: Duration },

    /// A kernel call (mount, umount, mknod, statvfs, …) failed.
    #[error("{op} {path} failed: {source}")]
    Syscall {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A kernel call did not return in time. The thread running it is abandoned, not cancelled,
    /// so the call may still complete (or stay in D state) after this error was returned.
    #[error("{op} {path} did not return within {deadline:?}; the kernel call may still be pending")]
    SyscallTimeout {
        op: &'static str,
        path: PathBuf,
        deadline: Duration,
    },

    /// A kernel call was not started: an earlier one on the same path is still stuck, or too
    /// many are (see `kcall`). Nothing was changed.
    #[error("{op} {path} not started: {cause}")]
    NotStarted {
        op: &'static str,
        path: PathBuf,
        cause: kcall::CallError,
    },

    /// A user-supplied mount option was refused by the policy.
    #[error("mount option {option:?} rejected: {reason}; allowed options: {allowed}")]
    MountOption {
        option: String,
        reason: String,
        allowed: String,
    },

    /// An external command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// An external command ran past its deadline and was killed.
    #[error("{command} did not finish within {deadline:?} and was killed")]
    CommandTimeout { command: String, deadline: Duration },

    /// An external command exited unsuccessfully.
    #[error("{command} failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },

    /// blkid gave no definitive "empty" or "filesystem" answer; formatting is refused.
    #[error(
        "cannot determine filesystem state of {device} after {attempts} attempt(s) \
         (last: {last}); refusing to format to prevent data loss"
    )]
    ProbeInconclusive {
        device: PathBuf,
        attempts: u32,
        last: String,
    },

    /// The device already holds a different filesystem than requested; it is never reformatted.
    #[error(
        "{device} already holds a {found} filesystem but {requested} was requested; refusing to reformat"
    )]
    FilesystemMismatch {
        device: PathBuf,
        found: String,
        requested: String,
    },

    /// A filesystem's size could not be read from its tool's output, so whether it fills its
    /// device is unknown.
    #[error("cannot read the filesystem size from {command}: {reason}")]
    Geometry { command: String, reason: String },

    /// A filesystem type this crate does not know how to create or grow.
    #[error("unsupported filesystem type {0:?} (supported: ext4, xfs)")]
    UnsupportedFilesystem(String),

    /// Force/lazy unmount refused because something still uses the device or mount.
    #[error("refusing to force unmount {target}: still in use ({users})")]
    InUse { target: PathBuf, users: String },

    /// The normal unmount did not take effect within the bounded wait and escalation is not allowed.
    #[error("{target} is still mounted after {waited:?}")]
    StillMounted { target: PathBuf, waited: Duration },

    /// A target path is not what the caller expected (e.g. a directory where a device node goes).
    #[error("unexpected target {path}: {reason}")]
    Target { path: PathBuf, reason: String },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
