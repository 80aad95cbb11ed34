//! Bounded blocking I/O.
//!
//! Kernel interfaces (`/dev/nvme-fabrics`, `delete_controller`) are plain blocking file I/O that
//! can sleep for as long as the kernel is waiting on the network. They run on tokio's blocking
//! pool under a timeout so a stuck kernel write costs one pool thread, never a gRPC handler.
//! The thread itself cannot be cancelled; it is released when the kernel call returns.

use std::time::Duration;

use crate::error::{NvmeError, Result};

/// Runs `f` on the blocking pool; after `after` the caller gets a timeout error naming `op` and
/// `target`, while `f` is left to finish (or stay stuck) on its own.
pub(crate) async fn blocking<T, F>(
    op: &'static str,
    target: String,
    after: Duration,
    f: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(f);
    match tokio::time::timeout(after, task).await {
        Ok(Ok(res)) => res,
        Ok(Err(join)) => Err(NvmeError::Task {
            op,
            reason: join.to_string(),
        }),
        Err(_) => {
            tracing::warn!(op, target = %target, ?after, "kernel I/O exceeded its deadline");
            Err(NvmeError::Timeout { op, target, after })
        }
    }
}
