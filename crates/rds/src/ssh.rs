//! SSH transport (russh): one connection, bounded concurrent sessions, per-command
//! deadlines, reconnect on transport failure.

use std::time::Duration;

use crate::hostkey::HostKeyPolicy;

#[derive(Debug, Clone)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key text (OpenSSH or PEM; ed25519 or RSA). Never logged.
    pub private_key: String,
    pub host_key: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// RouterOS hangs when many sessions open at once on one connection.
    pub max_sessions: usize,
}

/// The production `Exec`.
pub struct SshTransport {
    _config: SshConfig,
}
