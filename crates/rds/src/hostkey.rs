//! Host-key pinning: a known_hosts/authorized_keys-style line or a `SHA256:` fingerprint.

/// How the client decides whether to trust the server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Trust only this key: algorithm name (e.g. `ssh-ed25519`) and `SHA256:<base64>`.
    Pinned { algorithm: Option<String>, fingerprint: String },
    /// Trust anything. Only with an explicit flag; logged loudly.
    InsecureAcceptAny,
}
