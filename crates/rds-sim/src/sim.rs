//! The simulator handle and the state every connection shares: model, faults, command log and
//! the live connections (so a "reboot" can cut them).

use std::collections::{HashMap, HashSet};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use russh::keys::{PrivateKey, PublicKey};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::command;
use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::{Decision, Faults};
use crate::keys;
use crate::model::{Model, Outcome, SimDisk, SimFile};
use crate::render;
use crate::style::OutputStyle;

/// How long `restart`/`shutdown` wait for cut connections to finish unwinding.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State stays consistent per operation; a panic elsewhere must not wedge the server.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Conn {
    /// A clone of the socket: shutting it down cuts the connection however busy the session is.
    socket: std::net::TcpStream,
    /// Flipped to `true` when the connection is cut, to release hung commands.
    killed: watch::Sender<bool>,
}

pub(crate) struct Shared {
    model: Mutex<Model>,
    pub faults: Arc<Faults>,
    commands: Mutex<Vec<String>>,
    conns: Mutex<HashMap<u64, Conn>>,
    next_conn: AtomicU64,
    booted: Mutex<Instant>,
    pub authorized: Vec<PublicKey>,
    /// SSH session channels open right now, by connection (what a leak check counts). A
    /// session ends when either side closes it: the server after answering, the client when it
    /// abandons a command, or the connection going away.
    sessions: Mutex<HashSet<(u64, russh::ChannelId)>>,
    /// Commands received and not yet finished (answered, dropped or released from a hang).
    pub commands_running: AtomicUsize,
    /// Most commands ever running at once since the last reset: proves how far a client
    /// really parallelises (its session bound), not how fast it happens to be.
    pub commands_peak: AtomicUsize,
}

impl Shared {
    pub fn register(&self, socket: std::net::TcpStream) -> (u64, watch::Receiver<bool>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (killed, rx) = watch::channel(false);
        lock(&self.conns).insert(id, Conn { socket, killed });
        (id, rx)
    }

    pub fn unregister(&self, id: u64) {
        lock(&self.conns).remove(&id);
        lock(&self.sessions).retain(|(conn, _)| *conn != id);
    }

    pub fn session_opened(&self, conn: u64, channel: russh::ChannelId) {
        lock(&self.sessions).insert((conn, channel));
    }

    pub fn session_closed(&self, conn: u64, channel: russh::ChannelId) {
        lock(&self.sessions).remove(&(conn, channel));
    }

    /// Cuts one connection at the TCP level: the client sees the socket close, no SSH goodbye.
    pub fn kill(&self, id: u64) {
        if let Some(c) = lock(&self.conns).get(&id) {
            let _ = c.killed.send(true);
            let _ = c.socket.shutdown(Shutdown::Both);
        }
    }

    fn kill_all(&self) {
        for c in lock(&self.conns).values() {
            let _ = c.killed.send(true);
            let _ = c.socket.shutdown(Shutdown::Both);
        }
    }

    async fn drain(&self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !lock(&self.conns).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !lock(&self.conns).is_empty() {
            tracing::warn!(
                timeout_ms = DRAIN_TIMEOUT.as_millis() as u64,
                "rds-sim: connections still unwinding after the drain timeout"
            );
        }
    }

    pub fn record(&self, line: &str) {
        lock(&self.commands).push(line.to_string());
    }

    pub fn decide(&self, line: &str) -> Decision {
        self.faults.decide(line)
    }

    /// Parses and runs one command against the model. Blocking (may touch backing files).
    pub fn apply(&self, line: &str, disk_full: bool) -> Outcome {
        self.apply_styled(line, disk_full, OutputStyle::default())
    }

    /// [`Shared::apply`] with listings laid out in `style`.
    pub fn apply_styled(&self, line: &str, disk_full: bool, style: OutputStyle) -> Outcome {
        let req = command::parse(line).map_err(|e| e.to_string())?;
        let uptime = render::uptime(lock(&self.booted).elapsed().as_secs());
        lock(&self.model).execute(&req, disk_full, &uptime, style)
    }
}

/// A running simulator. Dropping it stops listening and cuts every connection.
pub struct Sim {
    addr: SocketAddr,
    host_key: PrivateKey,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Sim {
    /// Binds, loads or creates the host key, and starts accepting SSH connections.
    pub async fn start(cfg: SimConfig) -> Result<Sim, SimError> {
        let host_key = keys::host_key(cfg.host_key_file.as_deref())?;
        let authorized = keys::authorized(&cfg.authorized_keys)?;
        if let crate::Storage::Dir(dir) = &cfg.storage {
            std::fs::create_dir_all(dir)
                .map_err(|e| SimError::io("create storage directory", dir, e))?;
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(
                cfg.pool.clone(),
                cfg.capacity_bytes,
                cfg.storage.clone(),
                cfg.exporter.clone(),
            )),
            faults: Arc::new(Faults::default()),
            commands: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            booted: Mutex::new(Instant::now()),
            authorized,
            sessions: Mutex::new(HashSet::new()),
            commands_running: AtomicUsize::new(0),
            commands_peak: AtomicUsize::new(0),
        });
        let accept = crate::server::spawn_accept(listener, host_key.clone(), shared.clone());
        tracing::info!(%addr, fingerprint = %keys::fingerprint(host_key.public_key()), "rds-sim listening");
        Ok(Sim {
            addr,
            host_key,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ssh-ed25519 AAAA… rds-sim`, for a known_hosts entry.
    pub fn host_key_openssh(&self) -> String {
        let mut public = self.host_key.public_key().clone();
        public.set_comment("rds-sim");
        // Encoding an in-memory ed25519 key cannot fail; fall back to the bare fingerprint
        // rather than panicking if it ever did.
        public
            .to_openssh()
            .unwrap_or_else(|_| self.host_key_fingerprint())
    }

    /// `SHA256:…` (OpenSSH style, unpadded base64).
    pub fn host_key_fingerprint(&self) -> String {
        keys::fingerprint(self.host_key.public_key())
    }

    pub fn faults(&self) -> Arc<Faults> {
        self.shared.faults.clone()
    }

    pub fn disks(&self) -> Vec<SimDisk> {
        lock(&self.shared.model).disks.clone()
    }

    pub fn files(&self) -> Vec<SimFile> {
        lock(&self.shared.model).files.values().cloned().collect()
    }

    /// Every command line received, in order (including failed, dropped and hung ones).
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared.commands).clone()
    }

    pub fn clear_commands(&self) {
        lock(&self.shared.commands).clear();
    }

    /// Number of SSH connections currently open (lets tests see pooling and reconnects).
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// SSH session channels open across all connections (a client that leaks sessions shows
    /// here after it goes idle).
    pub fn sessions_open(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// Commands being served right now, including slowed and hung ones.
    pub fn commands_running(&self) -> usize {
        self.shared.commands_running.load(Ordering::Relaxed)
    }

    /// The most commands that ran at the same time since start or the last reset.
    pub fn peak_commands_running(&self) -> usize {
        self.shared.commands_peak.load(Ordering::Relaxed)
    }

    pub fn reset_peak_commands_running(&self) {
        let now = self.shared.commands_running.load(Ordering::Relaxed);
        self.shared.commands_peak.store(now, Ordering::Relaxed);
    }

    /// Runs one command line in-process, bypassing SSH and faults (handy for seeding state).
    pub fn run_local(&self, line: &str) -> Result<String, String> {
        self.shared.apply(line, false)
    }

    /// RDS reboot: every connection and session is cut, disks and files stay, the listener keeps
    /// its address. Returns once the cut connections are gone.
    pub async fn restart(&self) {
        tracing::info!("rds-sim: restart (all connections dropped)");
        *lock(&self.shared.booted) = Instant::now();
        self.shared.kill_all();
        self.shared.drain().await;
    }

    /// Stops listening and cuts every connection.
    pub async fn shutdown(self) {
        self.accept.abort();
        self.shared.kill_all();
        self.shared.drain().await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.kill_all();
    }
}

/// Runs a simulator until `shutdown` completes (for `rds-csi sim`).
pub async fn run_until(
    cfg: SimConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SimError> {
    let sim = Sim::start(cfg).await?;
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}
