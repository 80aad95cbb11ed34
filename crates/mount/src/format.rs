//! Format decision and filesystem tools.
//!
//! Formatting a device blkid merely could not read (one that has just (re)connected) destroys
//! data. So the only path to mkfs is `blkid -p` exiting 2 ("nothing found" after a
//! low-level probe). Every other answer — exit 4/8, a timeout, exit 0 without a `TYPE`
//! (partition table, RAID member, …) — means "do not touch", after a bounded number of re-probes
//! for a device that is still settling.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exec::{CommandOutput, CommandRunner, CommandSpec};
use crate::fstype::FsType;

/// Deadlines and retry policy for probing and the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatConfig {
    pub probe_deadline: Duration,
    /// Total probe attempts (at least one is always made).
    pub probe_attempts: u32,
    pub probe_interval: Duration,
    pub mkfs_deadline: Duration,
    pub fsck_deadline: Duration,
    pub resize_deadline: Duration,
    pub ext4: Ext4Options,
}

impl Default for FormatConfig {
    fn default() -> Self {
        FormatConfig {
            probe_deadline: Duration::from_secs(10),
            probe_attempts: 5,
            probe_interval: Duration::from_secs(2),
            mkfs_deadline: Duration::from_secs(300),
            fsck_deadline: Duration::from_secs(120),
            resize_deadline: Duration::from_secs(300),
            ext4: Ext4Options::default(),
        }
    }
}

/// mkfs.ext4 choices.
///
/// - `-F` is deliberately *not* passed: it is not needed for a whole block device when stdin is
///   closed, and without it mke2fs keeps its own last-ditch refusals (e.g. device in use).
/// - `-m 0` by default: these volumes hold application data, not a root filesystem, so the 5 %
///   root reserve would only make the volume smaller than the user asked for.
/// - `lazy_itable_init=1` so mkfs of a large volume returns quickly (the kernel zeroes inode
///   tables in the background); `lazy_journal_init=0` because skipping journal zeroing risks
///   replaying stale blocks after a crash on a reused device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Options {
    pub reserved_percent: u8,
    pub lazy_itable_init: bool,
    pub lazy_journal_init: bool,
}

impl Default for Ext4Options {
    fn default() -> Self {
        Ext4Options {
            reserved_percent: 0,
            lazy_itable_init: true,
            lazy_journal_init: false,
        }
    }
}

/// The answer of one blkid probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// blkid exit 2: no signature of any kind.
    Empty,
    /// A filesystem signature with its `TYPE`.
    Filesystem(String),
}

/// What [`ensure_filesystem`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatOutcome {
    /// The device was empty and has been formatted.
    Formatted,
    /// The device already held the requested filesystem; nothing was written.
    Existing,
}

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// One `blkid -p -o export <dev>` run, interpreted strictly.
pub async fn probe_once(
    runner: &dyn CommandRunner,
    device: &Path,
    deadline: Duration,
) -> Result<Probe> {
    let spec = CommandSpec::new("blkid", ["-p", "-o", "export", &text(device)], deadline);
    let out = runner.run(&spec).await?;
    interpret_blkid(&spec, device, &out)
}

fn interpret_blkid(spec: &CommandSpec, device: &Path, out: &CommandOutput) -> Result<Probe> {
    match out.code {
        Some(2) => Ok(Probe::Empty),
        Some(0) => {
            let ty = out
                .stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix("TYPE="))
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty());
            match ty {
                Some(t) => Ok(Probe::Filesystem(t)),
                None => Err(Error::CommandFailed {
                    command: spec.display(),
                    status: out.status_text(),
                    output: format!(
                        "{} holds a signature without a filesystem TYPE (partition table or \
                         other content): {}",
                        device.display(),
                        out.combined()
                    ),
                }),
            }
        }
        _ => Err(Error::CommandFailed {
            command: spec.display(),
            status: out.status_text(),
            output: out.combined(),
        }),
    }
}

/// Probes until a definitive answer, at most `cfg.probe_attempts` times.
pub async fn probe(runner: &dyn CommandRunner, device: &Path, cfg: &FormatConfig) -> Result<Probe> {
    let attempts = cfg.probe_attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match probe_once(runner, device, cfg.probe_deadline).await {
            Ok(p) => return Ok(p),
            Err(e) => {
                tracing::warn!(device = %device.display(), attempt, error = %e, "blkid probe inconclusive");
                last = e.to_string();
            }
        }
        if attempt < attempts {
            tokio::time::sleep(cfg.probe_interval).await;
        }
    }
    Err(Error::ProbeInconclusive {
        device: device.to_path_buf(),
        attempts,
        last,
    })
}

/// The mkfs argument vector for `fs`.
pub fn mkfs_command(fs: FsType, device: &Path, cfg: &FormatConfig) -> CommandSpec {
    match fs {
        FsType::Ext4 => {
            let e = &cfg.ext4;
            let ext = format!(
                "lazy_itable_init={},lazy_journal_init={}",
                u8::from(e.lazy_itable_init),
                u8::from(e.lazy_journal_init)
            );
            CommandSpec::new(
                "mkfs.ext4",
                [
                    "-m".to_string(),
                    e.reserved_percent.to_string(),
                    "-E".to_string(),
                    ext,
                    text(device),
                ],
                cfg.mkfs_deadline,
            )
        }
        // No -f: mkfs.xfs then refuses to overwrite any signature it finds, a second guard.
        FsType::Xfs => CommandSpec::new("mkfs.xfs", [text(device)], cfg.mkfs_deadline),
    }
}

/// Makes sure `device` holds a `fs` filesystem, formatting only a provably empty device.
pub async fn ensure_filesystem(
    runner: &dyn CommandRunner,
    device: &Path,
    fs: FsType,
    cfg: &FormatConfig,
) -> Result<FormatOutcome> {
    match probe(runner, device, cfg).await? {
        Probe::Filesystem(found) if found == fs.as_str() => Ok(FormatOutcome::Existing),
        Probe::Filesystem(found) => Err(Error::FilesystemMismatch {
            device: device.to_path_buf(),
            found,
            requested: fs.to_string(),
        }),
        Probe::Empty => {
            let spec = mkfs_command(fs, device, cfg);
            tracing::info!(device = %device.display(), command = %spec.display(), "formatting empty device");
            runner.run(&spec).await?.check(&spec)?;
            Ok(FormatOutcome::Formatted)
        }
    }
}

/// Grows the filesystem to the device size: ext4 online through the device, xfs through its
/// mount point (xfs_growfs only works on a mounted filesystem).
pub async fn resize(
    runner: &dyn CommandRunner,
    fs: FsType,
    device: &Path,
    mount_point: &Path,
    cfg: &FormatConfig,
) -> Result<()> {
    let spec = match fs {
        FsType::Ext4 => CommandSpec::new("resize2fs", [text(device)], cfg.resize_deadline),
        FsType::Xfs => CommandSpec::new("xfs_growfs", [text(mount_point)], cfg.resize_deadline),
    };
    runner.run(&spec).await?.check(&spec)?;
    Ok(())
}

/// Result of a read-only ext4 check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsckVerdict {
    Clean,
    /// e2fsck found problems it was not allowed to fix. Note: after an unclean shutdown the
    /// un-replayed journal alone can cause this; mounting replays it, so callers should treat
    /// this as a warning to surface, not as proof of corruption.
    ErrorsFound(String),
}

/// `e2fsck -n <dev>`: reads only, never writes. Exit 0 → clean; 1/2/4 → errors found (with `-n`
/// nothing is corrected); 8 and above (operational error, usage, cancelled, library) → error.
pub async fn check_ext4(
    runner: &dyn CommandRunner,
    device: &Path,
    cfg: &FormatConfig,
) -> Result<FsckVerdict> {
    let spec = CommandSpec::new("e2fsck", ["-n", &text(device)], cfg.fsck_deadline);
    let out = runner.run(&spec).await?;
    match out.code {
        Some(0) => Ok(FsckVerdict::Clean),
        Some(c) if (1..8).contains(&c) => Ok(FsckVerdict::ErrorsFound(out.combined())),
        _ => Err(Error::CommandFailed {
            command: spec.display(),
            status: out.status_text(),
            output: out.combined(),
        }),
    }
}
