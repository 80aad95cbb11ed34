//! The guard's decision, a pure function of what it observed: no I/O, so every rule is unit
//! tested on objects in the shapes KubeVirt writes.
//!
//! The deletion of an attachment pod is denied only while the pod still serves volumes of a live
//! VMI and no other attachment pod of the same virt-launcher pod has completed the handoff. A
//! handoff to pod R is complete when R is `Running`, and every hotplugged volume still in the
//! VMI spec has a `volumeStatus` entry with phase `Ready` and `hotplugVolume.attachPodUID` equal
//! to R's UID (the three conditions of `allVolumesHandedOffToPod`, the fix validated against
//! kubevirt/kubevirt#6564). Everything else is allowed: the guard exists to delay one unsafe
//! step, never to hold a VM hostage.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::objects::{AttachmentPod, Launcher, VOLUME_READY, Vmi, is_terminal_phase};

/// Why a deletion was allowed. The string forms are the `reason` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not a KubeVirt hotplug attachment pod (or not a pod deletion at all).
    NotAttachmentPod,
    /// The pod is `Succeeded` or `Failed`: it holds nothing any more.
    PodTerminal,
    /// The pod already has a deletionTimestamp: its containers are being stopped, and refusing
    /// the final DELETE (kubelet's) would protect nothing and leave it stuck Terminating.
    PodDeleting,
    /// Its virt-launcher pod is gone, finished or being deleted: the VM no longer runs there.
    LauncherGone,
    VmiAbsent,
    /// The VMI is being deleted or has finished.
    VmiDeleting,
    /// None of the volumes the pod serves are in the VMI spec any more (unplug).
    VolumesUnplugged,
    /// No other live attachment pod exists: KubeVirt is not replacing it.
    OnlyAttachmentPod,
    HandoffComplete,
    /// Reading the cluster failed or took too long; the guard fails open.
    LookupFailed,
    /// The review or the pod in it could not be read; the guard fails open.
    InvalidObject,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotAttachmentPod => "not-attachment-pod",
            Reason::PodTerminal => "pod-terminal",
            Reason::PodDeleting => "pod-deleting",
            Reason::LauncherGone => "launcher-gone",
            Reason::VmiAbsent => "vmi-absent",
            Reason::VmiDeleting => "vmi-deleting",
            Reason::VolumesUnplugged => "volumes-unplugged",
            Reason::OnlyAttachmentPod => "only-attachment-pod",
            Reason::HandoffComplete => "handoff-complete",
            Reason::LookupFailed => "lookup-failed",
            Reason::InvalidObject => "invalid-object",
        }
    }

    /// Every reason, for listing metric series up front.
    pub const ALL: [Reason; 11] = [
        Reason::NotAttachmentPod,
        Reason::PodTerminal,
        Reason::PodDeleting,
        Reason::LauncherGone,
        Reason::VmiAbsent,
        Reason::VmiDeleting,
        Reason::VolumesUnplugged,
        Reason::OnlyAttachmentPod,
        Reason::HandoffComplete,
        Reason::LookupFailed,
        Reason::InvalidObject,
    ];
}

/// The answer to one admission review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Reason),
    /// The handoff is unfinished; the message says what the guard waits for.
    Deny(String),
    /// The handoff is unfinished but has waited longer than the limit: allowed, and reported
    /// (Warning event on the VMI, metric) because a stuck handoff needs a human.
    TimedOut(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        !matches!(self, Decision::Deny(_))
    }

    /// The `decision` label: `allowed`, `denied` or `timed_out`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allowed",
            Decision::Deny(_) => "denied",
            Decision::TimedOut(_) => "timed_out",
        }
    }

    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allow(r) => r.as_str(),
            Decision::Deny(_) => "handoff-pending",
            Decision::TimedOut(_) => "handoff-timeout",
        }
    }
}

/// What the guard read from the cluster about the pod being deleted.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The virt-launcher pod owning it; `None` when gone (or replaced: another UID).
    pub launcher: Option<Launcher>,
    /// The launcher's VMI; `None` when absent (or replaced: another UID).
    pub vmi: Option<Vmi>,
    /// The other attachment pods of the same launcher pod (the pod itself excluded).
    pub siblings: Vec<AttachmentPod>,
}

/// Rules that need no cluster read; `Some` settles the review before any lookup.
pub fn precheck(pod: &AttachmentPod) -> Option<Decision> {
    if pod.is_terminal() {
        return Some(Decision::Allow(Reason::PodTerminal));
    }
    pod.deleting.then_some(Decision::Allow(Reason::PodDeleting))
}

/// Decides the deletion of `pod` given what was observed, at `now`, with the handoff limit
/// `timeout` measured from the replacement pod's creation (stateless: survives guard restarts
/// and needs no coordination between replicas).
pub fn decide(pod: &AttachmentPod, seen: &Observed, now: Timestamp, timeout: Duration) -> Decision {
    if let Some(d) = precheck(pod) {
        return d;
    }
    let Some(launcher) = &seen.launcher else {
        return Decision::Allow(Reason::LauncherGone);
    };
    if launcher.deleting || is_terminal_phase(&launcher.phase) {
        return Decision::Allow(Reason::LauncherGone);
    }
    let Some(vmi) = &seen.vmi else {
        return Decision::Allow(Reason::VmiAbsent);
    };
    if vmi.deleting || vmi.is_finished() {
        return Decision::Allow(Reason::VmiDeleting);
    }
    let served: BTreeSet<&String> = pod.volumes.intersection(&vmi.spec_volumes).collect();
    if served.is_empty() {
        return Decision::Allow(Reason::VolumesUnplugged);
    }
    let mut live: Vec<&AttachmentPod> = seen
        .siblings
        .iter()
        .filter(|s| s.uid != pod.uid && !s.deleting && !s.is_terminal())
        .collect();
    if live.is_empty() {
        return Decision::Allow(Reason::OnlyAttachmentPod);
    }
    // The volumes that must be on the replacement: what this pod serves plus every other
    // hotplugged volume still in the spec (KubeVirt puts all of them on the new pod).
    let mut required: BTreeSet<&String> = served.clone();
    required.extend(vmi.spec_hotplug.iter());
    required.extend(
        vmi.hotplug
            .iter()
            .filter(|h| vmi.spec_volumes.contains(&h.name))
            .map(|h| &h.name),
    );
    if live.iter().any(|r| missing(vmi, &required, r).is_none()) {
        return Decision::Allow(Reason::HandoffComplete);
    }
    // Several candidates happen only when KubeVirt replaced the pod more than once in a row;
    // the newest is the one it is handing off to.
    live.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let Some(replacement) = live.last() else {
        return Decision::Allow(Reason::OnlyAttachmentPod);
    };
    let waiting = missing(vmi, &required, replacement).unwrap_or_default();
    let age = replacement.created.map(|c| {
        Duration::from_millis(u64::try_from(now.as_millisecond() - c.as_millisecond()).unwrap_or(0))
    });
    let mut message = format!(
        "hotplug handoff of VirtualMachineInstance {}/{} is not finished: attachment pod {} still serves {}; waiting for replacement pod {} ({waiting})",
        vmi.namespace,
        vmi.name,
        pod.name,
        list(served.iter().map(|s| s.as_str())),
        replacement.name,
    );
    match age {
        // A pod read from the API always has a creationTimestamp; without one its age is
        // unknown and the guard must not wait forever.
        None => {
            message.push_str("; the replacement has no creationTimestamp, not waiting");
            Decision::TimedOut(message)
        }
        Some(age) if age >= timeout => {
            let _ = write!(
                message,
                "; waited {}s, more than the limit of {}s: deletion allowed",
                age.as_secs(),
                timeout.as_secs()
            );
            Decision::TimedOut(message)
        }
        Some(age) => {
            let _ = write!(
                message,
                "; KubeVirt retries the deletion; the guard stops waiting in {}s",
                timeout.saturating_sub(age).as_secs().max(1)
            );
            Decision::Deny(message)
        }
    }
}

/// What keeps the handoff to `r` from being complete, in words; `None` when it is complete.
fn missing(vmi: &Vmi, required: &BTreeSet<&String>, r: &AttachmentPod) -> Option<String> {
    let mut parts = Vec::new();
    if r.phase != "Running" {
        let phase = if r.phase.is_empty() {
            "unknown"
        } else {
            &r.phase
        };
        parts.push(format!("pod {} is {phase}, not Running", r.name));
    }
    let mut not_ready = Vec::new();
    let mut elsewhere = Vec::new();
    for name in required {
        match vmi.hotplug.iter().find(|h| &&h.name == name) {
            None => not_ready.push(format!("{name} (no volumeStatus)")),
            Some(h) => {
                if h.phase != VOLUME_READY {
                    let phase = if h.phase.is_empty() {
                        "no phase"
                    } else {
                        &h.phase
                    };
                    not_ready.push(format!("{name} ({phase})"));
                }
                if h.attach_pod_uid != r.uid {
                    let on = if h.attach_pod_name.is_empty() {
                        format!("uid {}", h.attach_pod_uid)
                    } else {
                        h.attach_pod_name.clone()
                    };
                    elsewhere.push(format!("{name} -> {on}"));
                }
            }
        }
    }
    if !not_ready.is_empty() {
        parts.push(format!("volumes not Ready: {}", not_ready.join(", ")));
    }
    if !elsewhere.is_empty() {
        parts.push(format!(
            "attachPodUID not yet {} for: {}",
            r.name,
            elsewhere.join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    format!("volumes {}", v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    const NS: &str = "vms";
    const LAUNCHER_UID: &str = "5a1c0b1e-0000-4000-8000-00000000000a";
    const OLD_UID: &str = "0d0d0d0d-0000-4000-8000-000000000001";
    const NEW_UID: &str = "0e0e0e0e-0000-4000-8000-000000000002";
    const T0: &str = "2026-11-26T12:00:00Z";

    /// An attachment pod as KubeVirt v1.9 renders it (RenderHotplugAttachmentPodTemplate).
    fn attach_pod(name: &str, uid: &str, phase: &str, created: &str, vols: &[&str]) -> Value {
        let mut volumes: Vec<Value> = vols
            .iter()
            .map(|v| json!({"name": v, "persistentVolumeClaim": {"claimName": format!("pvc-{v}")}}))
            .collect();
        volumes.push(json!({"name": "hotplug-disks", "emptyDir": {}}));
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": NS, "uid": uid, "generateName": "hp-volume-",
                "creationTimestamp": created,
                "labels": {"kubevirt.io": "hotplug-disk"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "virt-launcher-vm1-x7k2p",
                    "uid": LAUNCHER_UID, "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": {"containers": [{"name": "hotplug-disk", "image": "virt-launcher"}], "volumes": volumes},
            "status": {"phase": phase}
        })
    }

    fn pod(v: Value) -> AttachmentPod {
        let p: Pod = serde_json::from_value(v).unwrap();
        AttachmentPod::from_pod(&p).unwrap()
    }

    fn launcher() -> Launcher {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "virt-launcher-vm1-x7k2p", "namespace": NS, "uid": LAUNCHER_UID,
                "labels": {"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": "vm1"},
                "annotations": {"kubevirt.io/domain": "vm1"},
                "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                    "name": "vm1", "uid": "vmi-uid-1", "controller": true, "blockOwnerDeletion": true}]},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        Launcher::from_pod(&p)
    }

    /// volumeStatus entries: (name, phase, attachPodName, attachPodUID).
    fn vmi(spec: &[&str], status: &[(&str, &str, &str, &str)]) -> Value {
        let mut volumes =
            vec![json!({"name": "rootdisk", "persistentVolumeClaim": {"claimName": "vm1-root"}})];
        volumes.extend(spec.iter().map(|v| {
            json!({"name": v, "persistentVolumeClaim": {"claimName": format!("pvc-{v}"), "hotpluggable": true}})
        }));
        let mut vs = vec![
            json!({"name": "rootdisk", "target": "vda", "phase": "Ready",
            "persistentVolumeClaimInfo": {"claimName": "vm1-root", "volumeMode": "Block"}}),
        ];
        vs.extend(status.iter().map(|(n, phase, pn, pu)| {
            json!({"name": n, "target": "sda", "phase": phase, "reason": "VolumeReady",
                "message": "Successfully attach hotplugged volume",
                "hotplugVolume": {"attachPodName": pn, "attachPodUID": pu},
                "persistentVolumeClaimInfo": {"claimName": format!("pvc-{n}"), "volumeMode": "Block"}})
        }));
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm1", "namespace": NS, "uid": "vmi-uid-1"},
            "spec": {"domain": {"devices": {"disks": []}}, "volumes": volumes},
            "status": {"phase": "Running", "activePods": {LAUNCHER_UID: "node-1"}, "volumeStatus": vs}
        })
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const LIMIT: Duration = Duration::from_secs(300);

    fn old() -> AttachmentPod {
        pod(attach_pod(
            "hp-volume-old11",
            OLD_UID,
            "Running",
            T0,
            &["disk-a"],
        ))
    }

    fn new(phase: &str) -> AttachmentPod {
        pod(attach_pod(
            "hp-volume-new22",
            NEW_UID,
            phase,
            "2026-11-26T12:01:00Z",
            &["disk-a", "disk-b"],
        ))
    }

    fn seen(vmi_json: Value, siblings: Vec<AttachmentPod>) -> Observed {
        Observed {
            launcher: Some(launcher()),
            vmi: Some(Vmi::from_json(vmi_json).unwrap()),
            siblings,
        }
    }

    fn mid_handoff() -> Observed {
        seen(
            vmi(
                &["disk-a", "disk-b"],
                &[
                    ("disk-a", "Ready", "hp-volume-old11", OLD_UID),
                    ("disk-b", "AttachedToNode", "hp-volume-new22", NEW_UID),
                ],
            ),
            vec![new("Running")],
        )
    }

    #[test]
    fn an_unfinished_handoff_is_denied_naming_what_it_waits_for() {
        let d = decide(&old(), &mid_handoff(), at("2026-11-26T12:02:00Z"), LIMIT);
        let Decision::Deny(msg) = &d else {
            panic!("{d:?}")
        };
        assert!(msg.contains("vms/vm1"), "{msg}");
        assert!(
            msg.contains("hp-volume-old11 still serves volumes disk-a"),
            "{msg}"
        );
        assert!(msg.contains("replacement pod hp-volume-new22"), "{msg}");
        assert!(
            msg.contains("volumes not Ready: disk-b (AttachedToNode)"),
            "{msg}"
        );
        assert!(
            msg.contains("attachPodUID not yet hp-volume-new22 for: disk-a -> hp-volume-old11"),
            "{msg}"
        );
        assert!(!msg.contains("not Running"), "{msg}");
        assert!(msg.contains("stops waiting in 240s"), "{msg}");
        assert_eq!((d.outcome(), d.reason()), ("denied", "handoff-pending"));
    }

    #[test]
    fn each_of_the_three_conditions_alone_keeps_it_denied() {
        let now = at("2026-11-26T12:02:00Z");
        // Replacement Pending, volumes already Ready on it.
        let all_on_new = vmi(
            &["disk-a", "disk-b"],
            &[
                ("disk-a", "Ready", "hp-volume-new22", NEW_UID),
                ("disk-b", "Ready", "hp-volume-new22", NEW_UID),
            ],
        );
        let d = decide(
            &old(),
            &seen(all_on_new.clone(), vec![new("Pending")]),
            now,
            LIMIT,
        );
        assert!(
            matches!(&d, Decision::Deny(m) if m.contains("pod hp-volume-new22 is Pending, not Running")),
            "{d:?}"
        );
        // Running, UIDs moved, one volume not Ready yet (v1 of the fix looked only at this).
        let not_ready = vmi(
            &["disk-a", "disk-b"],
            &[
                ("disk-a", "Ready", "hp-volume-new22", NEW_UID),
                ("disk-b", "MountedToPod", "hp-volume-new22", NEW_UID),
            ],
        );
        let d = decide(&old(), &seen(not_ready, vec![new("Running")]), now, LIMIT);
        assert!(
            matches!(&d, Decision::Deny(m) if m.contains("disk-b (MountedToPod)") && !m.contains("attachPodUID")),
            "{d:?}"
        );
        // Running and Ready, but the status still points at the old pod: not yet handed over.
        let uid_old = vmi(
            &["disk-a", "disk-b"],
            &[
                ("disk-a", "Ready", "hp-volume-old11", OLD_UID),
                ("disk-b", "Ready", "hp-volume-new22", NEW_UID),
            ],
        );
        let d = decide(&old(), &seen(uid_old, vec![new("Running")]), now, LIMIT);
        assert!(
            matches!(&d, Decision::Deny(m) if m.contains("disk-a -> hp-volume-old11") && !m.contains("not Ready")),
            "{d:?}"
        );
        // A volume in the spec that has no status entry yet.
        let no_status = vmi(
            &["disk-a", "disk-b"],
            &[("disk-a", "Ready", "hp-volume-new22", NEW_UID)],
        );
        let d = decide(&old(), &seen(no_status, vec![new("Running")]), now, LIMIT);
        assert!(
            matches!(&d, Decision::Deny(m) if m.contains("disk-b (no volumeStatus)")),
            "{d:?}"
        );
    }

    #[test]
    fn a_completed_handoff_is_allowed() {
        let done = vmi(
            &["disk-a", "disk-b"],
            &[
                ("disk-a", "Ready", "hp-volume-new22", NEW_UID),
                ("disk-b", "Ready", "hp-volume-new22", NEW_UID),
            ],
        );
        let d = decide(
            &old(),
            &seen(done, vec![new("Running")]),
            at("2026-11-26T12:02:00Z"),
            LIMIT,
        );
        assert_eq!(d, Decision::Allow(Reason::HandoffComplete));
        assert_eq!(d.outcome(), "allowed");
    }

    #[test]
    fn the_timeout_counts_from_the_replacement_creation_and_then_allows() {
        let just_before = decide(&old(), &mid_handoff(), at("2026-11-26T12:05:59Z"), LIMIT);
        assert!(matches!(just_before, Decision::Deny(_)), "{just_before:?}");
        let d = decide(&old(), &mid_handoff(), at("2026-11-26T12:06:00Z"), LIMIT);
        let Decision::TimedOut(msg) = &d else {
            panic!("{d:?}")
        };
        assert!(
            msg.contains("waited 300s, more than the limit of 300s"),
            "{msg}"
        );
        assert!(d.allowed());
        assert_eq!((d.outcome(), d.reason()), ("timed_out", "handoff-timeout"));
        // A replacement without creationTimestamp cannot be waited for.
        let mut s = mid_handoff();
        s.siblings[0].created = None;
        assert!(matches!(
            decide(&old(), &s, at("2026-11-26T12:02:00Z"), LIMIT),
            Decision::TimedOut(_)
        ));
    }

    #[test]
    fn vmi_absent_deleting_or_finished_is_allowed() {
        let now = at("2026-11-26T12:02:00Z");
        let mut s = mid_handoff();
        s.vmi = None;
        assert_eq!(
            decide(&old(), &s, now, LIMIT),
            Decision::Allow(Reason::VmiAbsent)
        );
        let mut deleting = vmi(
            &["disk-a"],
            &[("disk-a", "Ready", "hp-volume-old11", OLD_UID)],
        );
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-26T12:01:30Z");
        let d = decide(&old(), &seen(deleting, vec![new("Running")]), now, LIMIT);
        assert_eq!(d, Decision::Allow(Reason::VmiDeleting));
        let mut failed = vmi(
            &["disk-a"],
            &[("disk-a", "Ready", "hp-volume-old11", OLD_UID)],
        );
        failed["status"]["phase"] = json!("Failed");
        let d = decide(&old(), &seen(failed, vec![new("Running")]), now, LIMIT);
        assert_eq!(d, Decision::Allow(Reason::VmiDeleting));
    }

    #[test]
    fn the_only_attachment_pod_is_allowed() {
        let s = seen(
            vmi(
                &["disk-a"],
                &[("disk-a", "Ready", "hp-volume-old11", OLD_UID)],
            ),
            vec![],
        );
        let d = decide(&old(), &s, at("2026-11-26T12:02:00Z"), LIMIT);
        assert_eq!(d, Decision::Allow(Reason::OnlyAttachmentPod));
        // Siblings that are finished or already being deleted replace nothing.
        let mut gone = new("Running");
        gone.deleting = true;
        let s = seen(
            vmi(
                &["disk-a"],
                &[("disk-a", "Ready", "hp-volume-old11", OLD_UID)],
            ),
            vec![gone, new("Succeeded")],
        );
        let d = decide(&old(), &s, at("2026-11-26T12:02:00Z"), LIMIT);
        assert_eq!(d, Decision::Allow(Reason::OnlyAttachmentPod));
    }

    #[test]
    fn unplugged_volumes_are_allowed() {
        // disk-a was removed from the spec; the status still lists it as Detaching.
        let s = seen(
            vmi(
                &["disk-b"],
                &[
                    ("disk-a", "Detaching", "hp-volume-old11", OLD_UID),
                    ("disk-b", "AttachedToNode", "hp-volume-new22", NEW_UID),
                ],
            ),
            vec![new("Pending")],
        );
        let d = decide(&old(), &s, at("2026-11-26T12:02:00Z"), LIMIT);
        assert_eq!(d, Decision::Allow(Reason::VolumesUnplugged));
    }

    #[test]
    fn a_terminal_pod_or_a_gone_launcher_is_allowed() {
        let done = pod(attach_pod(
            "hp-volume-old11",
            OLD_UID,
            "Succeeded",
            T0,
            &["disk-a"],
        ));
        assert_eq!(precheck(&done), Some(Decision::Allow(Reason::PodTerminal)));
        assert_eq!(
            decide(&done, &mid_handoff(), at(T0), LIMIT),
            Decision::Allow(Reason::PodTerminal)
        );
        let failed = pod(attach_pod(
            "hp-volume-old11",
            OLD_UID,
            "Failed",
            T0,
            &["disk-a"],
        ));
        assert_eq!(
            precheck(&failed),
            Some(Decision::Allow(Reason::PodTerminal))
        );
        assert_eq!(precheck(&old()), None);
        let mut terminating = old();
        terminating.deleting = true;
        assert_eq!(
            precheck(&terminating),
            Some(Decision::Allow(Reason::PodDeleting))
        );
        assert_eq!(
            decide(&terminating, &mid_handoff(), at(T0), LIMIT),
            Decision::Allow(Reason::PodDeleting)
        );
        let mut s = mid_handoff();
        s.launcher = None;
        assert_eq!(
            decide(&old(), &s, at(T0), LIMIT),
            Decision::Allow(Reason::LauncherGone)
        );
        let mut s = mid_handoff();
        if let Some(l) = s.launcher.as_mut() {
            l.phase = "Succeeded".into();
        }
        assert_eq!(
            decide(&old(), &s, at(T0), LIMIT),
            Decision::Allow(Reason::LauncherGone)
        );
    }

    #[test]
    fn only_kubevirt_attachment_pods_are_recognised() {
        let ok: Pod =
            serde_json::from_value(attach_pod("hp-volume-a", OLD_UID, "Running", T0, &["d"]))
                .unwrap();
        let a = AttachmentPod::from_pod(&ok).unwrap();
        assert_eq!(a.launcher.uid, LAUNCHER_UID);
        assert_eq!(a.launcher.name, "virt-launcher-vm1-x7k2p");
        assert_eq!(a.volumes.iter().collect::<Vec<_>>(), ["d"]);
        assert_eq!(a.created, Some(at(T0)));
        let mut v = attach_pod("hp-volume-a", OLD_UID, "Running", T0, &["d"]);
        v["metadata"]["labels"]["kubevirt.io"] = json!("virt-launcher");
        assert!(AttachmentPod::from_pod(&serde_json::from_value(v).unwrap()).is_none());
        let mut v = attach_pod("hp-volume-a", OLD_UID, "Running", T0, &["d"]);
        v["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert!(AttachmentPod::from_pod(&serde_json::from_value(v).unwrap()).is_none());
        let mut v = attach_pod("hp-volume-a", OLD_UID, "Running", T0, &["d"]);
        v["metadata"]["ownerReferences"][0]["kind"] = json!("VirtualMachineInstance");
        assert!(AttachmentPod::from_pod(&serde_json::from_value(v).unwrap()).is_none());
        assert!(AttachmentPod::from_pod(&Pod::default()).is_none());
    }

    #[test]
    fn the_launcher_names_its_vmi_by_owner_or_domain_annotation() {
        let l = launcher();
        assert_eq!(l.vmi, Some(("vm1".into(), Some("vmi-uid-1".into()))));
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "virt-launcher-vm2-aaaaa", "uid": "l2", "annotations": {"kubevirt.io/domain": "vm2"}},
        }))
        .unwrap();
        assert_eq!(Launcher::from_pod(&p).vmi, Some(("vm2".into(), None)));
        assert_eq!(Launcher::from_pod(&Pod::default()).vmi, None);
    }

    #[test]
    fn vmi_status_is_read_in_the_v1_9_shape_and_leniently() {
        let v = Vmi::from_json(vmi(
            &["disk-a"],
            &[("disk-a", "Ready", "hp-volume-old11", OLD_UID)],
        ))
        .unwrap();
        assert_eq!(
            v.spec_volumes.iter().collect::<Vec<_>>(),
            ["disk-a", "rootdisk"]
        );
        // The root disk has no hotplugVolume: not a hotplug status.
        assert_eq!(v.hotplug.len(), 1);
        assert_eq!(v.hotplug[0].attach_pod_uid, OLD_UID);
        assert_eq!(v.hotplug[0].attach_pod_name, "hp-volume-old11");
        assert_eq!(v.spec_hotplug.iter().collect::<Vec<_>>(), ["disk-a"]);
        assert!(!v.deleting && !v.is_finished());
        let bare = Vmi::from_json(json!({"metadata": {"name": "x"}, "someFutureField": {"a": 1}}))
            .unwrap();
        assert!(bare.hotplug.is_empty() && bare.spec_volumes.is_empty());
        assert!(Vmi::from_json(json!({"status": {"volumeStatus": "not a list"}})).is_err());
        assert!(
            Vmi::from_json(json!({"metadata": {"deletionTimestamp": null}}))
                .is_ok_and(|v| !v.deleting)
        );
    }

    #[test]
    fn of_several_replacements_any_completed_handoff_allows_and_the_newest_is_named() {
        let newer = pod(attach_pod(
            "hp-volume-new33",
            "uid-33",
            "Pending",
            "2026-11-26T12:01:30Z",
            &["disk-a", "disk-b", "disk-c"],
        ));
        let d = decide(
            &old(),
            &seen(
                vmi(
                    &["disk-a", "disk-b"],
                    &[
                        ("disk-a", "Ready", "hp-volume-old11", OLD_UID),
                        ("disk-b", "Ready", "hp-volume-new22", NEW_UID),
                    ],
                ),
                vec![new("Running"), newer.clone()],
            ),
            at("2026-11-26T12:02:00Z"),
            LIMIT,
        );
        assert!(
            matches!(&d, Decision::Deny(m) if m.contains("replacement pod hp-volume-new33")),
            "{d:?}"
        );
        let done = vmi(
            &["disk-a", "disk-b"],
            &[
                ("disk-a", "Ready", "hp-volume-new22", NEW_UID),
                ("disk-b", "Ready", "hp-volume-new22", NEW_UID),
            ],
        );
        let d = decide(
            &old(),
            &seen(done, vec![newer, new("Running")]),
            at("2026-11-26T12:02:00Z"),
            LIMIT,
        );
        assert_eq!(d, Decision::Allow(Reason::HandoffComplete));
    }
}
