//! What the selftest calls the things it creates, and how it recognises them again.
//!
//! Every slot is `rds-csi-selftest-<unix seconds>-<6 hex>-<role>` and every file lives in one
//! scratch directory, `<volume path>/rds-csi-selftest/<slot>.img`. The start time in the name
//! lets a later run tell the leftovers of a crashed run (old) from a run still in progress
//! elsewhere (young) without any state outside the RDS; the exact shape lets it refuse to touch
//! anything that merely shares the prefix.

use routeros::{FilePath, Nqn, Slot, ValueError};

/// Every slot the selftest creates starts with this. The driver only manages `pvc-` and
/// `snap-` slots, so neither the controller nor the orphan reconciler ever sees these.
pub const PREFIX: &str = "rds-csi-selftest-";
/// The scratch directory's name under the volume path.
pub const SCRATCH_DIR: &str = "rds-csi-selftest";
/// Same NQN scheme as the controller's volumes (`nqn.2000-02.com.mikrotik:<slot>`).
const NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik:";
/// Length of the random tag (hex digits) that keeps two runs in the same second apart.
const TAG_LEN: usize = 6;

/// The three disks one run makes: a volume, a snapshot of it, and a clone of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Vol,
    Snap,
    Clone,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Vol, Role::Snap, Role::Clone];

    fn as_str(self) -> &'static str {
        match self {
            Role::Vol => "vol",
            Role::Snap => "snap",
            Role::Clone => "clone",
        }
    }
}

/// Identity of one selftest run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId {
    /// Unix seconds when the run started.
    pub started: u64,
    tag: String,
}

impl RunId {
    /// A fresh id for a run starting at `started` (unix seconds).
    pub fn new(started: u64) -> RunId {
        let tag: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(TAG_LEN)
            .collect();
        RunId { started, tag }
    }

    /// `rds-csi-selftest-<secs>-<tag>-`: the slot prefix of this run alone.
    pub fn prefix(&self) -> String {
        format!("{PREFIX}{}-{}-", self.started, self.tag)
    }

    pub fn slot(&self, role: Role) -> Result<Slot, ValueError> {
        Slot::new(&format!("{}{}", self.prefix(), role.as_str()))
    }

    pub fn label(&self) -> String {
        format!("{}-{}", self.started, self.tag)
    }
}

/// The run and role a slot belongs to, if it has exactly the selftest's shape.
pub fn parse_slot(slot: &str) -> Option<(RunId, Role)> {
    let rest = slot.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let (secs, tag, role) = (parts.next()?, parts.next()?, parts.next()?);
    if secs.is_empty() || secs.len() > 12 || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if tag.len() != TAG_LEN
        || !tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let role = Role::ALL.into_iter().find(|r| r.as_str() == role)?;
    Some((
        RunId {
            started: secs.parse().ok()?,
            tag: tag.to_string(),
        },
        role,
    ))
}

/// `<volume path>/rds-csi-selftest`.
pub fn scratch_dir(volume_path: &FilePath) -> Result<FilePath, ValueError> {
    volume_path.join(SCRATCH_DIR)
}

/// Where a selftest disk's backing file lives: `<scratch>/<slot>.img`, the controller's own
/// `<slot>.img` naming one directory down.
pub fn image_path(scratch: &FilePath, slot: &Slot) -> Result<FilePath, ValueError> {
    scratch.join(&format!("{}.img", slot.as_str()))
}

pub fn nqn(slot: &Slot) -> Result<Nqn, ValueError> {
    Nqn::new(&format!("{NQN_PREFIX}{}", slot.as_str()))
}

/// The NQN prefix the node half confines its connects and disconnects to.
pub fn nqn_prefix() -> String {
    format!("{NQN_PREFIX}{PREFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_fit_routeros_limits() {
        let id = RunId::new(1_764_870_000);
        for role in Role::ALL {
            let slot = id.slot(role).unwrap();
            assert!(slot.as_str().starts_with(PREFIX));
            assert_eq!(parse_slot(slot.as_str()), Some((id.clone(), role)));
            nqn(&slot).unwrap();
        }
        let scratch = scratch_dir(&FilePath::new("/storage-pool/metal-csi").unwrap()).unwrap();
        let img = image_path(&scratch, &id.slot(Role::Clone).unwrap()).unwrap();
        assert!(img.is_under(&scratch));
    }

    #[test]
    fn lookalikes_are_not_ours() {
        for s in [
            "rds-csi-selftest-",
            "rds-csi-selftest-123-abcdef",
            "rds-csi-selftest-123-abcdef-vol2",
            "rds-csi-selftest-123-ABCDEF-vol",
            "rds-csi-selftest-123-abcde-vol",
            "rds-csi-selftest-x23-abcdef-vol",
            "rds-csi-selftest-mine",
            "pvc-123-abcdef-vol",
        ] {
            assert_eq!(parse_slot(s), None, "{s}");
        }
    }
}
