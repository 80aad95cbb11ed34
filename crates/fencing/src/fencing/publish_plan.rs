//! What a ControllerPublish does to its volume's recorded attachment, decided from that record
//! alone: pure functions, no Kubernetes call, no clock, no lock. `manager` gathers the inputs
//! (the record, which holders Kubernetes says are gone, the time), asks here, and carries the
//! plan out (the PV write, the in-memory commit, events and counters).

use std::time::{Duration, SystemTime};

use super::clock::format_rfc3339;
use super::manager::{PublishOutcome, PublishRequest, migration_timeout, pvc_from_context};
use super::state::{Attachment, EventTarget, Migration, NodeAttachment, Sharing};

/// A publish to a node that already holds the volume: it changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// With the access mode it holds the volume with: a retry of the publish that attached it.
    Retry,
    /// With another access mode than the one it holds (this one): not a retry (CSI:
    /// ALREADY_EXISTS).
    OtherAccess(Sharing),
}

/// `Some` when `req.node` already holds the volume recorded as `current`.
pub fn repeat(current: Option<&Attachment>, req: &PublishRequest) -> Option<Repeat> {
    let held = current.filter(|a| a.holds(&req.node))?;
    Some(if held.sharing == req.sharing {
        Repeat::Retry
    } else {
        Repeat::OtherAccess(held.sharing)
    })
}

/// What a publish to a node that does not hold the volume does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Record `next` (on the PV, then in memory) and answer `outcome`: `Attached` or
    /// `MigrationStarted`.
    Record {
        next: Attachment,
        outcome: PublishOutcome,
    },
    /// The holders left (`held`) may not share the volume with the node: refuse
    /// (FAILED_PRECONDITION) for the reason `why`, and tell the volume's objects (`target`).
    Refuse {
        held: Attachment,
        target: EventTarget,
        why: String,
    },
}

/// The plan for attaching `req.node`, which does not hold the volume recorded as `current`.
/// The holders in `stale` are gone from Kubernetes and release the volume; `now` stamps the
/// new node and any migration, whose timeout comes from the volume_context or
/// `default_migration_timeout`.
pub fn plan(
    current: Option<&Attachment>,
    stale: &[String],
    req: &PublishRequest,
    now: SystemTime,
    default_migration_timeout: Duration,
) -> Plan {
    let mut remaining = current.cloned();
    if let Some(a) = &mut remaining {
        a.nodes.retain(|n| !stale.contains(&n.node));
        if a.nodes.len() < 2 {
            a.migration = None;
        }
    }
    let remaining = remaining.filter(|a| !a.nodes.is_empty());

    let ctx_pvc = pvc_from_context(&req.volume_context);
    let mut target = current.map(|a| a.target.clone()).unwrap_or_default();
    if ctx_pvc.is_some() && target.pvc != ctx_pvc {
        target.pvc = ctx_pvc;
        target.pvc_uid = None;
    }
    let new_node = NodeAttachment {
        node: req.node.clone(),
        attached_at: now,
    };
    match remaining {
        None => Plan::Record {
            next: Attachment {
                nodes: vec![new_node],
                sharing: req.sharing,
                migration: None,
                target,
            },
            outcome: PublishOutcome::Attached,
        },
        Some(held) => {
            if let Some(why) = refusal(&held, req.sharing, now) {
                return Plan::Refuse { held, target, why };
            }
            let mut next = held;
            next.nodes.push(new_node);
            next.migration = Some(Migration {
                started_at: now,
                timeout: migration_timeout(&req.volume_context, default_migration_timeout),
                timeout_reported: false,
            });
            next.target = target;
            Plan::Record {
                next,
                outcome: PublishOutcome::MigrationStarted,
            }
        }
    }
}

/// Why `held` cannot take another node for a publish asking for `sharing`, if it cannot.
fn refusal(held: &Attachment, sharing: Sharing, now: SystemTime) -> Option<String> {
    if sharing == Sharing::SingleNode {
        return Some("the requested access mode allows one node at a time".into());
    }
    if held.sharing == Sharing::SingleNode {
        return Some(
            "it was attached with a single-node access mode, which allows one node at a time"
                .into(),
        );
    }
    if held.nodes.len() >= 2 {
        let mut why = format!(
            "it is already attached to {} nodes, the most a live migration uses; wait for the migration to finish",
            held.nodes.len()
        );
        if let Some(m) = held
            .migration
            .as_ref()
            .filter(|_| held.migration_overdue(now))
        {
            why.push_str(&format!(
                " (that migration started at {} and has exceeded its {}s timeout; check the VirtualMachineInstanceMigration)",
                format_rfc3339(m.started_at),
                m.timeout.as_secs()
            ));
        }
        return Some(why);
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use vocab::params;

    const DEFAULT: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn req(node: &str, sharing: Sharing) -> PublishRequest {
        PublishRequest {
            volume_id: "default:pvc-1".into(),
            node: node.into(),
            sharing,
            volume_context: HashMap::new(),
        }
    }

    fn held(nodes: &[&str], sharing: Sharing) -> Attachment {
        Attachment {
            nodes: nodes
                .iter()
                .map(|n| NodeAttachment {
                    node: n.to_string(),
                    attached_at: at(0),
                })
                .collect(),
            sharing,
            migration: (nodes.len() > 1).then_some(Migration {
                started_at: at(0),
                timeout: Duration::from_secs(60),
                timeout_reported: false,
            }),
            target: EventTarget {
                pv_name: Some("pv-1".into()),
                pvc: Some(("ns".into(), "old".into())),
                pv_uid: Some("pv-uid".into()),
                pvc_uid: Some("pvc-uid".into()),
            },
        }
    }

    fn refused(p: Plan) -> String {
        match p {
            Plan::Refuse { why, .. } => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn recorded(p: Plan) -> (Attachment, PublishOutcome) {
        match p {
            Plan::Record { next, outcome } => (next, outcome),
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn a_holder_publishing_again_is_a_retry_only_with_the_same_access() {
        let a = held(&["n1"], Sharing::SingleNode);
        assert_eq!(
            repeat(Some(&a), &req("n1", Sharing::SingleNode)),
            Some(Repeat::Retry)
        );
        assert_eq!(
            repeat(Some(&a), &req("n1", Sharing::MultiNode)),
            Some(Repeat::OtherAccess(Sharing::SingleNode))
        );
        assert_eq!(repeat(Some(&a), &req("n2", Sharing::SingleNode)), None);
        assert_eq!(repeat(None, &req("n1", Sharing::SingleNode)), None);
    }

    #[test]
    fn a_free_volume_is_attached_to_the_node_alone_with_the_requested_access() {
        let (next, outcome) = recorded(plan(
            None,
            &[],
            &req("n1", Sharing::MultiNode),
            at(5),
            DEFAULT,
        ));
        assert_eq!(outcome, PublishOutcome::Attached);
        assert_eq!(next.node_names(), ["n1"]);
        assert_eq!(next.nodes[0].attached_at, at(5));
        assert_eq!(next.sharing, Sharing::MultiNode);
        assert_eq!(next.migration, None);
        assert_eq!(next.target, EventTarget::default());
    }

    #[test]
    fn a_single_node_volume_held_elsewhere_is_refused_whatever_is_asked() {
        let a = held(&["n1"], Sharing::SingleNode);
        for sharing in [Sharing::SingleNode, Sharing::MultiNode] {
            let why = refused(plan(Some(&a), &[], &req("n2", sharing), at(5), DEFAULT));
            assert!(why.contains("one node at a time"), "{why}");
        }
        let m = held(&["n1"], Sharing::MultiNode);
        let why = refused(plan(
            Some(&m),
            &[],
            &req("n2", Sharing::SingleNode),
            at(5),
            DEFAULT,
        ));
        assert_eq!(why, "the requested access mode allows one node at a time");
    }

    #[test]
    fn a_second_multi_node_publish_starts_a_migration_with_the_context_timeout() {
        let a = held(&["n1"], Sharing::MultiNode);
        let mut r = req("n2", Sharing::MultiNode);
        let (next, outcome) = recorded(plan(Some(&a), &[], &r, at(5), DEFAULT));
        assert_eq!(outcome, PublishOutcome::MigrationStarted);
        assert_eq!(next.node_names(), ["n1", "n2"]);
        let m = next.migration.expect("a migration");
        assert_eq!((m.started_at, m.timeout), (at(5), DEFAULT));
        assert_eq!(
            next.target, a.target,
            "no PVC in the context: the target stays"
        );

        r.volume_context
            .insert(params::C_MIGRATION_TIMEOUT.into(), "120".into());
        let (next, _) = recorded(plan(Some(&a), &[], &r, at(5), DEFAULT));
        assert_eq!(
            next.migration.map(|m| m.timeout),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn a_third_node_is_refused_and_an_overdue_migration_is_named() {
        let a = held(&["n1", "n2"], Sharing::MultiNode);
        let r = req("n3", Sharing::MultiNode);
        let why = refused(plan(Some(&a), &[], &r, at(30), DEFAULT));
        assert!(why.contains("already attached to 2 nodes"), "{why}");
        assert!(!why.contains("exceeded"), "{why}");
        let why = refused(plan(Some(&a), &[], &r, at(61), DEFAULT));
        assert!(why.contains("exceeded its 60s timeout"), "{why}");
    }

    #[test]
    fn deleted_holders_release_the_volume_and_end_the_migration() {
        let a = held(&["n1"], Sharing::SingleNode);
        let (next, outcome) = recorded(plan(
            Some(&a),
            &["n1".to_string()],
            &req("n2", Sharing::SingleNode),
            at(5),
            DEFAULT,
        ));
        assert_eq!(outcome, PublishOutcome::Attached);
        assert_eq!(next.node_names(), ["n2"]);
        assert_eq!(next.target, a.target, "the volume's objects stay the same");

        let m = held(&["n1", "n2"], Sharing::MultiNode);
        let p = plan(
            Some(&m),
            &["n2".to_string()],
            &req("n3", Sharing::MultiNode),
            at(5),
            DEFAULT,
        );
        let (next, outcome) = recorded(p);
        assert_eq!(outcome, PublishOutcome::MigrationStarted);
        assert_eq!(next.node_names(), ["n1", "n3"]);
        assert_eq!(next.migration.map(|m| m.started_at), Some(at(5)));
    }

    #[test]
    fn the_pvc_in_the_context_replaces_the_recorded_one_and_its_uid() {
        let a = held(&["n1"], Sharing::SingleNode);
        let mut r = req("n2", Sharing::SingleNode);
        r.volume_context
            .insert(params::PVC_NAMESPACE.into(), "ns".into());
        r.volume_context
            .insert(params::PVC_NAME.into(), "new".into());
        let Plan::Refuse { target, .. } = plan(Some(&a), &[], &r, at(5), DEFAULT) else {
            panic!("n1 holds it single-node");
        };
        assert_eq!(target.pvc, Some(("ns".into(), "new".into())));
        assert_eq!(target.pvc_uid, None);
        assert_eq!(target.pv_uid.as_deref(), Some("pv-uid"));
    }
}
