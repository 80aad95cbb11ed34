//! What the attachment manager remembers about one volume.

use std::time::{Duration, SystemTime};

/// How many nodes the volume may be attached to, from the access mode of the publish that
/// created the attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Every single-node access mode: one node at a time, no exceptions.
    SingleNode,
    /// MULTI_NODE_MULTI_WRITER on a block volume: a second node is accepted only for the
    /// duration of a KubeVirt live migration (source and target both attached).
    MultiNode,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::SingleNode => "single-node",
            Sharing::MultiNode => "multi-node",
        }
    }

    pub fn parse(s: &str) -> Option<Sharing> {
        match s.trim() {
            "single-node" => Some(Sharing::SingleNode),
            "multi-node" => Some(Sharing::MultiNode),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAttachment {
    pub node: String,
    pub attached_at: SystemTime,
}

/// A live migration in progress: two nodes attached at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub started_at: SystemTime,
    /// After this the situation is reported (never resolved by detaching anything).
    pub timeout: Duration,
    /// Set once the timeout has been reported, so an overdue migration is reported once, not on
    /// every reconciler pass.
    pub timeout_reported: bool,
}

/// Where events about a volume go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTarget {
    pub pv_name: Option<String>,
    /// (namespace, name).
    pub pvc: Option<(String, String)>,
    /// Uids read with the PV (see `VolumeEvent`), so posting needs no read of its own.
    pub pv_uid: Option<String>,
    pub pvc_uid: Option<String>,
}

impl EventTarget {
    /// Points at `pv` as just read: its name and uid, and its claim when no PVC is named yet
    /// (a PVC named by the volume context gets the claim's uid only when it is that claim).
    pub fn follow_pv(&mut self, pv: &super::cluster::PvInfo) {
        self.pv_name = Some(pv.name.clone());
        self.pv_uid = pv.uid.clone();
        if self.pvc.is_none() {
            self.pvc = pv.claim.clone();
        }
        self.pvc_uid = if self.pvc.is_some() && self.pvc == pv.claim {
            pv.claim_uid.clone()
        } else {
            None
        };
    }
}

/// One volume's attachment. Stored only while at least one node holds it: a volume without
/// nodes has no entry, which is what makes a detached volume free at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// In attach order; the first is the primary (the migration source).
    pub nodes: Vec<NodeAttachment>,
    pub sharing: Sharing,
    /// `Some` exactly while two or more nodes are attached.
    pub migration: Option<Migration>,
    pub target: EventTarget,
}

impl Attachment {
    pub fn holds(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n.node == node)
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.node.clone()).collect()
    }

    /// True when a migration has run longer than its timeout at `now`.
    pub fn migration_overdue(&self, now: SystemTime) -> bool {
        self.migration.as_ref().is_some_and(|m| {
            now.duration_since(m.started_at)
                .is_ok_and(|elapsed| elapsed > m.timeout)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharing_round_trips_and_rejects_unknown_words() {
        for s in [Sharing::SingleNode, Sharing::MultiNode] {
            assert_eq!(Sharing::parse(s.as_str()), Some(s));
        }
        assert_eq!(Sharing::parse("RWX"), None);
    }

    #[test]
    fn a_migration_is_overdue_only_after_its_timeout() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let a = Attachment {
            nodes: vec![],
            sharing: Sharing::MultiNode,
            migration: Some(Migration {
                started_at: t0,
                timeout: Duration::from_secs(300),
                timeout_reported: false,
            }),
            target: EventTarget::default(),
        };
        assert!(!a.migration_overdue(t0 + Duration::from_secs(300)));
        assert!(a.migration_overdue(t0 + Duration::from_secs(301)));
        let none = Attachment {
            migration: None,
            ..a
        };
        assert!(!none.migration_overdue(t0 + Duration::from_secs(10_000)));
    }
}
