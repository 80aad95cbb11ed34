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
