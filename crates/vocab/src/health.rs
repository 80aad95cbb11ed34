//! RDS reachability as the health surfaces (Probe, `/readyz`, metrics) see it.
//!
//! Every check logs in to each RDS, so whoever may ask for health (kubelet, a scraper, anyone
//! who reaches the HTTP port) must not decide how often that happens: one check runs at a
//! time, every concurrent caller shares its result, and a result (success or failure) is reused
//! for [`FRESHNESS`]. However many requests arrive, the RDS sees at most one health login per
//! backend per freshness period.
//!
//! Reachability is reported, never a gate: operations that need no RDS (ControllerUnpublish,
//! Probe itself) must keep working while it is down, so callers show the report and go on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::backend::Backends;

/// How long one check's result stands for every caller. Bounds the logins health causes.
pub const FRESHNESS: Duration = Duration::from_secs(10);

/// One backend's state as the last check saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    pub name: String,
    /// `None` when it answered; otherwise why not (may name the address or a key fingerprint).
    pub error: Option<String>,
}

/// The result of one check.
#[derive(Debug, Clone)]
pub struct Report {
    pub checked_at: Instant,
    pub backends: Vec<BackendHealth>,
}

impl Report {
    pub fn all_reachable(&self) -> bool {
        self.backends.iter().all(|b| b.error.is_none())
    }

    /// The backends that did not answer, with why.
    pub fn unreachable(&self) -> impl Iterator<Item = (&str, &str)> {
        self.backends
            .iter()
            .filter_map(|b| b.error.as_deref().map(|e| (b.name.as_str(), e)))
    }
}

/// Told when a backend becomes unreachable (`Some(reason)`) or reachable again (`None`).
pub type ChangeObserver = Arc<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// Coalesced, rate-limited reachability checks of every configured backend.
pub struct RdsHealth {
    backends: Arc<Backends>,
    /// Deadline of one backend's ping.
    limit: Duration,
    freshness: Duration,
    /// Held while a check runs: callers that arrive meanwhile wait for its result.
    turn: tokio::sync::Mutex<()>,
    last: Mutex<Option<Report>>,
    checks: AtomicU64,
    observer: Mutex<Option<ChangeObserver>>,
}

impl RdsHealth {
    pub fn new(backends: Arc<Backends>, limit: Duration) -> Arc<RdsHealth> {
        Self::with_freshness(backends, limit, FRESHNESS)
    }

    pub fn with_freshness(
        backends: Arc<Backends>,
        limit: Duration,
        freshness: Duration,
    ) -> Arc<RdsHealth> {
        Arc::new(RdsHealth {
            backends,
            limit,
            freshness,
            turn: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
            checks: AtomicU64::new(0),
            observer: Mutex::new(None),
        })
    }

    /// Installs the observer of reachability changes (Kubernetes events); the first check's
    /// unreachable backends count as changes.
    pub fn set_observer(&self, observer: ChangeObserver) {
        *self.observer.lock().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    /// The last result, however old (`None` before the first check finished).
    pub fn last(&self) -> Option<Report> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks run so far (each pinged every backend once).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    pub fn freshness(&self) -> Duration {
        self.freshness
    }

    fn fresh(&self) -> Option<Report> {
        self.last()
            .filter(|r| r.checked_at.elapsed() < self.freshness)
    }

    /// A result no older than the freshness period: the cached one, the one a concurrent caller
    /// is waiting for, or a new check. The check runs in its own task, so a caller that gives
    /// up (an HTTP client that disconnects) cannot cancel it and make the next caller start over.
    pub async fn check(self: &Arc<Self>) -> Report {
        if let Some(r) = self.fresh() {
            return r;
        }
        let _turn = self.turn.lock().await;
        if let Some(r) = self.fresh() {
            return r;
        }
        let me = Arc::clone(self);
        let report = match tokio::spawn(async move { me.ping_all().await }).await {
            Ok(r) => r,
            Err(e) => Report {
                checked_at: Instant::now(),
                backends: vec![BackendHealth {
                    name: "*".into(),
                    error: Some(format!("health check task failed: {e}")),
                }],
            },
        };
        self.record(report.clone());
        report
    }

    /// Starts a check unless a fresh result exists or one is running; never waits.
    pub fn refresh_in_background(self: &Arc<Self>) {
        if self.fresh().is_some() || self.turn.try_lock().is_err() {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.check().await;
        });
    }

    fn record(&self, report: Report) {
        let mut changes = Vec::new();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for b in &report.backends {
            let before = last
                .as_ref()
                .and_then(|r| r.backends.iter().find(|o| o.name == b.name))
                .map(|o| o.error.is_none());
            match (&b.error, before) {
                (None, Some(false)) => {
                    info!(backend = %b.name, "RDS reachable again");
                    changes.push((b.name.clone(), None));
                }
                (Some(e), Some(true) | None) => {
                    warn!(backend = %b.name, error = %e, "RDS not reachable; operations that need it fail until it answers, the rest go on");
                    changes.push((b.name.clone(), Some(e.clone())));
                }
                _ => {}
            }
        }
        *last = Some(report);
        drop(last);
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(observer) = observer {
            for (name, error) in &changes {
                observer(name, error.as_deref());
            }
        }
    }

    async fn ping_all(&self) -> Report {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let limit = self.limit;
        let mut pings = tokio::task::JoinSet::new();
        for b in self.backends.all() {
            let b = Arc::clone(b);
            pings.spawn(async move {
                if b.insecure {
                    warn!(backend = %b.name, target = %b.target, "SSH host key verification is DISABLED for this backend (--rds-insecure-skip-verify); anyone on the path can impersonate the RDS");
                }
                let error = match tokio::time::timeout(limit, b.client.ping()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {limit:?}")),
                };
                BackendHealth {
                    name: b.name.clone(),
                    error,
                }
            });
        }
        let mut backends = Vec::new();
        while let Some(r) = pings.join_next().await {
            match r {
                Ok(h) => backends.push(h),
                Err(e) => backends.push(BackendHealth {
                    name: "*".into(),
                    error: Some(format!("ping task failed: {e}")),
                }),
            }
        }
        backends.sort_by(|a, b| a.name.cmp(&b.name));
        Report {
            checked_at: Instant::now(),
            backends,
        }
    }
}
