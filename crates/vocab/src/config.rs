//! Turning operator settings (flags, the backends file) into live backends.
//!
//! Reads key files and the pinned host key once at start; refuses to build a backend without
//! host-key verification unless the operator opted out explicitly.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rds::{ClientConfig, CommandObserver, Exec, HostKeyPolicy, RdsClient, SshConfig, SshTransport};
use routeros::{FilePath, Port};
use serde::Deserialize;
use tracing::warn;

use crate::backend::Backend;
use crate::error::{DriverError, Result};

/// One RDS appliance as an operator describes it (flags for the default one, or one
/// `[[backend]]` table in the backends file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    pub name: String,
    /// SSH (management) address.
    pub address: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    #[serde(default = "default_user")]
    pub user: String,
    /// Private key file (OpenSSH or PEM; ed25519 or RSA).
    pub key_file: PathBuf,
    /// A file holding the RDS host key (known_hosts or authorized_keys line), or a
    /// `SHA256:…` fingerprint.
    #[serde(default)]
    pub host_key: Option<String>,
    #[serde(default)]
    pub insecure_skip_host_key_verify: bool,
    /// NVMe/TCP (data) address; defaults to `address` when that is an IP. With
    /// `nvme_addresses` it must be that list's first entry (see [`BackendSettings::storage_addresses`]).
    #[serde(default)]
    pub nvme_address: Option<IpAddr>,
    /// Every NVMe/TCP (data) address of the appliance, in order of preference: each is one path
    /// of a volume's NVMe multipath (docs/multipath.md).
    #[serde(default)]
    pub nvme_addresses: Option<Vec<IpAddr>>,
    #[serde(default = "default_nvme_port")]
    pub nvme_port: u16,
    #[serde(default = "default_volume_path")]
    pub volume_path: String,
    /// More directories a StorageClass may select with `volumePath`.
    #[serde(default)]
    pub extra_volume_paths: Vec<String>,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    #[serde(default = "default_connect_timeout", with = "secs")]
    pub connect_timeout: Duration,
    #[serde(default = "default_read_timeout", with = "secs")]
    pub read_timeout: Duration,
    #[serde(default = "default_write_timeout", with = "secs")]
    pub write_timeout: Duration,
}

impl BackendSettings {
    /// The storage (NVMe/TCP) addresses nodes connect to, in order of preference:
    /// `nvme_addresses` when given (non-empty, at most [`crate::params::MAX_NVME_PATHS`], no
    /// duplicates), else `nvme_address`, else `address` when it is an IP. Both given: the single
    /// address must be the list's first (the preferred path is what `nvme_address` always meant),
    /// anything else is refused rather than guessed at.
    pub fn storage_addresses(&self) -> Result<Vec<IpAddr>> {
        let cfg_err = |what: String| DriverError::Config(format!("backend {}: {what}", self.name));
        let Some(list) = &self.nvme_addresses else {
            let one = match self.nvme_address {
                Some(a) => a,
                None => self.address.parse::<IpAddr>().map_err(|_| {
                    cfg_err(format!(
                        "nvme_address is required when the SSH address {:?} is not an IP address",
                        self.address
                    ))
                })?,
            };
            return Ok(vec![one]);
        };
        if list.is_empty() {
            return Err(cfg_err(
                "nvme_addresses is empty; list at least one storage address, or leave it out"
                    .into(),
            ));
        }
        let addresses = crate::params::parse_addresses(
            "nvme_addresses",
            &crate::params::format_addresses(list),
        )
        .map_err(|e| cfg_err(e.to_string()))?;
        if let Some(one) = self.nvme_address
            && one != addresses[0]
        {
            return Err(cfg_err(format!(
                "nvme_address {one} and nvme_addresses [{}] disagree: when both are given, nvme_address must be the first (preferred) entry of nvme_addresses; better give only nvme_addresses",
                crate::params::format_addresses(&addresses)
            )));
        }
        Ok(addresses)
    }
}

mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

fn default_ssh_port() -> u16 {
    22
}
fn default_user() -> String {
    "admin".into()
}
fn default_nvme_port() -> u16 {
    4420
}
pub fn default_volume_path() -> String {
    "/storage-pool/metal-csi".into()
}
fn default_max_sessions() -> usize {
    4
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendsFile {
    #[serde(default)]
    backend: Vec<BackendSettings>,
}

/// Most bytes read from a key, host-key or backends file: real ones are a few KiB, and an
/// unbounded read of a wrong path (`/dev/zero`, a log file) would eat the process's memory.
pub const MAX_CONFIG_FILE: u64 = 64 * 1024;

/// Reads a small text file whole, refusing one over [`MAX_CONFIG_FILE`] after reading at most
/// one byte more (so a device or a FIFO that never ends costs nothing).
pub fn read_small_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "larger than {} KiB; is this the right file?",
                MAX_CONFIG_FILE / 1024
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Warns when a private key is readable by others, or by a group other than the process's own:
/// anyone who can read it can run commands on the RDS as the driver. Group read for the
/// process's own group is how a non-root pod reads a Secret (`fsGroup`, mode 0440).
fn warn_if_exposed(backend: &str, path: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    let own_group = effective_gid() == Some(meta.gid());
    if mode & 0o004 != 0 || (mode & 0o040 != 0 && !own_group) {
        warn!(backend, path = %path.display(), mode = format!("{mode:04o}"), "SSH private key is readable by group or others; restrict it to the owner (chmod 600) or to the process's own group (a Secret volume with defaultMode 0440 and fsGroup)");
    }
}

/// The process's effective group id, from `/proc/self/status` (no libc call needed).
fn effective_gid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Gid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Reads a TOML backends file (`[[backend]]` tables).
pub fn read_backends_file(path: &Path) -> Result<Vec<BackendSettings>> {
    let text = read_small_file(path).map_err(|e| {
        DriverError::Config(format!("reading backends file {}: {e}", path.display()))
    })?;
    parse_backends(&text)
        .map_err(|e| DriverError::Config(format!("backends file {}: {e}", path.display())))
}

pub fn parse_backends(text: &str) -> std::result::Result<Vec<BackendSettings>, toml::de::Error> {
    toml::from_str::<BackendsFile>(text).map(|f| f.backend)
}

/// Resolves the host-key setting: a fingerprint, or a file holding a key line.
pub fn host_key_policy(s: &BackendSettings) -> Result<HostKeyPolicy> {
    match (&s.host_key, s.insecure_skip_host_key_verify) {
        (Some(_), true) => Err(DriverError::Config(format!(
            "backend {}: both a pinned host key and insecure_skip_host_key_verify are set; choose one",
            s.name
        ))),
        (None, true) => {
            warn!(backend = %s.name, "SSH host key verification is DISABLED for backend {}: anyone on the network path can impersonate the RDS and receive commands", s.name);
            Ok(HostKeyPolicy::InsecureAcceptAny)
        }
        (None, false) => Err(DriverError::Config(format!(
            "backend {}: SSH host key verification is not configured: pin the RDS host key with --rds-host-key (a file with the key line from `ssh-keyscan`, or a SHA256:… fingerprint), or pass --rds-insecure-skip-verify (not recommended)",
            s.name
        ))),
        (Some(v), false) => {
            let text = if v.starts_with("SHA256:") {
                v.clone()
            } else {
                read_small_file(Path::new(v)).map_err(|e| {
                    DriverError::Config(format!(
                        "backend {}: reading pinned host key file {v}: {e}",
                        s.name
                    ))
                })?
            };
            HostKeyPolicy::parse(text.trim()).map_err(|e| {
                DriverError::Config(format!("backend {}: pinned host key: {e}", s.name))
            })
        }
    }
}

/// Builds a live backend (no network yet: the SSH connection opens on first use).
pub fn build_backend(
    s: &BackendSettings,
    observer: Option<Arc<dyn CommandObserver>>,
) -> Result<Backend> {
    let cfg_err = |what: String| DriverError::Config(format!("backend {}: {what}", s.name));
    let private_key = read_small_file(&s.key_file).map_err(|e| {
        cfg_err(format!(
            "reading SSH private key {}: {e}",
            s.key_file.display()
        ))
    })?;
    warn_if_exposed(&s.name, &s.key_file);
    let host_key = host_key_policy(s)?;
    let insecure = host_key == HostKeyPolicy::InsecureAcceptAny;
    let volume_path =
        FilePath::new(&s.volume_path).map_err(|e| cfg_err(format!("volume_path: {e}")))?;
    let mut allowed_paths = vec![volume_path.clone()];
    for p in &s.extra_volume_paths {
        allowed_paths
            .push(FilePath::new(p).map_err(|e| cfg_err(format!("extra_volume_paths: {e}")))?);
    }
    let nvme_addresses = s.storage_addresses()?;
    let nvme_port = Port::new(s.nvme_port).map_err(|e| cfg_err(format!("nvme_port: {e}")))?;
    if s.max_sessions == 0 {
        return Err(cfg_err("max_sessions must be at least 1".into()));
    }
    let ssh = SshConfig {
        host: s.address.clone(),
        port: s.port,
        user: s.user.clone(),
        private_key,
        host_key,
        connect_timeout: s.connect_timeout,
        max_sessions: s.max_sessions,
    };
    let transport = SshTransport::new(ssh).map_err(|e| cfg_err(e.to_string()))?;
    let exec: Arc<dyn Exec> = Arc::new(transport);
    let client_cfg = ClientConfig {
        read_timeout: s.read_timeout,
        write_timeout: s.write_timeout,
        ..ClientConfig::default()
    };
    let mut client = RdsClient::new(exec, client_cfg);
    if let Some(o) = observer {
        client = client.with_observer(o);
    }
    Ok(Backend {
        name: s.name.clone(),
        client: Arc::new(client),
        nvme_addresses,
        nvme_port,
        volume_path,
        allowed_paths,
        insecure,
        target: format!("{}@{}:{}", s.user, s.address, s.port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_file_parses_with_defaults() {
        let v = parse_backends(
            r#"
[[backend]]
name = "rds2"
address = "10.0.0.2"
key_file = "/k"
host_key = "SHA256:abc"
nvme_address = "10.0.1.2"
"#,
        )
        .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].port, 22);
        assert_eq!(v[0].nvme_port, 4420);
        assert_eq!(v[0].volume_path, "/storage-pool/metal-csi");
        assert_eq!(v[0].read_timeout, Duration::from_secs(10));
    }

    fn one(extra: &str) -> BackendSettings {
        let text = format!(
            "[[backend]]\nname='rds2'\naddress='10.0.0.2'\nkey_file='/k'\nhost_key='SHA256:abc'\n{extra}"
        );
        parse_backends(&text).unwrap().remove(0)
    }

    fn addresses(s: &BackendSettings) -> std::result::Result<String, String> {
        s.storage_addresses()
            .map(|a| crate::params::format_addresses(&a))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_backend_lists_its_storage_addresses_or_keeps_its_single_one() {
        assert_eq!(addresses(&one("")).unwrap(), "10.0.0.2");
        assert_eq!(
            addresses(&one("nvme_address='10.0.1.2'")).unwrap(),
            "10.0.1.2"
        );
        let two = "nvme_addresses=['10.0.1.2', 'fd00:2::2']";
        assert_eq!(addresses(&one(two)).unwrap(), "10.0.1.2,fd00:2::2");
        let agreeing = "nvme_address='10.0.1.2'\nnvme_addresses=['10.0.1.2','10.0.2.2']";
        assert_eq!(addresses(&one(agreeing)).unwrap(), "10.0.1.2,10.0.2.2");
    }

    #[test]
    fn inconsistent_or_unusable_address_lists_are_configuration_errors() {
        for (extra, why) in [
            (
                "nvme_address='10.0.2.2'\nnvme_addresses=['10.0.1.2','10.0.2.2']",
                "nvme_address 10.0.2.2 and nvme_addresses [10.0.1.2,10.0.2.2] disagree",
            ),
            ("nvme_addresses=[]", "nvme_addresses is empty"),
            ("nvme_addresses=['10.0.1.2','10.0.1.2']", "listed twice"),
            (
                "nvme_addresses=['10.0.0.1','10.0.0.2','10.0.0.3','10.0.0.4','10.0.0.5','10.0.0.6','10.0.0.7','10.0.0.8','10.0.0.9']",
                "at most 8",
            ),
        ] {
            let e = addresses(&one(extra)).unwrap_err();
            assert!(
                e.starts_with("configuration: backend rds2: "),
                "{extra}: {e}"
            );
            assert!(e.contains(why), "{extra}: {e}");
        }
        let mut named = one("");
        named.address = "rds2.example".into();
        assert!(
            addresses(&named)
                .unwrap_err()
                .contains("nvme_address is required")
        );
        // Not an IP literal inside the list: TOML parsing already refuses it, naming the key.
        let text = "[[backend]]\nname='a'\naddress='1.2.3.4'\nkey_file='/k'\nnvme_addresses=['rds.local']\n";
        assert!(
            parse_backends(text)
                .unwrap_err()
                .to_string()
                .contains("nvme_addresses")
        );
    }

    #[test]
    fn a_config_file_read_stops_after_its_cap() {
        let e = read_small_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "x".repeat(MAX_CONFIG_FILE as usize)).unwrap();
        assert_eq!(read_small_file(&f).unwrap().len(), MAX_CONFIG_FILE as usize);
    }

    #[test]
    fn unknown_keys_in_backends_file_are_errors() {
        let e = parse_backends(
            "[[backend]]\nname='a'\naddress='1.2.3.4'\nkey_file='/k'\nhostkey='x'\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("hostkey"), "{e}");
    }
}
