//! Reading fencing's view (`PvInfo`, `VolumeAttachmentInfo`, `NodeState`) out of API objects.
//!
//! Pure functions so the filtering rules (which PVs and attachments are ours) are testable
//! without a server.

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use k8s_openapi::jiff::Timestamp;

use fencing::cluster::{NodeState, PvInfo, VolumeAttachmentInfo};

/// The taint an operator puts on a node that is known to be down (non-graceful node shutdown):
/// its attachments may be released even though the Node object still exists.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// `Some` only for a PV provisioned by `driver` (CSI source with that driver name).
pub(crate) fn pv_info(pv: &PersistentVolume, driver: &str) -> Option<PvInfo> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    if csi.driver != driver {
        return None;
    }
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let claim = claim_ref.and_then(|c| Some((c.namespace.clone()?, c.name.clone()?)));
    let claim_uid = claim.as_ref().and(claim_ref).and_then(|c| c.uid.clone());
    Some(PvInfo {
        name: pv.metadata.name.clone().unwrap_or_default(),
        volume_handle: csi.volume_handle.clone(),
        annotations: pv.metadata.annotations.clone().unwrap_or_default(),
        resource_version: pv.metadata.resource_version.clone().unwrap_or_default(),
        claim,
        uid: pv.metadata.uid.clone(),
        claim_uid,
    })
}

/// The CSINode's allocatable count for `driver`, when it publishes one.
pub(crate) fn attach_limit(csinode: &CSINode, driver: &str) -> Option<u32> {
    csinode
        .spec
        .drivers
        .iter()
        .find(|d| d.name == driver)
        .and_then(|d| d.allocatable.as_ref())
        .and_then(|a| a.count)
        .and_then(|c| u32::try_from(c).ok())
}

/// The finalizer the external-attacher puts on a VolumeAttachment of `driver` and takes off
/// after ControllerUnpublish succeeded: `external-attacher/` and the driver name with every
/// character outside `[a-zA-Z0-9-]` replaced by `-` (and an `X` appended if it then ends in
/// `-`), as the attacher spells it.
pub(crate) fn attacher_finalizer(driver: &str) -> String {
    let mut name: String = driver
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.ends_with('-') {
        name.push('X');
    }
    format!("external-attacher/{name}")
}

/// `Some` only for an attachment whose attacher is `driver`.
pub(crate) fn attachment_info(
    va: &VolumeAttachment,
    driver: &str,
    now: Timestamp,
) -> Option<VolumeAttachmentInfo> {
    if va.spec.attacher != driver {
        return None;
    }
    let deleting_for_secs = va.metadata.deletion_timestamp.as_ref().map(|t| {
        // A deletion stamped in the future (clock skew between us and the API server) has
        // been pending for zero seconds, not a negative number.
        let secs = now.as_second().saturating_sub(t.0.as_second());
        u64::try_from(secs).unwrap_or(0)
    });
    Some(VolumeAttachmentInfo {
        name: va.metadata.name.clone().unwrap_or_default(),
        pv_name: va.spec.source.persistent_volume_name.clone(),
        node: va.spec.node_name.clone(),
        attached: va.status.as_ref().is_some_and(|s| s.attached),
        deleting_for_secs,
    })
}

pub(crate) fn node_state(node: Option<&Node>) -> NodeState {
    match node {
        None => NodeState::Absent,
        Some(n) => NodeState::Present {
            out_of_service: n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|taints| taints.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, NodeSpec, ObjectReference, PersistentVolumeSpec, Taint,
    };
    use k8s_openapi::api::storage::v1::{
        VolumeAttachmentSource, VolumeAttachmentSpec, VolumeAttachmentStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    const DRIVER: &str = "rds.csi.srvlab.io";

    fn pv(driver: &str, claim: Option<(&str, &str)>) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv-a".into()),
                resource_version: Some("42".into()),
                annotations: Some([("k".to_string(), "v".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "default:pvc-1".into(),
                    ..CSIPersistentVolumeSource::default()
                }),
                claim_ref: claim.map(|(ns, name)| ObjectReference {
                    namespace: Some(ns.into()),
                    name: Some(name.into()),
                    ..ObjectReference::default()
                }),
                ..PersistentVolumeSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_pv_of_this_driver_carries_handle_annotations_version_and_claim() {
        let info = pv_info(&pv(DRIVER, Some(("apps", "data"))), DRIVER).unwrap();
        assert_eq!(info.name, "pv-a");
        assert_eq!(info.volume_handle, "default:pvc-1");
        assert_eq!(info.resource_version, "42");
        assert_eq!(info.annotations.get("k").map(String::as_str), Some("v"));
        assert_eq!(info.claim, Some(("apps".into(), "data".into())));
    }

    #[test]
    fn pvs_of_other_drivers_and_non_csi_pvs_are_not_ours() {
        assert_eq!(pv_info(&pv("other.csi.io", None), DRIVER), None);
        let mut hostpath = pv(DRIVER, None);
        if let Some(spec) = hostpath.spec.as_mut() {
            spec.csi = None;
        }
        assert_eq!(pv_info(&hostpath, DRIVER), None);
    }

    #[test]
    fn the_attacher_finalizer_is_spelled_as_the_external_attacher_spells_it() {
        assert_eq!(
            attacher_finalizer("rds.csi.srvlab.io"),
            "external-attacher/rds-csi-srvlab-io"
        );
        assert_eq!(attacher_finalizer("a_b/c."), "external-attacher/a-b-c-X");
    }

    #[test]
    fn an_unbound_pv_has_no_claim() {
        assert_eq!(pv_info(&pv(DRIVER, None), DRIVER).unwrap().claim, None);
    }

    fn va(attacher: &str, attached: Option<bool>, deleted_at: Option<i64>) -> VolumeAttachment {
        VolumeAttachment {
            metadata: ObjectMeta {
                name: Some("csi-abc".into()),
                deletion_timestamp: deleted_at.map(|s| Time(Timestamp::from_second(s).unwrap())),
                ..ObjectMeta::default()
            },
            spec: VolumeAttachmentSpec {
                attacher: attacher.into(),
                node_name: "node-1".into(),
                source: VolumeAttachmentSource {
                    persistent_volume_name: Some("pv-a".into()),
                    ..VolumeAttachmentSource::default()
                },
            },
            status: attached.map(|a| VolumeAttachmentStatus {
                attached: a,
                ..VolumeAttachmentStatus::default()
            }),
        }
    }

    #[test]
    fn attachments_carry_node_pv_and_attached_status() {
        let now = Timestamp::from_second(1_000).unwrap();
        let info = attachment_info(&va(DRIVER, Some(true), None), DRIVER, now).unwrap();
        assert_eq!(info.name, "csi-abc");
        assert_eq!(info.node, "node-1");
        assert_eq!(info.pv_name.as_deref(), Some("pv-a"));
        assert!(info.attached);
        assert_eq!(info.deleting_for_secs, None);
        let pending = attachment_info(&va(DRIVER, None, None), DRIVER, now).unwrap();
        assert!(!pending.attached, "no status yet means not attached");
    }

    #[test]
    fn attachments_of_other_attachers_are_not_ours() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(
            attachment_info(&va("other.csi.io", Some(true), None), DRIVER, now),
            None
        );
    }

    #[test]
    fn deletion_age_counts_from_the_deletion_timestamp_and_never_goes_negative() {
        let now = Timestamp::from_second(1_000).unwrap();
        let deleting = attachment_info(&va(DRIVER, Some(true), Some(970)), DRIVER, now).unwrap();
        assert_eq!(deleting.deleting_for_secs, Some(30));
        let skewed = attachment_info(&va(DRIVER, Some(true), Some(1_005)), DRIVER, now).unwrap();
        assert_eq!(skewed.deleting_for_secs, Some(0));
    }

    fn node(taints: &[(&str, &str)]) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, effect)| Taint {
                            key: (*k).into(),
                            effect: (*effect).into(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn node_state_reads_presence_and_the_out_of_service_taint() {
        assert_eq!(node_state(None), NodeState::Absent);
        assert_eq!(
            node_state(Some(&node(&[(
                "node.kubernetes.io/unreachable",
                "NoExecute"
            )]))),
            NodeState::Present {
                out_of_service: false
            }
        );
        assert_eq!(
            node_state(Some(&node(&[(OUT_OF_SERVICE_TAINT, "NoExecute")]))),
            NodeState::Present {
                out_of_service: true
            }
        );
        assert_eq!(
            node_state(Some(&node(&[(OUT_OF_SERVICE_TAINT, "NoSchedule")]))),
            NodeState::Present {
                out_of_service: true
            }
        );
    }
}
