//! Host and client keys: generation, persistence, and authorized_keys parsing.

use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

use crate::error::SimError;

/// A client key pair for tests and the demo.
#[derive(Clone)]
pub struct ClientKey {
    /// OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----…`), unencrypted.
    pub private_key_openssh: String,
    /// `ssh-ed25519 AAAA… rds-sim-client`, ready for `SimConfig::authorized_keys`.
    pub public_line: String,
    /// Where the private key was written (mode 0600).
    pub private_key_path: PathBuf,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private key material, even in test failure output.
        f.debug_struct("ClientKey")
            .field("public_line", &self.public_line)
            .field("private_key_path", &self.private_key_path)
            .finish_non_exhaustive()
    }
}

fn write_private(path: &Path, key: &PrivateKey) -> Result<String, SimError> {
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SimError::key("encode private key", e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| SimError::io("create directory", parent, e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| SimError::io("create key file", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| SimError::io("write key file", path, e))?;
    Ok(text.to_string())
}

fn encode_client(mut key: PrivateKey) -> Result<(String, String), SimError> {
    key.set_comment("rds-sim-client");
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SimError::key("encode private key", e))?;
    let public_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| SimError::key("encode public key", e))?;
    Ok((private.to_string(), public_line))
}

fn random_ed25519() -> Result<PrivateKey, SimError> {
    PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .map_err(|e| SimError::key("generate ed25519", e))
}

/// A fresh ed25519 client key pair, in memory: `(OpenSSH private key, authorized_keys line)`.
pub fn generate_client_key() -> Result<(String, String), SimError> {
    encode_client(random_ed25519()?)
}

/// A fresh 2048-bit RSA client key pair (proves RSA logins work; 2048 bits keeps generation
/// tolerable in debug builds): `(OpenSSH private key, authorized_keys line)`.
pub fn generate_client_key_rsa() -> Result<(String, String), SimError> {
    let pair = RsaKeypair::random(&mut russh::keys::key::safe_rng(), 2048)
        .map_err(|e| SimError::key("generate rsa", e))?;
    let key = PrivateKey::new(KeypairData::from(pair), "")
        .map_err(|e| SimError::key("build rsa key", e))?;
    encode_client(key)
}

/// An ed25519 client key saved as `dir/id_ed25519` (mode 0600), for tools that want a file.
pub fn write_client_key(dir: &Path) -> Result<ClientKey, SimError> {
    let mut key = random_ed25519()?;
    key.set_comment("rds-sim-client");
    let path = dir.join("id_ed25519");
    let private_key_openssh = write_private(&path, &key)?;
    let public_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| SimError::key("encode public key", e))?;
    Ok(ClientKey {
        private_key_openssh,
        public_line,
        private_key_path: path,
    })
}

/// Loads the host key, or creates and saves one so the fingerprint survives process restarts.
pub(crate) fn host_key(file: Option<&Path>) -> Result<PrivateKey, SimError> {
    let fresh = random_ed25519;
    let Some(path) = file else { return fresh() };
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| SimError::key(format!("parse host key {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = fresh()?;
            write_private(path, &key)?;
            Ok(key)
        }
        Err(e) => Err(SimError::io("read host key", path, e)),
    }
}

/// `SHA256:…` as OpenSSH prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parses authorized_keys lines (comments and blanks skipped). Option prefixes are not
/// supported: a line the simulator cannot honour exactly is an error, not a silent skip.
pub(crate) fn authorized(lines: &[String]) -> Result<Vec<PublicKey>, SimError> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(t).map_err(|e| SimError::AuthorizedKey {
            line: i + 1,
            detail: e.to_string(),
        })?;
        out.push(key);
    }
    Ok(out)
}
