//! The guard's Kubernetes reads (launcher pod, VMI, sibling attachment pods) and its one write
//! (a Warning event on the VMI), each under a deadline.
//!
//! Direct API reads, no informer cache: the guard answers a few deletions a day per VM and must
//! see the VMI status as it is now, not as a watch last delivered it. Needs `get` on pods,
//! `list` on pods (label-selected), `get` on virtualmachineinstances and `create` on events.

use std::time::Duration;

use ::kube::Api;
use ::kube::api::{DynamicObject, ListParams, ObjectList, PostParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::error::GuardError;
use super::objects::{
    APP_LABEL, AttachmentPod, HOTPLUG_DISK, Launcher, VMI_API_VERSION, VMI_KIND, Vmi,
};
use super::rules::Observed;

/// `source.component` of the guard's events.
pub const COMPONENT: &str = "rds-csi-hotplug-guard";
/// Page size when listing a namespace's attachment pods.
const PAGE: u32 = 200;

/// What the guard needs from the cluster; the Kubernetes implementation is [`KubeGuardCluster`].
#[async_trait::async_trait]
pub trait GuardCluster: Send + Sync + 'static {
    /// The launcher, VMI and sibling attachment pods of `pod`. `Err` says which read failed.
    async fn observe(&self, pod: &AttachmentPod) -> Result<Observed, GuardError>;
    /// Posts a Warning event on `vmi`; failures are logged by the implementation, never
    /// returned (an event must not change the decision).
    async fn warn_vmi(&self, vmi: &Vmi, reason: &str, message: &str);
}

#[derive(Clone)]
pub struct KubeGuardCluster {
    client: ::kube::Client,
    timeout: Duration,
    vmi: ApiResource,
}

impl KubeGuardCluster {
    /// `timeout` bounds each request (one page, one get).
    pub fn new(client: ::kube::Client, timeout: Duration) -> Self {
        let gvk = GroupVersionKind::gvk("kubevirt.io", "v1", VMI_KIND);
        KubeGuardCluster {
            client,
            timeout,
            vmi: ApiResource::from_gvk_with_plural(&gvk, "virtualmachineinstances"),
        }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, ::kube::Error>>,
    ) -> Result<T, GuardError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(GuardError::lookup(what, e)),
            Err(_) => Err(GuardError::ApiTimeout {
                what: what.to_string(),
                limit: self.timeout,
            }),
        }
    }

    async fn siblings(&self, pod: &AttachmentPod) -> Result<Vec<AttachmentPod>, GuardError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let what = format!("listing attachment pods in namespace {}", pod.namespace);
        let mut params = ListParams::default()
            .labels(&format!("{APP_LABEL}={HOTPLUG_DISK}"))
            .limit(PAGE);
        let mut out = Vec::new();
        loop {
            let page: ObjectList<Pod> = self.bounded(&what, api.list(&params)).await?;
            out.extend(
                page.items
                    .iter()
                    .filter_map(AttachmentPod::from_pod)
                    .filter(|p| p.launcher.uid == pod.launcher.uid && p.uid != pod.uid),
            );
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }
}

#[async_trait::async_trait]
impl GuardCluster for KubeGuardCluster {
    async fn observe(&self, pod: &AttachmentPod) -> Result<Observed, GuardError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let what = format!(
            "reading virt-launcher pod {}/{}",
            pod.namespace, pod.launcher.name
        );
        let launcher = self
            .bounded(&what, pods.get_opt(&pod.launcher.name))
            .await?
            .map(|p| Launcher::from_pod(&p))
            // Same name, other pod: the one owning the attachment pod is gone.
            .filter(|l| l.uid == pod.launcher.uid);
        let Some(launcher) = launcher else {
            return Ok(Observed::default());
        };
        let Some((vmi_name, vmi_uid)) = launcher.vmi.clone() else {
            return Ok(Observed {
                launcher: Some(launcher),
                ..Observed::default()
            });
        };
        let vmis: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &pod.namespace, &self.vmi);
        let what = format!(
            "reading VirtualMachineInstance {}/{vmi_name}",
            pod.namespace
        );
        let vmi = match self.bounded(&what, vmis.get_opt(&vmi_name)).await? {
            None => None,
            Some(obj) => {
                let json = serde_json::to_value(&obj).map_err(|e| GuardError::lookup(&what, e))?;
                let vmi = Vmi::from_json(json).map_err(|e| GuardError::lookup(&what, e))?;
                vmi_uid
                    .as_ref()
                    .is_none_or(|uid| *uid == vmi.uid)
                    .then_some(vmi)
            }
        };
        let siblings = self.siblings(pod).await?;
        Ok(Observed {
            launcher: Some(launcher),
            vmi,
            siblings,
        })
    }

    async fn warn_vmi(&self, vmi: &Vmi, reason: &str, message: &str) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &vmi.namespace);
        let now = Time(Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", vmi.name)),
                namespace: Some(vmi.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(VMI_API_VERSION.into()),
                kind: Some(VMI_KIND.into()),
                name: Some(vmi.name.clone()),
                namespace: Some(vmi.namespace.clone()),
                uid: Some(vmi.uid.clone()).filter(|u| !u.is_empty()),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Warning".into()),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(COMPONENT.into()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Event::default()
        };
        let what = format!(
            "posting event {reason} on VMI {}/{}",
            vmi.namespace, vmi.name
        );
        if let Err(e) = self
            .bounded(&what, api.create(&PostParams::default(), &event))
            .await
        {
            tracing::warn!(error = %e, "could not post Kubernetes event");
        }
    }
}
