//! `/proc/<pid>/mountinfo` parsing and lookups.
//!
//! The mount table is the only trustworthy answer to "is this mounted, and from what": tools like
//! findmnt can hang or fail and their failures must never read as "not mounted", and `stat` of a
//! mount root can block forever on a dead NVMe device. Parsing is pure; [`read_mount_table`] is the
//! only I/O and runs under a deadline.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Default location of the mount table of the plugin's own mount namespace.
pub const DEFAULT_MOUNTINFO: &str = "/proc/self/mountinfo";

/// A `major:minor` device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl std::str::FromStr for DevNum {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (maj, min) = s
            .split_once(':')
            .ok_or_else(|| format!("device number {s:?} is not major:minor"))?;
        let major = maj
            .parse()
            .map_err(|_| format!("bad major in device number {s:?}"))?;
        let minor = min
            .parse()
            .map_err(|_| format!("bad minor in device number {s:?}"))?;
        Ok(DevNum { major, minor })
    }
}

/// One line of mountinfo, with escapes already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `st_dev` of files on this mount; for block-backed filesystems the device's major:minor.
    pub dev: DevNum,
    /// Root of the mount within its filesystem (not `/` for bind mounts of a subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid`, …).
    pub mount_options: Vec<String>,
    /// Propagation tags such as `shared:1` or `master:2`; may be empty.
    pub optional_fields: Vec<String>,
    pub fs_type: String,
    /// Mount source as the filesystem reports it (e.g. `/dev/nvme1n1`, or `none`).
    pub source: String,
    /// Per-superblock options; `ro` here after an ext4 `errors=remount-ro` event.
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether the mount itself or its superblock is read-only.
    pub fn is_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro") || self.super_read_only()
    }

    /// Whether the superblock is read-only — the kernel's signal that the filesystem hit an error
    /// (or was mounted ro everywhere).
    pub fn super_read_only(&self) -> bool {
        self.super_options.iter().any(|o| o == "ro")
    }
}

/// How to find the mounts of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    /// By `major:minor` — robust against the device being named differently in the table.
    Number(DevNum),
    /// By the source column (exact string after unescaping).
    Source(String),
}

/// A parsed mount table, in kernel order (older mounts first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTable {
    entries: Vec<MountEntry>,
    skipped: Vec<usize>,
}

impl MountTable {
    /// Parses mountinfo text. Malformed lines are skipped and their 1-based numbers kept in
    /// [`MountTable::skipped_lines`] so a caller can log them instead of failing the whole read.
    pub fn parse(text: &str) -> Self {
        let mut table = MountTable::default();
        for (idx, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Some(entry) => table.entries.push(entry),
                None => table.skipped.push(idx + 1),
            }
        }
        table
    }

    pub fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// Line numbers that could not be parsed.
    pub fn skipped_lines(&self) -> &[usize] {
        &self.skipped
    }

    /// All mounts at `path`, bottom first. The path is compared after lexical normalisation only
    /// (no symlink resolution: resolving could `stat` a hung mount).
    pub fn mounts_at(&self, path: &Path) -> Vec<&MountEntry> {
        let want = normalize(path);
        self.entries
            .iter()
            .filter(|e| normalize(&e.mount_point) == want)
            .collect()
    }

    /// The visible mount at `path`: with stacked mounts the last one mounted wins, because that is
    /// the one processes see.
    pub fn top_mount_at(&self, path: &Path) -> Option<&MountEntry> {
        self.mounts_at(path).into_iter().next_back()
    }

    pub fn is_mount_point(&self, path: &Path) -> bool {
        self.top_mount_at(path).is_some()
    }

    /// Every mount whose device matches.
    pub fn mounts_of_device(&self, device: &DeviceRef) -> Vec<&MountEntry> {
        self.entries
            .iter()
            .filter(|e| match device {
                DeviceRef::Number(n) => e.dev == *n,
                DeviceRef::Source(s) => e.source == *s,
            })
            .collect()
    }
}

/// Reads and parses a mountinfo file under a deadline; the read goes through the one
/// executor for blocking calls so a stuck procfs cannot pin the caller nor pile up threads.
pub async fn read_mount_table(path: &Path, deadline: Duration) -> Result<MountTable> {
    let owned = path.to_path_buf();
    let p = owned.clone();
    let key = kcall::CallKey::new("read mountinfo", owned.display().to_string());
    match kcall::global()
        .run(key, deadline, move || std::fs::read(p))
        .await
    {
        Ok(Ok(bytes)) => Ok(MountTable::parse(&escape_invalid_utf8(&bytes))),
        Ok(Err(source)) => Err(Error::Read {
            path: owned,
            source,
        }),
        Err(kcall::CallError::Timeout { .. }) => Err(Error::ReadTimeout {
            path: owned,
            deadline,
        }),
        Err(cause) => Err(Error::NotStarted {
            op: "read of",
            path: owned,
            cause,
        }),
    }
}

/// The kernel writes mount-point bytes as they are (only space, tab, newline and backslash are
/// escaped), so one non-UTF-8 mount anywhere on the node would otherwise fail the whole read.
/// Invalid bytes become `\ooo` escapes, which the parser decodes back to the exact bytes; this is
/// unambiguous because a literal backslash always arrives escaped as `\134`.
fn escape_invalid_utf8(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\{b:03o}");
        }
    }
    out
}

/// Lexical normalisation: drops `.`, repeated and trailing separators, resolves `..` textually.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    // Six fixed fields, the separator, then three more.
    if fields.len() < 10 {
        return None;
    }
    let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    if fields.len() < sep + 4 {
        return None;
    }
    Some(MountEntry {
        mount_id: fields[0].parse().ok()?,
        parent_id: fields[1].parse().ok()?,
        dev: fields[2].parse().ok()?,
        root: unescape_path(fields[3]),
        mount_point: unescape_path(fields[4]),
        mount_options: split_opts(fields[5]),
        optional_fields: fields[6..sep].iter().map(|s| s.to_string()).collect(),
        fs_type: unescape(fields[sep + 1]),
        source: unescape(fields[sep + 2]),
        super_options: split_opts(fields[sep + 3]),
    })
}

fn split_opts(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(unescape)
        .collect()
}

/// Decodes the kernel's `\ooo` octal escapes (space, tab, newline, backslash and any other byte
/// the kernel chose to escape). Invalid sequences are kept literally.
pub(crate) fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s)).into_owned()
}

/// Paths keep their exact bytes: a mount point need not be UTF-8.
fn unescape_path(s: &str) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_bytes(s)))
}

fn unescape_bytes(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = u32::from(digits[0] - b'0') * 64
                    + u32::from(digits[1] - b'0') * 8
                    + u32::from(digits[2] - b'0');
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{normalize, unescape};
    use std::path::Path;

    #[test]
    fn unescape_known_and_keeps_invalid_sequences() {
        assert_eq!(unescape(r"a\040b\011c\012d\134e"), "a b\tc\nd\\e");
        assert_eq!(unescape(r"x\09y"), r"x\09y");
        assert_eq!(unescape(r"end\04"), r"end\04");
        assert_eq!(unescape(r"\777"), r"\777");
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a//b/./c/")), Path::new("/a/b/c"));
        assert_eq!(normalize(Path::new("/a/b/../c")), Path::new("/a/c"));
    }
}
