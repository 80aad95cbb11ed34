//! `k8s::KubeCluster` against a real kube-apiserver (scripts/test-kube starts one):
//! every `Cluster` method, the resourceVersion precondition, events read back through the API,
//! and the shipped RBAC proven both sufficient and minimal for the ServiceAccount identities.

#![allow(clippy::unwrap_used)]

#[path = "kube_common.rs"]
mod kube_common;

use std::collections::BTreeMap;
use std::sync::Arc;

use fencing::cluster::{Cluster, ClusterError, EventKind, NodeState, VolumeEvent};
use k8s::{ClientSettings, EventRecorder, KubeCluster, client, component};
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube_common::*;
use serde_json::Value;

fn changes(kv: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    kv.iter()
        .map(|(k, v)| ((*k).to_string(), v.map(str::to_string)))
        .collect()
}

#[tokio::test]
async fn pvs_are_found_by_handle_and_listed_only_for_this_driver() {
    let Some(env) = env("pvs_are_found_by_handle_and_listed_only_for_this_driver").await else {
        return;
    };
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    let (pv_a, pvc_a, _) = create_bound_volume(&env.admin, &ns, &driver, "default:pvc-a").await;
    let pv_b = unique("pv");
    create_pv(&env.admin, &pv_b, &driver, "default:pvc-b", None).await;
    // Same handle, other driver: must never be mistaken for ours.
    create_pv(
        &env.admin,
        &unique("pv"),
        "other.csi.test",
        "default:pvc-a",
        None,
    )
    .await;

    let cluster = KubeCluster::new(env.admin.clone(), driver.clone());
    let found = cluster
        .pv_by_handle("default:pvc-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.name, pv_a);
    assert_eq!(found.volume_handle, "default:pvc-a");
    assert_eq!(found.claim, Some((ns.clone(), pvc_a)));
    assert!(!found.resource_version.is_empty());
    assert_eq!(
        cluster.pv_by_handle("default:pvc-none").await.unwrap(),
        None
    );

    let mut names: Vec<String> = cluster
        .list_pvs()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    names.sort();
    let mut expected = vec![pv_a, pv_b];
    expected.sort();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn annotation_patches_set_and_remove_keys_under_the_resource_version() {
    let Some(env) = env("annotation_patches_set_and_remove_keys_under_the_resource_version").await
    else {
        return;
    };
    let driver = test_driver();
    let pv = unique("pv");
    create_pv(&env.admin, &pv, &driver, "default:pvc-x", None).await;
    // Someone else's annotation, which our patches must leave alone.
    let api: Api<PersistentVolume> = Api::all(env.admin.clone());
    let other = serde_json::json!({"metadata": {"annotations": {"example.com/keep": "yes"}}});
    api.patch(&pv, &PatchParams::default(), &Patch::Merge(&other))
        .await
        .unwrap();

    let cluster = KubeCluster::new(env.admin.clone(), driver);
    let before = cluster
        .pv_by_handle("default:pvc-x")
        .await
        .unwrap()
        .unwrap();
    let set = changes(&[
        ("rds.csi.srvlab.io/attached-node", Some("node-a")),
        (
            "rds.csi.srvlab.io/attached-at",
            Some("2026-01-31T02:45:00.123456Z"),
        ),
    ]);
    let after = cluster
        .patch_pv_annotations(&pv, &before.resource_version, &set)
        .await
        .unwrap();
    assert_ne!(after.resource_version, before.resource_version);
    assert_eq!(
        after.annotations["rds.csi.srvlab.io/attached-node"],
        "node-a"
    );
    assert_eq!(after.annotations["example.com/keep"], "yes");

    // The stale version is refused, and nothing changes.
    let stale = cluster
        .patch_pv_annotations(
            &pv,
            &before.resource_version,
            &changes(&[("rds.csi.srvlab.io/attached-node", Some("node-b"))]),
        )
        .await;
    assert!(matches!(stale, Err(ClusterError::Conflict(_))), "{stale:?}");
    let now = cluster
        .pv_by_handle("default:pvc-x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.annotations["rds.csi.srvlab.io/attached-node"], "node-a");
    assert_eq!(now.resource_version, after.resource_version);

    // None removes the key.
    let cleared = cluster
        .patch_pv_annotations(
            &pv,
            &after.resource_version,
            &changes(&[
                ("rds.csi.srvlab.io/attached-node", None),
                ("rds.csi.srvlab.io/attached-at", None),
            ]),
        )
        .await
        .unwrap();
    assert!(
        !cleared
            .annotations
            .contains_key("rds.csi.srvlab.io/attached-node")
    );
    assert!(
        !cleared
            .annotations
            .contains_key("rds.csi.srvlab.io/attached-at")
    );
    assert_eq!(cleared.annotations["example.com/keep"], "yes");

    let missing = cluster.patch_pv_annotations(&unique("pv"), "1", &set).await;
    assert!(
        matches!(missing, Err(ClusterError::NotFound(_))),
        "{missing:?}"
    );
    let unconditional = cluster.patch_pv_annotations(&pv, "", &set).await;
    assert!(
        matches!(unconditional, Err(ClusterError::Other(_))),
        "{unconditional:?}"
    );
}

#[tokio::test]
async fn concurrent_patches_from_one_resource_version_have_exactly_one_winner() {
    let Some(env) =
        env("concurrent_patches_from_one_resource_version_have_exactly_one_winner").await
    else {
        return;
    };
    let driver = test_driver();
    let pv = unique("pv");
    create_pv(&env.admin, &pv, &driver, "default:pvc-race", None).await;
    let cluster = KubeCluster::new(env.admin.clone(), driver);
    let rv = cluster
        .pv_by_handle("default:pvc-race")
        .await
        .unwrap()
        .unwrap()
        .resource_version;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (cluster, pv, rv) = (cluster.clone(), pv.clone(), rv.clone());
            tokio::spawn(async move {
                let node = format!("node-{i}");
                let c = changes(&[("rds.csi.srvlab.io/attached-node", Some(&node))]);
                (node, cluster.patch_pv_annotations(&pv, &rv, &c).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (node, Ok(_)) => winners.push(node),
            (_, Err(ClusterError::Conflict(_))) => {}
            (_, Err(e)) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = cluster
        .pv_by_handle("default:pvc-race")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.annotations["rds.csi.srvlab.io/attached-node"],
        winners[0]
    );
}

#[tokio::test]
async fn volume_attachments_of_this_driver_carry_node_pv_status_and_deletion() {
    let Some(env) =
        env("volume_attachments_of_this_driver_carry_node_pv_status_and_deletion").await
    else {
        return;
    };
    let driver = test_driver();
    let (pending, attached, deleting) = (unique("csi"), unique("csi"), unique("csi"));
    create_va(&env.admin, &pending, &driver, "node-1", "pv-1", &[]).await;
    create_va(&env.admin, &attached, &driver, "node-2", "pv-2", &[]).await;
    set_va_attached(&env.admin, &attached, true).await;
    create_va(
        &env.admin,
        &unique("csi"),
        "other.csi.test",
        "node-1",
        "pv-1",
        &[],
    )
    .await;
    // Held by a finalizer, as the external-attacher holds a VA until detach completes.
    let hold = "rds-csi.test/hold";
    create_va(&env.admin, &deleting, &driver, "node-3", "pv-3", &[hold]).await;
    set_va_attached(&env.admin, &deleting, true).await;
    let api: Api<VolumeAttachment> = Api::all(env.admin.clone());
    api.delete(&deleting, &DeleteParams::default())
        .await
        .unwrap();

    let cluster = KubeCluster::new(env.admin.clone(), driver);
    let mut vas = cluster.list_volume_attachments().await.unwrap();
    vas.sort_by(|a, b| a.node.cmp(&b.node));
    assert_eq!(vas.len(), 3, "{vas:?}");
    assert_eq!(
        (
            vas[0].name.as_str(),
            vas[0].node.as_str(),
            vas[0].pv_name.as_deref()
        ),
        (pending.as_str(), "node-1", Some("pv-1"))
    );
    assert!(!vas[0].attached);
    assert_eq!(vas[0].deleting_for_secs, None);
    assert_eq!(vas[1].name, attached);
    assert!(vas[1].attached);
    assert_eq!(vas[1].deleting_for_secs, None);
    assert_eq!(vas[2].name, deleting);
    assert!(vas[2].attached);
    assert!(vas[2].deleting_for_secs.is_some(), "{:?}", vas[2]);

    // Let the held attachment go.
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    api.patch(&deleting, &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
}

#[tokio::test]
async fn node_state_is_absent_present_or_out_of_service() {
    let Some(env) = env("node_state_is_absent_present_or_out_of_service").await else {
        return;
    };
    let (up, down, tainted_otherwise) = (unique("node"), unique("node"), unique("node"));
    create_node(&env.admin, &up, &[]).await;
    create_node(&env.admin, &down, &[(OUT_OF_SERVICE, "NoExecute")]).await;
    create_node(
        &env.admin,
        &tainted_otherwise,
        &[("node.kubernetes.io/unreachable", "NoExecute")],
    )
    .await;
    let cluster = KubeCluster::new(env.admin.clone(), test_driver());
    assert_eq!(
        cluster.node_state(&up).await.unwrap(),
        NodeState::Present {
            out_of_service: false
        }
    );
    assert_eq!(
        cluster.node_state(&down).await.unwrap(),
        NodeState::Present {
            out_of_service: true
        }
    );
    assert_eq!(
        cluster.node_state(&tainted_otherwise).await.unwrap(),
        NodeState::Present {
            out_of_service: false
        }
    );
    assert_eq!(
        cluster.node_state(&unique("node")).await.unwrap(),
        NodeState::Absent
    );
    delete_node(&env.admin, &up).await;
    assert_eq!(cluster.node_state(&up).await.unwrap(), NodeState::Absent);
}

#[tokio::test]
async fn events_land_on_the_pvc_in_its_namespace_and_repeats_bump_the_count() {
    let Some(env) = env("events_land_on_the_pvc_in_its_namespace_and_repeats_bump_the_count").await
    else {
        return;
    };
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    let (pv, pvc, uid) = create_bound_volume(&env.admin, &ns, &driver, "default:pvc-ev").await;
    let cluster = KubeCluster::new(env.admin.clone(), driver);
    let message = format!(
        "[default:pvc-ev]: Attachment to node b rejected - volume already attached to node a. ({pv})"
    );
    let event = VolumeEvent {
        pv_name: Some(pv.clone()),
        pvc: Some((ns.clone(), pvc.clone())),
        kind: EventKind::Warning,
        reason: "AttachmentConflict".into(),
        message: message.clone(),
        pv_uid: None,
        pvc_uid: None,
    };
    cluster.post_event(event.clone()).await;
    cluster.events().flushed().await;

    let events = events_about(&env.admin, &ns, &pvc).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(e.reason.as_deref(), Some("AttachmentConflict"));
    assert_eq!(e.message.as_deref(), Some(message.as_str()));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(
        e.involved_object.kind.as_deref(),
        Some("PersistentVolumeClaim")
    );
    assert_eq!(e.involved_object.name.as_deref(), Some(pvc.as_str()));
    assert_eq!(e.involved_object.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(e.involved_object.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        e.source.as_ref().and_then(|s| s.component.as_deref()),
        Some(component::CONTROLLER)
    );
    assert_eq!(e.count, Some(1));

    // The identical event again: the same object, counted twice.
    cluster.post_event(event.clone()).await;
    cluster.events().flushed().await;
    let events = events_about(&env.admin, &ns, &pvc).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].count, Some(2));

    // A different event is its own object.
    cluster
        .post_event(VolumeEvent {
            kind: EventKind::Normal,
            reason: "VolumeAttached".into(),
            message: "[default:pvc-ev]: Attached to node a (duration: 12ms)".into(),
            ..event
        })
        .await;
    cluster.events().flushed().await;
    let events = events_about(&env.admin, &ns, &pvc).await;
    let mut reasons: Vec<_> = events.iter().filter_map(|e| e.reason.clone()).collect();
    reasons.sort();
    assert_eq!(reasons, ["AttachmentConflict", "VolumeAttached"]);
}

#[tokio::test]
async fn events_without_a_pvc_follow_the_claim_ref_or_land_on_the_pv_in_default() {
    let Some(env) =
        env("events_without_a_pvc_follow_the_claim_ref_or_land_on_the_pv_in_default").await
    else {
        return;
    };
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    let (bound_pv, pvc, uid) = create_bound_volume(&env.admin, &ns, &driver, "default:pvc-b").await;
    let unbound_pv = unique("pv");
    let unbound = create_pv(&env.admin, &unbound_pv, &driver, "default:pvc-u", None).await;
    let recorder =
        Arc::new(EventRecorder::new(env.admin.clone(), component::NODE).with_host("node-7"));
    let cluster = KubeCluster::new(env.admin.clone(), driver).with_events(recorder);

    let event = |pv: &str| VolumeEvent {
        pv_name: Some(pv.to_string()),
        pvc: None,
        kind: EventKind::Warning,
        reason: "MountFailure".into(),
        message: format!("[{pv}] on [node-7]: mount failed"),
        pv_uid: None,
        pvc_uid: None,
    };
    cluster.post_event(event(&bound_pv)).await;
    cluster.events().flushed().await;
    let on_pvc = events_about(&env.admin, &ns, &pvc).await;
    assert_eq!(on_pvc.len(), 1, "{on_pvc:?}");
    assert_eq!(on_pvc[0].involved_object.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(on_pvc[0].reason.as_deref(), Some("MountFailure"));
    let source = on_pvc[0].source.clone().unwrap();
    assert_eq!(source.component.as_deref(), Some(component::NODE));
    assert_eq!(source.host.as_deref(), Some("node-7"));

    cluster.post_event(event(&unbound_pv)).await;
    cluster.events().flushed().await;
    let on_pv = events_about(&env.admin, "default", &unbound_pv).await;
    assert_eq!(on_pv.len(), 1, "{on_pv:?}");
    assert_eq!(
        on_pv[0].involved_object.kind.as_deref(),
        Some("PersistentVolume")
    );
    assert_eq!(on_pv[0].involved_object.uid, unbound.metadata.uid);
    assert_eq!(
        on_pv[0].message.as_deref(),
        Some(format!("[{unbound_pv}] on [node-7]: mount failed").as_str())
    );

    // A PVC that no longer exists: the event still reaches the PV.
    let gone_pv = unique("pv");
    create_pv(&env.admin, &gone_pv, "x.csi.test", "h", None).await;
    cluster
        .post_event(VolumeEvent {
            pvc: Some((ns.clone(), unique("gone"))),
            ..event(&gone_pv)
        })
        .await;
    cluster.events().flushed().await;
    assert_eq!(events_about(&env.admin, "default", &gone_pv).await.len(), 1);
}

/// Needs no server: nothing listens on port 1.
#[tokio::test]
async fn an_unreachable_api_server_is_unavailable_never_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: \"t\"}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .unwrap();
    let c = client(&ClientSettings {
        kubeconfig: Some(path),
        ..ClientSettings::default()
    })
    .await
    .unwrap();
    let cluster = KubeCluster::new(c, "rds.csi.srvlab.io".into());
    let node = cluster.node_state("node-a").await;
    assert!(
        matches!(node, Err(ClusterError::Unavailable(_))),
        "{node:?}"
    );
    let pvs = cluster.list_pvs().await;
    assert!(matches!(pvs, Err(ClusterError::Unavailable(_))), "{pvs:?}");
    let msg = pvs.unwrap_err().to_string();
    assert!(msg.contains("listing PersistentVolumes"), "{msg}");
    // Best effort: returns (after logging) rather than failing or hanging.
    cluster
        .post_event(VolumeEvent {
            pv_name: Some("pv".into()),
            pvc: Some(("ns".into(), "pvc".into())),
            kind: EventKind::Normal,
            reason: "VolumeAttached".into(),
            message: "m".into(),
            pv_uid: None,
            pvc_uid: None,
        })
        .await;
    cluster.events().flushed().await;
}

// ---- RBAC ----

/// The driver's whole Kubernetes surface for one identity, each step checked through the admin
/// client. Returns the steps that failed (empty when the identity has every right it needs).
async fn exercise(env: &KubeEnv, as_controller: bool) -> Vec<String> {
    let identity = if as_controller {
        &env.controller
    } else {
        &env.node
    };
    let driver = test_driver();
    let ns = create_namespace(&env.admin).await;
    let handle = format!("default:{}", unique("pvc"));
    let (pv, pvc, uid) = create_bound_volume(&env.admin, &ns, &driver, &handle).await;
    let comp = if as_controller {
        component::CONTROLLER
    } else {
        component::NODE
    };
    let recorder = Arc::new(EventRecorder::new(identity.clone(), comp));
    let cluster = KubeCluster::new(identity.clone(), driver.clone()).with_events(recorder);
    let mut failed = Vec::new();

    if !as_controller {
        // The node plugin reads its Node once at start for the kubelet version (get).
        if let Err(e) =
            k8s::kubelet_version(identity.clone(), "n1", std::time::Duration::from_secs(10)).await
        {
            failed.push(format!("kubelet_version: {e}"));
        }
    }

    if as_controller {
        match cluster.pv_by_handle(&handle).await {
            Ok(Some(info)) => {
                let c = changes(&[("rds.csi.srvlab.io/attached-node", Some("n1"))]);
                if let Err(e) = cluster
                    .patch_pv_annotations(&pv, &info.resource_version, &c)
                    .await
                {
                    failed.push(format!("patch_pv_annotations: {e}"));
                }
            }
            other => failed.push(format!("pv_by_handle: {other:?}")),
        }
        create_va(&env.admin, &unique("csi"), &driver, "n1", &pv, &[]).await;
        match cluster.list_volume_attachments().await {
            Ok(vas) if vas.len() == 1 => {}
            other => failed.push(format!("list_volume_attachments: {other:?}")),
        }
        // A VolumeAttachment stuck in deletion is finished: read afresh (get), the attacher's
        // finalizer taken off (patch).
        let stuck = unique("csi");
        let finalizer = format!("external-attacher/{}", driver.replace('.', "-"));
        create_va(&env.admin, &stuck, &driver, "n-gone", &pv, &[&finalizer]).await;
        Api::<k8s_openapi::api::storage::v1::VolumeAttachment>::all(env.admin.clone())
            .delete(&stuck, &DeleteParams::default())
            .await
            .unwrap();
        match cluster.finish_volume_attachment(&stuck, "n-gone").await {
            Ok(true) => {}
            other => failed.push(format!("finish_volume_attachment: {other:?}")),
        }
        if let Err(e) = cluster.node_state("n1").await {
            failed.push(format!("node_state: {e}"));
        }
        if let Err(e) = cluster.attach_limit("n1").await {
            failed.push(format!("attach_limit: {e}"));
        }
        failed.extend(exercise_watches(env, &cluster, &driver).await);
        // Leader election: the first round creates the Lease, the second renews it.
        let config = k8s::LeaderConfig {
            namespace: "kube-system".into(),
            lease_name: unique("rds-csi-rbac"),
            identity: "rbac-test_0".into(),
            lease_duration: std::time::Duration::from_secs(15),
            renew_deadline: std::time::Duration::from_secs(10),
            retry_period: std::time::Duration::from_secs(2),
            api_timeout: std::time::Duration::from_secs(10),
        };
        match k8s::LeaderElector::new(identity.clone(), config) {
            Ok(elector) => {
                for round in ["creating", "renewing"] {
                    match elector.try_acquire_or_renew().await {
                        Ok(true) => {}
                        other => failed.push(format!("leader Lease, {round}: {other:?}")),
                    }
                }
            }
            Err(e) => failed.push(format!("leader election config: {e}")),
        }
    }

    // On the PVC, twice (the second bumps the count).
    let on_pvc = VolumeEvent {
        pv_name: Some(pv.clone()),
        pvc: Some((ns.clone(), pvc.clone())),
        kind: EventKind::Warning,
        reason: "AttachmentConflict".into(),
        message: format!("[{handle}]: conflict"),
        pv_uid: None,
        pvc_uid: None,
    };
    cluster.post_event(on_pvc.clone()).await;
    cluster.events().flushed().await;
    cluster.post_event(on_pvc).await;
    cluster.events().flushed().await;
    // Only the PV known: found through the claimRef.
    cluster
        .post_event(VolumeEvent {
            pv_name: Some(pv.clone()),
            pvc: None,
            kind: EventKind::Normal,
            reason: "VolumeDetached".into(),
            message: format!("[{handle}]: Detached from node n1"),
            pv_uid: None,
            pvc_uid: None,
        })
        .await;
    cluster.events().flushed().await;
    let events = events_about(&env.admin, &ns, &pvc).await;
    let find = |reason: &str| events.iter().find(|e| e.reason.as_deref() == Some(reason));
    match find("AttachmentConflict") {
        Some(e) if e.involved_object.uid.as_deref() != Some(uid.as_str()) => {
            failed.push("event on the PVC lacks its uid".into())
        }
        Some(e) if e.count != Some(2) => {
            failed.push(format!("repeated event count is {:?}, not 2", e.count))
        }
        Some(_) => {}
        None => failed.push("event on the PVC not posted".into()),
    }
    if find("VolumeDetached").is_none() {
        failed.push("event through the PV's claimRef not posted on the PVC".into());
    }
    failed
}

/// The PV index follows a PV created after its listing (PV list + watch), the node cache lists
/// Nodes and CSINodes (list + watch), and the Node watch
/// releases the fence of a node deleted after its listing (Node list + watch; the release reads
/// the Node again: get).
async fn exercise_watches(env: &KubeEnv, cluster: &KubeCluster, driver: &str) -> Vec<String> {
    use fencing::{AttachmentManager, FencingConfig, PublishRequest, Sharing};
    let mut failed = Vec::new();
    let index = cluster.start_pv_index();
    let late = format!("default:{}", unique("pvc"));
    let late_pv = unique("static");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cluster.pv_index_ready() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    create_pv(&env.admin, &late_pv, driver, &late, None).await;
    while cluster.indexed_pv_names(&late) != Some(vec![late_pv.clone()])
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if cluster.indexed_pv_names(&late) != Some(vec![late_pv.clone()]) {
        failed.push(format!(
            "PV index: {:?} for a PV created after the listing",
            cluster.indexed_pv_names(&late)
        ));
    }
    index.abort();

    // The node cache (Node and CSINode list + watch) completes its listings.
    let nodes = cluster.start_node_cache();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cluster.node_cache_ready() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if !cluster.node_cache_ready() {
        failed.push("node cache: Node and CSINode listings never completed".into());
    }
    // A CSINode created after the listing reaches the cache through the watch.
    let limited = unique("node");
    create_csinode(&env.admin, &limited, driver, 2).await;
    while cluster.cached_attach_limit(&limited) != Some(Some(2))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if cluster.cached_attach_limit(&limited) != Some(Some(2)) {
        failed.push(format!(
            "node cache: {:?} for a CSINode created after the listing",
            cluster.cached_attach_limit(&limited)
        ));
    }
    nodes.abort();

    let node = unique("node");
    create_node(&env.admin, &node, &[]).await;
    let manager = Arc::new(AttachmentManager::new(
        Arc::new(cluster.clone()),
        FencingConfig::default(),
    ));
    if let Err(e) = manager.rebuild().await {
        failed.push(format!("rebuild: {e}"));
        return failed;
    }
    let req = PublishRequest {
        volume_id: late.clone(),
        node: node.clone(),
        sharing: Sharing::SingleNode,
        volume_context: Default::default(),
    };
    if let Err(e) = manager.publish(&req).await {
        failed.push(format!("publish: {e}"));
        return failed;
    }
    let watch = k8s::watch_nodes(
        env.controller.clone(),
        manager.clone(),
        std::time::Duration::from_secs(15),
    );
    // Deleted only once the watch is past its listing, so only a watch event can report it.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    delete_node(&env.admin, &node).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !manager.attached_nodes(&late).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if !manager.attached_nodes(&late).is_empty() {
        failed.push("Node watch: a deleted node kept its fence".into());
    }
    watch.abort();

    // The VolumeAttachment watch (list + watch) finishes one stuck in deletion for the node
    // just deleted: read afresh (get), the attacher's finalizer taken off (patch).
    let stuck = unique("csi");
    let finalizer = format!("external-attacher/{}", driver.replace('.', "-"));
    create_va(&env.admin, &stuck, driver, &node, &late_pv, &[&finalizer]).await;
    let vas = Api::<k8s_openapi::api::storage::v1::VolumeAttachment>::all(env.admin.clone());
    let va_watch = k8s::watch_volume_attachments(
        env.controller.clone(),
        driver.to_string(),
        manager.clone(),
        std::time::Duration::from_secs(15),
        std::time::Duration::ZERO,
    );
    vas.delete(&stuck, &DeleteParams::default()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut gone = false;
    while !gone && std::time::Instant::now() < deadline {
        gone = matches!(vas.get_opt(&stuck).await, Ok(None));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if !gone {
        failed.push(
            "VolumeAttachment watch: one stuck in deletion for a deleted node was not finished"
                .into(),
        );
        // Let the API server delete it whatever happened, so later runs start clean.
        let clear = serde_json::json!({"metadata": {"finalizers": null}});
        let _ = vas
            .patch(
                &stuck,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&clear),
            )
            .await;
    }
    va_watch.abort();
    failed
}

async fn create_csinode(admin: &kube::Client, node: &str, driver: &str, count: i32) {
    use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, VolumeNodeResources};
    let csinode = CSINode {
        metadata: kube::api::ObjectMeta {
            name: Some(node.to_string()),
            ..Default::default()
        },
        spec: CSINodeSpec {
            drivers: vec![CSINodeDriver {
                name: driver.to_string(),
                node_id: node.to_string(),
                allocatable: Some(VolumeNodeResources { count: Some(count) }),
                topology_keys: None,
            }],
        },
    };
    Api::<CSINode>::all(admin.clone())
        .create(&Default::default(), &csinode)
        .await
        .unwrap();
}

/// `role` with exactly one grant taken away.
fn without(role: &Value, gone: &Grant) -> Value {
    let rules: Vec<Value> = grants(role)
        .into_iter()
        .filter(|g| g != gone)
        .map(|g| serde_json::json!({"apiGroups": [g.group], "resources": [g.resource], "verbs": [g.verb]}))
        .collect();
    let mut out = role.clone();
    out["rules"] = Value::Array(rules);
    out
}

/// One test, not several: it rewrites the shipped roles, which no other test in this binary
/// reads (they act as admin), and the identities' rights must not change under it.
#[tokio::test]
async fn rbac_manifests_grant_the_driver_exactly_what_it_uses() {
    let Some(env) = env("rbac_manifests_grant_the_driver_exactly_what_it_uses").await else {
        return;
    };
    let manifests = apply_rbac(&env).await;
    let roles: Vec<&Value> = manifests
        .iter()
        .filter(|m| is_role(m) && is_driver_object(m))
        .collect();
    assert_eq!(
        roles.len(),
        3,
        "one role for the controller, one for its leader Lease, one for the node"
    );

    // The sidecars' rules overlap the driver's: unbind them so only the driver's roles count.
    let sidecar_bindings: Vec<&Value> = manifests
        .iter()
        .filter(|m| is_binding(m) && !is_driver_object(m))
        .collect();
    for b in &sidecar_bindings {
        unbind(&env.admin, b).await;
    }
    let sidecar_only = Grant {
        group: String::new(),
        resource: "persistentvolumes".into(),
        verb: "create".into(),
        namespace: "default".into(),
    };
    wait_until("the sidecar bindings to be gone", || async {
        !allowed(&env, CONTROLLER_SA, &sidecar_only).await
    })
    .await;

    // Enough: every driver operation works as each ServiceAccount, with the driver roles alone.
    assert_eq!(
        exercise(&env, true).await,
        Vec::<String>::new(),
        "controller"
    );
    assert_eq!(exercise(&env, false).await, Vec::<String>::new(), "node");

    // Nothing more: take away any single granted verb and some operation fails.
    for role in roles {
        let (name, as_controller, user) = user_of(role);
        for gone in grants(role) {
            apply(&env.admin, &without(role, &gone)).await;
            wait_until(&format!("{user} to lose {gone:?}"), || async {
                !allowed(&env, user, &gone).await
            })
            .await;
            let failed = exercise(&env, as_controller).await;
            assert!(
                !failed.is_empty(),
                "{name} grants {} on {} but the driver works without it",
                gone.verb,
                gone.resource
            );
            apply(&env.admin, role).await;
            wait_until(&format!("{user} to regain {gone:?}"), || async {
                allowed(&env, user, &gone).await
            })
            .await;
        }
    }
    for b in &sidecar_bindings {
        apply(&env.admin, b).await;
    }
}

async fn unbind(admin: &kube::Client, binding: &Value) {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
    let name = binding["metadata"]["name"].as_str().unwrap();
    if binding["kind"] == "ClusterRoleBinding" {
        let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
        api.delete(name, &DeleteParams::default()).await.unwrap();
    } else {
        let ns = binding["metadata"]["namespace"].as_str().unwrap();
        let api: Api<RoleBinding> = Api::namespaced(admin.clone(), ns);
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
}
