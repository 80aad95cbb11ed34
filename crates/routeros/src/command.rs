//! Typed builders for every command the driver sends. `Command` can only be made here.

use crate::error::Failure;
use crate::value::{ByteSize, FilePath, MountPoint, Nqn, Port, Slot};

/// A complete, safe command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    line: String,
    verb: &'static str,
    mutating: bool,
}

impl Command {
    pub fn as_str(&self) -> &str {
        &self.line
    }
    /// Low-cardinality label for metrics and logs, e.g. `disk-add`, `disk-print`.
    pub fn verb(&self) -> &'static str {
        self.verb
    }
    /// Whether the command changes RDS state (drives retry policy and audit).
    pub fn is_mutating(&self) -> bool {
        self.mutating
    }
}

/// NVMe/TCP export settings for a new disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeExport {
    pub port: Port,
    pub nqn: Nqn,
}

/// `/disk add type=file …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskAdd {
    pub slot: Slot,
    pub file_path: FilePath,
    /// Required unless `copy_from` is set (a copy takes the source's size).
    pub file_size: Option<ByteSize>,
    pub nvme: Option<NvmeExport>,
    /// `copy-from=[find slot=…]`: copy-on-write copy of another disk.
    pub copy_from: Option<Slot>,
}

pub fn disk_add(spec: &DiskAdd) -> Command {
    let _ = spec;
    unimplemented!("routeros skeleton")
}
/// `/disk print detail where slot=<slot>`
pub fn disk_print_slot(slot: &Slot) -> Command {
    let _ = slot;
    unimplemented!("routeros skeleton")
}
/// `/disk print detail where slot~"^<prefix>"` — the driver's disks only.
pub fn disk_print_slot_prefix(prefix: &Slot) -> Command {
    let _ = prefix;
    unimplemented!("routeros skeleton")
}
/// `/disk set [find slot=<slot>] file-size=<size>`
pub fn disk_set_size(slot: &Slot, size: ByteSize) -> Command {
    let _ = (slot, size);
    unimplemented!("routeros skeleton")
}
/// `/disk remove [find slot=<slot>]`
pub fn disk_remove(slot: &Slot) -> Command {
    let _ = slot;
    unimplemented!("routeros skeleton")
}
/// `/file print detail where name="<path without leading />"`
pub fn file_print(path: &FilePath) -> Command {
    let _ = path;
    unimplemented!("routeros skeleton")
}
/// Files directly or indirectly under `dir` (no RouterOS regex metacharacters from input).
pub fn file_print_under(dir: &FilePath) -> Command {
    let _ = dir;
    unimplemented!("routeros skeleton")
}
/// `/file remove [find name="<path without leading />"]`
pub fn file_remove(path: &FilePath) -> Command {
    let _ = path;
    unimplemented!("routeros skeleton")
}
/// `/disk print detail where mount-point="<mp>"`
pub fn capacity(mount_point: &MountPoint) -> Command {
    let _ = mount_point;
    unimplemented!("routeros skeleton")
}
/// `/system resource print`
pub fn system_resource() -> Command {
    unimplemented!("routeros skeleton")
}

/// Reads both streams and the exit status; returns the failure RouterOS reported, if any.
/// A command failed when the exit status is non-zero or any line of either stream has a
/// known failure shape (`failure: …`, `no such item`, `bad command name …`, …).
pub fn detect_failure(stdout: &str, stderr: &str, exit_status: Option<u32>) -> Option<Failure> {
    let _ = (stdout, stderr, exit_status);
    unimplemented!("routeros skeleton")
}
