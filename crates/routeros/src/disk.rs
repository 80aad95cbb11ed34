//! `/disk print detail` records as typed disks.

use crate::error::ParseError;
use crate::record::{Record, for_each_record};
use crate::size::parse_size;

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
    /// Every printed field; empty for disks from [`parse_disk_listing`].
    pub record: Record,
}

impl Disk {
    /// Best size known: `size=` (exact bytes) first, then `file-size=`, which is only
    /// approximate when RouterOS printed it with a unit (see [`Disk::capacity_is_exact`]).
    pub fn capacity_bytes(&self) -> Option<u64> {
        self.size_bytes.or(self.file_size_bytes)
    }
    /// Whether [`Disk::capacity_bytes`] came from a raw byte count rather than a rounded
    /// `50.0GiB` display, so callers comparing sizes know when equality is meaningful.
    pub fn capacity_is_exact(&self) -> bool {
        if self.size_bytes.is_some() {
            return true;
        }
        self.record
            .get("file-size")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b' '))
    }
    /// `status` when printed, else `ready` for an exported file disk, else `unknown`.
    ///
    /// Real RouterOS prints no status for file disks; an exported file disk is serving.
    pub fn effective_status(&self) -> &str {
        match self.status.as_deref() {
            Some(s) if !s.is_empty() => s,
            _ if self.kind.as_deref() == Some("file") && self.nvme_export => "ready",
            _ => "unknown",
        }
    }
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_owned)
}

fn size_field(record: &Record, slot: &str, key: &str) -> Result<Option<u64>, ParseError> {
    match record.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_size(v)
            .map(Some)
            .map_err(|e| ParseError(format!("disk {slot:?}: {key}: {}", e.0))),
    }
}

/// Converts one record; a record without `slot` is an error.
pub fn disk_from_record(record: Record) -> Result<Disk, ParseError> {
    let slot = match record.get("slot") {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => {
            return Err(ParseError(format!(
                "disk record without a slot (fields: {})",
                record
                    .fields
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
    };
    let size_bytes = size_field(&record, &slot, "size")?;
    let file_size_bytes = size_field(&record, &slot, "file-size")?;
    let nvme_port = match record.get("nvme-tcp-server-port").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            crate::value::Port::parse(v)
                .map_err(|e| ParseError(format!("disk {slot:?}: nvme-tcp-server-port: {e}")))?
                .get(),
        ),
    };
    let file_path = non_empty(record.get("file-path")).map(|p| {
        if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        }
    });
    Ok(Disk {
        kind: non_empty(record.get("type")),
        file_path,
        size_bytes,
        file_size_bytes,
        nvme_export: record.get("nvme-tcp-export") == Some("yes"),
        nvme_port,
        nvme_nqn: non_empty(record.get("nvme-tcp-server-nqn")),
        allow_host: record
            .get("nvme-tcp-server-allow-host-name")
            .map(str::to_owned),
        status: non_empty(record.get("status")),
        creation_time: non_empty(record.get("creation-time")),
        slot,
        record,
    })
}

/// Parses a whole `/disk print detail …` output.
///
/// Text that is not a record (an error message, a `key: value` layout) is an error rather
/// than "no disks", so a failed query can never look like an empty RDS.
pub fn parse_disks(output: &str) -> Result<Vec<Disk>, ParseError> {
    parse_disks_keeping(output, true)
}

/// [`parse_disks`] for listings of many disks: each record is converted as soon as it is read
/// and [`Disk::record`] is left empty, so neither every raw record at once nor a raw record per
/// disk is held; a listing of 10,000 disks keeps only their typed fields.
pub fn parse_disk_listing(output: &str) -> Result<Vec<Disk>, ParseError> {
    parse_disks_keeping(output, false)
}

fn parse_disks_keeping(output: &str, keep_records: bool) -> Result<Vec<Disk>, ParseError> {
    let mut disks = Vec::new();
    let mut failed = None;
    let stray = for_each_record(output, |record| {
        if failed.is_some() {
            return;
        }
        match disk_from_record(record) {
            Ok(mut disk) => {
                if !keep_records {
                    disk.record = Record::default();
                }
                disks.push(disk);
            }
            Err(e) => failed = Some(e),
        }
    });
    if let Some(line) = stray.first() {
        return Err(ParseError(format!(
            "unexpected line in disk listing: {:?}",
            line.chars().take(120).collect::<String>()
        )));
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(disks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HW: &str = "type=file slot=\"pvc-test-123\" slot-default=\"\" parent=\"\" fs=-\r\n               model=\"/storage-pool/test.img\"\r\n               size=53 687 091 200 mount-filesystem=yes mount-read-only=no\r\n               nvme-tcp-export=yes nvme-tcp-server-port=4420\r\n               nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-test-123\"\r\n               nvme-tcp-server-allow-host-name=\"\" iscsi-export=no\r\n               file-path=/storage-pool/test.img\r\n               file-size=50.0GiB file-offset=0";

    #[test]
    fn a_listing_parses_like_single_disks_without_the_raw_records() {
        let two = format!(
            "0 {HW}\r\n\r\n 1 {}",
            HW.replace("pvc-test-123", "pvc-other")
        );
        let full = parse_disks(&two).unwrap();
        let listed = parse_disk_listing(&two).unwrap();
        assert_eq!(listed.len(), 2);
        for (f, l) in full.iter().zip(&listed) {
            assert!(!f.record.fields.is_empty());
            assert_eq!(l.record, Record::default());
            assert_eq!(
                Disk {
                    record: Record::default(),
                    ..f.clone()
                },
                *l
            );
        }
        assert!(parse_disk_listing("failure: no such item").is_err());
        assert!(parse_disk_listing("0 type=file size=1").is_err(), "no slot");
    }

    #[test]
    fn parses_a_real_layout_disk() {
        let disks = parse_disks(HW).unwrap();
        assert_eq!(disks.len(), 1);
        let d = &disks[0];
        assert_eq!(d.slot, "pvc-test-123");
        assert_eq!(d.kind.as_deref(), Some("file"));
        assert_eq!(d.file_path.as_deref(), Some("/storage-pool/test.img"));
        assert_eq!(d.size_bytes, Some(53_687_091_200));
        assert_eq!(d.file_size_bytes, Some(50 << 30));
        assert!(d.nvme_export);
        assert_eq!(d.nvme_port, Some(4420));
        assert_eq!(
            d.nvme_nqn.as_deref(),
            Some("nqn.2000-02.com.mikrotik:pvc-test-123")
        );
        assert_eq!(d.allow_host.as_deref(), Some(""));
        assert_eq!(d.status, None);
        assert_eq!(d.effective_status(), "ready");
        assert_eq!(d.capacity_bytes(), Some(53_687_091_200));
        assert!(d.capacity_is_exact());
    }

    #[test]
    fn file_path_gets_a_leading_slash_and_nqn_may_be_unquoted() {
        let d = &parse_disks(
            "slot=a type=file file-path=storage-pool/a.img nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:a",
        )
        .unwrap()[0];
        assert_eq!(d.file_path.as_deref(), Some("/storage-pool/a.img"));
        assert_eq!(d.nvme_nqn.as_deref(), Some("nqn.2000-02.com.mikrotik:a"));
    }

    #[test]
    fn effective_status_falls_back_in_order() {
        let status = |s: &str| parse_disks(s).unwrap()[0].effective_status().to_owned();
        assert_eq!(
            status("slot=a type=file status=\"running\" nvme-tcp-export=yes"),
            "running"
        );
        assert_eq!(status("slot=a type=file nvme-tcp-export=yes"), "ready");
        assert_eq!(status("slot=a type=file nvme-tcp-export=no"), "unknown");
        assert_eq!(
            status("slot=a type=partition nvme-tcp-export=yes"),
            "unknown"
        );
    }

    #[test]
    fn capacity_prefers_size_then_file_size() {
        let d = &parse_disks("slot=a size=1 024 file-size=2K").unwrap()[0];
        assert_eq!(d.capacity_bytes(), Some(1024));
        let d = &parse_disks("slot=a file-size=10737418240").unwrap()[0];
        assert_eq!(d.size_bytes, None);
        assert_eq!(d.capacity_bytes(), Some(10_737_418_240));
        assert!(d.capacity_is_exact());
        let d = &parse_disks("slot=a file-size=50.0GiB").unwrap()[0];
        assert_eq!(d.capacity_bytes(), Some(50 << 30));
        assert!(!d.capacity_is_exact());
        let d = &parse_disks("slot=a").unwrap()[0];
        assert_eq!(d.capacity_bytes(), None);
    }

    #[test]
    fn record_without_slot_is_an_error() {
        assert!(parse_disks("type=file file-path=/a.img").is_err());
    }

    #[test]
    fn bad_numbers_are_errors() {
        assert!(parse_disks("slot=a size=lots").is_err());
        assert!(parse_disks("slot=a nvme-tcp-server-port=70000").is_err());
    }

    #[test]
    fn stray_text_is_an_error_and_legend_alone_is_empty() {
        assert!(parse_disks("failure: no such item").is_err());
        assert!(parse_disks("slot: pvc-1\ntype: file\n").is_err());
        assert!(parse_disks("Flags: X - disabled\r\n").unwrap().is_empty());
        assert!(parse_disks("").unwrap().is_empty());
    }
}
