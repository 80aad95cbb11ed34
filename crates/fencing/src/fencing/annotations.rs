//! The PV annotations that make attachments survive a controller restart.
//!
//! Format (all keys removed when the volume is fully detached):
//!
//! | key | value |
//! |---|---|
//! | `rds.csi.srvlab.io/attached-node` | the primary (first) node, as the earlier driver wrote it |
//! | `rds.csi.srvlab.io/attached-at` | its attach time, RFC 3339 UTC with microseconds |
//! | `rds.csi.srvlab.io/attached-nodes` | every node in attach order: `node=<time>,node=<time>` (node names cannot contain `=` or `,`) |
//! | `rds.csi.srvlab.io/access-mode` | `single-node` or `multi-node` |
//! | `rds.csi.srvlab.io/migration-started-at` | RFC 3339, only while two nodes are attached |
//! | `rds.csi.srvlab.io/migration-timeout-seconds` | decimal, only while two nodes are attached (so the timeout survives a restart) |
//!
//! Annotations alone never create a fence on rebuild: a node counts as attached only when a
//! VolumeAttachment for it exists (see `rebuild`), because annotations go stale when edited by
//! hand or when a write was lost, and a stale fence blocks legitimate attaches.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::clock::{format_rfc3339, parse_rfc3339};
use super::state::{Attachment, Sharing};

pub const ATTACHED_NODE: &str = "rds.csi.srvlab.io/attached-node";
pub const ATTACHED_AT: &str = "rds.csi.srvlab.io/attached-at";
pub const ATTACHED_NODES: &str = "rds.csi.srvlab.io/attached-nodes";
pub const ACCESS_MODE: &str = "rds.csi.srvlab.io/access-mode";
pub const MIGRATION_STARTED_AT: &str = "rds.csi.srvlab.io/migration-started-at";
pub const MIGRATION_TIMEOUT: &str = "rds.csi.srvlab.io/migration-timeout-seconds";

/// Every key fencing owns on a PV.
pub const ALL: &[&str] = &[
    ATTACHED_NODE,
    ATTACHED_AT,
    ATTACHED_NODES,
    ACCESS_MODE,
    MIGRATION_STARTED_AT,
    MIGRATION_TIMEOUT,
];

/// The annotations that describe `state` (`None` = detached).
pub fn render(state: Option<&Attachment>) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let Some(a) = state else {
        return out;
    };
    if let Some(first) = a.nodes.first() {
        out.insert(ATTACHED_NODE, first.node.clone());
        out.insert(ATTACHED_AT, format_rfc3339(first.attached_at));
    }
    let all: Vec<String> = a
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.node, format_rfc3339(n.attached_at)))
        .collect();
    out.insert(ATTACHED_NODES, all.join(","));
    out.insert(ACCESS_MODE, a.sharing.as_str().to_string());
    if let Some(m) = &a.migration {
        out.insert(MIGRATION_STARTED_AT, format_rfc3339(m.started_at));
        out.insert(MIGRATION_TIMEOUT, m.timeout.as_secs().to_string());
    }
    out
}

/// The patch that turns `current` annotations into those describing `state`: only our keys,
/// only those that differ. Empty when nothing needs writing.
pub fn changes(
    state: Option<&Attachment>,
    current: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<String>> {
    let wanted = render(state);
    let mut out = BTreeMap::new();
    for key in ALL {
        let want = wanted.get(key);
        let have = current.get(*key);
        if want != have {
            out.insert((*key).to_string(), want.cloned());
        }
    }
    out
}

/// What a PV's annotations say, each field independently (a malformed field is `None`, the
/// rest still counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Nodes in attach order, with their attach time when it parsed.
    pub nodes: Vec<(String, Option<SystemTime>)>,
    pub sharing: Option<Sharing>,
    pub migration_started_at: Option<SystemTime>,
    pub migration_timeout: Option<Duration>,
}

impl Recorded {
    pub fn time_of(&self, node: &str) -> Option<SystemTime> {
        self.nodes
            .iter()
            .find(|(n, _)| n == node)
            .and_then(|(_, t)| *t)
    }
}

pub fn read(annotations: &BTreeMap<String, String>) -> Recorded {
    let mut nodes: Vec<(String, Option<SystemTime>)> = Vec::new();
    if let Some(list) = annotations.get(ATTACHED_NODES) {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (node, time) = match item.split_once('=') {
                Some((n, t)) => (n.trim(), parse_rfc3339(t)),
                None => (item, None),
            };
            if !node.is_empty() && !nodes.iter().any(|(n, _)| n == node) {
                nodes.push((node.to_string(), time));
            }
        }
    }
    // Written by the earlier driver (or by us when the list is missing): the primary node.
    if let Some(node) = annotations.get(ATTACHED_NODE).map(|s| s.trim())
        && !node.is_empty()
        && !nodes.iter().any(|(n, _)| n == node)
    {
        let time = annotations.get(ATTACHED_AT).and_then(|t| parse_rfc3339(t));
        nodes.insert(0, (node.to_string(), time));
    }
    Recorded {
        nodes,
        sharing: annotations.get(ACCESS_MODE).and_then(|s| Sharing::parse(s)),
        migration_started_at: annotations
            .get(MIGRATION_STARTED_AT)
            .and_then(|t| parse_rfc3339(t)),
        migration_timeout: annotations
            .get(MIGRATION_TIMEOUT)
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fencing::state::{EventTarget, Migration, NodeAttachment};
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn two_nodes() -> Attachment {
        Attachment {
            nodes: vec![
                NodeAttachment {
                    node: "a".into(),
                    attached_at: at(1_769_827_500),
                },
                NodeAttachment {
                    node: "b".into(),
                    attached_at: at(1_769_827_560),
                },
            ],
            sharing: Sharing::MultiNode,
            migration: Some(Migration {
                started_at: at(1_769_827_560),
                timeout: Duration::from_secs(300),
                timeout_reported: false,
            }),
            target: EventTarget::default(),
        }
    }

    #[test]
    fn render_writes_the_documented_format() {
        let r = render(Some(&two_nodes()));
        assert_eq!(r[ATTACHED_NODE], "a");
        assert_eq!(r[ATTACHED_AT], "2026-01-31T02:45:00.000000Z");
        assert_eq!(
            r[ATTACHED_NODES],
            "a=2026-01-31T02:45:00.000000Z,b=2026-01-31T02:46:00.000000Z"
        );
        assert_eq!(r[ACCESS_MODE], "multi-node");
        assert_eq!(r[MIGRATION_STARTED_AT], "2026-01-31T02:46:00.000000Z");
        assert_eq!(r[MIGRATION_TIMEOUT], "300");
        assert!(render(None).is_empty());
    }

    #[test]
    fn read_recovers_what_render_wrote() {
        let a = two_nodes();
        let written: BTreeMap<String, String> = render(Some(&a))
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let r = read(&written);
        assert_eq!(
            r.nodes,
            vec![
                ("a".to_string(), Some(at(1_769_827_500))),
                ("b".to_string(), Some(at(1_769_827_560)))
            ]
        );
        assert_eq!(r.sharing, Some(Sharing::MultiNode));
        assert_eq!(r.migration_started_at, Some(at(1_769_827_560)));
        assert_eq!(r.migration_timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn read_accepts_the_earlier_drivers_two_keys_and_survives_garbage() {
        let mut old = BTreeMap::new();
        old.insert(ATTACHED_NODE.to_string(), "worker-1".to_string());
        old.insert(ATTACHED_AT.to_string(), "not a time".to_string());
        old.insert(ACCESS_MODE.to_string(), "RWO".to_string());
        let r = read(&old);
        assert_eq!(r.nodes, vec![("worker-1".to_string(), None)]);
        assert_eq!(r.sharing, None);
    }

    #[test]
    fn changes_touch_only_differing_keys_and_remove_ours_on_detach() {
        let a = two_nodes();
        let mut current: BTreeMap<String, String> = render(Some(&a))
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        current.insert("someone.else/key".into(), "kept".into());
        assert!(changes(Some(&a), &current).is_empty());
        let detach = changes(None, &current);
        assert_eq!(detach.len(), ALL.len());
        assert!(detach.values().all(Option::is_none));
        assert!(!detach.contains_key("someone.else/key"));
    }
}
