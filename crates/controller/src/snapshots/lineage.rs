//! Where a snapshot came from and when: kept in the snapshot's own backing-file name.
//!
//! Real RouterOS prints no source field for a `copy-from` disk (the earlier driver parsed a
//! `source-volume=` that only its test double printed, so on hardware an idempotent retry failed
//! and filtering by source found nothing). The driver therefore records lineage itself, and the
//! one place that needs no Kubernetes, survives controller restarts and is printed by every
//! RouterOS version we have output from is the disk's `file-path=` (and the `/file` name):
//!
//! ```text
//! <dir>/<snapshot slot>.src-<source slot>.t-<unix seconds>.img
//! ```
//!
//! The source's backend is the snapshot's own (copies never cross appliances), so the slot is
//! enough. `<dir>` is the source volume's directory, on the same pool, so the copy can share
//! extents. A slot holds only `[A-Za-z0-9-]`, so `.` separates the parts unambiguously, and the
//! name starts with `snap-`, which keeps the orphan reconciler (it only ever considers `pvc-`
//! names) away from it. The size is not encoded: the disk prints its own `size=`.
//!
//! A snapshot whose file is named plainly `<slot>.img` (made by the earlier driver, or renamed by
//! hand) has no lineage; callers treat every missing part as unknown, never as a mismatch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use routeros::Slot;

const SOURCE_TAG: &str = "src-";
const TIME_TAG: &str = "t-";
const EXT: &str = ".img";

/// What a snapshot's file name says about it; each part may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    pub source: Option<Slot>,
    pub created: Option<SystemTime>,
}

/// The file name that records `source` and `created` for snapshot `snap`.
pub fn file_name(snap: &Slot, source: &Slot, created: SystemTime) -> String {
    let secs = created
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{}.{SOURCE_TAG}{}.{TIME_TAG}{secs}{EXT}",
        snap.as_str(),
        source.as_str()
    )
}

/// Reads lineage back from a snapshot disk's file path. Anything that is not exactly what
/// [`file_name`] writes is ignored part by part.
pub fn parse(snap_slot: &str, file_path: &str) -> Lineage {
    let name = file_path.rsplit('/').next().unwrap_or(file_path);
    let Some(rest) = name
        .strip_suffix(EXT)
        .and_then(|n| n.strip_prefix(snap_slot))
    else {
        return Lineage::default();
    };
    let mut lineage = Lineage::default();
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        if let Some(src) = part.strip_prefix(SOURCE_TAG) {
            lineage.source = Slot::new(src).ok();
        } else if let Some(secs) = part.strip_prefix(TIME_TAG) {
            lineage.created = secs
                .parse::<u64>()
                .ok()
                .filter(|_| secs.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)));
        }
    }
    lineage
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = "snap-5f1c3e2a-8b7d-5c4e-9a1b-2c3d4e5f6a7b-at-5f1c3e2a8b";
    const PVC: &str = "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890";

    #[test]
    fn round_trips_through_a_path() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let name = file_name(&Slot::new(SNAP).unwrap(), &Slot::new(PVC).unwrap(), t);
        assert_eq!(name, format!("{SNAP}.src-{PVC}.t-1764000000.img"));
        let l = parse(SNAP, &format!("/storage-pool/metal-csi/{name}"));
        assert_eq!(l.source.unwrap().as_str(), PVC);
        assert_eq!(l.created, Some(t));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever slot and time are written come back; any other path parses without panic.
        #[test]
        fn written_lineage_reads_back(src in "[a-zA-Z0-9-]{1,64}", secs in 0u64..=u32::MAX as u64 * 4, junk in "\\PC{0,100}") {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let name = file_name(&Slot::new(SNAP).unwrap(), &Slot::new(&src).unwrap(), t);
            let l = parse(SNAP, &format!("/storage-pool/x/{name}"));
            proptest::prop_assert_eq!(l.source.map(|s| s.as_str().to_string()), Some(src.clone()));
            proptest::prop_assert_eq!(l.created, Some(t));
            let _ = parse(SNAP, &junk);
            let _ = parse(&junk, &format!("/p/{junk}.img"));
        }
    }

    #[test]
    fn plain_and_foreign_names_have_no_lineage() {
        assert_eq!(
            parse(SNAP, &format!("/storage-pool/metal-csi/{SNAP}.img")),
            Lineage::default()
        );
        assert_eq!(
            parse(SNAP, "/storage-pool/metal-csi/other.src-pvc-1.t-5.img"),
            Lineage::default()
        );
    }

    #[test]
    fn parts_are_read_independently() {
        let l = parse(SNAP, &format!("/p/{SNAP}.src-{PVC}.t-soon.img"));
        assert_eq!(l.source.unwrap().as_str(), PVC);
        assert_eq!(l.created, None);
        let l = parse(SNAP, &format!("/p/{SNAP}.t-+5.img"));
        assert_eq!(l, Lineage::default());
        let l = parse(SNAP, &format!("/p/{SNAP}.t-7.img"));
        assert_eq!(l.created, Some(UNIX_EPOCH + Duration::from_secs(7)));
    }
}
