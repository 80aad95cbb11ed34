//! Blocking kernel calls under a deadline, without letting stuck ones pile up.
//!
//! A read of a dead NVMe device, a sysfs file of a controller in teardown or a mount on a hung
//! filesystem can sleep in the kernel forever; no thread running one can be cancelled. Giving
//! up waiting is easy, but each abandoned call still holds a thread, and kubelet retries every
//! failed RPC, so unbounded wrappers turn one hung target into an exhausted blocking pool that
//! stalls every volume on the node. The [`Executor`] bounds the damage:
//!
//! - at most `cap` calls are in flight in the whole process (stuck ones included); past that a
//!   call fails at its deadline without starting;
//! - one call per [`CallKey`] (a kind of call on one subject: a volume's NQN, mount path or
//!   device) is in flight at a time; a retry waits for the previous one and, if that one is
//!   still stuck at the retry's deadline, fails without starting another thread;
//! - [`Executor::stuck`] counts calls whose caller gave up at the deadline and that have not
//!   returned yet (exported as a metric), so a node that leaks threads is visible.
//!
//! Other subjects never wait for a stuck one, as long as the cap is not reached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio::time::Instant;

/// Calls in flight at once in the whole process by default: far below tokio's 512 blocking
/// threads, far above what a healthy node runs concurrently.
pub const DEFAULT_CAP: usize = 64;

/// One kind of call on one subject: at most one is in flight at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub kind: &'static str,
    pub subject: String,
}

impl CallKey {
    pub fn new(kind: &'static str, subject: impl Into<String>) -> Self {
        CallKey {
            kind,
            subject: subject.into(),
        }
    }
}

/// Why a call gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call started and did not return within the deadline; it is now counted as stuck.
    #[error("did not return within {deadline:?} (the kernel call may still be pending)")]
    Timeout { deadline: Duration },
    /// An earlier call of the same kind on the same subject is still in the kernel; this one
    /// waited for it until its deadline and never started.
    #[error(
        "an earlier call of the same kind on the same target is still stuck in the kernel after waiting {waited:?}; not starting another"
    )]
    PreviousStuck { waited: Duration },
    /// Every slot is taken (mostly by stuck calls); this one never started.
    #[error(
        "{in_flight} blocking kernel calls are in flight ({stuck} stuck), the limit is {cap}; not starting another"
    )]
    Saturated {
        cap: usize,
        in_flight: usize,
        stuck: usize,
    },
    /// The call panicked.
    #[error("the call failed: {0}")]
    Panicked(String),
}

const RUNNING: u8 = 0;
const STUCK: u8 = 1;
const DONE: u8 = 2;

struct Inner {
    cap: usize,
    permits: Arc<Semaphore>,
    slots: Mutex<HashMap<CallKey, Arc<AsyncMutex<()>>>>,
    stuck: AtomicUsize,
}

/// See the module documentation. Cheap to clone; clones share limits and counters.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("cap", &self.inner.cap)
            .field("in_flight", &self.in_flight())
            .field("stuck", &self.stuck())
            .finish()
    }
}

/// The process-wide executor every crate of the node data path uses.
pub fn global() -> &'static Executor {
    static GLOBAL: OnceLock<Executor> = OnceLock::new();
    GLOBAL.get_or_init(|| Executor::new(DEFAULT_CAP))
}

impl Executor {
    /// An executor allowing `cap` calls in flight (at least one).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Executor {
            inner: Arc::new(Inner {
                cap,
                permits: Arc::new(Semaphore::new(cap)),
                slots: Mutex::new(HashMap::new()),
                stuck: AtomicUsize::new(0),
            }),
        }
    }

    pub fn cap(&self) -> usize {
        self.inner.cap
    }

    /// Calls running on a blocking thread right now, stuck ones included.
    pub fn in_flight(&self) -> usize {
        self.inner.cap - self.inner.permits.available_permits()
    }

    /// Calls past their caller's deadline that have not returned yet.
    pub fn stuck(&self) -> usize {
        self.inner.stuck.load(Ordering::SeqCst)
    }

    fn slot(&self, key: &CallKey) -> Arc<AsyncMutex<()>> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(key) {
            return Arc::clone(s);
        }
        // Forget subjects nobody waits on or runs for, so the map stays as small as the work.
        slots.retain(|_, s| Arc::strong_count(s) > 1);
        let s = Arc::new(AsyncMutex::new(()));
        slots.insert(key.clone(), Arc::clone(&s));
        s
    }

    /// Runs `f` on the blocking pool and waits at most `deadline` in total: for an earlier
    /// call with the same key, for a free slot, and for `f` itself. `f` keeps its key and its
    /// slot until it returns, however long that takes.
    pub async fn run<T, F>(&self, key: CallKey, deadline: Duration, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let started = Instant::now();
        let end = started + deadline;
        let slot = self.slot(&key);
        let Ok(turn) = tokio::time::timeout_at(end, slot.lock_owned()).await else {
            tracing::warn!(kind = key.kind, subject = %key.subject, ?deadline, "an earlier blocking call on this target is still stuck; not starting another");
            return Err(CallError::PreviousStuck {
                waited: started.elapsed(),
            });
        };
        let permits = Arc::clone(&self.inner.permits);
        let permit = match tokio::time::timeout_at(end, permits.acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => {
                let e = CallError::Saturated {
                    cap: self.inner.cap,
                    in_flight: self.in_flight(),
                    stuck: self.stuck(),
                };
                tracing::warn!(kind = key.kind, subject = %key.subject, error = %e, "blocking call not started");
                return Err(e);
            }
        };
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (state_in, inner) = (Arc::clone(&state), Arc::clone(&self.inner));
        let task = tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            drop(turn);
            if state_in.swap(DONE, Ordering::SeqCst) == STUCK {
                inner.stuck.fetch_sub(1, Ordering::SeqCst);
            }
            out
        });
        match tokio::time::timeout_at(end, task).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(join)) => Err(CallError::Panicked(join.to_string())),
            Err(_) => {
                if state
                    .compare_exchange(RUNNING, STUCK, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.inner.stuck.fetch_add(1, Ordering::SeqCst);
                }
                tracing::warn!(kind = key.kind, subject = %key.subject, ?deadline, stuck = self.stuck(), "blocking kernel call exceeded its deadline");
                Err(CallError::Timeout { deadline })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc;

    /// A call that never returns while the test runs: it blocks on a channel the test only
    /// closes at the end (the runtime waits for blocking threads when it shuts down).
    fn hang(rx: Arc<Mutex<mpsc::Receiver<()>>>, started: Arc<AtomicU32>) -> impl FnOnce() + Send {
        move || {
            started.fetch_add(1, Ordering::SeqCst);
            let _ = rx.lock().unwrap().recv();
        }
    }

    const SHORT: Duration = Duration::from_millis(60);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stuck_calls_are_capped_deduplicated_per_target_and_others_proceed() {
        let exec = Executor::new(2);
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let started = Arc::new(AtomicU32::new(0));
        let vol1 = CallKey::new("mount", "/kubelet/staging/vol-1");

        let e = exec
            .run(vol1.clone(), SHORT, hang(rx.clone(), started.clone()))
            .await
            .unwrap_err();
        assert_eq!(e, CallError::Timeout { deadline: SHORT });
        assert_eq!((exec.stuck(), exec.in_flight()), (1, 1));

        // kubelet's retry on the same volume waits for the stuck call and never starts another.
        for _ in 0..3 {
            let e = exec
                .run(vol1.clone(), SHORT, hang(rx.clone(), started.clone()))
                .await
                .unwrap_err();
            assert!(matches!(e, CallError::PreviousStuck { .. }), "{e}");
        }
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "a retry started a thread"
        );
        assert_eq!((exec.stuck(), exec.in_flight()), (1, 1));

        // Another kind of call on the same volume, and another volume, still proceed.
        let other = exec
            .run(
                CallKey::new("statvfs", "/kubelet/staging/vol-1"),
                SHORT,
                || 7,
            )
            .await;
        assert_eq!(other, Ok(7));
        let vol2 = exec
            .run(
                CallKey::new("mount", "/kubelet/staging/vol-2"),
                SHORT,
                || "ok",
            )
            .await;
        assert_eq!(vol2, Ok("ok"));

        // A second stuck volume takes the last slot; from then on nothing new starts.
        let vol3 = CallKey::new("mount", "/kubelet/staging/vol-3");
        let e = exec
            .run(vol3, SHORT, hang(rx.clone(), started.clone()))
            .await
            .unwrap_err();
        assert_eq!(e, CallError::Timeout { deadline: SHORT });
        assert_eq!((exec.stuck(), exec.in_flight()), (2, 2));
        let ran = Arc::new(AtomicU32::new(0));
        let r = ran.clone();
        let e = exec
            .run(
                CallKey::new("mount", "/kubelet/staging/vol-4"),
                SHORT,
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            CallError::Saturated {
                cap: 2,
                in_flight: 2,
                stuck: 2
            }
        );
        assert_eq!(ran.load(Ordering::SeqCst), 0, "ran past the cap");

        // Once the kernel answers, the slots, the gauge and the volume are free again.
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(5);
        while exec.stuck() > 0 || exec.in_flight() > 0 {
            assert!(Instant::now() < deadline, "stuck calls never released");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let again = exec.run(vol1, SHORT, || "fresh").await;
        assert_eq!(again, Ok("fresh"));
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_retry_waits_for_a_slow_call_on_its_target_and_then_runs() {
        let exec = Executor::new(4);
        let key = CallKey::new("read", "/sys/class/block/nvme0n1/size");
        let (e1, k1) = (exec.clone(), key.clone());
        let first = tokio::spawn(async move {
            e1.run(k1, Duration::from_secs(5), || {
                std::thread::sleep(Duration::from_millis(100));
                1
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = exec.run(key, Duration::from_secs(5), || 2).await;
        assert_eq!(second, Ok(2));
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(exec.stuck(), 0);
    }
}
