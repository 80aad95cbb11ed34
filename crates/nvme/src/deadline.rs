//! Bounded blocking I/O.
//!
//! Kernel interfaces (`/dev/nvme-fabrics`, `delete_controller`) are plain blocking file I/O that
//! can sleep for as long as the kernel is waiting on the network. They run through the one
//! executor for blocking calls ([`kcall`]) under a timeout, so a stuck kernel write costs one
//! thread, never a gRPC handler, and a retry on the same target never adds another.

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
    let key = kcall::CallKey::new(op, target.clone());
    match kcall::global().run(key, after, f).await {
        Ok(res) => res,
        Err(kcall::CallError::Panicked(reason)) => Err(NvmeError::Task { op, reason }),
        Err(kcall::CallError::Timeout { .. }) => Err(NvmeError::Timeout { op, target, after }),
        // Not started: the same call on this target, or too many calls, are still stuck. A
        // timeout to the caller: retry later, when the kernel has answered.
        Err(cause) => Err(NvmeError::Timeout {
            op,
            target: format!("{target} (not started: {cause})"),
            after,
        }),
    }
}
