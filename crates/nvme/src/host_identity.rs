//! The host NQN / host ID pair this node presents to targets.
//!
//! Both are derived from one UUID because kernel 6.12 refuses (EINVAL) a host NQN whose UUID
//! differs from the host ID, and because targets allow-list hosts by NQN — it must be stable
//! across plugin restarts. The host's `/etc/nvme` files win when they exist; otherwise a pair is
//! generated once and persisted in the plugin's own state directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{NvmeError, Result};
use crate::nqn::Nqn;

/// Prefix of a UUID-based host NQN (NVMe base spec §4.5).
pub const UUID_HOSTNQN_PREFIX: &str = "nqn.2014-08.org.nvmexpress:uuid:";

/// A consistent host NQN and host ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    uuid: Uuid,
    hostnqn: Nqn,
    hostid: String,
}

impl HostIdentity {
    /// Rejects the nil UUID: `nvme gen-hostnqn` produces it under some hypervisors, and every
    /// such host would then look like the same initiator to the target.
    pub fn from_uuid(uuid: Uuid) -> Result<Self> {
        if uuid.is_nil() {
            return Err(NvmeError::invalid(
                "host UUID",
                uuid.to_string(),
                "nil UUID is shared by every host that has it",
            ));
        }
        let hostid = uuid.hyphenated().to_string();
        let hostnqn = Nqn::new(format!("{UUID_HOSTNQN_PREFIX}{hostid}"))?;
        Ok(HostIdentity {
            uuid,
            hostnqn,
            hostid,
        })
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    pub fn hostnqn(&self) -> &Nqn {
        &self.hostnqn
    }

    pub fn hostid(&self) -> &str {
        &self.hostid
    }
}

/// Where the identity is looked for and where a generated one is kept.
#[derive(Debug, Clone)]
pub struct HostIdentityConfig {
    pub hostnqn_path: PathBuf,
    pub hostid_path: PathBuf,
    /// Plugin-owned directory (a hostPath in the DaemonSet) holding `hostnqn` and `hostid` when
    /// the host has none; it must survive restarts or the node's identity changes.
    pub state_dir: PathBuf,
}

impl Default for HostIdentityConfig {
    fn default() -> Self {
        HostIdentityConfig {
            hostnqn_path: PathBuf::from("/etc/nvme/hostnqn"),
            hostid_path: PathBuf::from("/etc/nvme/hostid"),
            state_dir: PathBuf::from("/var/lib/rds-csi/nvme"),
        }
    }
}

/// Where the loaded identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// Host files present and consistent.
    HostFiles,
    /// Host files incomplete or inconsistent; the pair was derived from the host NQN's UUID.
    DerivedFromHostNqn,
    /// Host NQN absent, unusable or not UUID-based; the pair was derived from the host ID.
    DerivedFromHostId,
    /// No host files; the plugin's persisted pair was used.
    StateDir,
    /// Nothing usable anywhere; a fresh UUID was generated and persisted.
    Generated,
}

/// The identity plus an account of how it was obtained, so the caller can log the decision.
#[derive(Debug, Clone)]
pub struct LoadedIdentity {
    pub identity: HostIdentity,
    pub source: IdentitySource,
    /// Human-readable explanations of every repair made (empty when the files were fine).
    pub notes: Vec<String>,
}

/// Loads, derives or generates the identity. Blocking file I/O on local configuration files;
/// call it at startup (or inside `spawn_blocking`).
pub fn load_host_identity(cfg: &HostIdentityConfig) -> Result<LoadedIdentity> {
    let mut notes = Vec::new();
    let nqn_text = read_optional(&cfg.hostnqn_path)?;
    let id_text = read_optional(&cfg.hostid_path)?;
    if let Some((uuid, source)) = derive(
        nqn_text.as_deref(),
        id_text.as_deref(),
        &cfg.hostnqn_path,
        &cfg.hostid_path,
        &mut notes,
    ) {
        let source = match source {
            Derivation::Consistent => IdentitySource::HostFiles,
            Derivation::FromNqn => IdentitySource::DerivedFromHostNqn,
            Derivation::FromId => IdentitySource::DerivedFromHostId,
        };
        return finish(uuid, source, notes);
    }

    let state_nqn = cfg.state_dir.join("hostnqn");
    let state_id = cfg.state_dir.join("hostid");
    let s_nqn = read_optional(&state_nqn)?;
    let s_id = read_optional(&state_id)?;
    if let Some((uuid, how)) = derive(
        s_nqn.as_deref(),
        s_id.as_deref(),
        &state_nqn,
        &state_id,
        &mut notes,
    ) {
        if how != Derivation::Consistent {
            // Our own files: repair them so the next start is clean.
            persist(&cfg.state_dir, &HostIdentity::from_uuid(uuid)?)?;
            notes.push(format!(
                "rewrote {} with a consistent pair",
                cfg.state_dir.display()
            ));
        }
        return finish(uuid, IdentitySource::StateDir, notes);
    }

    let identity = HostIdentity::from_uuid(Uuid::new_v4())?;
    persist(&cfg.state_dir, &identity)?;
    notes.push(format!(
        "no host NQN found; generated {} and persisted it in {}",
        identity.hostnqn(),
        cfg.state_dir.display()
    ));
    Ok(LoadedIdentity {
        identity,
        source: IdentitySource::Generated,
        notes,
    })
}

fn finish(uuid: Uuid, source: IdentitySource, notes: Vec<String>) -> Result<LoadedIdentity> {
    for n in &notes {
        tracing::warn!(note = %n, "NVMe host identity repaired");
    }
    Ok(LoadedIdentity {
        identity: HostIdentity::from_uuid(uuid)?,
        source,
        notes,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derivation {
    Consistent,
    FromNqn,
    FromId,
}

/// Picks the one UUID both values will be derived from. The host NQN wins a disagreement because
/// it is what targets allow-list; the host ID only matters to the kernel's consistency check.
fn derive(
    nqn_text: Option<&str>,
    id_text: Option<&str>,
    nqn_path: &Path,
    id_path: &Path,
    notes: &mut Vec<String>,
) -> Option<(Uuid, Derivation)> {
    let from_nqn = nqn_text.map(|t| uuid_from_hostnqn(t).map_err(|e| (t, e)));
    let from_id = id_text.map(|t| parse_uuid(t).map_err(|e| (t, e)));
    match (from_nqn, from_id) {
        (Some(Ok(a)), Some(Ok(b))) if a == b => Some((a, Derivation::Consistent)),
        (Some(Ok(a)), Some(Ok(b))) => {
            notes.push(format!(
                "{} ({b}) disagrees with the UUID in {} ({a}); using {a} for both",
                id_path.display(),
                nqn_path.display()
            ));
            Some((a, Derivation::FromNqn))
        }
        (Some(Ok(a)), other) => {
            notes.push(match other {
                None => format!(
                    "{} missing; derived host ID {a} from the host NQN",
                    id_path.display()
                ),
                Some(Err((t, e))) => format!(
                    "{} holds unusable {t:?} ({e}); derived host ID {a} from the host NQN",
                    id_path.display()
                ),
                Some(Ok(_)) => String::new(),
            });
            Some((a, Derivation::FromNqn))
        }
        (other, Some(Ok(b))) => {
            notes.push(match other {
                None => format!(
                    "{} missing; derived host NQN from host ID {b}",
                    nqn_path.display()
                ),
                Some(Err((t, e))) => format!(
                    "{} holds {t:?} ({e}); replaced by a host NQN derived from host ID {b}",
                    nqn_path.display()
                ),
                Some(Ok(_)) => String::new(),
            });
            Some((b, Derivation::FromId))
        }
        (a, b) => {
            for (path, bad) in [(nqn_path, a), (id_path, b)] {
                if let Some(Err((t, e))) = bad {
                    notes.push(format!("ignoring {}: {t:?} ({e})", path.display()));
                }
            }
            None
        }
    }
}

fn uuid_from_hostnqn(text: &str) -> std::result::Result<Uuid, String> {
    Nqn::new(text).map_err(|e| e.to_string())?;
    let tail = text
        .strip_prefix(UUID_HOSTNQN_PREFIX)
        .ok_or_else(|| format!("not of the form {UUID_HOSTNQN_PREFIX}<uuid>"))?;
    parse_uuid(tail)
}

fn parse_uuid(text: &str) -> std::result::Result<Uuid, String> {
    // Only the hyphenated form is what the kernel accepts for hostid=.
    if text.len() != 36 {
        return Err("not a hyphenated UUID".into());
    }
    let u = Uuid::parse_str(text).map_err(|e| e.to_string())?;
    if u.is_nil() {
        return Err("nil UUID".into());
    }
    Ok(u)
}

/// Trimmed contents; `None` for a missing or blank file.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NvmeError::Io {
            op: "read host identity",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write-to-temp then rename, so a crash never leaves half a file that would change the identity.
fn persist(dir: &Path, id: &HostIdentity) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NvmeError::Io {
            op: "persist host identity",
            path,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, value) in [("hostnqn", id.hostnqn().as_str()), ("hostid", id.hostid())] {
        let tmp = dir.join(format!(".{name}.tmp"));
        let dst = dir.join(name);
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(format!("{value}\n").as_bytes())
            .map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &dst).map_err(io(&dst))?;
    }
    Ok(())
}
