//! Mount option policy.
//!
//! User options come from StorageClass `mountOptions` and volume capabilities, i.e. from people
//! who must not be able to gain privileges on the node. So:
//! - `nosuid` and `nodev` are always set and cannot be undone (`suid`/`dev` are rejected);
//! - `noexec` is set unless the operator opts out ([`OptionPolicy::allow_exec`]); only then is a
//!   user `exec` accepted;
//! - everything else must be on an allow-list, one option per entry (a `,` inside an entry is an
//!   injection attempt), with a value exactly when the option takes one.
//!
//! Allowed for every mount (including bind mounts): `ro`, `rw`, `noatime`, `relatime`,
//! `strictatime`, `nodiratime`, `lazytime`, `sync`, `async`, `nosuid`, `nodev`, `noexec`.
//! Filesystem-specific options are passed to the filesystem as mount data and are refused for
//! bind mounts (the kernel would ignore them):
//! - ext4: `discard`, `nodiscard`, `data=ordered|journal|writeback`,
//!   `errors=remount-ro|continue` (`panic` would let a volume take the node down), `commit=<1..300>`;
//! - xfs: `discard`, `nodiscard`, `inode64`, `nouuid` (needed to mount a clone next to its
//!   origin), `logbsize=<16k|32k|64k|128k|256k>`, `allocsize=<n>[k|m|g]`.

use crate::error::{Error, Result};
use crate::fstype::FsType;
use crate::sys::MountFlags;

/// Operator-level switches for the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionPolicy {
    /// Do not add `noexec`, and accept a user `exec`. Off by default.
    pub allow_exec: bool,
}

/// Validated options, split the way `mount(2)` wants them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MountFlags,
    /// Filesystem-specific options, each already validated; joined with `,` as mount data.
    pub data: Vec<String>,
}

impl MountOptions {
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }
}

const COMMON: &[&str] = &[
    "ro",
    "rw",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "lazytime",
    "sync",
    "async",
    "nosuid",
    "nodev",
    "noexec",
];
const EXT4: &[&str] = &[
    "discard",
    "nodiscard",
    "data=ordered|journal|writeback",
    "errors=remount-ro|continue",
    "commit=<1..300>",
];
const XFS: &[&str] = &[
    "discard",
    "nodiscard",
    "inode64",
    "nouuid",
    "logbsize=<16k|32k|64k|128k|256k>",
    "allocsize=<n>[k|m|g]",
];

fn allowed_list(fs: Option<FsType>, policy: OptionPolicy) -> String {
    let mut all: Vec<&str> = COMMON.to_vec();
    if policy.allow_exec {
        all.push("exec");
    }
    match fs {
        Some(FsType::Ext4) => all.extend_from_slice(EXT4),
        Some(FsType::Xfs) => all.extend_from_slice(XFS),
        None => {}
    }
    all.join(", ")
}

/// Validates user options for a filesystem mount (`fs = Some(..)`) or a bind mount (`None`) and
/// returns the effective flags and data.
pub fn build_mount_options<S: AsRef<str>>(
    user: &[S],
    fs: Option<FsType>,
    policy: OptionPolicy,
) -> Result<MountOptions> {
    let mut flags = MountFlags::secure();
    flags.noexec = !policy.allow_exec;
    let mut data = Vec::new();
    let reject = |opt: &str, reason: &str| Error::MountOption {
        option: opt.to_string(),
        reason: reason.to_string(),
        allowed: allowed_list(fs, policy),
    };

    for raw in user {
        let opt = raw.as_ref();
        if opt.is_empty() {
            return Err(reject(opt, "empty option"));
        }
        if opt.contains(',') {
            return Err(reject(opt, "contains ',' (one option per entry)"));
        }
        if opt.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(reject(opt, "contains whitespace or control characters"));
        }
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };

        if COMMON.contains(&name) || matches!(name, "exec" | "suid" | "dev") {
            if value.is_some() {
                return Err(reject(opt, "option takes no value"));
            }
            match name {
                "suid" | "dev" => return Err(reject(opt, "would allow privilege escalation")),
                "exec" if !policy.allow_exec => {
                    return Err(reject(opt, "exec is not enabled for this driver"));
                }
                "exec" => flags.noexec = false,
                "ro" => flags.read_only = true,
                "rw" => flags.read_only = false,
                "noatime" | "relatime" | "strictatime" => {
                    flags.noatime = name == "noatime";
                    flags.relatime = name == "relatime";
                    flags.strictatime = name == "strictatime";
                }
                "nodiratime" => flags.nodiratime = true,
                "lazytime" => flags.lazytime = true,
                "sync" => flags.sync = true,
                "async" => flags.sync = false,
                "noexec" => flags.noexec = true,
                // nosuid, nodev: already set.
                _ => {}
            }
            continue;
        }

        let Some(fs) = fs else {
            return Err(reject(
                opt,
                "filesystem options do not apply to bind mounts",
            ));
        };
        check_fs_option(fs, name, value).map_err(|reason| reject(opt, &reason))?;
        data.push(opt.to_string());
    }
    Ok(MountOptions { flags, data })
}

fn check_fs_option(fs: FsType, name: &str, value: Option<&str>) -> std::result::Result<(), String> {
    let no_value = |v: Option<&str>| match v {
        None => Ok(()),
        Some(_) => Err("option takes no value".to_string()),
    };
    let need_value = |v: Option<&str>| -> std::result::Result<String, String> {
        match v {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err("option needs a value".to_string()),
        }
    };
    match (fs, name) {
        (_, "discard" | "nodiscard") => no_value(value),
        (FsType::Ext4, "data") => match need_value(value)?.as_str() {
            "ordered" | "journal" | "writeback" => Ok(()),
            _ => Err("data= must be ordered, journal or writeback".to_string()),
        },
        (FsType::Ext4, "errors") => match need_value(value)?.as_str() {
            "remount-ro" | "continue" => Ok(()),
            _ => Err("errors= must be remount-ro or continue".to_string()),
        },
        (FsType::Ext4, "commit") => match need_value(value)?.parse::<u32>() {
            Ok(n) if (1..=300).contains(&n) => Ok(()),
            _ => Err("commit= must be a number of seconds from 1 to 300".to_string()),
        },
        (FsType::Xfs, "inode64" | "nouuid") => no_value(value),
        (FsType::Xfs, "logbsize") => match need_value(value)?.as_str() {
            "16k" | "32k" | "64k" | "128k" | "256k" => Ok(()),
            _ => Err("logbsize= must be one of 16k, 32k, 64k, 128k, 256k".to_string()),
        },
        (FsType::Xfs, "allocsize") => {
            let v = need_value(value)?;
            let digits = v.trim_end_matches(['k', 'm', 'g']);
            let suffixes = v.len() - digits.len();
            if !digits.is_empty() && suffixes <= 1 && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err("allocsize= must be a number with an optional k, m or g suffix".to_string())
            }
        }
        _ => Err(format!("not allowed for {fs}")),
    }
}
