//! Fuzz targets (proptest, bounded so they run under `cargo test`) for the hotplug guard's
//! AdmissionReview handling: whatever bytes reach `POST /validate`, the guard must not panic and
//! must answer with a complete `admission.k8s.io/v1` AdmissionReview — echoing the request uid
//! whenever the body carried one, refusing (code 400) only bodies that are not a review, and
//! never denying anything but an unfinished handoff.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hotplug_guard::objects::{AttachmentPod, Launcher, Owner, Vmi};
use hotplug_guard::rules::Observed;
use hotplug_guard::{Guard, GuardCluster, GuardError, GuardMetrics, GuardSettings};
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};

const API_VERSION: &str = "admission.k8s.io/v1";

/// A cluster where the pod under review is mid-handoff (so the rules can deny), or one whose
/// lookups fail.
struct Fake {
    fail: bool,
}

#[async_trait::async_trait]
impl GuardCluster for Fake {
    async fn observe(&self, pod: &AttachmentPod) -> Result<Observed, GuardError> {
        if self.fail {
            return Err(GuardError::Lookup {
                what: "fuzz".into(),
                source: "lookups fail".into(),
            });
        }
        let vmi = Vmi {
            name: "vm1".into(),
            namespace: pod.namespace.clone(),
            uid: "vmi-uid".into(),
            deleting: false,
            phase: "Running".into(),
            spec_volumes: pod.volumes.clone(),
            spec_hotplug: pod.volumes.clone(),
            hotplug: Vec::new(),
        };
        let replacement = AttachmentPod {
            name: "hp-volume-new".into(),
            uid: format!("{}-new", pod.uid),
            namespace: pod.namespace.clone(),
            launcher: Owner {
                name: pod.launcher.name.clone(),
                uid: pod.launcher.uid.clone(),
            },
            phase: "Pending".into(),
            created: Some(Timestamp::now()),
            deleting: false,
            volumes: BTreeSet::new(),
        };
        Ok(Observed {
            launcher: Some(Launcher {
                uid: pod.launcher.uid.clone(),
                phase: "Running".into(),
                deleting: false,
                vmi: Some(("vm1".into(), None)),
            }),
            vmi: Some(vmi),
            siblings: vec![replacement],
        })
    }

    async fn warn_vmi(&self, _vmi: &Vmi, _reason: &str, _message: &str) {}
}

fn guard(fail: bool) -> Guard {
    Guard::new(
        Arc::new(Fake { fail }),
        GuardMetrics::default(),
        GuardSettings {
            handoff_timeout: Duration::from_secs(300),
            lookup_deadline: Duration::from_secs(2),
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Asserts the answer is a complete AdmissionReview v1 and returns its `response`.
fn check_answer(body: &[u8], valid: bool) -> Value {
    let v: Value = serde_json::from_slice(body).expect("answer is JSON");
    assert_eq!(v["apiVersion"], API_VERSION, "{v}");
    assert_eq!(v["kind"], "AdmissionReview", "{v}");
    let r = v["response"].clone();
    assert!(r["uid"].is_string(), "{v}");
    assert!(r["allowed"].is_boolean(), "{v}");
    if !valid {
        assert_eq!(r["allowed"], false, "{v}");
        assert_eq!(r["status"]["code"], 400, "{v}");
    }
    if r["allowed"] == false {
        let msg = r["status"]["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "a refusal must say why: {v}");
    }
    r
}

/// JSON with keys the decoder looks for mixed into random ones, so generated values reach the
/// deeper paths (request, oldObject, labels, ownerReferences) instead of failing at the top.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "apiVersion", "kind", "request", "uid", "operation", "namespace", "name",
            "oldObject", "object", "subResource", "dryRun", "metadata", "labels",
            "ownerReferences", "controller", "status", "phase", "spec", "volumes",
            "persistentVolumeClaim", "creationTimestamp", "deletionTimestamp", "kubevirt.io",
        ])
        .prop_map(str::to_string),
        1 => "[a-zA-Z.]{0,10}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "DELETE",
            "Pod",
            "hotplug-disk",
            "Running",
            "Succeeded",
            "v1",
            API_VERSION,
            "AdmissionReview",
            "2026-11-26T12:00:00Z",
            "",
        ])
        .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A DELETE review of a pod shaped like an attachment pod, with arbitrary values spliced into
/// the places the guard reads.
fn pod_review() -> impl Strategy<Value = (Value, String)> {
    (
        ".{0,40}",
        json(),
        json(),
        json(),
        prop::sample::select(vec!["Running", "Pending", "Succeeded", "Failed", "", "Weird"]),
        any::<bool>(),
    )
        .prop_map(|(uid, owner_extra, volumes, labels_extra, phase, dry_run)| {
            let mut labels = json!({"kubevirt.io": "hotplug-disk"});
            if let (Some(l), Value::Object(extra)) = (labels.as_object_mut(), &labels_extra) {
                for (k, v) in extra {
                    if k != "kubevirt.io" {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
            let mut owner = json!({"apiVersion": "v1", "kind": "Pod", "name": "virt-launcher-x",
                                   "uid": "launcher-uid", "controller": true});
            if let (Some(o), Value::Object(extra)) = (owner.as_object_mut(), &owner_extra) {
                for (k, v) in extra {
                    o.insert(k.clone(), v.clone());
                }
            }
            let review = json!({
                "apiVersion": API_VERSION, "kind": "AdmissionReview",
                "request": {
                    "uid": uid, "operation": "DELETE", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "name": "hp-volume-old", "namespace": "vms", "dryRun": dry_run,
                    "oldObject": {
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "hp-volume-old", "namespace": "vms", "uid": "old-uid",
                                     "labels": labels, "ownerReferences": [owner],
                                     "creationTimestamp": "2026-11-26T12:00:00Z"},
                        "spec": {"containers": [{"name": "hotplug-disk"}],
                                 "volumes": [{"name": "disk-a", "persistentVolumeClaim": {"claimName": "a"}}, volumes]},
                        "status": {"phase": phase}
                    }
                }
            });
            (review, uid)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_complete_answer(body in prop::collection::vec(any::<u8>(), 0..512), fail in any::<bool>()) {
        let answer = runtime().block_on(guard(fail).review(&body));
        check_answer(&answer.body, answer.valid);
    }

    #[test]
    fn arbitrary_json_gets_a_complete_answer_echoing_any_uid(v in json(), fail in any::<bool>()) {
        let body = serde_json::to_vec(&v).unwrap();
        let answer = runtime().block_on(guard(fail).review(&body));
        let r = check_answer(&answer.body, answer.valid);
        if answer.valid {
            prop_assert_eq!(&r["uid"], &v["request"]["uid"]);
        }
    }

    #[test]
    fn arbitrary_json_inside_an_envelope_gets_a_complete_answer(request in json(), fail in any::<bool>()) {
        let v = json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request});
        let body = serde_json::to_vec(&v).unwrap();
        let answer = runtime().block_on(guard(fail).review(&body));
        let r = check_answer(&answer.body, answer.valid);
        if let Some(uid) = v["request"]["uid"].as_str().filter(|u| !u.is_empty()) {
            prop_assert_eq!(r["uid"].as_str(), Some(uid));
        }
    }

    #[test]
    fn pod_reviews_with_hostile_fields_are_decided_and_only_a_pending_handoff_is_denied(
        (v, uid) in pod_review(), fail in any::<bool>(),
    ) {
        let body = serde_json::to_vec(&v).unwrap();
        let answer = runtime().block_on(guard(fail).review(&body));
        let r = check_answer(&answer.body, answer.valid);
        if uid.is_empty() {
            prop_assert!(!answer.valid);
        } else {
            prop_assert!(answer.valid);
            prop_assert_eq!(r["uid"].as_str(), Some(uid.as_str()));
            if r["allowed"] == false {
                // Only the rules' handoff denial, and never when lookups fail (fail open).
                prop_assert!(!fail, "{}", r);
                prop_assert_eq!(&r["status"]["code"], 403);
                let msg = r["status"]["message"].as_str().unwrap_or_default();
                prop_assert!(msg.contains("hotplug handoff of VirtualMachineInstance"), "{}", msg);
            }
        }
    }
}

/// Regression seeds the targets found worth keeping: deep nesting and huge numbers must not
/// overflow anything.
#[test]
fn deeply_nested_and_oversized_values_are_answered() {
    let rt = runtime();
    let g = guard(false);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let a = rt.block_on(g.review(deep.as_bytes()));
    check_answer(&a.body, a.valid);
    assert!(!a.valid);
    let big = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"DELETE","kind":{"kind":"Pod"},"oldObject":{"metadata":{"creationTimestamp":"99999-99-99T99:99:99Z","labels":{"kubevirt.io":"hotplug-disk"}}}}}"#;
    let a = rt.block_on(g.review(big));
    let r = check_answer(&a.body, a.valid);
    assert_eq!(r["uid"], "u");
    assert_eq!(
        r["allowed"], true,
        "an unreadable pod is allowed (fail open): {r}"
    );
}

fn pending_review(uid: &str, dry_run: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": API_VERSION, "kind": "AdmissionReview",
        "request": {"uid": uid, "operation": "DELETE", "kind": {"kind": "Pod"}, "dryRun": dry_run,
            "oldObject": {"metadata": {"name": "hp-volume-old", "namespace": "vms", "uid": "old-uid",
                "labels": {"kubevirt.io": "hotplug-disk"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "virt-launcher-x",
                                     "uid": "launcher-uid", "controller": true}]},
                "spec": {"containers": [{"name": "hotplug-disk"}],
                         "volumes": [{"name": "disk-a", "persistentVolumeClaim": {"claimName": "a"}}]},
                "status": {"phase": "Running"}}}
    }))
    .unwrap()
}

/// The targets above can deny: the same review the property builds is denied when the fake
/// cluster is mid-handoff, and allowed (fail open) when lookups fail.
#[test]
fn the_fuzzed_review_shape_reaches_the_deny_path() {
    let rt = runtime();
    let a = rt.block_on(guard(false).review(&pending_review("u1", false)));
    let r = check_answer(&a.body, a.valid);
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["uid"], "u1");
    let a = rt.block_on(guard(true).review(&pending_review("u2", false)));
    assert_eq!(check_answer(&a.body, a.valid)["allowed"], true);
}

/// A cluster that never answers: the guard gives up at its lookup deadline and allows.
struct Hung;

#[async_trait::async_trait]
impl GuardCluster for Hung {
    async fn observe(&self, _pod: &AttachmentPod) -> Result<Observed, GuardError> {
        std::future::pending().await
    }
    async fn warn_vmi(&self, _vmi: &Vmi, _reason: &str, _message: &str) {}
}

#[test]
fn a_hung_cluster_is_allowed_at_the_lookup_deadline_and_counted() {
    let rt = runtime();
    let metrics = observability::metrics::Metrics::new();
    let gm = GuardMetrics::register(&metrics);
    let g = Guard::new(
        Arc::new(Hung),
        gm,
        GuardSettings {
            handoff_timeout: Duration::from_secs(300),
            lookup_deadline: Duration::from_millis(200),
        },
    );
    let started = std::time::Instant::now();
    let a = rt.block_on(g.review(&pending_review("u3", false)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(check_answer(&a.body, a.valid)["allowed"], true);
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(
            r#"rds_csi_hotplug_guard_decisions_total{decision="allowed",reason="lookup-failed"} 1"#
        ),
        "{text}"
    );
    let a = rt.block_on(g.review(b"{}"));
    assert!(!a.valid);
    assert!(
        metrics
            .encode()
            .unwrap()
            .contains("rds_csi_hotplug_guard_invalid_reviews_total 1")
    );
}

/// A timed-out handoff posts its Warning event, except for dry runs.
struct Stuck {
    events: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl GuardCluster for Stuck {
    async fn observe(&self, pod: &AttachmentPod) -> Result<Observed, GuardError> {
        let mut seen = Fake { fail: false }.observe(pod).await?;
        seen.siblings[0].created = Some("2020-01-01T00:00:00Z".parse().unwrap());
        Ok(seen)
    }
    async fn warn_vmi(&self, vmi: &Vmi, reason: &str, message: &str) {
        self.events.lock().unwrap().push(format!(
            "{}/{} {reason}: {message}",
            vmi.namespace, vmi.name
        ));
    }
}

#[test]
fn a_timed_out_handoff_is_allowed_with_a_warning_and_an_event_except_on_dry_runs() {
    let rt = runtime();
    let stuck = Arc::new(Stuck {
        events: std::sync::Mutex::new(Vec::new()),
    });
    let g = Guard::new(
        stuck.clone(),
        GuardMetrics::default(),
        GuardSettings {
            handoff_timeout: Duration::from_secs(300),
            lookup_deadline: Duration::from_secs(2),
        },
    );
    rt.block_on(async {
        let a = g.review(&pending_review("dry", true)).await;
        let r = check_answer(&a.body, a.valid);
        assert_eq!(r["allowed"], true, "{r}");
        assert!(
            r["warnings"][0]
                .as_str()
                .unwrap()
                .contains("more than the limit of 300s"),
            "{r}"
        );
        let a = g.review(&pending_review("real", false)).await;
        assert_eq!(check_answer(&a.body, a.valid)["allowed"], true);
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let events = stuck.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("vms/vm1 HotplugHandoffTimeout: hotplug handoff"),
        "{events:?}"
    );
}
