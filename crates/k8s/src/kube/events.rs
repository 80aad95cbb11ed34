//! The process's one event recorder: core/v1 Events about volumes, posted through the API.
//!
//! The earlier driver built a broadcaster per call (leaking), sent events with an empty namespace
//! (every one rejected), and labelled controller events as coming from the node. Here one
//! recorder is shared, events land in the PVC's namespace (or `default` for a PV), and the source
//! component is whatever the process says it is.
//!
//! Fencing hands its events to [`EventRecorder::enqueue`]: one worker task posts them in order
//! while the CSI call that caused them has already answered, so an event never adds API
//! requests or latency to ControllerPublish/Unpublish. The queue is bounded; when it is full
//! (the API server is slow or down) further events are dropped and counted, never buffered
//! without limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ::kube::Api;
use ::kube::api::{Patch, PatchParams, PostParams};
use k8s_openapi::api::core::v1::{
    Event, EventSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

use super::api_errors::bounded;
use fencing::cluster::{ClusterError, EventKind, VolumeEvent};

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
/// Events queued or being posted at most; more are dropped. At a few milliseconds per post this
/// is seconds of backlog, far more than a burst of publishes makes.
pub const EVENT_QUEUE: usize = 1024;

/// Posts volume events. Create one per process and share it (`Arc`).
pub struct EventRecorder {
    client: ::kube::Client,
    component: String,
    host: Option<String>,
    timeout: Duration,
    recent: Mutex<HashMap<EventKey, Recent>>,
    queue: OnceLock<mpsc::UnboundedSender<VolumeEvent>>,
    /// Events queued or in flight; bounded by `capacity` (the channel itself is not).
    pending: AtomicUsize,
    capacity: usize,
    dropped: AtomicU64,
    idle: Notify,
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
            queue: OnceLock::new(),
            pending: AtomicUsize::new(0),
            capacity: EVENT_QUEUE,
            dropped: AtomicU64::new(0),
            idle: Notify::new(),
        }
    }

    /// Bound on queued events (see `enqueue`); at least 1.
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Queues `event` for the recorder's worker and returns at once. Dropped (counted in
    /// `dropped_events`, logged) when `capacity` events are already waiting or being posted, or
    /// when there is no Tokio runtime to run the worker on.
    pub fn enqueue(self: &Arc<Self>, event: VolumeEvent) {
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.drop_event(&event, "the event queue is full");
            return;
        }
        let sent = self
            .sender()
            .is_some_and(|tx| tx.send(event.clone()).is_ok());
        if !sent {
            self.done_one();
            self.drop_event(&event, "no runtime to post events on");
        }
    }

    /// Events `enqueue` dropped since the start.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event queued so far was posted (or failed and was logged). For tests
    /// and shutdown; the request path never waits for events.
    pub async fn flushed(&self) {
        loop {
            let idle = self.idle.notified();
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    fn drop_event(&self, event: &VolumeEvent, why: &str) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Every drop at debug; the first and then every power of two at warn, so a long API
        // outage cannot flood the log.
        if n.is_power_of_two() {
            warn!(reason = %event.reason, dropped = n, "Kubernetes event dropped: {why}");
        } else {
            debug!(reason = %event.reason, dropped = n, "Kubernetes event dropped: {why}");
        }
    }

    fn done_one(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// The worker's queue, started on first use. The worker holds the recorder weakly, so it
    /// ends when the last owner drops the recorder (and with it the sender).
    fn sender(self: &Arc<Self>) -> Option<&mpsc::UnboundedSender<VolumeEvent>> {
        if let Some(tx) = self.queue.get() {
            return Some(tx);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut started = false;
        let tx = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            runtime.spawn(work(Arc::downgrade(self), rx));
            started = true;
            tx
        });
        if started {
            debug!(component = %self.component, "event worker started");
        }
        Some(tx)
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

    /// The PVC when it exists (found directly or through the PV's claimRef), else the PV. What
    /// the caller already read (the uids in `event`) is used as it is, without a request.
    async fn target(&self, event: &VolumeEvent) -> Option<Target> {
        if let (Some((namespace, name)), Some(uid)) = (&event.pvc, &event.pvc_uid) {
            return Some(Target {
                namespace: namespace.clone(),
                kind: "PersistentVolumeClaim",
                name: name.clone(),
                uid: Some(uid.clone()),
            });
        }
        if let (None, Some(pv_name), Some(uid)) = (&event.pvc, &event.pv_name, &event.pv_uid) {
            return Some(Target {
                namespace: "default".into(),
                kind: "PersistentVolume",
                name: pv_name.clone(),
                uid: Some(uid.clone()),
            });
        }
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

/// Posts queued events one at a time, in order, until the recorder is gone.
async fn work(recorder: Weak<EventRecorder>, mut rx: mpsc::UnboundedReceiver<VolumeEvent>) {
    while let Some(event) = rx.recv().await {
        let Some(recorder) = recorder.upgrade() else {
            return;
        };
        recorder.post(&event).await;
        recorder.done_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencing::cluster::EventKind;

    fn client(port: u16) -> ::kube::Client {
        let url = format!("http://127.0.0.1:{port}").parse().unwrap();
        ::kube::Client::try_from(::kube::Config::new(url)).unwrap()
    }

    fn event(n: usize) -> VolumeEvent {
        VolumeEvent {
            pv_name: Some("pv".into()),
            pvc: Some(("ns".into(), "pvc".into())),
            kind: EventKind::Normal,
            reason: "VolumeAttached".into(),
            message: format!("event {n}"),
            pv_uid: None,
            pvc_uid: Some("uid".into()),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_growing() {
        // An API server that accepts connections and never answers: nothing leaves the queue.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let recorder = Arc::new(
            EventRecorder::new(client(port), component::CONTROLLER)
                .with_timeout(Duration::from_secs(600))
                .with_queue_capacity(2),
        );
        for n in 0..5 {
            recorder.enqueue(event(n));
        }
        assert_eq!(recorder.dropped_events(), 3);
        assert_eq!(recorder.pending.load(Ordering::Acquire), 2);
    }

    #[tokio::test]
    async fn queued_events_are_all_attempted_and_flushed_returns_after() {
        // Nothing listens on port 1: each post fails at once and is logged.
        let recorder = Arc::new(EventRecorder::new(client(1), component::CONTROLLER));
        for n in 0..3 {
            recorder.enqueue(event(n));
        }
        assert_eq!(recorder.pending.load(Ordering::Acquire), 3);
        recorder.flushed().await;
        assert_eq!(recorder.pending.load(Ordering::Acquire), 0);
        assert_eq!(recorder.dropped_events(), 0);
    }
}
