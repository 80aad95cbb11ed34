//! The accept loop every TCP endpoint of the process shares (the metrics and health endpoint,
//! the hotplug guard's webhook): hand each connection on until shutdown, and back off after a
//! failed accept (out of file descriptors) instead of spinning on it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::warn;

/// After a failed accept, wait this long before the next.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Hands every connection on `listener` to `on_connection` until `shutdown` turns true, then
/// closes the listener. `what` names the endpoint in the log.
pub async fn accept_until(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    mut on_connection: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => on_connection(stream, peer),
                Err(e) => {
                    warn!(endpoint = what, error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // The guard `wait_for` returns is not Send; drop it inside.
            _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => break,
        }
    }
}
