//! Nodes and their CSINode attach limits, kept current by two watches, so admitting a publish
//! to a node costs no request.
//!
//! Only the admission check (the node exists, it has room under its attach limit) reads this;
//! it is a courtesy to the CO, not the fence: which node holds a volume is still decided on the
//! PV read for the publish and written under its resourceVersion, and releasing a node's
//! attachments still reads the Node afresh. A Node the cache does not hold (too new for the
//! watch) and anything asked before the listings completed is read from the API server as
//! without the cache, so the cache never refuses a publish the API server would allow. What it
//! can get wrong, for the moment a watch event takes to arrive, is a node deleted, a CSINode
//! created or a limit lowered just now: the publish is then admitted as it would have been a
//! moment earlier, and the Node watch releases a deleted node's attachments as soon as it sees
//! the deletion.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use ::kube::Api;
use ::kube::runtime::{WatchStreamExt, watcher};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSINode;
use tokio_stream::StreamExt;
use tracing::{debug, warn};

use super::objects;
use fencing::cluster::NodeState;

/// More Nodes (or CSINodes) than this and that half of the cache gives up (lookups read the
/// API server): Kubernetes supports 5,000 nodes, so this only bounds memory against the absurd.
pub(crate) const MAX_NODES: usize = 50_000;

/// One watched kind: name → what admission needs of it.
struct Side<T> {
    /// False until the first full listing arrived, and after an overflow.
    ready: bool,
    map: HashMap<String, T>,
    /// Entries of a re-list in progress; swapped in when it completes.
    pending: Option<HashMap<String, T>>,
}

impl<T> Default for Side<T> {
    fn default() -> Self {
        Side {
            ready: false,
            map: HashMap::new(),
            pending: None,
        }
    }
}

impl<T: Clone> Side<T> {
    /// `None` while the side cannot answer; `Some(None)` for a name it does not hold.
    fn get(&self, name: &str) -> Option<Option<T>> {
        self.ready.then(|| self.map.get(name).cloned())
    }

    fn apply(&mut self, name: String, value: T, what: &str) {
        if self.map.len() >= MAX_NODES && !self.map.contains_key(&name) {
            self.overflow(what);
            return;
        }
        self.map.insert(name, value);
    }

    fn relist_entry(&mut self, name: String, value: T, what: &str) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if pending.len() >= MAX_NODES {
            self.overflow(what);
            return;
        }
        pending.insert(name, value);
    }

    fn relist_done(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.map = pending;
            self.ready = true;
        }
    }

    fn overflow(&mut self, what: &str) {
        warn!(
            limit = MAX_NODES,
            "more {what} than the cache holds; publishes read them from the API server"
        );
        *self = Side::default();
    }
}

#[derive(Default)]
struct Inner {
    /// Node name → carries the out-of-service taint.
    nodes: Side<bool>,
    /// CSINode name → its allocatable count for this driver, if it publishes one.
    limits: Side<Option<u32>>,
}

#[derive(Default)]
pub(crate) struct NodeCache {
    inner: Mutex<Inner>,
}

impl NodeCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node's state when the cache holds the Node; `None` means "ask the API server" (a
    /// node the cache has not seen may be too new for it).
    pub(crate) fn node(&self, name: &str) -> Option<NodeState> {
        self.lock()
            .nodes
            .get(name)
            .flatten()
            .map(|out_of_service| NodeState::Present { out_of_service })
    }

    /// The node's attach limit once the CSINodes are listed (no CSINode: no limit, as a
    /// CSINode too new for the watch would be read as a moment earlier); `None` means "ask".
    pub(crate) fn limit(&self, name: &str) -> Option<Option<u32>> {
        self.lock().limits.get(name).map(Option::flatten)
    }

    pub(crate) fn is_ready(&self) -> bool {
        let inner = self.lock();
        inner.nodes.ready && inner.limits.ready
    }
}

/// Keeps `cache` current until the task is aborted; each watcher re-lists by itself after a
/// lost watch, with kube-runtime's default backoff.
pub(crate) async fn run(
    client: ::kube::Client,
    driver: String,
    cache: Arc<NodeCache>,
    watch_secs: u32,
) {
    let nodes = follow(
        Api::<Node>::all(client.clone()),
        watch_secs,
        Arc::clone(&cache),
        "Nodes",
        |inner| &mut inner.nodes,
        |node| {
            matches!(
                objects::node_state(Some(node)),
                NodeState::Present {
                    out_of_service: true
                }
            )
        },
    );
    let limits = follow(
        Api::<CSINode>::all(client),
        watch_secs,
        cache,
        "CSINodes",
        |inner| &mut inner.limits,
        move |csinode| objects::attach_limit(csinode, &driver),
    );
    tokio::join!(nodes, limits);
}

async fn follow<K, T>(
    api: Api<K>,
    watch_secs: u32,
    cache: Arc<NodeCache>,
    what: &'static str,
    side: fn(&mut Inner) -> &mut Side<T>,
    value: impl Fn(&K) -> T,
) where
    K: ::kube::Resource + Clone + serde::de::DeserializeOwned + Debug + Send + 'static,
    T: Clone,
{
    let config = watcher::Config::default().timeout(watch_secs);
    let events = watcher::watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    let name = |o: &K| o.meta().name.clone().unwrap_or_default();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => side(&mut cache.lock()).pending = Some(HashMap::new()),
            Ok(watcher::Event::InitApply(o)) => {
                side(&mut cache.lock()).relist_entry(name(&o), value(&o), what)
            }
            Ok(watcher::Event::InitDone) => {
                side(&mut cache.lock()).relist_done();
                debug!("{what} cache in step with the API server");
            }
            Ok(watcher::Event::Apply(o)) => {
                side(&mut cache.lock()).apply(name(&o), value(&o), what)
            }
            Ok(watcher::Event::Delete(o)) => {
                side(&mut cache.lock()).map.remove(&name(&o));
            }
            Err(e) => warn!(error = %e, "watching {what}; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_after_a_full_listing_and_never_for_names_it_has_not_seen() {
        let cache = NodeCache::default();
        assert_eq!(cache.node("a"), None);
        {
            let mut inner = cache.lock();
            inner.nodes.pending = Some(HashMap::new());
            inner.nodes.relist_entry("a".into(), false, "Nodes");
            inner.nodes.relist_entry("b".into(), true, "Nodes");
        }
        assert_eq!(cache.node("a"), None, "listing not finished");
        cache.lock().nodes.relist_done();
        assert_eq!(
            cache.node("a"),
            Some(NodeState::Present {
                out_of_service: false
            })
        );
        assert_eq!(
            cache.node("b"),
            Some(NodeState::Present {
                out_of_service: true
            })
        );
        // Not seen (too new, or gone): the caller asks the API server.
        assert_eq!(cache.node("c"), None);
        cache.lock().nodes.map.remove("a");
        assert_eq!(cache.node("a"), None);
        assert!(!cache.is_ready(), "CSINodes not listed yet");
        {
            let mut inner = cache.lock();
            inner.limits.pending = Some(HashMap::new());
            inner.limits.relist_entry("b".into(), Some(3), "CSINodes");
            inner.limits.relist_entry("d".into(), None, "CSINodes");
            inner.limits.relist_done();
        }
        assert!(cache.is_ready());
        assert_eq!(cache.limit("b"), Some(Some(3)));
        assert_eq!(cache.limit("d"), Some(None), "a CSINode without a limit");
        assert_eq!(cache.limit("e"), Some(None), "no CSINode: no limit");
    }

    #[test]
    fn an_overflow_empties_the_side_so_lookups_ask_the_api_server() {
        let mut side: Side<bool> = Side {
            pending: Some(HashMap::new()),
            ..Side::default()
        };
        side.relist_done();
        for i in 0..MAX_NODES {
            side.apply(format!("n{i}"), false, "Nodes");
        }
        assert_eq!(side.get("n0"), Some(Some(false)));
        side.apply("one-more".into(), false, "Nodes");
        assert_eq!(side.get("n0"), None);
        assert!(side.map.is_empty());
    }
}
