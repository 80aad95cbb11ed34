//! The node half (`--node`): the selftest volume over NVMe/TCP with the node plugin's own
//! initiator, a pattern written and read back across a reconnect, and the size the kernel sees.
//!
//! Reading back after a disconnect and a new connect means the data came from the target, not
//! from this host's page cache, without needing O_DIRECT. Connects and disconnects are
//! confined to the selftest's NQN prefix, so no volume of the driver is ever touched.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nvme::{ConnectParams, CtrlLossTmo, Initiator, ManagedPrefix, Nqn, TargetAddress};

use super::report::{Status, StepResult};

/// Bytes per pattern block; one logical block on every device the RDS exports.
const BLOCK: usize = 4096;
/// Kernel gives up reconnecting after this long: a selftest connection must never linger.
const CTRL_LOSS_SECS: u32 = 30;
/// Deadline for the blocking device reads and writes.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct NodeHalf {
    initiator: Initiator,
    target: TargetAddress,
    sysfs_root: PathBuf,
    device_timeout: Duration,
    /// Ties the pattern to this run, so stale data from an earlier one can never match.
    label: String,
}

/// How the node half connects, from the node plugin's flags.
pub struct NodeSettings {
    pub state_dir: PathBuf,
    pub connect_method: nvme::ConnectMethod,
    pub sysfs_root: PathBuf,
    pub dev_root: PathBuf,
    pub fabrics_path: PathBuf,
    pub connect_timeout: Duration,
    pub device_timeout: Duration,
}

impl NodeHalf {
    pub fn new(
        s: &NodeSettings,
        address: IpAddr,
        port: u16,
        label: String,
    ) -> Result<NodeHalf, String> {
        let prefix = ManagedPrefix::new(super::names::nqn_prefix())
            .map_err(|e| format!("selftest NQN prefix: {e}"))?;
        let identity = nvme::load_host_identity(&nvme::HostIdentityConfig {
            state_dir: s.state_dir.join("nvme"),
            ..nvme::HostIdentityConfig::default()
        })
        .map_err(|e| format!("NVMe host identity: {e}"))?;
        let mut cfg = nvme::InitiatorConfig::new(prefix);
        cfg.sysfs_root = s.sysfs_root.clone();
        cfg.dev_root = s.dev_root.clone();
        cfg.fabrics_path = s.fabrics_path.clone();
        cfg.method = s.connect_method.clone();
        cfg.connect_timeout = s.connect_timeout;
        let target = TargetAddress::new(address, port).map_err(|e| e.to_string())?;
        Ok(NodeHalf {
            initiator: Initiator::new(cfg, identity.identity),
            target,
            sysfs_root: s.sysfs_root.clone(),
            device_timeout: s.device_timeout,
            label,
        })
    }

    /// Connect, check the size, write, reconnect, read back, disconnect: one result per step.
    /// Always tries to disconnect before returning.
    pub async fn run(&self, nqn: &routeros::Nqn, expected_size: u64) -> Vec<StepResult> {
        let mut out = Vec::new();
        let nqn = match Nqn::new(nqn.as_str()) {
            Ok(n) => n,
            Err(e) => return vec![failed("node-connect", e.to_string())],
        };
        let steps: [&'static str; 4] =
            ["node-connect", "node-write", "node-reconnect", "node-read"];
        let mut device = None;
        for name in steps {
            if out.iter().any(|r: &StepResult| r.status == Status::Fail) {
                out.push(skip(name, "an earlier node step failed"));
                continue;
            }
            let started = Instant::now();
            let res = match name {
                "node-connect" | "node-reconnect" => {
                    if name == "node-reconnect"
                        && let Err(e) = self.initiator.disconnect(&nqn).await
                    {
                        Err(format!("disconnect before the reconnect: {e}"))
                    } else {
                        self.connect(&nqn, expected_size)
                            .await
                            .map(|(path, detail)| {
                                device = Some(path);
                                detail
                            })
                    }
                }
                "node-write" => match &device {
                    Some(p) => self.io(p.clone(), expected_size, true).await,
                    None => Err("no device".into()),
                },
                _ => match &device {
                    Some(p) => self.io(p.clone(), expected_size, false).await,
                    None => Err("no device".into()),
                },
            };
            out.push(result(name, started, res));
        }
        let started = Instant::now();
        let res = self.disconnect(&nqn).await;
        out.push(result("node-disconnect", started, res));
        out
    }

    async fn connect(&self, nqn: &Nqn, expected: u64) -> Result<(PathBuf, String), String> {
        let mut p = ConnectParams::new(nqn.clone(), self.target);
        p.ctrl_loss_tmo = CtrlLossTmo::Seconds(CTRL_LOSS_SECS);
        self.initiator.connect(&p).await.map_err(|e| {
            format!(
                "connect to {}:{}: {e}",
                self.target.ip(),
                self.target.port()
            )
        })?;
        let dev = self
            .initiator
            .wait_for_device(nqn, self.device_timeout, Duration::from_millis(200))
            .await
            .map_err(|e| e.to_string())?;
        let size = block_size(&self.sysfs_root, &dev.name)?;
        if size != expected {
            return Err(format!(
                "{} is {size} bytes, the RDS disk is {expected}",
                dev.path.display()
            ));
        }
        Ok((
            dev.path.clone(),
            format!(
                "{} ({}), {size} bytes as on the RDS",
                dev.path.display(),
                dev.name
            ),
        ))
    }

    async fn io(&self, path: PathBuf, size: u64, write: bool) -> Result<String, String> {
        let label = self.label.clone();
        let job = tokio::task::spawn_blocking(move || pattern_io(&path, size, &label, write));
        match tokio::time::timeout(IO_TIMEOUT, job).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(format!("I/O task failed: {e}")),
            Err(_) => Err(format!("device I/O did not finish within {IO_TIMEOUT:?}")),
        }
    }

    async fn disconnect(&self, nqn: &Nqn) -> Result<String, String> {
        let out = self
            .initiator
            .disconnect(nqn)
            .await
            .map_err(|e| e.to_string())?;
        match self.initiator.resolve(nqn).await {
            Ok(None) => Ok(format!(
                "deleted controller(s) {:?}; no device left",
                out.deleted
            )),
            Ok(Some(d)) => Err(format!("{} still present after the disconnect", d.name)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Best effort for the cleanup path: the run may have stopped while connected.
    pub async fn disconnect_quietly(&self, nqn: &routeros::Nqn) -> Option<String> {
        let nqn = Nqn::new(nqn.as_str()).ok()?;
        match self.initiator.disconnect(&nqn).await {
            Ok(out) if out.deleted.is_empty() => None,
            Ok(out) => Some(format!("disconnected {:?}", out.deleted)),
            Err(e) => Some(format!("disconnect of {nqn} failed: {e}")),
        }
    }
}

fn block_size(sysfs_root: &Path, name: &str) -> Result<u64, String> {
    let p = sysfs_root.join("class/block").join(name).join("size");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    text.trim()
        .parse::<u64>()
        .map(|sectors| sectors * 512)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// The three blocks: first, middle and last of the device (the last proves the whole size is
/// addressable).
fn offsets(size: u64) -> [u64; 3] {
    let b = BLOCK as u64;
    [0, (size / 2) / b * b, size.saturating_sub(b)]
}

fn pattern(label: &str, i: usize) -> Vec<u8> {
    let line = format!("rds-csi selftest {label} block {i}\n");
    line.bytes().cycle().take(BLOCK).collect()
}

fn pattern_io(path: &Path, size: u64, label: &str, write: bool) -> Result<String, String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    for (i, off) in offsets(size).into_iter().enumerate() {
        let want = pattern(label, i);
        f.seek(SeekFrom::Start(off))
            .map_err(|e| format!("seek to {off}: {e}"))?;
        if write {
            f.write_all(&want)
                .map_err(|e| format!("write at {off}: {e}"))?;
        } else {
            let mut got = vec![0u8; BLOCK];
            f.read_exact(&mut got)
                .map_err(|e| format!("read at {off}: {e}"))?;
            if got != want {
                return Err(format!("block at offset {off} reads back different data"));
            }
        }
    }
    if write {
        f.sync_all().map_err(|e| format!("fsync: {e}"))?;
        Ok(format!(
            "3 blocks written at {:?} and flushed",
            offsets(size)
        ))
    } else {
        Ok(format!(
            "3 blocks at {:?} read back intact after a reconnect",
            offsets(size)
        ))
    }
}

fn result(name: &'static str, started: Instant, r: Result<String, String>) -> StepResult {
    let (status, detail) = match r {
        Ok(d) => (Status::Pass, d),
        Err(d) => (Status::Fail, d),
    };
    StepResult {
        name,
        status,
        detail,
        duration: started.elapsed(),
        exchanges: Vec::new(),
    }
}

fn skip(name: &'static str, why: &str) -> StepResult {
    StepResult {
        name,
        status: Status::Skip,
        detail: format!("not run: {why}"),
        duration: Duration::ZERO,
        exchanges: Vec::new(),
    }
}

pub fn failed(name: &'static str, why: String) -> StepResult {
    StepResult {
        name,
        status: Status::Fail,
        detail: why,
        duration: Duration::ZERO,
        exchanges: Vec::new(),
    }
}

/// The node steps as skipped, when the controller half stopped before them.
pub fn skipped(why: &str) -> Vec<StepResult> {
    [
        "node-connect",
        "node-write",
        "node-reconnect",
        "node-read",
        "node-disconnect",
    ]
    .into_iter()
    .map(|n| skip(n, why))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_blocks_cover_both_ends_and_differ() {
        let size = (1u64 << 30) + (64 << 20);
        let [a, b, c] = offsets(size);
        assert_eq!(a, 0);
        assert_eq!(c + BLOCK as u64, size);
        assert!(a < b && b < c);
        assert_ne!(pattern("x", 0), pattern("x", 1));
        assert_ne!(pattern("x", 0), pattern("y", 0));
        assert_eq!(pattern("x", 2).len(), BLOCK);
    }

    #[test]
    fn connects_are_confined_to_selftest_nqns() {
        use crate::selftest::names::{self, Role, RunId};
        let prefix = ManagedPrefix::new(names::nqn_prefix()).unwrap();
        let slot = RunId::new(1_764_870_000).slot(Role::Vol).unwrap();
        let nqn = Nqn::new(names::nqn(&slot).unwrap().as_str()).unwrap();
        prefix.ensure(&nqn).unwrap();
        assert!(!prefix.matches("nqn.2000-02.com.mikrotik:pvc-1c7e"));
    }

    #[test]
    fn pattern_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dev");
        let size = 1u64 << 20;
        std::fs::File::create(&p).unwrap().set_len(size).unwrap();
        pattern_io(&p, size, "run", true).unwrap();
        pattern_io(&p, size, "run", false).unwrap();
        assert!(pattern_io(&p, size, "other-run", false).is_err());
    }
}
