//! Controller leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Two controller replicas may run; only the Lease holder serves ControllerPublish/Unpublish and
//! runs the reconcilers, because the attachment fences live in one process's memory and two
//! writers deciding on two copies could attach a single-node volume to two nodes. Volume
//! creation, deletion and expansion do not need the Lease: they are idempotent and the
//! external-provisioner/resizer sidecars already elect their own leader.
//!
//! Expiry is judged by *local observation*, as client-go does: a foreign Lease is expired once
//! this process has seen no change to it for its whole duration. Comparing `renewTime` with the
//! local clock would make failover depend on clock skew between nodes.
//!
//! Safety margin: a leader that cannot renew for `renew_deadline` steps down, and
//! `renew_deadline < lease_duration`, so it has stopped serving before any follower may take
//! over. Writes carry the observed `resourceVersion`, so two candidates racing for an expired
//! Lease cannot both win (the loser gets 409).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::Api;
use ::kube::api::{ObjectMeta, PostParams};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::api_errors::bounded;
use fencing::cluster::ClusterError;
use vocab::error::{DriverError, Result};

/// Timings and names of one election.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per process: a restarted process must not mistake its predecessor's Lease for
    /// its own while that predecessor might still be alive.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// Deadline of each API request (also bounded by `renew_deadline`).
    pub api_timeout: Duration,
}

impl LeaderConfig {
    /// Rejects timings under which a stepped-down leader could still serve while a follower
    /// already leads.
    pub fn validate(&self) -> Result<()> {
        if self.retry_period.is_zero() {
            return Err(DriverError::Config(
                "leader election: the retry period must be positive".into(),
            ));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(DriverError::Config(format!(
                "leader election: the renew deadline ({:?}) must be longer than the retry period ({:?}), or one slow renewal loses the lease",
                self.renew_deadline, self.retry_period
            )));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(DriverError::Config(format!(
                "leader election: the lease duration ({:?}) must be longer than the renew deadline ({:?}), or a follower could lead before the old leader stops",
                self.lease_duration, self.renew_deadline
            )));
        }
        if self.identity.is_empty() || self.namespace.is_empty() || self.lease_name.is_empty() {
            return Err(DriverError::Config(
                "leader election: identity, namespace and lease name must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// The Lease name for a driver: one election per driver name, so two drivers (or two test runs)
/// in one namespace never share a Lease.
pub fn lease_name(driver_name: &str) -> String {
    let cleaned: String = driver_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("rds-csi-{}", cleaned.trim_matches('-'))
}

/// `<pod or host>_<random>`: the pod name says where the leader runs; the suffix keeps two
/// processes on one host (or a restart racing its predecessor) distinct.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rds-csi".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}_{}", &suffix[..8])
}

/// What one election round does with an existing Lease (a missing one is simply created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Released or expired: take it over (with the read resourceVersion).
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Someone else holds it and it is alive.
    Follow { holder: String },
}

pub(crate) fn decide(holder: Option<&str>, me: &str, expired: bool) -> Step {
    match holder.filter(|h| !h.is_empty()) {
        None => Step::Acquire,
        Some(h) if h == me => Step::Renew,
        Some(_) if expired => Step::Acquire,
        Some(h) => Step::Follow {
            holder: h.to_string(),
        },
    }
}

/// When the Lease was last seen to change, by this process's monotonic clock.
#[derive(Debug, Default)]
pub(crate) struct Observation {
    record: Option<String>,
    since: Option<Instant>,
}

impl Observation {
    /// Records the Lease's `record` (holder + renew time); a changed record restarts the clock.
    pub(crate) fn observe(&mut self, record: String, now: Instant) {
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.since = Some(now);
        }
    }

    pub(crate) fn expired(&self, now: Instant, duration: Duration) -> bool {
        self.since
            .is_some_and(|since| now.saturating_duration_since(since) >= duration)
    }
}

/// Runs the election until `stop`; `subscribe` tells who leads.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    leading: watch::Sender<bool>,
    /// Bumped each time leadership is gained, so state built in an earlier term (before a loss
    /// the watch may have coalesced away) is never taken as current.
    term: AtomicU64,
    holder: Mutex<Option<String>>,
    observed: Mutex<Observation>,
}

impl LeaderElector {
    pub fn new(client: ::kube::Client, config: LeaderConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let (leading, _) = watch::channel(false);
        Ok(Arc::new(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            leading,
            term: AtomicU64::new(0),
            holder: Mutex::new(None),
            observed: Mutex::new(Observation::default()),
        }))
    }

    /// "Am I the leader", updated the moment leadership is gained or lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// The holder last read from the Lease (for "the leader is …" in refusals).
    pub fn holder(&self) -> Option<String> {
        self.holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts the election loop. When `stop` turns true the loop ends and, if leading, releases
    /// the Lease so a follower takes over at its next retry instead of after expiry.
    pub fn spawn(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            info!(identity = %me.config.identity, namespace = %me.config.namespace, lease = %me.config.lease_name, "leader election started");
            let mut last_renew: Option<Instant> = None;
            loop {
                if *stop.borrow() {
                    break;
                }
                let round =
                    tokio::time::timeout(me.call_deadline(), me.try_acquire_or_renew()).await;
                let round = round.unwrap_or_else(|_| {
                    Err(ClusterError::Unavailable(format!(
                        "leader election round: no answer within {:?}",
                        me.call_deadline()
                    )))
                });
                match round {
                    Ok(true) => {
                        last_renew = Some(Instant::now());
                        me.set_leading(true);
                    }
                    Ok(false) => {
                        last_renew = None;
                        me.set_leading(false);
                    }
                    Err(e) => {
                        let overdue =
                            last_renew.is_none_or(|t| t.elapsed() >= me.config.renew_deadline);
                        if me.is_leader() && overdue {
                            error!(error = %e, deadline = ?me.config.renew_deadline, "could not renew the leader Lease within the renew deadline; stepping down");
                            last_renew = None;
                            me.set_leading(false);
                        } else {
                            warn!(error = %e, "leader election round failed; retrying");
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(me.config.retry_period) => {}
                    _ = stop.changed() => {}
                }
            }
            if me.is_leader() {
                me.set_leading(false);
                me.release().await;
            }
        })
    }

    fn call_deadline(&self) -> Duration {
        self.config.api_timeout.min(self.config.renew_deadline)
    }

    /// The current leadership term (0 before the first); meaningful while `is_leader`.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    fn set_leading(&self, leading: bool) {
        // Only the election task calls this, so reading then sending does not race; the term
        // moves before subscribers can see `true`.
        let was = *self.leading.borrow();
        if leading && !was {
            self.term.fetch_add(1, Ordering::SeqCst);
        }
        self.leading.send_replace(leading);
        if was != leading {
            if leading {
                info!(identity = %self.config.identity, "became the leader");
            } else {
                warn!(identity = %self.config.identity, "no longer the leader");
            }
        }
    }

    fn set_holder(&self, holder: Option<String>) {
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = holder;
    }

    /// One read-decide-write round, as the election loop runs it every retry period; `Ok(true)`
    /// means this process holds a freshly renewed Lease. Public so RBAC tests can exercise
    /// exactly the calls the loop makes.
    pub async fn try_acquire_or_renew(&self) -> std::result::Result<bool, ClusterError> {
        let name = &self.config.lease_name;
        let deadline = self.call_deadline();
        let what = format!("reading Lease {}/{name}", self.config.namespace);
        let current = bounded(&what, deadline, self.api.get_opt(name)).await?;
        let now = Instant::now();
        let Some(lease) = current else {
            let lease = self.lease(None, 0);
            let what = format!("creating Lease {}/{name}", self.config.namespace);
            return match bounded(
                &what,
                deadline,
                self.api.create(&PostParams::default(), &lease),
            )
            .await
            {
                Ok(_) => {
                    self.set_holder(Some(self.config.identity.clone()));
                    Ok(true)
                }
                // Another candidate created it first: follow it next round.
                Err(ClusterError::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.config.lease_duration);
        let expired = {
            let mut seen = self.observed.lock().unwrap_or_else(|p| p.into_inner());
            let renewed = spec.renew_time.as_ref().map(|t| t.0.to_string());
            seen.observe(format!("{holder:?}/{renewed:?}"), now);
            seen.expired(now, duration)
        };
        self.set_holder(holder.clone());
        let step = decide(holder.as_deref(), &self.config.identity, expired);
        debug!(?step, "leader election round");
        let transitions = spec.lease_transitions.unwrap_or(0);
        let next = match step {
            Step::Follow { .. } => return Ok(false),
            Step::Renew => self.lease(Some(&lease), transitions),
            Step::Acquire => {
                info!(previous = ?holder, "taking over the leader Lease");
                self.lease(Some(&lease), transitions.saturating_add(1))
            }
        };
        let what = format!("updating Lease {}/{name}", self.config.namespace);
        match bounded(
            &what,
            deadline,
            self.api.replace(name, &PostParams::default(), &next),
        )
        .await
        {
            Ok(_) => {
                self.set_holder(Some(self.config.identity.clone()));
                Ok(true)
            }
            // Someone wrote the Lease since we read it (a renewal or a rival): not ours now.
            Err(ClusterError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The Lease held by this process; `previous` keeps its metadata (and resourceVersion, the
    /// optimistic-concurrency precondition) and acquire time when renewing.
    fn lease(&self, previous: Option<&Lease>, transitions: i32) -> Lease {
        let now = MicroTime(Timestamp::now());
        let prev_spec = previous.and_then(|l| l.spec.clone());
        let renewing = prev_spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.config.identity.as_str());
        let acquire_time = if renewing {
            prev_spec.as_ref().and_then(|s| s.acquire_time.clone())
        } else {
            Some(now.clone())
        };
        let metadata = match previous {
            Some(l) => l.metadata.clone(),
            None => ObjectMeta {
                name: Some(self.config.lease_name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
        };
        Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
                ),
                acquire_time,
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Empties the holder (if still ours) so followers take over at once.
    async fn release(&self) {
        let name = &self.config.lease_name;
        let deadline = self.call_deadline();
        let what = format!("reading Lease {}/{name}", self.config.namespace);
        let lease = match bounded(&what, deadline, self.api.get_opt(name)).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "could not release the leader Lease; followers take over when it expires");
                return;
            }
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        let released = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(spec),
        };
        let what = format!("releasing Lease {}/{name}", self.config.namespace);
        match bounded(
            &what,
            deadline,
            self.api.replace(name, &PostParams::default(), &released),
        )
        .await
        {
            Ok(_) => info!("released the leader Lease"),
            Err(e) => {
                warn!(error = %e, "could not release the leader Lease; followers take over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaderConfig {
        LeaderConfig {
            namespace: "kube-system".into(),
            lease_name: "rds-csi-x".into(),
            identity: "pod-a_1234".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            api_timeout: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_live_foreign_lease_is_followed_and_an_expired_one_taken() {
        assert_eq!(
            decide(Some("b"), "a", false),
            Step::Follow { holder: "b".into() }
        );
        assert_eq!(decide(Some("b"), "a", true), Step::Acquire);
    }

    #[test]
    fn an_own_lease_is_renewed_and_a_released_one_taken_at_once() {
        assert_eq!(decide(Some("a"), "a", false), Step::Renew);
        assert_eq!(decide(Some(""), "a", false), Step::Acquire);
        assert_eq!(decide(None, "a", false), Step::Acquire);
    }

    #[test]
    fn expiry_counts_from_the_last_observed_change_not_the_first_sight() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let mut seen = Observation::default();
        assert!(!seen.expired(t0, d), "never observed is not expired");
        seen.observe("b/1".into(), t0);
        assert!(!seen.expired(t0 + Duration::from_secs(14), d));
        // A renewal moves the clock.
        seen.observe("b/2".into(), t0 + Duration::from_secs(10));
        assert!(!seen.expired(t0 + Duration::from_secs(20), d));
        // Re-reading an unchanged record does not.
        seen.observe("b/2".into(), t0 + Duration::from_secs(20));
        assert!(seen.expired(t0 + Duration::from_secs(25), d));
    }

    #[test]
    fn timings_that_would_let_two_leaders_overlap_are_rejected() {
        assert!(config().validate().is_ok());
        let mut c = config();
        c.renew_deadline = Duration::from_secs(15);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("lease duration")
        );
        let mut c = config();
        c.retry_period = Duration::from_secs(10);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("retry period")
        );
        let mut c = config();
        c.identity.clear();
        assert!(c.validate().is_err());
    }

    #[tokio::test]
    async fn each_gain_of_leadership_starts_a_new_term_and_watchers_see_it() {
        let url = "http://127.0.0.1:9".parse().unwrap();
        let client = ::kube::Client::try_from(::kube::Config::new(url)).unwrap();
        let elector = LeaderElector::new(client, config()).unwrap();
        let mut rx = elector.subscribe();
        assert_eq!((elector.is_leader(), elector.term()), (false, 0));
        elector.set_leading(true);
        assert!(rx.has_changed().unwrap() && *rx.borrow_and_update());
        assert_eq!(elector.term(), 1);
        elector.set_leading(true);
        assert_eq!(elector.term(), 1, "a renewal is not a new term");
        // Lost and regained before a watcher looked: the watcher sees `true`, the term tells.
        elector.set_leading(false);
        elector.set_leading(true);
        assert!(*rx.borrow_and_update());
        assert_eq!(elector.term(), 2);
    }

    #[test]
    fn lease_names_are_dns_safe_and_per_driver() {
        assert_eq!(lease_name("rds.csi.srvlab.io"), "rds-csi-rds-csi-srvlab-io");
        assert_eq!(lease_name("Bin_1.csi.test"), "rds-csi-bin-1-csi-test");
    }

    #[test]
    fn identities_differ_between_processes_on_one_host() {
        assert_ne!(default_identity(), default_identity());
    }
}
