//! Watching Nodes, so a node that is deleted or tainted `node.kubernetes.io/out-of-service`
//! releases its attachments within seconds instead of at the next reconciler pass.
//!
//! The watch only says which node to look at: `AttachmentManager::release_node` reads the Node
//! again before clearing anything, and does nothing for nodes that hold no volume (so the
//! status updates every node sends cost no request). After a re-list (the watch was lost, and
//! deletions meanwhile were never seen as events) every holder that is not in the listing is
//! checked the same way. The periodic reconciler stays as the safety net for anything missed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ::kube::Api;
use ::kube::runtime::{WatchStreamExt, watcher};
use k8s_openapi::api::core::v1::Node;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tracing::{info, warn};

use super::objects;
use fencing::AttachmentManager;

/// Server-side length of one watch request, kept below `read_timeout` (the client's idle read
/// bound) so a quiet watch is closed by the server rather than failing as a read timeout.
pub(crate) fn watch_secs(read_timeout: Duration) -> u32 {
    let secs = read_timeout.as_secs().saturating_sub(2).clamp(1, 290);
    u32::try_from(secs).unwrap_or(290)
}

/// Starts the Node watch for `manager`; abort the handle to stop it. `read_timeout` is the
/// client's read timeout (see `watch_secs`).
pub fn watch_nodes(
    client: ::kube::Client,
    manager: Arc<AttachmentManager>,
    read_timeout: Duration,
) -> JoinHandle<()> {
    tokio::spawn(run(client, manager, watch_secs(read_timeout)))
}

async fn run(client: ::kube::Client, manager: Arc<AttachmentManager>, secs: u32) {
    let api: Api<Node> = Api::all(client);
    let config = watcher::Config::default().timeout(secs);
    let events = watcher::watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(node)) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                if is_out_of_service(&node) {
                    release(&manager, &name, "out-of-service").await;
                }
                if let Some(seen) = listed.as_mut() {
                    seen.insert(name);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let seen = listed.take().unwrap_or_default();
                for holder in manager.nodes_holding_volumes() {
                    if !seen.contains(&holder) {
                        release(&manager, &holder, "absent from the Node listing").await;
                    }
                }
            }
            Ok(watcher::Event::Apply(node)) => {
                if is_out_of_service(&node) {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    release(&manager, &name, "out-of-service").await;
                }
            }
            Ok(watcher::Event::Delete(node)) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                release(&manager, &name, "deleted").await;
            }
            Err(e) => warn!(error = %e, "watching Nodes; retrying"),
        }
    }
}

fn is_out_of_service(node: &Node) -> bool {
    matches!(
        objects::node_state(Some(node)),
        fencing::cluster::NodeState::Present {
            out_of_service: true
        }
    )
}

async fn release(manager: &AttachmentManager, node: &str, seen: &str) {
    let cleared = manager.release_node(node).await;
    if !cleared.is_empty() {
        info!(
            node,
            seen,
            volumes = cleared.len(),
            "Node watch released the node's attachments"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::watch_secs;
    use std::time::Duration;

    #[test]
    fn a_watch_ends_before_the_clients_read_timeout() {
        assert_eq!(watch_secs(Duration::from_secs(15)), 13);
        assert_eq!(watch_secs(Duration::from_secs(2)), 1);
        assert_eq!(watch_secs(Duration::from_secs(3600)), 290);
    }
}
