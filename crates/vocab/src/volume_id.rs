//! Volume identity: which appliance holds a volume, and under which RouterOS slot.
//!
//! A volume id is `<backend>:<slot>`, so a controller configured with several RDS appliances
//! always knows where a volume lives without asking each of them. A bare `<slot>` (the shape the
//! earlier Go driver used, `pvc-<uuid>`) means the default backend, so volumes it provisioned stay
//! manageable. Every slot the driver creates starts with [`SLOT_PREFIX`]; a slot without it is
//! never ours, which keeps the pool disk and anything an operator made by hand out of reach.

use routeros::{Nqn, Slot, ValueError};
use uuid::Uuid;

/// Every slot this driver creates starts with this; the node's managed NQN prefix relies on it.
pub const SLOT_PREFIX: &str = "pvc-";
/// NQN prefix RouterOS uses for NVMe/TCP exports.
pub const NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik";
/// Namespace for name → slot hashing (RFC 4122 DNS namespace, as the earlier driver used).
const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x6ba7b810_9dad_11d1_80b4_00c04fd430c8);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId {
    pub backend: String,
    pub slot: Slot,
}

/// Why a string is not a volume id of this driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotOurs(pub String);

impl VolumeId {
    /// Parses `<backend>:<slot>` or a bare legacy `<slot>` (default backend).
    pub fn parse(id: &str, default_backend: &str) -> Result<VolumeId, NotOurs> {
        let (backend, slot) = match id.split_once(':') {
            Some((b, s)) => (b, s),
            None => (default_backend, id),
        };
        if !is_backend_name(backend) {
            return Err(NotOurs(format!(
                "volume id {id:?} names an invalid backend {backend:?}"
            )));
        }
        if !slot.starts_with(SLOT_PREFIX) {
            return Err(NotOurs(format!(
                "volume id {id:?} is not one of this driver's volumes (slot must start with {SLOT_PREFIX:?})"
            )));
        }
        let slot = Slot::new(slot).map_err(|e| NotOurs(format!("volume id {id:?}: {e}")))?;
        Ok(VolumeId {
            backend: backend.to_string(),
            slot,
        })
    }

    /// Why `id` cannot be a volume id of any driver (characters a slot never holds, a
    /// malformed backend, too many `:`), or `None` when it is well formed. A well-formed id
    /// that is not this driver's (`fake-vol-id-1`) is merely unknown: NOT_FOUND, not
    /// INVALID_ARGUMENT.
    pub fn malformed(id: &str) -> Option<String> {
        let (backend, slot) = match id.split_once(':') {
            Some((b, s)) => (Some(b), s),
            None => (None, id),
        };
        if let Some(b) = backend
            && !is_backend_name(b)
        {
            return Some(format!(
                "volume id {id:?} is malformed: backend {b:?} must be 1-32 lower-case letters, digits and '-'"
            ));
        }
        Slot::new(slot)
            .err()
            .map(|e| format!("volume id {id:?} is malformed: {e}"))
    }

    /// The NQN this volume is exported under.
    pub fn nqn(&self) -> Result<Nqn, ValueError> {
        nqn_for_slot(&self.slot)
    }
}

impl std::fmt::Display for VolumeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.backend, self.slot.as_str())
    }
}

/// Backend names appear in volume ids and StorageClasses: keep them short and plain.
pub fn is_backend_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// Maps a CSI volume name to a slot, deterministically. The external-provisioner's names
/// (`pvc-<uuid>`) are kept as they are, so operators can match disks to PVs at a glance; any
/// other name (sanity suites, hand-made names with dots or capitals, names too long for a slot)
/// becomes `pvc-<uuid5(name)>`, which can never collide with a kept name in practice.
pub fn slot_for_name(name: &str) -> Result<Slot, ValueError> {
    if is_provisioner_name(name) {
        return Slot::new(name);
    }
    Slot::new(&format!(
        "{SLOT_PREFIX}{}",
        Uuid::new_v5(&NAME_NAMESPACE, name.as_bytes())
    ))
}

fn is_provisioner_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(SLOT_PREFIX) else {
        return false;
    };
    rest.len() == 36 && Uuid::try_parse(rest).is_ok() && rest == rest.to_ascii_lowercase()
}

pub fn nqn_for_slot(slot: &Slot) -> Result<Nqn, ValueError> {
    Nqn::new(&format!(
        "{NQN_PREFIX}:{}",
        slot.as_str().to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioner_names_are_kept_as_slots() {
        let n = "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890";
        assert_eq!(slot_for_name(n).unwrap().as_str(), n);
    }

    #[test]
    fn other_names_hash_deterministically_into_the_prefix() {
        let a = slot_for_name("sanity-volume-1 with spaces").unwrap();
        let b = slot_for_name("sanity-volume-1 with spaces").unwrap();
        let c = slot_for_name("sanity-volume-2").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.as_str().starts_with(SLOT_PREFIX));
        // Upper-case provisioner-like names are not kept (NQNs are lower-case).
        let upper = "pvc-A1B2C3D4-E5F6-7890-ABCD-EF1234567890";
        assert_ne!(slot_for_name(upper).unwrap().as_str(), upper);
    }

    #[test]
    fn ids_round_trip_and_legacy_ids_mean_default_backend() {
        let id =
            VolumeId::parse("rds2:pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890", "default").unwrap();
        assert_eq!(id.backend, "rds2");
        assert_eq!(VolumeId::parse(&id.to_string(), "x").unwrap(), id);
        let legacy =
            VolumeId::parse("pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890", "default").unwrap();
        assert_eq!(legacy.backend, "default");
    }

    #[test]
    fn foreign_slots_are_never_ours() {
        for bad in [
            "storage-pool",
            "default:storage-pool",
            "x:pvc-a;b",
            "",
            "UP:pvc-1",
            "a:b:c",
        ] {
            assert!(VolumeId::parse(bad, "default").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn nqn_is_lower_case_and_prefixed() {
        let slot = Slot::new("pvc-ABC").unwrap();
        assert_eq!(
            nqn_for_slot(&slot).unwrap().as_str(),
            "nqn.2000-02.com.mikrotik:pvc-abc"
        );
    }
}
