//! How a simulator instance is set up.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{Exporter, NoExporter};

/// Where disk contents live.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Sizes and metadata only; nothing written (fast, for most tests).
    Memory,
    /// Sparse backing files in this directory (content really copied for copy-from).
    Dir(PathBuf),
}

#[derive(Clone)]
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
    /// Seam for a real NVMe/TCP export of simulated disks; [`NoExporter`] by default.
    pub exporter: Arc<dyn Exporter>,
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("host_key_file", &self.host_key_file)
            .field("authorized_keys", &self.authorized_keys.len())
            .field("storage", &self.storage)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("pool", &self.pool)
            .field("exporter", &self.exporter)
            .finish()
    }
}

impl SimConfig {
    /// 127.0.0.1 on an ephemeral port, in memory, 1 TiB pool `storage-pool`, fresh host key,
    /// nobody authorized (tests add their client key).
    pub fn for_tests() -> SimConfig {
        SimConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            host_key_file: None,
            authorized_keys: Vec::new(),
            storage: Storage::Memory,
            capacity_bytes: 1 << 40,
            pool: "storage-pool".to_string(),
            exporter: Arc::new(NoExporter),
        }
    }
}
