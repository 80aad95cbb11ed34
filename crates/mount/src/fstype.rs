//! Filesystem types the driver creates and grows.
//!
//! Only ext4 and xfs: existing volumes use them (or ext3, which ext4 mounts), and each type
//! more is another mkfs and grow path to keep safe. Mounting an *existing* filesystem of another type is still refused,
//! never reformatted.

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FsType {
    type Err = Error;

    /// An empty string means the CSI default, ext4.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => Err(Error::UnsupportedFilesystem(other.to_string())),
        }
    }
}
