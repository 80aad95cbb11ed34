//! Which KubeVirt VirtualMachineInstance a PVC belongs to, decided from the pods that use it.
//!
//! KubeVirt has no API that maps a PVC to its VMI, but the pods it creates carry the answer: the
//! virt-launcher pod (label `kubevirt.io=virt-launcher`) is owned by the VMI and names its domain,
//! and a hotplugged volume is mounted by an attachment pod (`hp-volume-*`) owned by that
//! virt-launcher pod. Resolution is a pure function over one namespace's pods so every rule is
//! unit-tested without a cluster; [`VmiLookup`] is the only Kubernetes read it needs (listing
//! pods), kept apart from `Cluster` because only this opt-in feature needs that RBAC.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cluster::ClusterError;

/// The owner kind of a virt-launcher pod.
pub const VMI_KIND: &str = "VirtualMachineInstance";
/// Label KubeVirt puts on every pod it creates; `virt-launcher` on the VM's own pod.
pub const KUBEVIRT_LABEL: &str = "kubevirt.io";
pub const VIRT_LAUNCHER: &str = "virt-launcher";
/// Annotation (and on some versions label) of a virt-launcher pod naming its VMI.
pub const DOMAIN_KEY: &str = "kubevirt.io/domain";
/// Older and VM-owned virt-launcher pods name the VMI (or its VM, which shares the name) here.
pub const VMI_LABEL: &str = "kubevirt.io/vmi";
pub const VM_NAME_LABEL: &str = "vm.kubevirt.io/name";

/// What resolution needs to know about a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `metadata.ownerReferences` as (kind, name).
    pub owners: Vec<(String, String)>,
    /// `claimName` of each `persistentVolumeClaim` volume.
    pub claims: Vec<String>,
    /// Phase `Succeeded` or `Failed`: the pod no longer runs anything, so an old VM's leftover
    /// pod must not decide which VM a reused PVC belongs to today.
    pub finished: bool,
}

/// The Kubernetes read VMI resolution needs.
#[async_trait::async_trait]
pub trait VmiLookup: Send + Sync + 'static {
    /// Every pod in `namespace`. The whole namespace is needed, not just the PVC's users: a
    /// hotplug pod's owner (the virt-launcher pod) does not mount the hotplugged PVC itself.
    async fn pods_in_namespace(&self, namespace: &str) -> Result<Vec<PodInfo>, ClusterError>;
}

/// The VMI whose pods use `pvc`, from the pods of its namespace. Pods are tried in name order
/// so the answer is stable when (rarely, e.g. a shared RWX disk) several VMIs use one PVC.
pub fn vmi_of_pvc(pods: &[PodInfo], pvc: &str) -> Option<String> {
    let mut users: Vec<&PodInfo> = pods
        .iter()
        .filter(|p| !p.finished && p.claims.iter().any(|c| c == pvc))
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    users.into_iter().find_map(|pod| {
        vmi_of_pod(pod).or_else(|| {
            // A hotplug attachment pod: follow one level to the virt-launcher pod owning it.
            pod.owners
                .iter()
                .filter(|(kind, _)| kind == "Pod")
                .filter_map(|(_, owner)| pods.iter().find(|p| &p.name == owner))
                .find_map(vmi_of_pod)
        })
    })
}

/// The VMI a pod runs, if it is a virt-launcher pod (or anything the VMI owns directly).
pub fn vmi_of_pod(pod: &PodInfo) -> Option<String> {
    if let Some((_, name)) = pod.owners.iter().find(|(kind, _)| kind == VMI_KIND) {
        return Some(name.clone());
    }
    if pod.labels.get(KUBEVIRT_LABEL).map(String::as_str) != Some(VIRT_LAUNCHER) {
        return None;
    }
    [
        pod.annotations.get(DOMAIN_KEY),
        pod.labels.get(DOMAIN_KEY),
        pod.labels.get(VMI_LABEL),
        pod.labels.get(VM_NAME_LABEL),
    ]
    .into_iter()
    .flatten()
    .find(|v| !v.is_empty())
    .cloned()
}

/// Pods kept in memory, for tests and the sandbox; can be told to fail.
#[derive(Debug, Default)]
pub struct MemoryVmiLookup {
    pods: Mutex<HashMap<String, Vec<PodInfo>>>,
    fail: Mutex<Option<ClusterError>>,
    calls: AtomicU64,
}

impl MemoryVmiLookup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_pod(&self, namespace: &str, pod: PodInfo) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.entry(namespace.to_string()).or_default().push(pod);
    }

    pub fn remove_pod(&self, namespace: &str, name: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = pods.get_mut(namespace) {
            list.retain(|p| p.name != name);
        }
    }

    /// Every later call fails with `error` (`None` heals).
    pub fn fail_with(&self, error: Option<ClusterError>) {
        *self.fail.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// How many times the pods were listed (to observe the cache).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// A virt-launcher pod of `vmi` mounting `claims`, shaped as KubeVirt makes it.
    pub fn virt_launcher(name: &str, vmi: &str, claims: &[&str]) -> PodInfo {
        PodInfo {
            name: name.to_string(),
            labels: BTreeMap::from([(KUBEVIRT_LABEL.to_string(), VIRT_LAUNCHER.to_string())]),
            annotations: BTreeMap::from([(DOMAIN_KEY.to_string(), vmi.to_string())]),
            owners: vec![(VMI_KIND.to_string(), vmi.to_string())],
            claims: claims.iter().map(|c| (*c).to_string()).collect(),
            finished: false,
        }
    }

    /// A hotplug attachment pod owned by virt-launcher pod `launcher`, mounting `claims`.
    pub fn hotplug(name: &str, launcher: &str, claims: &[&str]) -> PodInfo {
        PodInfo {
            name: name.to_string(),
            labels: BTreeMap::from([(KUBEVIRT_LABEL.to_string(), "hotplug-disk".to_string())]),
            owners: vec![("Pod".to_string(), launcher.to_string())],
            claims: claims.iter().map(|c| (*c).to_string()).collect(),
            ..PodInfo::default()
        }
    }
}

#[async_trait::async_trait]
impl VmiLookup for MemoryVmiLookup {
    async fn pods_in_namespace(&self, namespace: &str) -> Result<Vec<PodInfo>, ClusterError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = self.fail.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(e);
        }
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        Ok(pods.get(namespace).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(name: &str, claims: &[&str]) -> PodInfo {
        PodInfo {
            name: name.into(),
            claims: claims.iter().map(|c| (*c).to_string()).collect(),
            ..PodInfo::default()
        }
    }

    #[test]
    fn a_virt_launcher_pod_names_its_vmi_by_owner_reference() {
        let pods = [MemoryVmiLookup::virt_launcher(
            "virt-launcher-vm1-abcde",
            "vm1",
            &["root", "data"],
        )];
        assert_eq!(vmi_of_pvc(&pods, "data").as_deref(), Some("vm1"));
        assert_eq!(vmi_of_pvc(&pods, "root").as_deref(), Some("vm1"));
        assert_eq!(vmi_of_pvc(&pods, "other"), None);
    }

    #[test]
    fn without_an_owner_the_launcher_labels_and_domain_annotation_name_the_vmi() {
        let mut pod = MemoryVmiLookup::virt_launcher("virt-launcher-x", "by-domain", &["d"]);
        pod.owners.clear();
        assert_eq!(vmi_of_pod(&pod).as_deref(), Some("by-domain"));
        pod.annotations.clear();
        pod.labels.insert(VMI_LABEL.into(), "by-vmi-label".into());
        pod.labels
            .insert(VM_NAME_LABEL.into(), "by-vm-label".into());
        assert_eq!(vmi_of_pod(&pod).as_deref(), Some("by-vmi-label"));
        pod.labels.remove(VMI_LABEL);
        assert_eq!(vmi_of_pod(&pod).as_deref(), Some("by-vm-label"));
        // The same labels on a pod that is not a virt-launcher mean nothing.
        pod.labels.remove(KUBEVIRT_LABEL);
        assert_eq!(vmi_of_pod(&pod), None);
    }

    #[test]
    fn a_hotplug_pod_resolves_through_the_launcher_pod_that_owns_it() {
        let pods = [
            MemoryVmiLookup::virt_launcher("virt-launcher-vm1-abcde", "vm1", &["root"]),
            MemoryVmiLookup::hotplug("hp-volume-xyz12", "virt-launcher-vm1-abcde", &["hot"]),
        ];
        assert_eq!(vmi_of_pvc(&pods, "hot").as_deref(), Some("vm1"));
    }

    #[test]
    fn a_hotplug_pod_whose_owner_is_gone_or_not_a_launcher_resolves_to_nothing() {
        let orphan = [MemoryVmiLookup::hotplug("hp-volume-a", "gone", &["hot"])];
        assert_eq!(vmi_of_pvc(&orphan, "hot"), None);
        let not_launcher = [
            plain("app", &[]),
            MemoryVmiLookup::hotplug("hp-volume-b", "app", &["hot"]),
        ];
        assert_eq!(vmi_of_pvc(&not_launcher, "hot"), None);
    }

    #[test]
    fn ordinary_and_finished_pods_do_not_make_a_pvc_a_vm_disk() {
        let mut old = MemoryVmiLookup::virt_launcher("virt-launcher-old", "old-vm", &["data"]);
        old.finished = true;
        let pods = [plain("web-0", &["data"]), old];
        assert_eq!(vmi_of_pvc(&pods, "data"), None);
    }

    #[test]
    fn several_users_resolve_to_the_first_pod_by_name() {
        let pods = [
            MemoryVmiLookup::virt_launcher("virt-launcher-b", "vm-b", &["shared"]),
            MemoryVmiLookup::virt_launcher("virt-launcher-a", "vm-a", &["shared"]),
        ];
        assert_eq!(vmi_of_pvc(&pods, "shared").as_deref(), Some("vm-a"));
    }
}
