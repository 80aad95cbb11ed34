//! CreateVolume's idempotency rule: when the slot a request maps to already holds a disk, is
//! it the volume this request would have made (answer it again) or another one (ALREADY_EXISTS)?

use csi::v1 as pb;
use csi::v1::volume_capability::AccessType;
use routeros::{Disk, FilePath};

use vocab::error::{DriverError, Result};
use vocab::ownership::{self, Marks, Owned};
use vocab::size;
use vocab::volume_id::VolumeId;

/// What a CreateVolume asks for, to compare with a disk already under its slot.
pub(crate) struct Wanted<'a> {
    pub dir: &'a FilePath,
    pub marks: &'a Marks,
    pub port: u16,
    pub bytes: u64,
    pub range: Option<&'a pb::CapacityRange>,
}

/// A disk found under the requested slot must be the volume this request would have made;
/// anything else is a different volume under the same name (ALREADY_EXISTS). Returns the
/// capacity to report: the disk's, or the requested size when RouterOS printed only a rounded
/// `50.0GiB` that the request's size rounds to.
pub(crate) fn check_same_volume(
    id: &VolumeId,
    disk: &Disk,
    owned: &Owned,
    want: &Wanted<'_>,
) -> Result<u64> {
    let mut diffs = Vec::new();
    let printed = disk.capacity_bytes().unwrap_or(0);
    let tolerance = if disk.capacity_is_exact() {
        0
    } else {
        disk.record
            .get("file-size")
            .and_then(size::display_tolerance)
            .unwrap_or(0)
    };
    let capacity = if size::compatible(printed, want.bytes, want.range) {
        printed
    } else if tolerance > 0 && printed.abs_diff(want.bytes) <= tolerance {
        want.bytes
    } else {
        diffs.push(format!("size {printed} bytes (requested {})", want.bytes));
        printed
    };
    if &owned.dir != want.dir {
        diffs.push(format!(
            "directory {:?} (requested {:?})",
            owned.dir.as_str(),
            want.dir.as_str()
        ));
    }
    if owned.marks.host_fencing != want.marks.host_fencing {
        diffs.push(format!(
            "hostFencing {} (requested {})",
            owned.marks.host_fencing, want.marks.host_fencing
        ));
    }
    if owned.marks.fingerprint != want.marks.fingerprint {
        diffs.push(
            "parameters, content source or filesystem type (recorded fingerprint differs)".into(),
        );
    }
    if disk.nvme_port != Some(want.port) {
        diffs.push(format!(
            "NVMe port {:?} (requested {})",
            disk.nvme_port, want.port
        ));
    }
    if diffs.is_empty() {
        Ok(capacity)
    } else {
        Err(DriverError::AlreadyExists(format!(
            "volume {id} already exists with different parameters: {}",
            diffs.join(", ")
        )))
    }
}

/// Everything a CreateVolume request decides besides its size, as the fingerprint recorded in
/// the volume's file name (`vocab::ownership`): every parameter, the content source and any
/// access type other than the default ext4 mount. A request that sets none of these (and a
/// volume whose file carries no fingerprint: static, or from an earlier driver) is "plain", so
/// such volumes keep the plain `<slot>.img` name and a plain retry matches them.
pub(crate) fn request_fingerprint(req: &pb::CreateVolumeRequest) -> Option<String> {
    use pb::volume_content_source::Type as Src;
    let mut parts: Vec<String> = req
        .parameters
        .iter()
        .map(|(k, v)| format!("param:{k}={v}"))
        .collect();
    match req
        .volume_content_source
        .as_ref()
        .and_then(|s| s.r#type.as_ref())
    {
        Some(Src::Snapshot(s)) => parts.push(format!("source:snapshot={}", s.snapshot_id)),
        Some(Src::Volume(v)) => parts.push(format!("source:volume={}", v.volume_id)),
        None => {}
    }
    for cap in &req.volume_capabilities {
        match &cap.access_type {
            Some(AccessType::Mount(m)) if m.fs_type.is_empty() || m.fs_type == "ext4" => {}
            Some(AccessType::Mount(m)) => parts.push(format!("access:mount={}", m.fs_type)),
            Some(AccessType::Block(_)) => parts.push("access:block".into()),
            None => parts.push("access:none".into()),
        }
    }
    (!parts.is_empty()).then(|| ownership::fingerprint(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RouterOS may print a disk's size only as `50.0GiB`: a retry of the request that made it
    /// is the same volume, and reports the size it asked for.
    #[test]
    fn a_retry_against_a_rounded_size_is_the_same_volume() {
        let slot = "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890";
        let dir = FilePath::new("/storage-pool/metal-csi").unwrap();
        let text = format!(
            "slot={slot} type=file file-path={}/{slot}.img file-size=50.0GiB nvme-tcp-server-port=4420",
            dir.as_str()
        );
        let disk = routeros::disk::parse_disks(&text).unwrap().remove(0);
        let owned = Owned {
            file: FilePath::new(&format!("{}/{slot}.img", dir.as_str())).unwrap(),
            dir: dir.clone(),
            marks: Marks::default(),
        };
        let id = VolumeId::parse(slot, "default").unwrap();
        let asked = (50 << 30) + (7 << 20);
        let none = Marks::default();
        let want = |bytes| Wanted {
            dir: &dir,
            marks: &none,
            port: 4420,
            bytes,
            range: None,
        };
        assert_eq!(
            check_same_volume(&id, &disk, &owned, &want(asked)).unwrap(),
            asked
        );
        assert!(matches!(
            check_same_volume(&id, &disk, &owned, &want(51 << 30)),
            Err(DriverError::AlreadyExists(_))
        ));
    }
}
