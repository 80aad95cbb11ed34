//! The process's one event recorder: core/v1 Events about volumes, posted through the API.
//!
//! The earlier driver built a broadcaster per call (leaking), sent events with an empty namespace
//! (every one rejected), and labelled controller events as coming from the node. Here one
//! recorder is shared, events land in the PVC's namespace (or `default` for a PV), and the source
//! component is whatever the process says it is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::kube::Api;
use ::kube::api::{Patch, PatchParams, PostParams};
use k8s_openapi::api::core::v1::{
    Event, EventSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tracing::{debug, warn};

use super::api_errors::bounded;
use crate::fencing::cluster::{ClusterError, EventKind, VolumeEvent};

/// Values for `source.component`, so `kubectl describe` says which half of the driver spoke.
pub mod component {
    pub const CONTROLLER: &str = "rds-csi-controller";
    pub const NODE: &str = "rds-csi-node";
}

/// How long an identical event keeps bumping `count` on the same Event object instead of
/// creating a new one (keeps a retry loop from flooding the namespace).
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Bound on remembered events, so a long-running process cannot grow without limit.
const MAX_REMEMBERED: usize = 256;

/// Posts volume events. Create one per process and share it (`Arc`).
pub struct EventRecorder {
    client: ::kube::Client,
    component: String,
    host: Option<String>,
    timeout: Duration,
    recent: Mutex<HashMap<EventKey, Recent>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    namespace: String,
    kind: &'static str,
    name: String,
    type_: &'static str,
    reason: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Recent {
    event_name: String,
    count: i32,
    seen: Instant,
}

/// The object an event is about.
#[derive(Debug, Clone)]
struct Target {
    namespace: String,
    kind: &'static str,
    name: String,
    uid: Option<String>,
}

impl EventRecorder {
    pub fn new(client: ::kube::Client, component: impl Into<String>) -> Self {
        EventRecorder {
            client,
            component: component.into(),
            host: None,
            timeout: Duration::from_secs(10),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// `source.host`: the node name, for events posted by the node plugin.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Deadline for each API request the recorder makes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn component(&self) -> &str {
        &self.component
    }

    /// Posts `event`. Never fails: an event must not fail the operation it describes, so
    /// problems are logged (with the reason, never object contents beyond names).
    pub async fn post(&self, event: &VolumeEvent) {
        let Some(target) = self.target(event).await else {
            warn!(
                reason = %event.reason,
                "event has neither a PVC nor a PV to attach to; not posted"
            );
            return;
        };
        if let Err(e) = self.post_on(&target, event).await {
            warn!(
                reason = %event.reason,
                namespace = %target.namespace,
                object = %target.name,
                error = %e,
                "could not post Kubernetes event"
            );
        }
    }

    /// Posts an event about the process itself (RDS reachability) on its own Pod. Never fails:
    /// the Pod's uid is looked up when RBAC allows it, and the event is posted either way.
    pub async fn post_on_pod(&self, namespace: &str, name: &str, event: &VolumeEvent) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let uid = match bounded(
            "reading the pod for an event",
            self.timeout,
            api.get_opt(name),
        )
        .await
        {
            Ok(pod) => pod.and_then(|p| p.metadata.uid),
            Err(e) => {
                debug!(%namespace, pod = %name, error = %e, "could not read the pod for its uid");
                None
            }
        };
        let target = Target {
            namespace: namespace.to_string(),
            kind: "Pod",
            name: name.to_string(),
            uid,
        };
        if let Err(e) = self.post_on(&target, event).await {
            warn!(reason = %event.reason, %namespace, pod = %name, error = %e, "could not post Kubernetes event");
        }
    }

    /// The PVC when it exists (found directly or through the PV's claimRef), else the PV.
    async fn target(&self, event: &VolumeEvent) -> Option<Target> {
        if let Some((namespace, name)) = &event.pvc {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
            match bounded(
                "reading the PVC for an event",
                self.timeout,
                api.get_opt(name),
            )
            .await
            {
                Ok(Some(pvc)) => {
                    return Some(Target {
                        namespace: namespace.clone(),
                        kind: "PersistentVolumeClaim",
                        name: name.clone(),
                        uid: pvc.metadata.uid,
                    });
                }
                Ok(None) => {
                    debug!(%namespace, pvc = %name, "PVC gone; posting the event on the PV");
                }
                Err(e) => {
                    // Still worth trying: the event is readable by name even without a uid.
                    warn!(%namespace, pvc = %name, error = %e, "could not read the PVC for its uid");
                    return Some(Target {
                        namespace: namespace.clone(),
                        kind: "PersistentVolumeClaim",
                        name: name.clone(),
                        uid: None,
                    });
                }
            }
        }
        let pv_name = event.pv_name.as_ref()?;
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = match bounded(
            "reading the PV for an event",
            self.timeout,
            api.get_opt(pv_name),
        )
        .await
        {
            Ok(pv) => pv,
            Err(e) => {
                warn!(pv = %pv_name, error = %e, "could not read the PV for its uid");
                None
            }
        };
        if event.pvc.is_none()
            && let Some(claim) = pv
                .as_ref()
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.claim_ref.as_ref())
            && let (Some(namespace), Some(name)) = (&claim.namespace, &claim.name)
        {
            return Some(Target {
                namespace: namespace.clone(),
                kind: "PersistentVolumeClaim",
                name: name.clone(),
                uid: claim.uid.clone(),
            });
        }
        Some(Target {
            namespace: "default".into(),
            kind: "PersistentVolume",
            name: pv_name.clone(),
            uid: pv.and_then(|p| p.metadata.uid),
        })
    }

    async fn post_on(&self, target: &Target, event: &VolumeEvent) -> Result<(), ClusterError> {
        let type_ = match event.kind {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        };
        let key = EventKey {
            namespace: target.namespace.clone(),
            kind: target.kind,
            name: target.name.clone(),
            type_,
            reason: event.reason.clone(),
            message: event.message.clone(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &target.namespace);
        let now = Timestamp::now();

        if let Some(recent) = self.remembered(&key) {
            let count = recent.count.saturating_add(1);
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": Time(now),
            });
            let bumped = bounded(
                "bumping the count of an event",
                self.timeout,
                api.patch(
                    &recent.event_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                ),
            )
            .await;
            match bumped {
                Ok(_) => {
                    self.remember(
                        key,
                        Recent {
                            count,
                            seen: Instant::now(),
                            ..recent
                        },
                    );
                    return Ok(());
                }
                // Events expire (1 h by default): start a new one.
                Err(ClusterError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }

        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", target.name)),
                namespace: Some(target.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some(target.kind.into()),
                name: Some(target.name.clone()),
                namespace: (target.kind != "PersistentVolume").then(|| target.namespace.clone()),
                uid: target.uid.clone(),
                ..ObjectReference::default()
            },
            reason: Some(event.reason.clone()),
            message: Some(event.message.clone()),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Event::default()
        };
        let created = bounded(
            "creating an event",
            self.timeout,
            api.create(&PostParams::default(), &ev),
        )
        .await?;
        if let Some(event_name) = created.metadata.name {
            self.remember(
                key,
                Recent {
                    event_name,
                    count: 1,
                    seen: Instant::now(),
                },
            );
        }
        Ok(())
    }

    fn remembered(&self, key: &EventKey) -> Option<Recent> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .get(key)
            .filter(|r| r.seen.elapsed() < AGGREGATE_WINDOW)
            .cloned()
    }

    fn remember(&self, key: EventKey, value: Recent) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MAX_REMEMBERED && !recent.contains_key(&key) {
            recent.retain(|_, r| r.seen.elapsed() < AGGREGATE_WINDOW);
            if recent.len() >= MAX_REMEMBERED {
                recent.clear();
            }
        }
        recent.insert(key, value);
    }
}
