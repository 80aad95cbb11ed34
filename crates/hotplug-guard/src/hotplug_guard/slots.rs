//! Who gets one of the webhook's connection slots.
//!
//! The port is reachable from the cluster network, and the API server needs a slot for every
//! review. A connection proves itself by sending a request; until then (TCP accepted, TLS
//! handshake, first headers) it is *unproven*, and an idle attacker's connections stay unproven
//! forever. So unproven connections get a small share of the slots, and when a share is full
//! the newest connection displaces the oldest unproven one instead of being refused: a real
//! client proves itself within milliseconds, so whoever is displaced is the one that idled
//! longest. Proven connections are capped per peer address, which keeps a reserve of slots for
//! every other peer (the API server) however many connections one peer opens.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Connections served at once, proven or not.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections that have not sent a request yet, in all.
pub const MAX_UNPROVEN: usize = 64;
/// Connections of one peer address, proven or not: the rest is a reserve for other peers.
pub const MAX_PER_PEER: usize = 128;

struct Unproven {
    id: u64,
    peer: IpAddr,
    evict: Arc<Notify>,
    released: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
    /// Oldest first.
    unproven: VecDeque<Unproven>,
}

impl State {
    fn release(&mut self, peer: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// Displaces the oldest unproven connection (of `peer` only, when given); false when there
    /// is none to displace.
    fn evict_oldest(&mut self, peer: Option<IpAddr>) -> bool {
        let Some(i) = self
            .unproven
            .iter()
            .position(|u| peer.is_none_or(|p| u.peer == p))
        else {
            return false;
        };
        let Some(victim) = self.unproven.remove(i) else {
            return false;
        };
        if !victim.released.swap(true, Ordering::SeqCst) {
            self.release(victim.peer);
        }
        victim.evict.notify_one();
        true
    }
}

/// The slot bookkeeping of one webhook server.
#[derive(Default)]
pub struct Slots {
    state: Mutex<State>,
}

impl Slots {
    pub fn new() -> Arc<Slots> {
        Arc::new(Slots::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// A slot for a new connection from `peer`, displacing the oldest unproven connection when
    /// a cap is reached; `None` when every slot that could be freed holds a proven connection.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut s = self.lock();
        if s.per_peer.get(&peer).copied().unwrap_or(0) >= MAX_PER_PEER
            && !s.evict_oldest(Some(peer))
        {
            return None;
        }
        if s.total >= MAX_CONNECTIONS && !s.evict_oldest(None) {
            return None;
        }
        if s.unproven.len() >= MAX_UNPROVEN {
            s.evict_oldest(None);
        }
        s.next_id += 1;
        let id = s.next_id;
        s.total += 1;
        *s.per_peer.entry(peer).or_default() += 1;
        let evict = Arc::new(Notify::new());
        let released = Arc::new(AtomicBool::new(false));
        s.unproven.push_back(Unproven {
            id,
            peer,
            evict: Arc::clone(&evict),
            released: Arc::clone(&released),
        });
        Some(Slot {
            slots: Arc::clone(self),
            id,
            peer,
            evict,
            released,
        })
    }
}

/// One connection's slot; freed on drop.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    peer: IpAddr,
    evict: Arc<Notify>,
    released: Arc<AtomicBool>,
}

impl Slot {
    /// The connection sent a request: it can no longer be displaced.
    pub fn proven(&self) {
        self.slots.lock().unproven.retain(|u| u.id != self.id);
    }

    /// Resolves when a newer connection displaced this one (it must close then).
    pub async fn displaced(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock();
        s.unproven.retain(|u| u.id != self.id);
        if !self.released.swap(true, Ordering::SeqCst) {
            s.release(self.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn idle_connections_are_displaced_oldest_first_and_proven_ones_stay() {
        let slots = Slots::new();
        let attacker = ip("10.0.0.66");
        let mut held: Vec<Slot> = (0..1000).filter_map(|_| slots.admit(attacker)).collect();
        assert_eq!(held.len(), 1000, "a new connection always gets a slot");
        assert_eq!(slots.open(), MAX_UNPROVEN);
        let api = slots.admit(ip("10.0.0.1")).unwrap();
        api.proven();
        held.clear();
        assert_eq!(slots.open(), 1);
        drop(api);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn one_peer_cannot_take_the_reserve_of_the_others() {
        let slots = Slots::new();
        let greedy = ip("10.0.0.66");
        let mut held = Vec::new();
        while let Some(s) = slots.admit(greedy) {
            s.proven();
            held.push(s);
        }
        assert_eq!(held.len(), MAX_PER_PEER);
        let mut others = Vec::new();
        for i in 0..(MAX_CONNECTIONS - MAX_PER_PEER) {
            let s = slots.admit(ip(&format!("10.0.1.{}", i % 250))).unwrap();
            s.proven();
            others.push(s);
        }
        assert!(slots.admit(ip("10.0.2.1")).is_none(), "all slots proven");
        drop(others.pop());
        assert!(slots.admit(ip("10.0.2.1")).is_some());
    }
}
