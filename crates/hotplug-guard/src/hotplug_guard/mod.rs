//! KubeVirt hotplug handoff guard: a validating admission webhook for the deletion of KubeVirt
//! hotplug attachment pods (`hp-volume-*`).
//!
//! KubeVirt (kubevirt/kubevirt#6564, #9708, #16520) replaces a VM's attachment pod when another
//! volume is hot-plugged and deletes the old pod before the new one has taken over the volumes
//! already attached, so their block devices vanish under the running VM. The guard refuses that
//! deletion until the handoff is confirmed (see [`rules`]); KubeVirt retries the delete on its
//! next reconcile and succeeds once the new pod holds every volume.
//!
//! It fails open everywhere: a lookup that fails or is slow, an object it cannot read, a handoff
//! that takes longer than the limit — all allow the deletion (counted and logged), and the
//! manifest registers it with `failurePolicy: Ignore`. The guard can delay KubeVirt, never wedge
//! a VM.

pub mod admission;
pub mod cluster;
pub mod error;
pub mod metrics;
pub mod objects;
pub mod rules;
pub mod server;
pub mod slots;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

pub use cluster::{GuardCluster, KubeGuardCluster};
pub use error::GuardError;
pub use metrics::GuardMetrics;
use objects::AttachmentPod;
use rules::{Decision, Reason};

/// Reason of the Warning event posted on a VMI when the guard stopped waiting.
pub const TIMEOUT_EVENT_REASON: &str = "HotplugHandoffTimeout";

/// The guard's policy settings.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// How long a handoff may take, from the replacement pod's creation, before the old pod's
    /// deletion is allowed anyway.
    pub handoff_timeout: Duration,
    /// Bound on the cluster reads for one review; past it the deletion is allowed. Must stay
    /// below the webhook's `timeoutSeconds` so the guard, not the API server, decides.
    pub lookup_deadline: Duration,
}

/// Answers AdmissionReviews.
pub struct Guard {
    cluster: Arc<dyn GuardCluster>,
    metrics: GuardMetrics,
    settings: GuardSettings,
}

/// What [`Guard::review`] answers: the body and whether it was a usable review.
pub struct Answer {
    pub body: Vec<u8>,
    /// `false` for a body that was not an AdmissionReview (served with HTTP 400).
    pub valid: bool,
}

impl Guard {
    pub fn new(
        cluster: Arc<dyn GuardCluster>,
        metrics: GuardMetrics,
        settings: GuardSettings,
    ) -> Self {
        Guard {
            cluster,
            metrics,
            settings,
        }
    }

    /// Decides one AdmissionReview request body. Never fails and never panics: every input gets
    /// a complete AdmissionReview answer.
    pub async fn review(&self, body: &[u8]) -> Answer {
        let req = match admission::decode(body) {
            Ok(r) => r,
            Err(bad) => {
                self.metrics.invalid_review();
                warn!(uid = %bad.uid, error = %bad.message, "invalid admission review");
                return Answer {
                    body: admission::invalid(&bad),
                    valid: false,
                };
            }
        };
        let decision = self.decide(&req).await;
        self.metrics.decided(&decision);
        let body = match &decision {
            Decision::Allow(_) => admission::allow(&req.uid, None),
            Decision::Deny(message) => admission::deny(&req.uid, message),
            Decision::TimedOut(message) => admission::allow(&req.uid, Some(message)),
        };
        Answer { body, valid: true }
    }

    async fn decide(&self, req: &admission::Request) -> Decision {
        let pod = match req.deleted_pod() {
            Ok(Some(p)) => p,
            Ok(None) => return Decision::Allow(Reason::NotAttachmentPod),
            Err(e) => {
                warn!(uid = %req.uid, namespace = %req.namespace, pod = %req.name, error = %e,
                    "cannot read the pod in the review; allowing");
                return Decision::Allow(Reason::InvalidObject);
            }
        };
        let Some(pod) = AttachmentPod::from_pod(&pod) else {
            return Decision::Allow(Reason::NotAttachmentPod);
        };
        if let Some(d) = rules::precheck(&pod) {
            return d;
        }
        let seen =
            match tokio::time::timeout(self.settings.lookup_deadline, self.cluster.observe(&pod))
                .await
            {
                Ok(Ok(seen)) => seen,
                Ok(Err(e)) => {
                    warn!(namespace = %pod.namespace, pod = %pod.name, error = %e,
                    "cluster lookup failed; allowing the deletion (fail open)");
                    return Decision::Allow(Reason::LookupFailed);
                }
                Err(_) => {
                    warn!(namespace = %pod.namespace, pod = %pod.name,
                    deadline = ?self.settings.lookup_deadline,
                    "cluster lookup too slow; allowing the deletion (fail open)");
                    return Decision::Allow(Reason::LookupFailed);
                }
            };
        let decision = rules::decide(&pod, &seen, Timestamp::now(), self.settings.handoff_timeout);
        match &decision {
            Decision::Deny(message) => {
                info!(namespace = %pod.namespace, pod = %pod.name, dry_run = req.dry_run, %message,
                    "denied attachment pod deletion");
            }
            Decision::TimedOut(message) => {
                warn!(namespace = %pod.namespace, pod = %pod.name, dry_run = req.dry_run, %message,
                    "hotplug handoff timed out; allowing the deletion");
                if let (Some(vmi), false) = (seen.vmi.clone(), req.dry_run) {
                    let cluster = Arc::clone(&self.cluster);
                    let message = message.clone();
                    // The answer must not wait for the event.
                    tokio::spawn(async move {
                        cluster.warn_vmi(&vmi, TIMEOUT_EVENT_REASON, &message).await;
                    });
                }
            }
            Decision::Allow(reason) => {
                info!(namespace = %pod.namespace, pod = %pod.name, reason = reason.as_str(),
                    "allowed attachment pod deletion");
            }
        }
        decision
    }
}
