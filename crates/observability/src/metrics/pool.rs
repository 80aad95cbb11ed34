//! `rds_csi_pool_*`: how full each backend's storage pool is and how much of it this driver has
//! promised to volumes, so an operator is warned before `/disk add` starts failing with
//! "not enough space".
//!
//! A scrape never talks to the RDS: Prometheus may scrape every few seconds, from several
//! servers, and each RouterOS command costs an SSH session slot the CSI calls need. One task
//! refreshes a cache every [`REFRESH_INTERVAL`] instead, one backend at a time (so at most one
//! pool query per backend is ever in flight: refreshes are coalesced by construction), each
//! bounded by [`REFRESH_TIMEOUT`] on top of the client's own command deadlines. A refresh reuses
//! the backend's open SSH connection; it logs in again only when the connection was lost,
//! which the next CSI call would do anyway.
//!
//! Freshness: figures are at most one interval (plus one query) old while the RDS answers.
//! When refreshes fail, the last figures stay for [`STALE_AFTER`] and are then withdrawn (the
//! series disappear) rather than shown as if current; `rds_csi_pool_refresh_success` and the
//! failure counters say why.
//!
//! The figures come from the same `/disk print detail where mount-point=…` that GetCapacity
//! uses (size and free of the pool) plus the `pvc-` disk listing ListVolumes uses (the sizes
//! provisioned to this driver's volumes).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use rds::RdsError;
use routeros::Slot;
use tokio::task::JoinHandle;

use vocab::backend::{Backend, Backends};

/// Pools change as fast as volumes are created; a minute is well inside the hours it takes a
/// pool to fill, and costs the RDS two prints per backend per minute.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// One backend's whole refresh (listing plus one query per pool); the client's read timeout
/// bounds each command, this bounds the sum and a hung connect.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// Figures older than this are withdrawn: five missed refreshes means the RDS is not answering
/// and an alert should see "unknown", not a number from before the outage.
pub const STALE_AFTER: Duration = Duration::from_secs(300);

/// Why a refresh failed, as the `reason` label; every value is exported from the start so an
/// alert on `increase(…{reason="host_key_mismatch"}[…])` has a series to work with.
const REASONS: [&str; 5] = [
    "unreachable",
    "host_key_mismatch",
    "auth",
    "timeout",
    "routeros",
];

fn reason(e: &RdsError) -> usize {
    match e {
        RdsError::Connect { .. } | RdsError::Transport { .. } => 0,
        RdsError::HostKeyMismatch { .. } => 1,
        RdsError::Auth { .. } => 2,
        RdsError::Timeout { .. } => 3,
        _ => 4,
    }
}
const TIMEOUT: usize = 3;

/// One pool (RouterOS mount point) of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFigures {
    pub pool: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// Sum of the sizes of this driver's volumes (`pvc-` file disks) whose file is on the pool.
    pub provisioned_bytes: u64,
}

impl PoolFigures {
    pub fn used_bytes(&self) -> u64 {
        self.size_bytes.saturating_sub(self.free_bytes)
    }
    /// Provisioned / size: above 1 the driver promised more than the pool holds.
    pub fn overcommit_ratio(&self) -> f64 {
        if self.size_bytes == 0 {
            return 0.0;
        }
        self.provisioned_bytes as f64 / self.size_bytes as f64
    }
}

#[derive(Debug, Default)]
struct BackendState {
    figures: Vec<PoolFigures>,
    /// When `figures` were read (monotonic, for staleness).
    fetched_at: Option<Instant>,
    /// The same moment as Unix seconds, exported so dashboards can show the age.
    fetched_unix: f64,
    /// Whether the latest refresh succeeded (false before the first one ends).
    last_ok: bool,
    failures: [u64; REASONS.len()],
}

/// The cached figures of every backend, refreshed by [`PoolCache::spawn`].
pub struct PoolCache {
    backends: Arc<Backends>,
    stale_after: Duration,
    timeout: Duration,
    state: Mutex<BTreeMap<String, BackendState>>,
}

impl fmt::Debug for PoolCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCache")
            .field("backends", &self.backends.names())
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

impl PoolCache {
    /// `stale_after` and `timeout` are [`STALE_AFTER`] and [`REFRESH_TIMEOUT`] in production;
    /// tests shorten them.
    pub fn new(backends: Arc<Backends>, stale_after: Duration, timeout: Duration) -> Arc<Self> {
        let state = backends
            .names()
            .into_iter()
            .map(|n| (n, BackendState::default()))
            .collect();
        Arc::new(PoolCache {
            backends,
            stale_after,
            timeout,
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> MutexGuard<'_, BTreeMap<String, BackendState>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes every backend now, one after the other.
    pub async fn refresh(&self) {
        for backend in self.backends.all() {
            let result = tokio::time::timeout(self.timeout, read_backend(backend)).await;
            let mut state = self.state();
            let entry = state.entry(backend.name.clone()).or_default();
            match result {
                Ok(Ok(figures)) => {
                    entry.figures = figures;
                    entry.fetched_at = Some(Instant::now());
                    entry.fetched_unix = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0);
                    entry.last_ok = true;
                }
                Ok(Err(e)) => {
                    tracing::debug!(backend = %backend.name, error = %e, "pool figures not refreshed");
                    entry.failures[reason(&e)] += 1;
                    entry.last_ok = false;
                }
                Err(_) => {
                    tracing::debug!(backend = %backend.name, after = ?self.timeout, "pool figures refresh timed out");
                    entry.failures[TIMEOUT] += 1;
                    entry.last_ok = false;
                }
            }
        }
    }

    /// The figures of `backend` that are still fresh enough to export.
    pub fn figures(&self, backend: &str) -> Vec<PoolFigures> {
        let state = self.state();
        let Some(s) = state.get(backend) else {
            return Vec::new();
        };
        match s.fetched_at {
            Some(at) if at.elapsed() <= self.stale_after => s.figures.clone(),
            _ => Vec::new(),
        }
    }

    /// Refreshes at once and then every `interval` until the cache is dropped (the task holds
    /// only a weak reference, so it ends with the registry that owns the cache).
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let weak: Weak<PoolCache> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            // A slow RDS must not cause a burst of catch-up queries afterwards.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                cache.refresh().await;
            }
        })
    }
}

/// One listing of the driver's disks and one capacity query per pool the backend may place
/// volumes on (the first component of its allowed volume paths).
async fn read_backend(backend: &Backend) -> Result<Vec<PoolFigures>, RdsError> {
    let prefix = Slot::new("pvc-")?;
    let disks = backend.client.list_disks(&prefix).await?;
    let mut pools: Vec<_> = backend
        .allowed_paths
        .iter()
        .map(|p| p.mount_point())
        .collect();
    pools.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    pools.dedup_by(|a, b| a.as_str() == b.as_str());
    let mut out = Vec::with_capacity(pools.len());
    for mount in pools {
        let cap = backend.client.capacity(&mount).await?;
        let on_pool =
            |path: &str| path.trim_start_matches('/').split('/').next() == Some(mount.as_str());
        let provisioned_bytes = disks
            .iter()
            .filter(|d| d.kind.as_deref() == Some("file"))
            .filter(|d| d.file_path.as_deref().is_some_and(on_pool))
            .filter_map(|d| d.capacity_bytes())
            .sum();
        out.push(PoolFigures {
            pool: mount.as_str().to_string(),
            size_bytes: cap.total_bytes,
            free_bytes: cap.free_bytes,
            provisioned_bytes,
        });
    }
    Ok(out)
}

/// Encodes the cache on every scrape; never waits on the RDS.
#[derive(Debug)]
pub struct PoolCollector {
    cache: Arc<PoolCache>,
}

impl PoolCollector {
    pub fn new(cache: Arc<PoolCache>) -> Self {
        PoolCollector { cache }
    }
}

type Figure = fn(&PoolFigures) -> f64;

/// Per pool (name without prefix, help, value).
const FIGURES: [(&str, &str, Figure); 5] = [
    (
        "pool_size_bytes",
        "Size of the RDS storage pool the backend places volumes on",
        |f| f.size_bytes as f64,
    ),
    (
        "pool_used_bytes",
        "Bytes in use on the pool (size minus free), by anything, not only this driver",
        |f| f.used_bytes() as f64,
    ),
    (
        "pool_free_bytes",
        "Free bytes on the pool, as GetCapacity reports them",
        |f| f.free_bytes as f64,
    ),
    (
        "pool_provisioned_bytes",
        "Sum of the sizes of this driver's volumes (pvc- file disks) on the pool",
        |f| f.provisioned_bytes as f64,
    ),
    (
        "pool_overcommit_ratio",
        "Provisioned bytes divided by the pool size (above 1: more promised than the pool holds)",
        PoolFigures::overcommit_ratio,
    ),
];

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let names = self.cache.backends.names();
        let figures: Vec<(String, Vec<PoolFigures>)> = names
            .iter()
            .map(|n| (n.clone(), self.cache.figures(n)))
            .collect();
        for (name, help, value) in FIGURES {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
            for (backend, pools) in &figures {
                for f in pools {
                    let labels = [("backend", backend.as_str()), ("pool", f.pool.as_str())];
                    ConstGauge::new(value(f)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let state: Vec<(String, bool, f64, [u64; REASONS.len()])> = {
            let s = self.cache.state();
            s.iter()
                .map(|(n, b)| (n.clone(), b.last_ok, b.fetched_unix, b.failures))
                .collect()
        };
        let mut family = encoder.encode_descriptor(
            "pool_refresh_success",
            "1 if the latest refresh of the backend's pool figures succeeded, else 0",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (backend, ok, _, _) in &state {
            ConstGauge::new(i64::from(*ok))
                .encode(family.encode_family(&[("backend", backend.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "pool_refresh_timestamp_seconds",
            "Unix time the backend's pool figures were last read successfully (0: never)",
            None,
            ConstGauge::new(0.0).metric_type(),
        )?;
        for (backend, _, at, _) in &state {
            ConstGauge::new(*at).encode(family.encode_family(&[("backend", backend.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "pool_refresh_failures",
            "Refreshes of the pool figures that failed, by reason (unreachable, host_key_mismatch, auth, timeout, routeros)",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (backend, _, _, failures) in &state {
            for (reason, n) in REASONS.iter().zip(failures) {
                let labels = [("backend", backend.as_str()), ("reason", *reason)];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_and_overcommit_follow_size_free_and_provisioned() {
        let f = PoolFigures {
            pool: "storage-pool".into(),
            size_bytes: 1000,
            free_bytes: 150,
            provisioned_bytes: 1500,
        };
        assert_eq!(f.used_bytes(), 850);
        assert!((f.overcommit_ratio() - 1.5).abs() < 1e-9);
        let empty = PoolFigures { size_bytes: 0, ..f };
        assert_eq!(empty.overcommit_ratio(), 0.0);
    }

    #[test]
    fn refresh_errors_map_to_their_reason_labels() {
        let mismatch = RdsError::HostKeyMismatch {
            addr: "a".into(),
            expected: "x".into(),
            got: "y".into(),
        };
        assert_eq!(REASONS[reason(&mismatch)], "host_key_mismatch");
        let connect = RdsError::Connect {
            addr: "a".into(),
            reason: "refused".into(),
        };
        assert_eq!(REASONS[reason(&connect)], "unreachable");
        let timeout = RdsError::Timeout {
            verb: "disk-print",
            after: Duration::from_secs(1),
        };
        assert_eq!(REASONS[reason(&timeout)], "timeout");
        assert_eq!(REASONS[reason(&RdsError::Verify("x".into()))], "routeros");
    }
}
