//! Stale-mount classification.
//!
//! After an NVMe/TCP reconnect the namespace can come back under a different name or device
//! number while the old mount still points at the dead one. Given the mount point and the device
//! the volume's NQN resolves to *now*, [`classify`] says whether the mount is still usable and, if
//! not, why. It reads only the mount table and `lstat` of `/dev` nodes — never the mount itself,
//! which may hang.

use std::path::{Path, PathBuf};

use crate::mountinfo::{DevNum, MountTable};
use crate::sys::{MountSys, NodeKind};

/// The verdict, most severe first when several apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountHealth {
    Ok,
    /// Nothing is mounted at the path.
    NotMounted,
    /// The mount's source device node no longer exists, or the NQN resolves to no device.
    DeviceGone {
        source: String,
    },
    /// The device mounted there is not the one the NQN resolves to now.
    DeviceChanged {
        mounted: DevNum,
        current: DevNum,
    },
    /// Same device number, but the mount table names a different source path (renamed node).
    SourceMismatch {
        mounted: String,
        current: PathBuf,
    },
    /// The superblock went read-only although a writable mount was expected — the kernel's
    /// reaction to I/O errors with `errors=remount-ro`.
    ReadOnly,
}

impl MountHealth {
    pub fn is_ok(&self) -> bool {
        *self == MountHealth::Ok
    }
}

/// Classifies the visible (top-most) mount at `mount_path`.
///
/// `current_device` is the canonical device node (`/dev/nvmeXnY`, not a `/dev/disk/by-*` link,
/// which `lstat` would not see as a block device) the NQN resolves to now, or `None` when it
/// resolves to nothing. `expect_read_only` suppresses [`MountHealth::ReadOnly`] for volumes mounted ro on
/// purpose. An `lstat` error other than "missing" is reported as `Err`: inconclusive is not healthy,
/// but it is not proof of staleness either.
pub fn classify(
    table: &MountTable,
    sys: &dyn MountSys,
    mount_path: &Path,
    current_device: Option<&Path>,
    expect_read_only: bool,
) -> std::io::Result<MountHealth> {
    let Some(entry) = table.top_mount_at(mount_path) else {
        return Ok(MountHealth::NotMounted);
    };
    let source = entry.source.clone();
    if source.starts_with('/') && sys.node_kind(Path::new(&source))? == NodeKind::Missing {
        return Ok(MountHealth::DeviceGone { source });
    }
    let Some(current) = current_device else {
        return Ok(MountHealth::DeviceGone { source });
    };
    let current_dev = match sys.node_kind(current)? {
        NodeKind::BlockDevice(d) => d,
        NodeKind::Missing => {
            return Ok(MountHealth::DeviceGone {
                source: current.display().to_string(),
            });
        }
        other => {
            return Err(std::io::Error::other(format!(
                "{} is not a block device ({other:?})",
                current.display()
            )));
        }
    };
    if current_dev != entry.dev {
        return Ok(MountHealth::DeviceChanged {
            mounted: entry.dev,
            current: current_dev,
        });
    }
    if Path::new(&source) != current {
        return Ok(MountHealth::SourceMismatch {
            mounted: source,
            current: current.to_path_buf(),
        });
    }
    if entry.super_read_only() && !expect_read_only {
        return Ok(MountHealth::ReadOnly);
    }
    Ok(MountHealth::Ok)
}
