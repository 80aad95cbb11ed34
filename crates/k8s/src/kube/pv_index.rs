//! Volume handle → PersistentVolume names, kept current by a watch on PersistentVolumes.
//!
//! Only a hint for which PV to read: the caller reads the PV itself (one GET) and checks its
//! handle and driver before using it, and every write is conditional on that read's
//! resourceVersion. A stale or wrong entry can therefore cost a request, never a decision.
//! Holding names only (not objects) keeps 10,000 PVs to a few megabytes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use ::kube::Api;
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher;
use k8s_openapi::api::core::v1::PersistentVolume;
use tokio_stream::StreamExt;
use tracing::{debug, warn};

/// More PVs of this driver than this and the index gives up (lookups fall back to listing):
/// the memory a cache may take stays bounded whatever the cluster holds.
pub(crate) const MAX_INDEXED: usize = 500_000;

#[derive(Default)]
struct Inner {
    /// False until the first full listing arrived, and after the index overflowed.
    ready: bool,
    by_handle: HashMap<String, BTreeSet<String>>,
    by_name: HashMap<String, String>,
    /// Entries of a re-list in progress; swapped in when it completes.
    pending: Option<HashMap<String, String>>,
}

#[derive(Default)]
pub(crate) struct PvIndex {
    inner: Mutex<Inner>,
}

impl PvIndex {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The PV names recorded for `handle` (sorted), or `None` while the index cannot answer.
    pub(crate) fn names(&self, handle: &str) -> Option<Vec<String>> {
        let inner = self.lock();
        if !inner.ready {
            return None;
        }
        Some(
            inner
                .by_handle
                .get(handle)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.lock().ready
    }

    fn apply(&self, name: String, handle: Option<String>) {
        let mut inner = self.lock();
        remove(&mut inner, &name);
        if let Some(h) = handle {
            if inner.by_name.len() >= MAX_INDEXED {
                overflow(&mut inner);
                return;
            }
            inner
                .by_handle
                .entry(h.clone())
                .or_default()
                .insert(name.clone());
            inner.by_name.insert(name, h);
        }
    }

    fn delete(&self, name: &str) {
        remove(&mut self.lock(), name);
    }

    fn relist_started(&self) {
        self.lock().pending = Some(HashMap::new());
    }

    fn relist_entry(&self, name: String, handle: Option<String>) {
        let mut inner = self.lock();
        let Some(pending) = inner.pending.as_mut() else {
            return;
        };
        if let Some(h) = handle {
            if pending.len() >= MAX_INDEXED {
                overflow(&mut inner);
                return;
            }
            pending.insert(name, h);
        }
    }

    fn relist_done(&self) {
        let mut inner = self.lock();
        let Some(pending) = inner.pending.take() else {
            return;
        };
        let mut by_handle: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (name, handle) in &pending {
            by_handle
                .entry(handle.clone())
                .or_default()
                .insert(name.clone());
        }
        inner.by_handle = by_handle;
        inner.by_name = pending;
        inner.ready = true;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_name.len()
    }
}

fn remove(inner: &mut Inner, name: &str) {
    let Some(old) = inner.by_name.remove(name) else {
        return;
    };
    if let Some(set) = inner.by_handle.get_mut(&old) {
        set.remove(name);
        if set.is_empty() {
            inner.by_handle.remove(&old);
        }
    }
}

fn overflow(inner: &mut Inner) {
    warn!(
        limit = MAX_INDEXED,
        "more PersistentVolumes of this driver than the index holds; publish falls back to listing them"
    );
    *inner = Inner::default();
}

/// The handle of `pv` when it is a CSI volume of `driver`.
fn handle_of(pv: &PersistentVolume, driver: &str) -> Option<String> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    (csi.driver == driver).then(|| csi.volume_handle.clone())
}

/// Keeps `index` current until the task is aborted. The watcher re-lists by itself after a
/// lost watch (410 Gone, API server restart), with kube-runtime's default backoff.
pub(crate) async fn run(
    client: ::kube::Client,
    driver: String,
    index: Arc<PvIndex>,
    watch_secs: u32,
) {
    let api: Api<PersistentVolume> = Api::all(client);
    let config = watcher::Config::default().timeout(watch_secs);
    let events = watcher::watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let name = |pv: &PersistentVolume| pv.metadata.name.clone().unwrap_or_default();
        match event {
            Ok(watcher::Event::Init) => index.relist_started(),
            Ok(watcher::Event::InitApply(pv)) => {
                index.relist_entry(name(&pv), handle_of(&pv, &driver));
            }
            Ok(watcher::Event::InitDone) => {
                index.relist_done();
                debug!("PersistentVolume index in step with the API server");
            }
            Ok(watcher::Event::Apply(pv)) => index.apply(name(&pv), handle_of(&pv, &driver)),
            Ok(watcher::Event::Delete(pv)) => index.delete(&name(&pv)),
            Err(e) => warn!(error = %e, "watching PersistentVolumes; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, handle: &str) -> (String, Option<String>) {
        (name.to_string(), Some(handle.to_string()))
    }

    #[test]
    fn answers_only_after_a_full_listing_and_follows_changes() {
        let idx = PvIndex::default();
        assert_eq!(idx.names("default:pvc-1"), None);
        idx.relist_started();
        let (n, h) = entry("pv-a", "default:pvc-1");
        idx.relist_entry(n, h);
        assert_eq!(idx.names("default:pvc-1"), None, "listing not finished");
        idx.relist_done();
        assert_eq!(idx.names("default:pvc-1"), Some(vec!["pv-a".to_string()]));
        let (n, h) = entry("pv-b", "default:pvc-1");
        idx.apply(n, h);
        assert_eq!(
            idx.names("default:pvc-1"),
            Some(vec!["pv-a".to_string(), "pv-b".to_string()])
        );
        // A PV whose handle changed (deleted and re-created) moves.
        let (n, h) = entry("pv-a", "default:pvc-2");
        idx.apply(n, h);
        assert_eq!(idx.names("default:pvc-1"), Some(vec!["pv-b".to_string()]));
        idx.delete("pv-b");
        assert_eq!(idx.names("default:pvc-1"), Some(vec![]));
        // Another driver's PV (no handle of ours) is not held.
        idx.apply("pv-c".into(), None);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn a_relist_replaces_everything_so_deletions_missed_while_disconnected_go() {
        let idx = PvIndex::default();
        idx.relist_started();
        idx.relist_entry("pv-a".into(), Some("h1".into()));
        idx.relist_entry("pv-b".into(), Some("h2".into()));
        idx.relist_done();
        idx.relist_started();
        idx.relist_entry("pv-b".into(), Some("h2".into()));
        // Until the new listing is complete the old one answers.
        assert_eq!(idx.names("h1"), Some(vec!["pv-a".to_string()]));
        idx.relist_done();
        assert_eq!(idx.names("h1"), Some(vec![]));
        assert_eq!(idx.len(), 1);
    }
}
