//! The KubeVirt objects the guard reads, reduced to the fields its rules need.
//!
//! Modelled on KubeVirt v1.9 (`pkg/virt-controller/services/template.go`,
//! `RenderHotplugAttachmentPodTemplate`, and `staging/src/kubevirt.io/api/core/v1/types.go`):
//! an attachment pod is created with `generateName: hp-volume-`, the label
//! `kubevirt.io: hotplug-disk` and a controller ownerReference to the VM's virt-launcher pod
//! (kind `Pod`); its PVC volumes carry the VMI volume names. The VMI reports each hotplugged
//! volume in `status.volumeStatus[]` with `phase` and `hotplugVolume.{attachPodName,
//! attachPodUID}`. Everything is decoded leniently (unknown fields ignored, missing ones empty)
//! because an object KubeVirt writes in a later version must never make the guard fail.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::error::GuardError;

/// Label key KubeVirt puts on every pod it creates.
pub const APP_LABEL: &str = "kubevirt.io";
/// [`APP_LABEL`] value of a hotplug attachment pod.
pub const HOTPLUG_DISK: &str = "hotplug-disk";
/// `generateName` of attachment pods; informational (recognition uses label and owner).
pub const ATTACH_POD_PREFIX: &str = "hp-volume-";
/// The volume phase KubeVirt sets once the disk is attached to the running domain.
pub const VOLUME_READY: &str = "Ready";
pub const VMI_KIND: &str = "VirtualMachineInstance";
pub const VMI_API_VERSION: &str = "kubevirt.io/v1";
/// Annotation of a virt-launcher pod naming its VMI (fallback when it has no VMI owner).
pub const DOMAIN_ANNOTATION: &str = "kubevirt.io/domain";

/// A pod's owner, as (name, uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: String,
}

/// A hotplug attachment pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPod {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    /// The virt-launcher pod that owns it (controller ownerReference of kind `Pod`).
    pub launcher: Owner,
    pub phase: String,
    pub created: Option<Timestamp>,
    /// `deletionTimestamp` is set: it is already on its way out and replaces nothing.
    pub deleting: bool,
    /// Names of its PVC volumes: the VMI volume names it serves.
    pub volumes: BTreeSet<String>,
}

impl AttachmentPod {
    /// `Some` for a KubeVirt hotplug attachment pod, `None` for any other pod.
    pub fn from_pod(pod: &Pod) -> Option<AttachmentPod> {
        let meta = &pod.metadata;
        let labelled = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(APP_LABEL))
            .is_some_and(|v| v == HOTPLUG_DISK);
        if !labelled {
            return None;
        }
        let launcher = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Pod" && o.api_version == "v1" && o.controller == Some(true))?;
        Some(AttachmentPod {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            launcher: Owner {
                name: launcher.name.clone(),
                uid: launcher.uid.clone(),
            },
            phase: phase_of(pod),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
            volumes: pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter(|v| v.persistent_volume_claim.is_some())
                .map(|v| v.name.clone())
                .collect(),
        })
    }

    pub fn is_terminal(&self) -> bool {
        is_terminal_phase(&self.phase)
    }
}

pub fn phase_of(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

pub fn is_terminal_phase(phase: &str) -> bool {
    phase == "Succeeded" || phase == "Failed"
}

/// The virt-launcher pod an attachment pod belongs to: whether it still runs, and its VMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    pub uid: String,
    pub phase: String,
    pub deleting: bool,
    /// (name, uid) of the VMI: its controller owner, or the `kubevirt.io/domain` annotation
    /// (then without uid).
    pub vmi: Option<(String, Option<String>)>,
}

impl Launcher {
    pub fn from_pod(pod: &Pod) -> Launcher {
        let meta = &pod.metadata;
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == VMI_KIND)
            .map(|o| (o.name.clone(), Some(o.uid.clone())));
        let annotated = || {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(DOMAIN_ANNOTATION))
                .filter(|n| !n.is_empty())
                .map(|n| (n.clone(), None))
        };
        Launcher {
            uid: meta.uid.clone().unwrap_or_default(),
            phase: phase_of(pod),
            deleting: meta.deletion_timestamp.is_some(),
            vmi: owner.or_else(annotated),
        }
    }
}

/// One entry of `status.volumeStatus` that has `hotplugVolume` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotplugStatus {
    pub name: String,
    pub phase: String,
    pub attach_pod_name: String,
    pub attach_pod_uid: String,
}

/// A VirtualMachineInstance as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmi {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub deleting: bool,
    pub phase: String,
    /// `spec.volumes[].name`: a hotplugged volume removed from here is being unplugged.
    pub spec_volumes: BTreeSet<String>,
    /// Spec volumes marked `hotpluggable: true` (PVC or DataVolume): what the attachment pod
    /// must carry even before the status lists them.
    pub spec_hotplug: BTreeSet<String>,
    pub hotplug: Vec<HotplugStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawVmi {
    metadata: RawMeta,
    spec: RawSpec,
    status: RawStatus,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawMeta {
    name: String,
    namespace: String,
    uid: String,
    deletion_timestamp: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSpec {
    volumes: Vec<RawNamed>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawNamed {
    name: String,
    persistent_volume_claim: Option<RawHotpluggable>,
    data_volume: Option<RawHotpluggable>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHotpluggable {
    hotpluggable: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawStatus {
    phase: String,
    volume_status: Vec<RawVolumeStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawVolumeStatus {
    name: String,
    phase: String,
    hotplug_volume: Option<RawHotplug>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawHotplug {
    attach_pod_name: String,
    #[serde(rename = "attachPodUID")]
    attach_pod_uid: String,
}

impl Vmi {
    /// Decodes a VMI as the API returns it. Errors only when the JSON does not have the
    /// object shape at all (a field of the wrong type); missing fields are empty.
    pub fn from_json(value: serde_json::Value) -> Result<Vmi, GuardError> {
        let raw: RawVmi = serde_json::from_value(value).map_err(GuardError::VmiShape)?;
        Ok(Vmi {
            name: raw.metadata.name,
            namespace: raw.metadata.namespace,
            uid: raw.metadata.uid,
            deleting: raw
                .metadata
                .deletion_timestamp
                .is_some_and(|t| !t.is_null()),
            phase: raw.status.phase,
            spec_hotplug: raw
                .spec
                .volumes
                .iter()
                .filter(|v| {
                    [&v.persistent_volume_claim, &v.data_volume]
                        .into_iter()
                        .flatten()
                        .any(|h| h.hotpluggable)
                })
                .map(|v| v.name.clone())
                .collect(),
            spec_volumes: raw.spec.volumes.into_iter().map(|v| v.name).collect(),
            hotplug: raw
                .status
                .volume_status
                .into_iter()
                .filter_map(|s| {
                    let hp = s.hotplug_volume?;
                    Some(HotplugStatus {
                        name: s.name,
                        phase: s.phase,
                        attach_pod_name: hp.attach_pod_name,
                        attach_pod_uid: hp.attach_pod_uid,
                    })
                })
                .collect(),
        })
    }

    /// Succeeded or Failed: the domain is gone, nothing left to protect.
    pub fn is_finished(&self) -> bool {
        is_terminal_phase(&self.phase)
    }
}
