//! Staged volumes remembered across plugin restarts (`<state dir>/node-volumes.json`).
//!
//! Recovery needs the connect parameters of every staged volume: when kernel 6.12 deletes a
//! controller despite ctrl_loss_tmo=-1, nothing on the host still knows the target address, and
//! kubelet will not call NodeStageVolume again for a volume it believes is staged. The file is
//! small, rewritten atomically (temp file + rename) and holds no secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mount::FsType;
use nvme::{ConnectParams, CtrlLossTmo, Nqn, TargetAddress};
use serde::{Deserialize, Serialize};

use vocab::error::{DriverError, Result};

pub const STATE_FILE: &str = "node-volumes.json";

/// How a staged volume is consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StagedKind {
    Block,
    Filesystem {
        fs_type: String,
        #[serde(default)]
        mount_flags: Vec<String>,
    },
}

/// One publish target of a staged volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PublishRecord {
    pub read_only: bool,
    /// Set when recovery re-created this target under a running pod: containers started before
    /// keep the old (dead) mount until they restart, which stats must keep saying.
    #[serde(default)]
    pub needs_restart: bool,
}

/// Everything needed to reconnect and remount one staged volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedVolume {
    pub volume_id: String,
    pub nqn: String,
    /// The preferred (first) path's address; all a record written before multipath has.
    pub address: String,
    /// Every path's address, preferred first (multipath). Empty in a record written before
    /// multipath: then `address` is the only path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    pub port: u16,
    /// -1 unlimited, 0 kernel default, >0 seconds.
    pub ctrl_loss_tmo: i64,
    pub reconnect_delay: u32,
    /// 0 = kernel default.
    pub keep_alive_tmo: u32,
    pub staging_path: PathBuf,
    #[serde(flatten)]
    pub kind: StagedKind,
    #[serde(default)]
    pub allow_exec: bool,
    #[serde(default)]
    pub published: BTreeMap<PathBuf, PublishRecord>,
    /// The PVC's namespace and name, when the provisioner passed them (for events about the
    /// volume's paths after a plugin restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_name: Option<String>,
}

impl StagedVolume {
    pub fn new(
        volume_id: &str,
        p: &ConnectParams,
        staging_path: &Path,
        kind: StagedKind,
        allow_exec: bool,
    ) -> Self {
        StagedVolume {
            volume_id: volume_id.to_string(),
            nqn: p.nqn.to_string(),
            address: p.target.ip().to_string(),
            port: p.target.port(),
            ctrl_loss_tmo: match p.ctrl_loss_tmo {
                CtrlLossTmo::Unlimited => -1,
                CtrlLossTmo::KernelDefault => 0,
                CtrlLossTmo::Seconds(n) => i64::from(n),
            },
            reconnect_delay: p.reconnect_delay.get(),
            keep_alive_tmo: p.keep_alive_tmo.map_or(0, |v| v.get()),
            staging_path: staging_path.to_path_buf(),
            kind,
            allow_exec,
            published: BTreeMap::new(),
            addresses: Vec::new(),
            pvc_namespace: None,
            pvc_name: None,
        }
    }

    /// Records every path's address (`targets`, preferred first; all share `port`).
    pub fn with_paths(mut self, targets: &[TargetAddress]) -> Self {
        if let Some(first) = targets.first() {
            self.address = first.ip().to_string();
            self.port = first.port();
        }
        self.addresses = targets.iter().map(|t| t.ip().to_string()).collect();
        self
    }

    /// Records the PVC identity.
    pub fn with_pvc(mut self, pvc: Option<(String, String)>) -> Self {
        (self.pvc_namespace, self.pvc_name) = match pvc {
            Some((ns, name)) => (Some(ns), Some(name)),
            None => (None, None),
        };
        self
    }

    pub fn pvc(&self) -> Option<(String, String)> {
        Some((self.pvc_namespace.clone()?, self.pvc_name.clone()?))
    }

    /// Every path's target address, preferred first; a record from before multipath has one.
    pub fn targets(&self) -> Result<Vec<TargetAddress>> {
        let list: Vec<&str> = if self.addresses.is_empty() {
            vec![self.address.as_str()]
        } else {
            self.addresses.iter().map(String::as_str).collect()
        };
        list.into_iter()
            .map(|a| {
                let ip = a.parse().map_err(|e| corrupt(&self.volume_id, e))?;
                TargetAddress::new(ip, self.port).map_err(|e| corrupt(&self.volume_id, e))
            })
            .collect()
    }

    /// The connect parameters of each path, preferred first.
    pub fn path_params(&self) -> Result<Vec<ConnectParams>> {
        Ok(super::context::paths_of(
            &self.connect_params()?,
            &self.targets()?,
        ))
    }

    pub fn nqn(&self) -> Result<Nqn> {
        Nqn::new(self.nqn.as_str()).map_err(|e| corrupt(&self.volume_id, e))
    }

    /// The parameters the volume was staged with, to reconnect exactly as before.
    pub fn connect_params(&self) -> Result<ConnectParams> {
        let ip = self
            .address
            .parse()
            .map_err(|e| corrupt(&self.volume_id, e))?;
        let target = TargetAddress::new(ip, self.port).map_err(|e| corrupt(&self.volume_id, e))?;
        let mut p = ConnectParams::new(self.nqn()?, target);
        p.ctrl_loss_tmo =
            CtrlLossTmo::from_i64(self.ctrl_loss_tmo).map_err(|e| corrupt(&self.volume_id, e))?;
        if let Some(d) = std::num::NonZeroU32::new(self.reconnect_delay) {
            p.reconnect_delay = d;
        }
        p.keep_alive_tmo = std::num::NonZeroU32::new(self.keep_alive_tmo);
        Ok(p)
    }

    pub fn fs_type(&self) -> Option<FsType> {
        match &self.kind {
            StagedKind::Block => None,
            StagedKind::Filesystem { fs_type, .. } => fs_type.parse().ok(),
        }
    }

    pub fn is_block(&self) -> bool {
        self.kind == StagedKind::Block
    }
}

fn corrupt(volume: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Internal(format!(
        "node state record of volume {volume} is unusable: {e}"
    ))
}

/// In-memory map plus its file.
pub struct StateStore {
    path: Option<PathBuf>,
    deadline: Duration,
    map: Mutex<BTreeMap<String, StagedVolume>>,
}

#[derive(Serialize, Deserialize, Default)]
struct FileFormat {
    version: u32,
    volumes: Vec<StagedVolume>,
}

impl StateStore {
    /// Loads `<dir>/node-volumes.json`. A missing file is an empty state; an unreadable or
    /// corrupt one is moved aside (never silently overwritten) and reported in the log.
    pub fn load(dir: &Path, deadline: Duration) -> Result<StateStore> {
        let path = dir.join(STATE_FILE);
        let map = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<FileFormat>(&bytes) {
                Ok(f) => f
                    .volumes
                    .into_iter()
                    .map(|v| (v.volume_id.clone(), v))
                    .collect(),
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::error!(path = %path.display(), aside = %aside.display(), error = %e,
                        "node state file is corrupt; moved aside, staged volumes will not be recovered automatically");
                    std::fs::rename(&path, &aside).map_err(|e| {
                        DriverError::Config(format!("cannot move {} aside: {e}", path.display()))
                    })?;
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(DriverError::Config(format!(
                    "cannot read node state {}: {e}",
                    path.display()
                )));
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            DriverError::Config(format!(
                "cannot create state directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(StateStore {
            path: Some(path),
            deadline,
            map: Mutex::new(map),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, StagedVolume>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, volume_id: &str) -> Option<StagedVolume> {
        self.lock().get(volume_id).cloned()
    }

    pub fn all(&self) -> Vec<StagedVolume> {
        self.lock().values().cloned().collect()
    }

    /// The staged volume that has `path` as staging path or publish target.
    pub fn find_by_path(&self, path: &Path) -> Option<StagedVolume> {
        self.lock()
            .values()
            .find(|v| v.staging_path == path || v.published.contains_key(path))
            .cloned()
    }

    /// Applies `f` to the record (inserting with `init` when absent is the caller's business)
    /// and writes the file. A failed write is returned: the caller decides whether it matters.
    pub async fn update<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut BTreeMap<String, StagedVolume>),
    {
        let snapshot = {
            let mut map = self.lock();
            f(&mut map);
            FileFormat {
                version: 1,
                volumes: map.values().cloned().collect(),
            }
        };
        self.write(snapshot).await
    }

    pub async fn put(&self, v: StagedVolume) -> Result<()> {
        self.update(move |m| {
            m.insert(v.volume_id.clone(), v);
        })
        .await
    }

    pub async fn remove(&self, volume_id: &str) -> Result<()> {
        self.update(|m| {
            m.remove(volume_id);
        })
        .await
    }

    async fn write(&self, snapshot: FileFormat) -> Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&snapshot)
            .map_err(|e| DriverError::Internal(format!("serialising node state: {e}")))?;
        let shown = path.display().to_string();
        let write = move || -> std::io::Result<()> {
            use std::io::Write;
            let tmp = path.with_extension("json.tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        super::sysio::blocking(format!("writing node state {shown}"), self.deadline, write)
            .await
            .map_err(|e| DriverError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ConnectParams {
        let mut p = ConnectParams::new(
            Nqn::new("nqn.2000-02.com.mikrotik:pvc-1").unwrap(),
            TargetAddress::parse("10.0.0.1", "4420").unwrap(),
        );
        p.ctrl_loss_tmo = CtrlLossTmo::Seconds(90);
        p.keep_alive_tmo = std::num::NonZeroU32::new(7);
        p
    }

    #[tokio::test]
    async fn records_survive_a_restart_with_their_connect_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::load(dir.path(), Duration::from_secs(5)).unwrap();
        let mut v = StagedVolume::new(
            "default:pvc-1",
            &params(),
            Path::new("/stage/pvc-1"),
            StagedKind::Filesystem {
                fs_type: "xfs".into(),
                mount_flags: vec!["noatime".into()],
            },
            true,
        );
        v.published
            .insert(PathBuf::from("/pods/a"), PublishRecord::default());
        store.put(v.clone()).await.unwrap();

        let again = StateStore::load(dir.path(), Duration::from_secs(5)).unwrap();
        let got = again.get("default:pvc-1").unwrap();
        assert_eq!(got, v);
        assert_eq!(got.connect_params().unwrap(), params());
        assert_eq!(
            again.find_by_path(Path::new("/pods/a")).unwrap().volume_id,
            "default:pvc-1"
        );
        again.remove("default:pvc-1").await.unwrap();
        assert!(
            StateStore::load(dir.path(), Duration::from_secs(5))
                .unwrap()
                .all()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn paths_and_pvc_are_remembered_and_a_record_from_before_multipath_loads_as_one_path() {
        let dir = tempfile::tempdir().unwrap();
        // Written by the plugin before multipath: no addresses, no PVC.
        let old = r#"{"version":1,"volumes":[{"volume_id":"default:pvc-1",
            "nqn":"nqn.2000-02.com.mikrotik:pvc-1","address":"10.0.0.1","port":4420,
            "ctrl_loss_tmo":-1,"reconnect_delay":5,"keep_alive_tmo":0,
            "staging_path":"/stage/pvc-1","kind":"block"}]}"#;
        std::fs::write(dir.path().join(STATE_FILE), old).unwrap();
        let store = StateStore::load(dir.path(), Duration::from_secs(5)).unwrap();
        let v = store.get("default:pvc-1").unwrap();
        let t = v.targets().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].ip().to_string(), "10.0.0.1");
        assert_eq!(v.path_params().unwrap().len(), 1);
        assert_eq!(v.pvc(), None);

        let targets = [
            TargetAddress::parse("10.0.0.1", "4420").unwrap(),
            TargetAddress::parse("10.0.1.1", "4420").unwrap(),
        ];
        let v = v
            .with_paths(&targets)
            .with_pvc(Some(("apps".into(), "data".into())));
        store.put(v).await.unwrap();
        let again = StateStore::load(dir.path(), Duration::from_secs(5)).unwrap();
        let v = again.get("default:pvc-1").unwrap();
        assert_eq!(v.targets().unwrap(), targets);
        assert_eq!(v.address, "10.0.0.1");
        assert_eq!(v.pvc(), Some(("apps".into(), "data".into())));
        let p = v.path_params().unwrap();
        assert_eq!(p[1].target, targets[1]);
        assert_eq!(p[1].ctrl_loss_tmo, CtrlLossTmo::Unlimited);
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let store = StateStore::load(dir.path(), Duration::from_secs(5)).unwrap();
        assert!(store.all().is_empty());
        let aside = dir.path().join("node-volumes.json.corrupt");
        assert_eq!(std::fs::read(aside).unwrap(), b"{not json");
    }
}
