//! One async lock per volume, so concurrent RPCs for the same volume (two CreateVolume retries,
//! a DeleteVolume racing an expansion) run one at a time while different volumes run in parallel.
//!
//! The controller has exactly one of these, owned by the attachment manager and shared by every
//! RPC (see `fencing::manager` for the lock order). Keys are volume ids as the CO sends them (the
//! PV's volumeHandle, which is the id CreateVolume returned) and `snapshot/<slot>` for snapshots.
//!
//! Entries are removed when their last user leaves, so the map stays as large as the set of
//! volumes with an operation in flight. Lock order: the map mutex is only held to find or insert
//! an entry, never while waiting for a volume lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct VolumeLocks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Held for the duration of one volume operation.
pub struct VolumeGuard<'a> {
    locks: &'a VolumeLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl VolumeLocks {
    pub async fn lock(&self, key: &str) -> VolumeGuard<'_> {
        let entry = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = entry.lock_owned().await;
        VolumeGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }

    /// Number of volumes with an operation in flight (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for VolumeGuard<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let mutex = Arc::clone(OwnedMutexGuard::mutex(&guard));
        drop(guard);
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // Two references left (the map's and ours) means nobody else waits: forget the entry.
        if Arc::strong_count(&mutex) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn same_volume_is_serialised_and_entries_are_reclaimed() {
        let locks = Arc::new(VolumeLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (locks, inside, max_seen) = (locks.clone(), inside.clone(), max_seen.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock("v1").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max_seen.load(Ordering::SeqCst), 1);
        assert_eq!(locks.in_flight(), 0);
    }

    #[tokio::test]
    async fn different_volumes_do_not_block_each_other() {
        let locks = VolumeLocks::default();
        let _a = locks.lock("a").await;
        let b = tokio::time::timeout(std::time::Duration::from_secs(5), locks.lock("b")).await;
        assert!(b.is_ok());
        assert_eq!(locks.in_flight(), 2);
    }
}
