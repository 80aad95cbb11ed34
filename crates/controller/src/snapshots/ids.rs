//! Snapshot identity: which appliance holds a snapshot, and under which RouterOS slot.
//!
//! A snapshot id is `<backend>:<slot>` like a volume id (a bare slot means the default backend),
//! because a snapshot lives on the appliance of the volume it was cut from: `copy-from` cannot
//! cross appliances. The slot depends only on the CSI snapshot name, so a retried
//! CreateSnapshot finds the copy it already made: `snap-<uuid5(name)>-at-<first 10 hex digits of
//! that uuid>`, the shape the earlier Go driver issued, so its snapshots stay manageable.

use routeros::{Slot, ValueError};
use uuid::Uuid;

use vocab::volume_id::{NotOurs, is_backend_name};

/// Every snapshot slot starts with this; volume slots start with `pvc-`, so the two never meet.
pub const SNAP_PREFIX: &str = "snap-";
/// Namespace for name → slot hashing (RFC 4122 DNS namespace, as for volume names).
const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x6ba7b810_9dad_11d1_80b4_00c04fd430c8);
/// Hex digits of the uuid repeated after `-at-`.
const AT_DIGITS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId {
    pub backend: String,
    pub slot: Slot,
}

impl SnapshotId {
    /// Parses `<backend>:<slot>` or a bare `<slot>` (default backend). Only the two slot shapes
    /// this driver (and the earlier one) ever issued are accepted, so a hand-made disk that
    /// happens to start with `snap-` is never deleted through DeleteSnapshot.
    pub fn parse(id: &str, default_backend: &str) -> Result<SnapshotId, NotOurs> {
        let (backend, slot) = match id.split_once(':') {
            Some((b, s)) => (b, s),
            None => (default_backend, id),
        };
        if !is_backend_name(backend) {
            return Err(NotOurs(format!(
                "snapshot id {id:?} names an invalid backend {backend:?}"
            )));
        }
        if !is_snapshot_slot(slot) {
            return Err(NotOurs(format!(
                "snapshot id {id:?} is not one of this driver's snapshots (expected snap-<uuid>-at-<hex>)"
            )));
        }
        let slot = Slot::new(slot).map_err(|e| NotOurs(format!("snapshot id {id:?}: {e}")))?;
        Ok(SnapshotId {
            backend: backend.to_string(),
            slot,
        })
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.backend, self.slot.as_str())
    }
}

/// The slot for a CSI snapshot name; the same name always gives the same slot. Always valid
/// (55 characters of lower-case hex, digits and `-`); the `Result` only keeps that promise
/// checked by `Slot::new` rather than assumed.
pub fn slot_for_name(name: &str) -> Result<Slot, ValueError> {
    let uuid = Uuid::new_v5(&NAME_NAMESPACE, name.as_bytes());
    let hex = uuid.simple().to_string();
    let at = hex.get(..AT_DIGITS).unwrap_or(&hex);
    Slot::new(&format!("{SNAP_PREFIX}{uuid}-at-{at}"))
}

/// `snap-<uuid>-at-<hex>` (current) or `snap-<uuid>` (earlier driver).
pub fn is_snapshot_slot(slot: &str) -> bool {
    let Some(rest) = slot.strip_prefix(SNAP_PREFIX) else {
        return false;
    };
    let (uuid, at) = match rest.split_once("-at-") {
        Some((u, a)) => (u, Some(a)),
        None => (rest, None),
    };
    let uuid_ok =
        uuid.len() == 36 && Uuid::try_parse(uuid).is_ok() && uuid == uuid.to_ascii_lowercase();
    let at_ok = at.is_none_or(|a| {
        !a.is_empty()
            && a.len() <= 16
            && a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    uuid_ok && at_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_deterministic_and_shaped_like_the_earlier_driver() {
        let a = slot_for_name("snapshot-1").unwrap();
        assert_eq!(a, slot_for_name("snapshot-1").unwrap());
        assert_ne!(a, slot_for_name("snapshot-2").unwrap());
        let s = a.as_str();
        assert!(s.starts_with("snap-"), "{s}");
        assert_eq!(s.len(), 55, "{s}");
        let (uuid, at) = s["snap-".len()..].split_once("-at-").unwrap();
        assert_eq!(at, &uuid.replace('-', "")[..10]);
        assert!(is_snapshot_slot(s));
    }

    #[test]
    fn ids_round_trip_and_bare_slots_mean_the_default_backend() {
        let slot = slot_for_name("x").unwrap();
        let id = SnapshotId::parse(&format!("rds2:{}", slot.as_str()), "default").unwrap();
        assert_eq!(id.backend, "rds2");
        assert_eq!(SnapshotId::parse(&id.to_string(), "other").unwrap(), id);
        let bare = SnapshotId::parse(slot.as_str(), "default").unwrap();
        assert_eq!(bare.backend, "default");
        let legacy = "snap-a1b2c3d4-e5f6-7890-abcd-ef1234567890";
        assert!(SnapshotId::parse(legacy, "default").is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any CSI name (any Unicode, any length) gives a valid slot that parses back as ours,
        /// on the default backend and with one named, and the same name always the same slot.
        #[test]
        fn every_name_maps_to_a_stable_parseable_slot(name in "\\PC{0,200}") {
            let slot = slot_for_name(&name).unwrap();
            proptest::prop_assert_eq!(&slot, &slot_for_name(&name).unwrap());
            let bare = SnapshotId::parse(slot.as_str(), "default").unwrap();
            proptest::prop_assert_eq!(&bare.slot, &slot);
            let named = SnapshotId::parse(&format!("b-2:{}", slot.as_str()), "x").unwrap();
            proptest::prop_assert_eq!(named.backend.as_str(), "b-2");
        }

        /// Arbitrary text is either refused or a slot of the accepted shapes; never a panic.
        #[test]
        fn parsing_arbitrary_ids_never_panics(id in "\\PC{0,120}") {
            if let Ok(parsed) = SnapshotId::parse(&id, "default") {
                proptest::prop_assert!(is_snapshot_slot(parsed.slot.as_str()));
            }
        }
    }

    #[test]
    fn anything_else_is_not_ours() {
        for bad in [
            "",
            "snap-",
            "snap-foo",
            "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "default:pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "snap-A1B2C3D4-E5F6-7890-ABCD-EF1234567890",
            "snap-a1b2c3d4-e5f6-7890-abcd-ef1234567890-at-",
            "snap-a1b2c3d4-e5f6-7890-abcd-ef1234567890-at-xyz",
            "snap-a1b2c3d4-e5f6-7890-abcd-ef1234567890;x",
            "Bad:snap-a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "a:b:snap-a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        ] {
            assert!(
                SnapshotId::parse(bad, "default").is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
