//! "Does this filesystem fill its device?" and growing it when it does not.
//!
//! A volume restored from a snapshot or cloned into a larger volume carries its source's
//! filesystem, which is smaller than the new device. The node grows it at stage time, the way
//! Kubernetes' mount-utils `ResizeFs` does (`NeedResize` then `Resize`): read the filesystem's own
//! size from its superblock (`dumpe2fs -h` for ext4, `xfs_io -c statfs` on the mount point for
//! xfs), compare with the device, and run the same grow tool as NodeExpandVolume only when the
//! device is larger by more than one filesystem block. A filesystem that already fills its
//! device, or is larger than it, is never touched (the tools never shrink, but they are not run
//! either).
//!
//! `statvfs` is not used for the size: ext4 reports its blocks minus metadata overhead there, so
//! a full-size filesystem would look smaller than its device.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exec::{CommandRunner, CommandSpec};
use crate::format::{FormatConfig, resize};
use crate::fstype::FsType;

/// A filesystem's own idea of its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGeometry {
    pub block_size: u64,
    pub blocks: u64,
}

impl FsGeometry {
    pub fn bytes(&self) -> u64 {
        self.block_size.saturating_mul(self.blocks)
    }

    /// Whether a device of `device_bytes` has room for at least one more block. One block of
    /// slack is tolerated, as mount-utils does, for tools that round the last block down.
    pub fn smaller_than(&self, device_bytes: u64) -> bool {
        device_bytes > self.bytes().saturating_add(self.block_size)
    }
}

/// What [`grow_to_device`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowOutcome {
    /// The filesystem was smaller than the device and has been grown online.
    Grown { from_bytes: u64, device_bytes: u64 },
    /// The filesystem already fills the device (or is larger); nothing was run but the probe.
    Fits { fs_bytes: u64, device_bytes: u64 },
}

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The command that reads the geometry: ext4 from the device's superblock, xfs from the mounted
/// filesystem (its superblock is only authoritative through the kernel while mounted).
pub fn geometry_command(
    fs: FsType,
    device: &Path,
    mount_point: &Path,
    deadline: Duration,
) -> CommandSpec {
    match fs {
        FsType::Ext4 => CommandSpec::new("dumpe2fs", ["-h", &text(device)], deadline),
        FsType::Xfs => CommandSpec::new(
            "xfs_io",
            ["-r", "-c", "statfs", &text(mount_point)],
            deadline,
        ),
    }
}

fn number(value: &str) -> Option<u64> {
    value.trim().parse().ok().filter(|n| *n > 0)
}

/// `Block count:` and `Block size:` of `dumpe2fs -h` (`Key:   value` lines; the banner with the
/// version goes to stderr).
pub fn parse_dumpe2fs(stdout: &str) -> Option<FsGeometry> {
    let field = |key: &str| {
        stdout.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| number(v)).flatten()
        })
    };
    Some(FsGeometry {
        block_size: field("Block size")?,
        blocks: field("Block count")?,
    })
}

/// `geom.bsize` and `geom.datablocks` of `xfs_io -c statfs` (`key = value` lines; the `geom.`
/// lines are printed only when the path is on XFS).
pub fn parse_xfs_statfs(stdout: &str) -> Option<FsGeometry> {
    let field = |key: &str| {
        stdout.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| number(v)).flatten()
        })
    };
    Some(FsGeometry {
        block_size: field("geom.bsize")?,
        blocks: field("geom.datablocks")?,
    })
}

/// Reads the filesystem's size. Any failure is an error: guessing could grow the wrong thing or
/// silently leave a volume smaller than asked.
pub async fn geometry(
    runner: &dyn CommandRunner,
    fs: FsType,
    device: &Path,
    mount_point: &Path,
    cfg: &FormatConfig,
) -> Result<FsGeometry> {
    let spec = geometry_command(fs, device, mount_point, cfg.probe_deadline);
    let out = runner.run(&spec).await?.check(&spec)?;
    let (parsed, missing) = match fs {
        FsType::Ext4 => (
            parse_dumpe2fs(&out.stdout),
            "no positive \"Block size:\" and \"Block count:\" in the output",
        ),
        FsType::Xfs => (
            parse_xfs_statfs(&out.stdout),
            "no positive geom.bsize and geom.datablocks in the output (not an XFS mount?)",
        ),
    };
    parsed.ok_or_else(|| Error::Geometry {
        command: spec.display(),
        reason: missing.to_string(),
    })
}

/// Grows the mounted filesystem on `device` (mounted at `mount_point`) to `device_bytes` when it
/// is smaller by more than a block; otherwise runs nothing but the probe. The grow is online
/// (ext4 through the device while mounted, xfs through its mount point), with the same tool and
/// deadline as NodeExpandVolume.
pub async fn grow_to_device(
    runner: &dyn CommandRunner,
    fs: FsType,
    device: &Path,
    mount_point: &Path,
    device_bytes: u64,
    cfg: &FormatConfig,
) -> Result<GrowOutcome> {
    let geo = geometry(runner, fs, device, mount_point, cfg).await?;
    if !geo.smaller_than(device_bytes) {
        return Ok(GrowOutcome::Fits {
            fs_bytes: geo.bytes(),
            device_bytes,
        });
    }
    resize(runner, fs, device, mount_point, cfg).await?;
    Ok(GrowOutcome::Grown {
        from_bytes: geo.bytes(),
        device_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_of_slack_is_tolerated_and_larger_filesystems_fit() {
        let g = FsGeometry {
            block_size: 4096,
            blocks: 262_144,
        };
        assert_eq!(g.bytes(), 1 << 30);
        assert!(!g.smaller_than(1 << 30));
        assert!(!g.smaller_than((1 << 30) + 4096));
        assert!(g.smaller_than((1 << 30) + 4097));
        assert!(!g.smaller_than(512 << 20), "never shrink");
        assert!(g.smaller_than(2 << 30));
    }

    #[test]
    fn overflowing_geometry_never_asks_for_a_grow() {
        let g = FsGeometry {
            block_size: 65536,
            blocks: u64::MAX,
        };
        assert!(!g.smaller_than(u64::MAX));
    }
}
