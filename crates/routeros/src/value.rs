//! Validated values: the only things a command builder accepts.
//!
//! Each newtype checks an allow-list on construction and is then safe to place into a
//! command line (quoted where RouterOS syntax needs it).

use crate::error::ValueError;

/// A RouterOS disk slot name: `^[a-zA-Z0-9-]+$`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(String);

/// An NVMe Qualified Name, `nqn.yyyy-mm.reverse.domain:suffix`, at most 223 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nqn(String);

/// An absolute, clean path on the RDS (`/storage-pool/metal-csi/pvc-….img`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(String);

/// The pool mount point used by the capacity query (`storage-pool`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountPoint(String);

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port(u16);

/// An exact byte count. Formatting for a command never rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

#[allow(clippy::missing_errors_doc)]
impl Slot {
    pub fn new(s: &str) -> Result<Self, ValueError> {
        let _ = s;
        unimplemented!("routeros skeleton")
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Nqn {
    pub fn new(s: &str) -> Result<Self, ValueError> {
        let _ = s;
        unimplemented!("routeros skeleton")
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FilePath {
    pub fn new(s: &str) -> Result<Self, ValueError> {
        let _ = s;
        unimplemented!("routeros skeleton")
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True when `self` lies under `base` by whole path components.
    pub fn is_under(&self, base: &FilePath) -> bool {
        let _ = base;
        unimplemented!("routeros skeleton")
    }
    /// `base/child` (child validated as one component).
    pub fn join(&self, child: &str) -> Result<FilePath, ValueError> {
        let _ = child;
        unimplemented!("routeros skeleton")
    }
    /// First path component (`/storage-pool/metal-csi` → `storage-pool`): the pool mount point.
    pub fn mount_point(&self) -> MountPoint {
        unimplemented!("routeros skeleton")
    }
}

impl MountPoint {
    pub fn new(s: &str) -> Result<Self, ValueError> {
        let _ = s;
        unimplemented!("routeros skeleton")
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Port {
    pub fn new(p: u16) -> Result<Self, ValueError> {
        let _ = p;
        unimplemented!("routeros skeleton")
    }
    /// Strict decimal parse; `4420abc`, `0` and `70000` are errors.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let _ = s;
        unimplemented!("routeros skeleton")
    }
    pub fn get(self) -> u16 {
        self.0
    }
}
