//! `/disk print detail` records as typed disks.

use crate::error::ParseError;
use crate::record::Record;

/// A disk as RouterOS reports it. Optional fields are absent on some firmware or disk types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub slot: String,
    /// `type=` (`file` for file-backed volumes).
    pub kind: Option<String>,
    /// Normalised to a leading `/`; mid-token wraps rejoined.
    pub file_path: Option<String>,
    /// Exact bytes from `size=` when printed.
    pub size_bytes: Option<u64>,
    /// Bytes from `file-size=`; exact when printed raw, approximate when `50.0GiB`.
    pub file_size_bytes: Option<u64>,
    pub nvme_export: bool,
    pub nvme_port: Option<u16>,
    pub nvme_nqn: Option<String>,
    /// `nvme-tcp-server-allow-host-name=` (empty means any host).
    pub allow_host: Option<String>,
    /// `status=` if printed; real RouterOS omits it for file disks.
    pub status: Option<String>,
    pub creation_time: Option<String>,
    pub record: Record,
}

impl Disk {
    /// Best exact size: `size=` first, then a raw `file-size=`.
    pub fn capacity_bytes(&self) -> Option<u64> {
        unimplemented!("routeros skeleton")
    }
    /// `status` when printed, else `ready` for an exported file disk, else `unknown`.
    pub fn effective_status(&self) -> &str {
        unimplemented!("routeros skeleton")
    }
}

/// Converts one record; a record without `slot` is an error.
pub fn disk_from_record(record: Record) -> Result<Disk, ParseError> {
    let _ = record;
    unimplemented!("routeros skeleton")
}

/// Parses a whole `/disk print detail …` output.
pub fn parse_disks(output: &str) -> Result<Vec<Disk>, ParseError> {
    let _ = output;
    unimplemented!("routeros skeleton")
}
