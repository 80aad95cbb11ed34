//! SIGTERM/SIGINT handling: stop accepting RPCs, let in-flight ones finish, but never hang.

use std::time::Duration;

use tracing::{error, info};

/// Completes on the first SIGTERM or SIGINT. After it fires, a watchdog ends the process if
/// draining takes longer than `limit` (kubelet would SIGKILL us anyway; this says why).
pub async fn signal(limit: Duration) {
    wait_for_signal().await;
    info!(drain_limit = ?limit, "shutdown requested: draining in-flight RPCs");
    tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        error!("in-flight RPCs did not finish within {limit:?} after the shutdown signal; exiting");
        std::process::exit(1);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                error!("cannot watch SIGTERM ({e}); only SIGINT will stop the process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
