//! The KubeVirt VMI grouper: publishes of volumes that belong to one VirtualMachineInstance run
//! one at a time (the opt-in `--enable-vmi-serialization`).
//!
//! KubeVirt's hotplug path raced when several volumes of one VM were attached at once and the VM
//! paused; serializing per VMI removes the race while volumes of different VMs stay parallel.
//!
//! The grouper only ever *adds* waiting, never failure: a PVC it cannot map to a VMI (no pod, not
//! a VM disk, API error, RBAC missing, lookup too slow) is published without serialization, and
//! a publish that waited `max_wait` for its VMI's lock goes ahead unserialized. Fencing (which
//! fails closed) is what keeps volumes safe; this only smooths KubeVirt's attach sequence.
//!
//! PVC → VMI answers (positive and negative) are cached for `cache_ttl` so a VM with many disks
//! lists its namespace's pods once, not per disk. Errors are not cached (the next publish tries
//! again), except `Forbidden`: missing RBAC does not heal by itself and would otherwise cost an
//! API call and a warning on every publish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tracing::{debug, warn};

use super::clock::{Clock, SystemClock};
use super::cluster::{Cluster, ClusterError};
use super::serialize::{PublishSerializer, SerialGuard};
use super::vmi::{VmiLookup, vmi_of_pvc};

pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct VmiGrouperConfig {
    /// How long a PVC → VMI answer is trusted; zero means the default (60 s).
    pub cache_ttl: Duration,
    /// Bound on one resolution (listing pods, or reading the PV for its claim); past it the
    /// publish goes ahead unserialized.
    pub lookup_timeout: Duration,
    /// Bound on waiting for another publish of the same VMI; past it this publish goes ahead
    /// unserialized rather than risk the CSI call's own deadline.
    pub max_wait: Duration,
}

impl Default for VmiGrouperConfig {
    fn default() -> Self {
        VmiGrouperConfig {
            cache_ttl: DEFAULT_CACHE_TTL,
            lookup_timeout: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// What the grouper did, for tests and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmiGrouperStats {
    /// Publishes that took a VMI lock.
    pub serialized: u64,
    /// Publishes whose PVC belongs to no VMI (or has no PVC): not serialized.
    pub unresolved: u64,
    /// Lookups that failed or timed out: not serialized.
    pub lookup_errors: u64,
    /// Publishes that gave up waiting for their VMI's lock after `max_wait`.
    pub wait_timeouts: u64,
    /// Answers served from the cache.
    pub cache_hits: u64,
}

#[derive(Default)]
struct Counters {
    serialized: AtomicU64,
    unresolved: AtomicU64,
    lookup_errors: AtomicU64,
    wait_timeouts: AtomicU64,
    cache_hits: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One cached answer and when it was learnt.
#[derive(Debug, Clone)]
struct Cached<T> {
    value: T,
    at: SystemTime,
}

/// A TTL map; expired entries are swept during inserts, at most once per TTL.
struct TtlCache<T> {
    entries: HashMap<String, Cached<T>>,
    last_sweep: Option<SystemTime>,
}

impl<T: Clone> TtlCache<T> {
    fn new() -> Self {
        TtlCache {
            entries: HashMap::new(),
            last_sweep: None,
        }
    }

    fn get(&self, key: &str, now: SystemTime, ttl: Duration) -> Option<T> {
        self.entries
            .get(key)
            .filter(|c| fresh(c.at, now, ttl))
            .map(|c| c.value.clone())
    }

    fn insert(&mut self, key: String, value: T, now: SystemTime, ttl: Duration) {
        if self.last_sweep.is_none_or(|at| !fresh(at, now, ttl)) {
            self.entries.retain(|_, c| fresh(c.at, now, ttl));
            self.last_sweep = Some(now);
        }
        self.entries.insert(key, Cached { value, at: now });
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A clock that went backwards makes an entry stale rather than immortal.
fn fresh(at: SystemTime, now: SystemTime, ttl: Duration) -> bool {
    now.duration_since(at).is_ok_and(|age| age < ttl)
}

/// A VMI's lock and how many publishes hold or wait for it.
type LockEntry = (Arc<AsyncMutex<()>>, usize);

/// One async lock per VMI; an entry lives while someone holds or waits for it.
#[derive(Default)]
struct VmiLocks {
    map: Mutex<HashMap<String, LockEntry>>,
}

/// A claim on a VMI's entry (holding or waiting); releasing the last one removes the entry.
struct Slot {
    locks: Arc<VmiLocks>,
    key: String,
    mutex: Arc<AsyncMutex<()>>,
}

impl VmiLocks {
    fn slot(self: &Arc<Self>, key: &str) -> Slot {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(key.to_string()).or_default();
        entry.1 += 1;
        Slot {
            locks: Arc::clone(self),
            key: key.to_string(),
            mutex: Arc::clone(&entry.0),
        }
    }

    fn users(&self, key: &str) -> usize {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map_or(0, |e| e.1)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&self.key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Held for the rest of a publish. Field order matters: the mutex guard is released before the
/// slot gives up the map entry.
struct VmiGuard {
    _held: OwnedMutexGuard<()>,
    _slot: Slot,
}

pub struct VmiGrouper {
    lookup: Arc<dyn VmiLookup>,
    /// Reads the PV's claimRef when the volume_context does not name the PVC.
    claims: Option<Arc<dyn Cluster>>,
    clock: Arc<dyn Clock>,
    config: VmiGrouperConfig,
    /// `ns/pvc` → VMI name (`None`: not a VM disk).
    vmis: Mutex<TtlCache<Option<String>>>,
    /// Volume id → (namespace, PVC) from the PV, when the volume_context lacked it.
    pvcs: Mutex<TtlCache<Option<(String, String)>>>,
    locks: Arc<VmiLocks>,
    counters: Counters,
}

impl VmiGrouper {
    pub fn new(lookup: Arc<dyn VmiLookup>, config: VmiGrouperConfig) -> Self {
        let mut config = config;
        if config.cache_ttl.is_zero() {
            config.cache_ttl = DEFAULT_CACHE_TTL;
        }
        VmiGrouper {
            lookup,
            claims: None,
            clock: Arc::new(SystemClock),
            config,
            vmis: Mutex::new(TtlCache::new()),
            pvcs: Mutex::new(TtlCache::new()),
            locks: Arc::new(VmiLocks::default()),
            counters: Counters::default(),
        }
    }

    /// Lets volumes whose volume_context lacks the PVC keys (statically provisioned PVs) be
    /// grouped too, through the PV's claimRef.
    pub fn with_claim_lookup(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.claims = Some(cluster);
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &VmiGrouperConfig {
        &self.config
    }

    pub fn stats(&self) -> VmiGrouperStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VmiGrouperStats {
            serialized: get(&c.serialized),
            unresolved: get(&c.unresolved),
            lookup_errors: get(&c.lookup_errors),
            wait_timeouts: get(&c.wait_timeouts),
            cache_hits: get(&c.cache_hits),
        }
    }

    /// Publishes holding or waiting for the lock of VMI `name` in `namespace`; lets tests see a
    /// publish queued behind another without timing it.
    pub fn users(&self, namespace: &str, name: &str) -> usize {
        self.locks.users(&lock_key(namespace, name))
    }

    /// Cached PVC → VMI answers (fresh or not yet swept).
    pub fn cached(&self) -> usize {
        self.vmis.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The VMI using PVC `namespace/pvc`, `None` when there is none or it cannot be told.
    pub async fn vmi_of(&self, namespace: &str, pvc: &str) -> Option<String> {
        let key = format!("{namespace}/{pvc}");
        let ttl = self.config.cache_ttl;
        let now = self.clock.now();
        let cached = self
            .vmis
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key, now, ttl);
        if let Some(hit) = cached {
            bump(&self.counters.cache_hits);
            return hit;
        }
        let listed = self
            .bounded(
                &format!("listing the pods of namespace {namespace}"),
                self.lookup.pods_in_namespace(namespace),
            )
            .await;
        let answer = match listed {
            Ok(pods) => vmi_of_pvc(&pods, pvc),
            Err(e @ ClusterError::Forbidden(_)) => {
                bump(&self.counters.lookup_errors);
                warn!(pvc = %key, error = %e, ttl = ?ttl, "cannot tell which KubeVirt VM uses this PVC: the controller may not list pods (apply deploy/kubernetes/rbac/kubevirt); publishing without VM serialization and not asking again for the cache TTL");
                None
            }
            Err(e) => {
                bump(&self.counters.lookup_errors);
                warn!(pvc = %key, error = %e, "cannot tell which KubeVirt VM uses this PVC; publishing it without VM serialization");
                return None;
            }
        };
        debug!(pvc = %key, vmi = ?answer, "resolved the VM of a PVC");
        self.vmis.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            answer.clone(),
            self.clock.now(),
            ttl,
        );
        answer
    }

    /// The PVC of `volume_id`, from the PV's claimRef (cached like VMI answers).
    async fn pvc_of_volume(&self, volume_id: &str) -> Option<(String, String)> {
        let cluster = self.claims.as_ref()?;
        let ttl = self.config.cache_ttl;
        let cached = self.pvcs.lock().unwrap_or_else(|p| p.into_inner()).get(
            volume_id,
            self.clock.now(),
            ttl,
        );
        if let Some(hit) = cached {
            bump(&self.counters.cache_hits);
            return hit;
        }
        let found = self
            .bounded(
                &format!("reading the PersistentVolume of volume {volume_id}"),
                cluster.pv_by_handle(volume_id),
            )
            .await;
        match found {
            Ok(pv) => {
                let claim = pv.and_then(|pv| pv.claim);
                self.pvcs.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    volume_id.to_string(),
                    claim.clone(),
                    self.clock.now(),
                    ttl,
                );
                claim
            }
            Err(e) => {
                bump(&self.counters.lookup_errors);
                warn!(volume = volume_id, error = %e, "cannot read the PVC of this volume; publishing it without VM serialization");
                None
            }
        }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        let deadline = self.config.lookup_timeout;
        tokio::time::timeout(deadline, request)
            .await
            .unwrap_or_else(|_| {
                Err(ClusterError::Unavailable(format!(
                    "{what}: no answer within {deadline:?}"
                )))
            })
    }
}

fn lock_key(namespace: &str, vmi: &str) -> String {
    format!("{namespace}/{vmi}")
}

#[async_trait::async_trait]
impl PublishSerializer for VmiGrouper {
    async fn enter(&self, volume_id: &str, pvc: Option<&(String, String)>) -> Option<SerialGuard> {
        let pvc = match pvc {
            Some(p) => Some(p.clone()),
            None => self.pvc_of_volume(volume_id).await,
        };
        let Some((namespace, claim)) = pvc else {
            bump(&self.counters.unresolved);
            debug!(
                volume = volume_id,
                "no PVC known for this volume; not serialized"
            );
            return None;
        };
        let Some(vmi) = self.vmi_of(&namespace, &claim).await else {
            bump(&self.counters.unresolved);
            return None;
        };
        let key = lock_key(&namespace, &vmi);
        let slot = self.locks.slot(&key);
        let waiting = Arc::clone(&slot.mutex).lock_owned();
        match tokio::time::timeout(self.config.max_wait, waiting).await {
            Ok(held) => {
                bump(&self.counters.serialized);
                debug!(volume = volume_id, vmi = %key, "publish serialized with the other volumes of its VM");
                Some(Box::new(VmiGuard {
                    _held: held,
                    _slot: slot,
                }))
            }
            Err(_) => {
                bump(&self.counters.wait_timeouts);
                warn!(volume = volume_id, vmi = %key, waited = ?self.config.max_wait,
                    "another publish of this VM held its lock too long; publishing without VM serialization");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fencing::MemoryCluster;
    use crate::fencing::clock::ManualClock;
    use crate::fencing::vmi::MemoryVmiLookup;

    fn pvc(ns: &str, name: &str) -> (String, String) {
        (ns.to_string(), name.to_string())
    }

    fn world() -> (Arc<MemoryVmiLookup>, Arc<ManualClock>, Arc<VmiGrouper>) {
        let lookup = Arc::new(MemoryVmiLookup::new());
        lookup.add_pod(
            "vms",
            MemoryVmiLookup::virt_launcher("virt-launcher-vm1-aaaaa", "vm1", &["vm1-root"]),
        );
        lookup.add_pod(
            "vms",
            MemoryVmiLookup::hotplug("hp-volume-bbbbb", "virt-launcher-vm1-aaaaa", &["vm1-hot"]),
        );
        lookup.add_pod(
            "vms",
            MemoryVmiLookup::virt_launcher("virt-launcher-vm2-ccccc", "vm2", &["vm2-root"]),
        );
        let clock = Arc::new(ManualClock::default());
        let grouper = Arc::new(
            VmiGrouper::new(lookup.clone(), VmiGrouperConfig::default()).with_clock(clock.clone()),
        );
        (lookup, clock, grouper)
    }

    /// Bounds a step that must not block; a hang fails the test instead of wedging it.
    async fn promptly<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .unwrap()
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if check() {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("gave up waiting for {what}");
    }

    #[tokio::test]
    async fn two_volumes_of_one_vmi_run_one_at_a_time() {
        let (_, _, g) = world();
        let first = promptly(g.enter("v-root", Some(&pvc("vms", "vm1-root")))).await;
        assert!(first.is_some(), "a VM disk is serialized");
        let second = tokio::spawn({
            let g = g.clone();
            async move {
                let guard = g.enter("v-hot", Some(&pvc("vms", "vm1-hot"))).await;
                guard.is_some()
            }
        });
        until(
            "the hotplugged volume to queue behind the root disk",
            || g.users("vms", "vm1") == 2,
        )
        .await;
        assert!(
            !second.is_finished(),
            "the second publish must wait while the first holds the VM"
        );
        drop(first);
        assert!(promptly(second).await.unwrap(), "then it is serialized too");
        assert_eq!(g.users("vms", "vm1"), 0, "the lock entry is reclaimed");
        assert_eq!(g.stats().serialized, 2);
    }

    #[tokio::test]
    async fn volumes_of_two_vmis_run_in_parallel() {
        let (_, _, g) = world();
        let one = promptly(g.enter("v1", Some(&pvc("vms", "vm1-root")))).await;
        let two = promptly(g.enter("v2", Some(&pvc("vms", "vm2-root")))).await;
        assert!(one.is_some() && two.is_some());
        assert_eq!(g.users("vms", "vm1"), 1);
        assert_eq!(g.users("vms", "vm2"), 1);
    }

    #[tokio::test]
    async fn an_unknown_pvc_or_none_at_all_is_not_serialized() {
        let (_, _, g) = world();
        let a = promptly(g.enter("v1", Some(&pvc("vms", "not-a-vm-disk")))).await;
        let b = promptly(g.enter("v2", Some(&pvc("vms", "not-a-vm-disk")))).await;
        assert!(a.is_none() && b.is_none());
        let c = promptly(g.enter("v3", None)).await;
        assert!(
            c.is_none(),
            "no PVC and no claim lookup: nothing to group by"
        );
        assert_eq!(g.stats().unresolved, 3);
        assert_eq!(g.stats().serialized, 0);
    }

    #[tokio::test]
    async fn a_lookup_error_is_not_serialized_and_not_remembered() {
        let (lookup, _, g) = world();
        lookup.fail_with(Some(ClusterError::Unavailable("apiserver down".into())));
        let guard = promptly(g.enter("v1", Some(&pvc("vms", "vm1-root")))).await;
        assert!(guard.is_none());
        assert_eq!(g.stats().lookup_errors, 1);
        lookup.fail_with(None);
        let guard = promptly(g.enter("v1", Some(&pvc("vms", "vm1-root")))).await;
        assert!(
            guard.is_some(),
            "the next publish asks again and serializes"
        );
        assert_eq!(lookup.calls(), 2);
    }

    #[tokio::test]
    async fn forbidden_is_remembered_for_the_ttl_so_missing_rbac_is_not_retried_per_publish() {
        let (lookup, clock, g) = world();
        lookup.fail_with(Some(ClusterError::Forbidden("pods is forbidden".into())));
        assert!(g.vmi_of("vms", "vm1-root").await.is_none());
        assert!(g.vmi_of("vms", "vm1-root").await.is_none());
        assert_eq!(lookup.calls(), 1);
        lookup.fail_with(None);
        clock.advance(DEFAULT_CACHE_TTL);
        assert_eq!(g.vmi_of("vms", "vm1-root").await.as_deref(), Some("vm1"));
    }

    #[tokio::test]
    async fn answers_are_cached_until_the_ttl_expires() {
        let (lookup, clock, g) = world();
        assert_eq!(g.vmi_of("vms", "vm1-root").await.as_deref(), Some("vm1"));
        assert_eq!(g.vmi_of("vms", "web").await, None);
        assert_eq!(lookup.calls(), 2);
        // The VM goes away; within the TTL the old answers stand (negative ones too).
        lookup.remove_pod("vms", "virt-launcher-vm1-aaaaa");
        lookup.add_pod(
            "vms",
            MemoryVmiLookup::virt_launcher("virt-launcher-vm3", "vm3", &["web"]),
        );
        clock.advance(DEFAULT_CACHE_TTL - Duration::from_secs(1));
        assert_eq!(g.vmi_of("vms", "vm1-root").await.as_deref(), Some("vm1"));
        assert_eq!(g.vmi_of("vms", "web").await, None);
        assert_eq!(lookup.calls(), 2);
        assert_eq!(g.stats().cache_hits, 2);
        clock.advance(Duration::from_secs(1));
        assert_eq!(g.vmi_of("vms", "vm1-root").await, None);
        assert_eq!(g.vmi_of("vms", "web").await.as_deref(), Some("vm3"));
        assert_eq!(lookup.calls(), 4);
    }

    #[tokio::test]
    async fn expired_entries_are_swept_on_insert() {
        let (_, clock, g) = world();
        g.vmi_of("vms", "a").await;
        g.vmi_of("vms", "b").await;
        assert_eq!(g.cached(), 2);
        clock.advance(DEFAULT_CACHE_TTL * 2);
        g.vmi_of("vms", "c").await;
        assert_eq!(g.cached(), 1, "a and b expired and were swept");
    }

    #[tokio::test]
    async fn a_zero_ttl_means_the_default() {
        let g = VmiGrouper::new(
            Arc::new(MemoryVmiLookup::new()),
            VmiGrouperConfig {
                cache_ttl: Duration::ZERO,
                ..VmiGrouperConfig::default()
            },
        );
        assert_eq!(g.config().cache_ttl, DEFAULT_CACHE_TTL);
    }

    #[tokio::test]
    async fn without_volume_context_the_pvs_claim_ref_names_the_pvc() {
        let (lookup, _, g) = world();
        let cluster = Arc::new(MemoryCluster::new());
        cluster.add_pv("pv-root", "default:pvc-root", Some(("vms", "vm1-root")));
        let g = Arc::into_inner(g)
            .unwrap()
            .with_claim_lookup(cluster.clone());
        let guard = promptly(g.enter("default:pvc-root", None)).await;
        assert!(guard.is_some(), "grouped through the claimRef");
        assert_eq!(g.users("vms", "vm1"), 1);
        drop(guard);
        assert!(
            promptly(g.enter("default:pvc-unknown", None))
                .await
                .is_none()
        );
        assert_eq!(lookup.calls(), 1);
    }

    #[tokio::test]
    async fn a_hung_lookup_or_a_stuck_holder_never_blocks_the_publish() {
        use crate::fencing::vmi::PodInfo;
        struct Hung;
        #[async_trait::async_trait]
        impl VmiLookup for Hung {
            async fn pods_in_namespace(&self, _: &str) -> Result<Vec<PodInfo>, ClusterError> {
                std::future::pending().await
            }
        }
        // Short bounds so the test is quick; what is asserted is the outcome, not the time.
        let short = VmiGrouperConfig {
            lookup_timeout: Duration::from_millis(20),
            max_wait: Duration::from_millis(20),
            ..VmiGrouperConfig::default()
        };
        let g = VmiGrouper::new(Arc::new(Hung), short.clone());
        assert!(
            promptly(g.enter("v", Some(&pvc("vms", "x"))))
                .await
                .is_none()
        );
        assert_eq!(g.stats().lookup_errors, 1);

        let lookup = Arc::new(MemoryVmiLookup::new());
        lookup.add_pod(
            "vms",
            MemoryVmiLookup::virt_launcher("virt-launcher-vm1", "vm1", &["vm1-root", "vm1-hot"]),
        );
        let g = VmiGrouper::new(lookup, short);
        let held = promptly(g.enter("v1", Some(&pvc("vms", "vm1-root")))).await;
        assert!(held.is_some());
        let late = promptly(g.enter("v2", Some(&pvc("vms", "vm1-hot")))).await;
        assert!(
            late.is_none(),
            "gave up waiting and went ahead unserialized"
        );
        assert_eq!(g.stats().wait_timeouts, 1);
        assert_eq!(g.users("vms", "vm1"), 1, "the waiter's claim is released");
    }
}
