//! Node events reach the API server as the node's own ServiceAccount: what the node plugin
//! notices about a volume (stale mount, recovery, lost connection, failed stage) is posted on the
//! volume's PVC, in the PVC's namespace, with the RBAC the node manifests grant.

#![allow(clippy::unwrap_used)]

#[path = "kube_common.rs"]
mod kube_common;

use std::sync::Arc;

use k8s::{EventRecorder, NodeEvents, component};
use kube_common::*;
use node::{NodeObserver, NoopObserver};

#[tokio::test]
async fn node_observations_are_posted_on_the_pvc_as_the_node_identity() {
    let Some(env) = env("node_observations_are_posted_on_the_pvc_as_the_node_identity").await
    else {
        return;
    };
    apply_rbac(&env).await;
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    // A provisioner-made volume: the PV name is the slot, as the driver's ids keep it.
    let pv = format!("pvc-{}", uuid::Uuid::new_v4());
    let pvc = unique("pvc");
    let claim = create_pvc(&env.admin, &ns, &pvc, &pv).await;
    let uid = claim.metadata.uid.unwrap();
    let handle = format!("default:{pv}");
    create_pv(&env.admin, &pv, &driver, &handle, Some((&ns, &pvc, &uid))).await;

    let recorder = EventRecorder::new(env.node.clone(), component::NODE).with_host("worker-7");
    let events = NodeEvents::new(Arc::new(recorder), Arc::new(NoopObserver));
    events.stale_detected(&handle, "device gone");
    events.recovered(&handle, "remounted from nvme3n1");
    events.connection_lost(&handle, "nqn.2000-02.com.mikrotik:x", "connecting");
    events.stage_failed(&handle, Some((ns.clone(), pvc.clone())), "mount refused");

    let want = [
        "StaleMountDetected",
        "StaleMountRecovered",
        "ConnectionLost",
        "MountFailed",
    ];
    wait_until("node events on the PVC", || async {
        let got = events_about(&env.admin, &ns, &pvc).await;
        want.iter()
            .all(|r| got.iter().any(|e| e.reason.as_deref() == Some(*r)))
    })
    .await;
    let got = events_about(&env.admin, &ns, &pvc).await;
    for e in &got {
        assert_eq!(e.metadata.namespace.as_deref(), Some(ns.as_str()));
        assert_eq!(
            e.source.as_ref().and_then(|s| s.component.as_deref()),
            Some(component::NODE)
        );
        assert_eq!(e.involved_object.uid.as_deref(), Some(uid.as_str()));
    }
    let stale = got
        .iter()
        .find(|e| e.reason.as_deref() == Some("StaleMountDetected"))
        .unwrap();
    assert_eq!(stale.type_.as_deref(), Some("Warning"));
    assert!(
        stale
            .message
            .as_deref()
            .unwrap_or("")
            .contains("device gone")
    );
}

/// Multipath redundancy changes land on the PVC once per crossing: a Warning naming the missing
/// path when the volume degrades, a Normal one when every path is back, nothing for reports in
/// between or for the unstage.
#[tokio::test]
async fn multipath_redundancy_lost_and_regained_is_posted_on_the_pvc_once_each() {
    let Some(env) =
        env("multipath_redundancy_lost_and_regained_is_posted_on_the_pvc_once_each").await
    else {
        return;
    };
    apply_rbac(&env).await;
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    let pv = format!("pvc-{}", uuid::Uuid::new_v4());
    let pvc = unique("pvc");
    let claim = create_pvc(&env.admin, &ns, &pvc, &pv).await;
    let uid = claim.metadata.uid.unwrap();
    let handle = format!("default:{pv}");
    create_pv(&env.admin, &pv, &driver, &handle, Some((&ns, &pvc, &uid))).await;

    let recorder = EventRecorder::new(env.node.clone(), component::NODE).with_host("worker-7");
    let events = NodeEvents::new(Arc::new(recorder), Arc::new(NoopObserver));
    let claim_ref = Some((ns.clone(), pvc.clone()));
    let missing = ["10.0.2.2:4420".to_string()];
    events.paths_changed(&handle, claim_ref.clone(), 2, 2, &[]);
    events.paths_changed(&handle, claim_ref.clone(), 1, 2, &missing);
    events.paths_changed(&handle, claim_ref.clone(), 1, 2, &missing);
    events.paths_changed(&handle, claim_ref.clone(), 0, 2, &missing);
    events.paths_changed(&handle, claim_ref.clone(), 2, 2, &[]);
    events.paths_changed(&handle, claim_ref.clone(), 0, 0, &[]);

    let reasons = [k8s::REASON_PATHS_DEGRADED, k8s::REASON_PATHS_RESTORED];
    wait_until("multipath events on the PVC", || async {
        let got = events_about(&env.admin, &ns, &pvc).await;
        reasons
            .iter()
            .all(|r| got.iter().any(|e| e.reason.as_deref() == Some(*r)))
    })
    .await;
    // Give a wrongly repeated post time to arrive before counting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got = events_about(&env.admin, &ns, &pvc).await;
    for (reason, kind, text) in [
        (reasons[0], "Warning", "10.0.2.2:4420"),
        (reasons[1], "Normal", "all 2"),
    ] {
        let matching: Vec<_> = got
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect();
        assert_eq!(matching.len(), 1, "{reason}: {matching:#?}");
        let e = matching[0];
        assert_eq!(e.count.unwrap_or(1), 1, "{reason} posted once: {e:#?}");
        assert_eq!(e.type_.as_deref(), Some(kind));
        assert_eq!(e.involved_object.uid.as_deref(), Some(uid.as_str()));
        assert_eq!(e.metadata.namespace.as_deref(), Some(ns.as_str()));
        let message = e.message.as_deref().unwrap_or("");
        assert!(
            message.contains(text) && message.contains(&handle),
            "{message}"
        );
    }
}
