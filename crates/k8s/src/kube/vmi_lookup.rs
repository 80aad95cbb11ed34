//! `KubeVmiLookup`: the VMI grouper's `VmiLookup` against a real API server.
//!
//! It lists a namespace's pods (paged, each page under the deadline). Pods have no server-side
//! filter on the PVCs they mount, and a hotplug pod must be followed to its owner pod, so the
//! namespace is read whole; the grouper caches the answer per PVC, so this runs about once per
//! VM disk per cache TTL. Needs `list` on pods, which only `deploy/kubernetes/rbac/kubevirt`
//! grants: the default deployment does not read pods at all.

use std::time::Duration;

use ::kube::Api;
use ::kube::api::{ListParams, ObjectList};
use k8s_openapi::api::core::v1::Pod;

use super::api_errors::bounded;
use fencing::cluster::ClusterError;
use fencing::vmi::{PodInfo, VmiLookup};

/// Page size: bounds each response in a namespace with many pods.
const PAGE: u32 = 500;

#[derive(Clone)]
pub struct KubeVmiLookup {
    client: ::kube::Client,
    timeout: Duration,
}

impl KubeVmiLookup {
    pub fn new(client: ::kube::Client) -> Self {
        KubeVmiLookup {
            client,
            timeout: Duration::from_secs(10),
        }
    }

    /// Deadline for each API request (per page).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait::async_trait]
impl VmiLookup for KubeVmiLookup {
    async fn pods_in_namespace(&self, namespace: &str) -> Result<Vec<PodInfo>, ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("listing the pods of namespace {namespace}");
        let mut out = Vec::new();
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page: ObjectList<Pod> = bounded(&what, self.timeout, api.list(&params)).await?;
            out.extend(page.items.iter().map(pod_info));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }
}

pub(crate) fn pod_info(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    PodInfo {
        name: meta.name.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|o| (o.kind.clone(), o.name.clone()))
            .collect(),
        claims: pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
            .collect(),
        finished: pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virt_launcher_pod_reads_as_kubevirt_writes_it() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "virt-launcher-vm1-abcde",
                "labels": {"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": "vm1"},
                "annotations": {"kubevirt.io/domain": "vm1"},
                "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                     "name": "vm1", "uid": "u1", "controller": true}]
            },
            "spec": {"containers": [{"name": "compute"}], "volumes": [
                {"name": "root", "persistentVolumeClaim": {"claimName": "vm1-root"}},
                {"name": "cfg", "configMap": {"name": "x"}}
            ]},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        let info = pod_info(&pod);
        assert_eq!(info.name, "virt-launcher-vm1-abcde");
        assert_eq!(
            info.owners,
            vec![("VirtualMachineInstance".into(), "vm1".into())]
        );
        assert_eq!(info.claims, vec!["vm1-root".to_string()]);
        assert_eq!(info.annotations["kubevirt.io/domain"], "vm1");
        assert!(!info.finished);
        assert_eq!(
            fencing::vmi::vmi_of_pvc(&[info], "vm1-root").as_deref(),
            Some("vm1")
        );
    }

    #[test]
    fn finished_pods_are_marked_and_a_bare_pod_has_nothing() {
        let done: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "old"}, "status": {"phase": "Succeeded"}
        }))
        .unwrap();
        let info = pod_info(&done);
        assert!(info.finished);
        assert!(info.claims.is_empty() && info.owners.is_empty());
        let failed: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "f"}, "status": {"phase": "Failed"}
        }))
        .unwrap();
        assert!(pod_info(&failed).finished);
        assert!(!pod_info(&Pod::default()).finished);
    }
}
