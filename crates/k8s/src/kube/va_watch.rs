//! Watching VolumeAttachments, so one stuck in deletion for a Node that is gone is finished
//! within seconds instead of at the reconciler's next pass (a VM waiting to restart elsewhere
//! waits for exactly that VolumeAttachment).
//!
//! Normally the external-attacher calls ControllerUnpublish and takes its own finalizer off a
//! deleted VolumeAttachment within seconds; this watch steps in only after `grace`, and only
//! for one whose Node object no longer exists (nothing can use the volume through a node
//! Kubernetes no longer has). It tracks this driver's VolumeAttachments that are in deletion
//! (bounded), checks each once its grace is over and then with a growing interval while it
//! stays, and forgets it when it is deleted. The watch only says what to look at:
//! `AttachmentManager::finish_deleting_volume_attachment` reads the Node and the
//! VolumeAttachment afresh and patches under its resourceVersion. The periodic reconciler
//! stays as the safety net.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::kube::Api;
use ::kube::runtime::{WatchStreamExt, watcher};
use jiff::Timestamp;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_stream::StreamExt;
use tracing::{info, warn};

use super::node_watch::watch_secs;
use super::objects;
use fencing::AttachmentManager;
use fencing::cluster::VolumeAttachmentInfo;

/// How long a VolumeAttachment in deletion is left to the external-attacher before the watch
/// looks at it: the attacher normally finishes one in a few seconds.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15);

/// The first re-check of a tracked VolumeAttachment that could not be finished (its Node
/// exists, or it is not this driver's to finish); doubled each time up to `MAX_RECHECK`, so
/// one that stays costs a few requests an hour, not a steady stream.
const RECHECK: Duration = Duration::from_secs(5);
const MAX_RECHECK: Duration = Duration::from_secs(300);
/// VolumeAttachments in deletion tracked at most; beyond it the periodic pass handles the rest.
const MAX_TRACKED: usize = 10_000;
/// How often due checks run.
const TICK: Duration = Duration::from_secs(1);

/// Starts the VolumeAttachment watch of `driver` for `manager`; abort the handle to stop it.
/// `read_timeout` is the client's read timeout (see `watch_secs`); `grace` is how long a
/// VolumeAttachment is left in deletion for the external-attacher before it is checked.
pub fn watch_volume_attachments(
    client: ::kube::Client,
    driver: String,
    manager: Arc<AttachmentManager>,
    read_timeout: Duration,
    grace: Duration,
) -> JoinHandle<()> {
    tokio::spawn(run(
        client,
        driver,
        manager,
        watch_secs(read_timeout),
        grace,
    ))
}

struct Tracked {
    info: VolumeAttachmentInfo,
    due: Instant,
    backoff: Duration,
}

async fn run(
    client: ::kube::Client,
    driver: String,
    manager: Arc<AttachmentManager>,
    secs: u32,
    grace: Duration,
) {
    let api: Api<VolumeAttachment> = Api::all(client);
    let config = watcher::Config::default().timeout(secs);
    let events = watcher::watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return };
                match event {
                    // A re-list: what is still in deletion comes back as InitApply.
                    Ok(watcher::Event::Init) => tracked.clear(),
                    Ok(watcher::Event::InitApply(va) | watcher::Event::Apply(va)) => {
                        note(&mut tracked, &va, &driver, grace);
                    }
                    Ok(watcher::Event::Delete(va)) => {
                        if let Some(name) = va.metadata.name.as_deref() {
                            tracked.remove(name);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {}
                    Err(e) => warn!(error = %e, "watching VolumeAttachments; retrying"),
                }
            }
            _ = tick.tick() => check_due(&manager, &mut tracked).await,
        }
    }
}

/// Tracks `va` while it is this driver's and in deletion; forgets it otherwise.
fn note(
    tracked: &mut HashMap<String, Tracked>,
    va: &VolumeAttachment,
    driver: &str,
    grace: Duration,
) {
    let Some(info) = objects::attachment_info(va, driver, Timestamp::now()) else {
        return;
    };
    let Some(deleting_for) = info.deleting_for_secs.map(Duration::from_secs) else {
        tracked.remove(&info.name);
        return;
    };
    if let Some(t) = tracked.get_mut(&info.name) {
        t.info = info;
        return;
    }
    if tracked.len() >= MAX_TRACKED {
        warn!(va = %info.name, "more than {MAX_TRACKED} VolumeAttachments in deletion; this one is left to the reconciler's periodic pass");
        return;
    }
    // One that was already deleting before the watch saw it (a controller restart) has
    // served part of its grace.
    let due = Instant::now() + grace.saturating_sub(deleting_for);
    tracked.insert(
        info.name.clone(),
        Tracked {
            info,
            due,
            backoff: RECHECK,
        },
    );
}

async fn check_due(manager: &AttachmentManager, tracked: &mut HashMap<String, Tracked>) {
    let now = Instant::now();
    let due: Vec<VolumeAttachmentInfo> = tracked
        .values()
        .filter(|t| t.due <= now)
        .map(|t| t.info.clone())
        .collect();
    for va in due {
        if manager.finish_deleting_volume_attachment(&va).await {
            info!(va = %va.name, node = %va.node, "VolumeAttachment watch finished a VolumeAttachment stuck in deletion for a deleted node");
            tracked.remove(&va.name);
        } else if let Some(t) = tracked.get_mut(&va.name) {
            t.due = Instant::now() + t.backoff;
            t.backoff = (t.backoff * 2).min(MAX_RECHECK);
        }
    }
}
