//! A RouterOS simulator that tests, `rds-csi sim` and `rds-csi demo` talk to over real SSH.
//!
//! Skeleton: the public surface other crates code against. See `SimConfig`, `Sim`, `Faults`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where disk contents live.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Sizes and metadata only; nothing written (fast, for most tests).
    Memory,
    /// Sparse backing files in this directory (content really copied for copy-from).
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// OpenSSH private host key file; generated and saved there when missing. `None`: a fresh
    /// ed25519 key in memory.
    pub host_key_file: Option<PathBuf>,
    /// authorized_keys lines allowed to log in. Empty: refuse everyone.
    pub authorized_keys: Vec<String>,
    pub storage: Storage,
    /// Pool size reported by the capacity query and enforced by `/disk add` and `/disk set`.
    pub capacity_bytes: u64,
    /// Pool mount point (`storage-pool`).
    pub pool: String,
}

/// Fault injection switches, shared with the running server.
#[derive(Debug, Default)]
pub struct Faults {
    _private: (),
}

pub struct Sim {
    _private: (),
}

/// Re-exported so callers can name durations without importing std.
pub type Latency = Duration;
