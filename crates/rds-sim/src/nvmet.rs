//! Real NVMe/TCP export of simulated disks through the Linux NVMe target (nvmet) configfs tree.
//!
//! The simulator alone only keeps bookkeeping; with this exporter a `/disk add
//! nvme-tcp-export=yes` becomes a kernel subsystem the node's initiator can really connect to,
//! so the node data path (connect, resolve by NQN, format, mount, outages) is tested against the
//! kernel instead of fakes. Layout created per disk, mirroring what an RDS exports:
//!
//! ```text
//! <configfs>/nvmet/subsystems/<nqn>/attr_allow_any_host = 1      (allow-host-name empty)
//! <configfs>/nvmet/subsystems/<nqn>/attr_allow_any_host = 0      (allow-host-name set)
//! <configfs>/nvmet/subsystems/<nqn>/allowed_hosts/<host> -> ../../../hosts/<host>
//! <configfs>/nvmet/subsystems/<nqn>/namespaces/1/{device_path,buffered_io,enable}
//! <configfs>/nvmet/ports/<id>/addr_{trtype=tcp,adrfam,traddr,trsvcid=<disk port>}
//! <configfs>/nvmet/ports/<id>/subsystems/<nqn> -> ../../../subsystems/<nqn>
//! ```
//!
//! With several listen addresses (an RDS with several network ports, for NVMe/TCP multipath)
//! there is one port per address and disk port, and every exported subsystem is linked into
//! each: the initiator sees one subsystem through several controllers. [`NvmetExporter::set_path`]
//! takes one address's link away and puts it back, which is what a path outage looks like.
//!
//! Every filesystem operation runs with a deadline: configfs writes go straight into the kernel
//! target, which can block (a port draining connections, a wedged backing device), and the
//! simulator answers SSH commands while holding its model lock.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::SimError;
use crate::model::{Exporter, SimDisk};

/// The kernel's limit for an NQN (NVMF_NQN_SIZE minus the terminator).
const MAX_NQN_LEN: usize = 223;
/// The only namespace an RDS disk exports.
const NSID: &str = "1";
/// What `nvme-tcp-server-port` defaults to on an RDS.
const DEFAULT_PORT: u16 = 4420;

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct NvmetConfig {
    /// Mount point of configfs (normally `/sys/kernel/config`).
    pub configfs: PathBuf,
    /// Addresses the TCP ports listen on (`addr_traddr`), one port per address and disk port;
    /// never empty. The first is the preferred path.
    pub traddrs: Vec<IpAddr>,
    /// Deadline for each single configfs operation.
    pub op_timeout: Duration,
}

impl NvmetConfig {
    /// `/sys/kernel/config`, the given listen address, 10 s per operation.
    pub fn new(traddr: IpAddr) -> NvmetConfig {
        NvmetConfig::with_addresses(vec![traddr])
    }

    /// Like [`NvmetConfig::new`], listening on every address in `traddrs` (duplicates dropped,
    /// order kept; an empty list means 127.0.0.1).
    pub fn with_addresses(traddrs: Vec<IpAddr>) -> NvmetConfig {
        let mut unique: Vec<IpAddr> = Vec::with_capacity(traddrs.len());
        for a in traddrs {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        if unique.is_empty() {
            unique.push(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        }
        NvmetConfig {
            configfs: PathBuf::from("/sys/kernel/config"),
            traddrs: unique,
            op_timeout: Duration::from_secs(10),
        }
    }
}

/// Who may connect to an exported disk: the RDS `nvme-tcp-server-allow-host-name`, enforced by
/// the kernel target so a refused host really cannot connect (host fencing is tested against
/// the kernel, not against bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAccess {
    /// Empty allow-host-name: `attr_allow_any_host = 1`.
    AnyHost,
    /// `attr_allow_any_host = 0` and this host NQN alone in `allowed_hosts`.
    Only(String),
}

impl HostAccess {
    pub fn for_disk(disk: &SimDisk) -> HostAccess {
        if disk.allow_host.is_empty() {
            HostAccess::AnyHost
        } else {
            HostAccess::Only(disk.allow_host.clone())
        }
    }
}

/// How directory removal behaves under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// Real configfs: the kernel creates and removes attribute files and default groups itself,
    /// so `rmdir` of a configured item succeeds on its own.
    Configfs,
    /// A plain directory standing in for configfs (tests, dry runs): attribute files are ordinary
    /// files, so removing an item removes what the kernel would have removed with it.
    Plain,
}

/// Exports disks through nvmet; plug it into [`crate::SimConfig::exporter`].
#[derive(Debug)]
pub struct NvmetExporter {
    cfg: NvmetConfig,
    tree: Tree,
    /// Serializes port lookup-or-create, so two exports never create the same port twice.
    ports: Mutex<()>,
}

impl NvmetExporter {
    /// Checks that the nvmet configfs tree is there (module loaded, configfs mounted), so a
    /// missing target fails at start instead of on the first `/disk add`.
    pub fn new(cfg: NvmetConfig) -> Result<NvmetExporter, SimError> {
        let subsystems = cfg.configfs.join("nvmet/subsystems");
        let ports = cfg.configfs.join("nvmet/ports");
        if !subsystems.is_dir() || !ports.is_dir() {
            return Err(SimError::NvmetRefused(format!(
                "{} is not an nvmet configfs tree (is configfs mounted and the nvmet module loaded?)",
                cfg.configfs.join("nvmet").display()
            )));
        }
        Ok(NvmetExporter {
            cfg,
            tree: Tree::Configfs,
            ports: Mutex::new(()),
        })
    }

    /// Uses a plain directory as if it were configfs: creates `nvmet/{subsystems,ports}` and
    /// removes attribute files itself when tearing an item down. For tests and dry runs.
    pub fn new_plain_dir(cfg: NvmetConfig) -> Result<NvmetExporter, SimError> {
        for sub in ["nvmet/subsystems", "nvmet/ports"] {
            let dir = cfg.configfs.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| SimError::Nvmet {
                what: "create directory",
                path: dir.clone(),
                source: e,
            })?;
        }
        Ok(NvmetExporter {
            cfg,
            tree: Tree::Plain,
            ports: Mutex::new(()),
        })
    }

    fn nvmet(&self) -> PathBuf {
        self.cfg.configfs.join("nvmet")
    }

    fn subsystem_dir(&self, nqn: &str) -> PathBuf {
        self.nvmet().join("subsystems").join(nqn)
    }

    /// Runs one filesystem operation on a helper thread and gives up after the deadline. A timed
    /// out thread is left behind: it is stuck in the kernel and nothing can cancel it.
    fn op<T, F>(&self, what: &'static str, path: &Path, f: F) -> Result<T, SimError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> io::Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("nvmet-op".into())
            .spawn(move || {
                let _ = tx.send(f(&owned));
            })
            .map_err(|e| SimError::Nvmet {
                what: "spawn a thread for",
                path: path.to_path_buf(),
                source: e,
            })?;
        match rx.recv_timeout(self.cfg.op_timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(SimError::Nvmet {
                what,
                path: path.to_path_buf(),
                source,
            }),
            Err(_) => Err(SimError::NvmetTimeout {
                what,
                path: path.to_path_buf(),
                after: self.cfg.op_timeout,
            }),
        }
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), SimError> {
        let value = format!("{value}\n");
        self.op("write", path, move |p| std::fs::write(p, value.as_bytes()))
    }

    fn read(&self, path: &Path) -> Result<Option<String>, SimError> {
        self.op("read", path, |p| match std::fs::read_to_string(p) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, SimError> {
        self.op("stat", path, |p| match std::fs::symlink_metadata(p) {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        })
    }

    fn mkdir(&self, path: &Path) -> Result<(), SimError> {
        // create_dir_all works on both trees: under configfs the parents are default groups that
        // already exist, in a plain directory they are made here.
        self.op("create directory", path, |p| std::fs::create_dir_all(p))
    }

    fn rmdir(&self, path: &Path) -> Result<(), SimError> {
        match self.tree {
            Tree::Configfs => self.op("remove directory", path, |p| std::fs::remove_dir(p)),
            Tree::Plain => self.op("remove directory", path, |p| std::fs::remove_dir_all(p)),
        }
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), SimError> {
        let target = target.to_path_buf();
        self.op("link", link, move |l| {
            std::os::unix::fs::symlink(&target, l)
        })
    }

    fn unlink(&self, link: &Path) -> Result<(), SimError> {
        self.op("unlink", link, |l| std::fs::remove_file(l))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, SimError> {
        self.op("list", dir, |d| {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(d)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
    }

    /// Exports one disk; on failure undoes what it did so a retry starts clean.
    pub fn export(&self, disk: &SimDisk, backing: Option<&Path>) -> Result<(), SimError> {
        let nqn = checked_nqn(disk)?;
        let Some(backing) = backing else {
            return Err(SimError::NvmetRefused(format!(
                "disk {} has no backing file: a real export needs directory storage (--storage-dir)",
                disk.slot
            )));
        };
        let port = disk.nvme_port.unwrap_or(DEFAULT_PORT);
        let subsys = self.subsystem_dir(nqn);
        if self.exists(&subsys)? {
            // Left over from an earlier simulator run: the model starts empty, so nobody owns it.
            tracing::warn!(%nqn, "nvmet: removing a stale subsystem left by an earlier run");
            self.unexport(nqn)?;
        }
        let result = self.build(nqn, disk, backing, port);
        if let Err(e) = &result {
            tracing::warn!(%nqn, error = %e, "nvmet: export failed; undoing it");
            if let Err(undo) = self.unexport(nqn) {
                tracing::warn!(%nqn, error = %undo, "nvmet: undoing a failed export failed too");
            }
        }
        result
    }

    fn build(&self, nqn: &str, disk: &SimDisk, backing: &Path, port: u16) -> Result<(), SimError> {
        let subsys = self.subsystem_dir(nqn);
        self.mkdir(&subsys)?;
        self.apply_host_access(&subsys, &HostAccess::for_disk(disk))?;
        let ns = subsys.join("namespaces").join(NSID);
        self.mkdir(&ns)?;
        let backing = backing.to_string_lossy();
        self.write(&ns.join("device_path"), &backing)?;
        // Backing files may live on tmpfs, which refuses O_DIRECT; the page cache is fine for a
        // simulator. Older kernels lack the attribute and always buffer.
        if self.tree == Tree::Plain || self.exists(&ns.join("buffered_io"))? {
            self.write(&ns.join("buffered_io"), "1")?;
        }
        self.write(&ns.join("enable"), "1")?;
        for traddr in self.cfg.traddrs.clone() {
            let port_dir = self.ensure_port(traddr, port)?;
            let links = port_dir.join("subsystems");
            self.mkdir(&links)?;
            self.symlink(&subsys, &links.join(nqn))?;
            tracing::info!(%nqn, %traddr, port, backing = %backing, port_dir = %port_dir.display(), "nvmet: exported");
        }
        Ok(())
    }

    /// Takes the path through `traddr` away from an exported subsystem (`up == false`: its link
    /// into that address's port is removed, so the kernel target drops the controllers of that
    /// path and refuses new ones) or gives it back (`up == true`). Other paths and other
    /// subsystems on the same port are untouched. Idempotent.
    pub fn set_path(&self, nqn: &str, traddr: IpAddr, port: u16, up: bool) -> Result<(), SimError> {
        checked_name("NQN", nqn)?;
        if !self.cfg.traddrs.contains(&traddr) {
            return Err(SimError::NvmetRefused(format!(
                "{traddr} is not one of the exporter's listen addresses"
            )));
        }
        let subsys = self.subsystem_dir(nqn);
        if !self.exists(&subsys)? {
            return Err(SimError::NvmetRefused(format!("{nqn} is not exported")));
        }
        let links = self.ensure_port(traddr, port)?.join("subsystems");
        let link = links.join(nqn);
        match (up, self.exists(&link)?) {
            (true, false) => {
                self.mkdir(&links)?;
                self.symlink(&subsys, &link)?;
                tracing::info!(%nqn, %traddr, port, "nvmet: path restored");
            }
            (false, true) => {
                self.unlink(&link)?;
                tracing::info!(%nqn, %traddr, port, "nvmet: path removed");
            }
            _ => {}
        }
        Ok(())
    }

    /// The kernel refuses `allow_any_host = 1` while hosts are linked and refuses a link while
    /// `allow_any_host = 1`, so the order matters: opening unlinks first, restricting closes
    /// first. A swap therefore passes through "nobody allowed", never through "anybody".
    fn apply_host_access(&self, subsys: &Path, access: &HostAccess) -> Result<(), SimError> {
        let allowed = subsys.join("allowed_hosts");
        let linked = if self.exists(&allowed)? {
            self.list(&allowed)?
        } else {
            Vec::new()
        };
        match access {
            HostAccess::AnyHost => {
                for host in &linked {
                    self.unlink(&allowed.join(host))?;
                }
                self.write(&subsys.join("attr_allow_any_host"), "1")
            }
            HostAccess::Only(host) => {
                checked_name("host NQN", host)?;
                self.write(&subsys.join("attr_allow_any_host"), "0")?;
                for other in linked.iter().filter(|h| *h != host) {
                    self.unlink(&allowed.join(other))?;
                }
                if !linked.contains(host) {
                    let host_dir = self.nvmet().join("hosts").join(host);
                    self.mkdir(&host_dir)?;
                    // Plain trees have no default groups; configfs makes `allowed_hosts` itself.
                    self.mkdir(&allowed)?;
                    self.symlink(&host_dir, &allowed.join(host))?;
                }
                Ok(())
            }
        }
    }

    /// Re-applies the disk's allow-host-name to its live subsystem (`/disk set`).
    pub fn set_host_access(&self, disk: &SimDisk) -> Result<(), SimError> {
        let nqn = checked_nqn(disk)?;
        let subsys = self.subsystem_dir(nqn);
        if !self.exists(&subsys)? {
            return Err(SimError::NvmetRefused(format!(
                "disk {} is not exported (no subsystem {nqn})",
                disk.slot
            )));
        }
        let access = HostAccess::for_disk(disk);
        self.apply_host_access(&subsys, &access)?;
        tracing::info!(%nqn, ?access, "nvmet: host access changed");
        Ok(())
    }

    /// The port listening on `addr` and `port`, created when missing. Ports are shared by
    /// every disk on the same address and TCP port, as on an RDS.
    fn ensure_port(&self, addr: IpAddr, port: u16) -> Result<PathBuf, SimError> {
        let _guard = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let ports = self.nvmet().join("ports");
        let traddr = addr.to_string();
        let trsvcid = port.to_string();
        let ids = self.list(&ports)?;
        for id in &ids {
            let dir = ports.join(id);
            if self.read(&dir.join("addr_trtype"))?.as_deref() == Some("tcp")
                && self.read(&dir.join("addr_traddr"))?.as_deref() == Some(traddr.as_str())
                && self.read(&dir.join("addr_trsvcid"))?.as_deref() == Some(trsvcid.as_str())
            {
                return Ok(dir);
            }
        }
        // Port ids are the kernel's u16 names; the TCP port number is the readable choice.
        let id = std::iter::once(port)
            .chain(1..=u16::MAX)
            .map(|n| n.to_string())
            .find(|n| !ids.contains(n))
            .ok_or_else(|| SimError::NvmetRefused("every nvmet port id is in use".into()))?;
        let dir = ports.join(&id);
        self.mkdir(&dir)?;
        let adrfam = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
        let setup = self
            .write(&dir.join("addr_trtype"), "tcp")
            .and_then(|()| self.write(&dir.join("addr_adrfam"), adrfam))
            .and_then(|()| self.write(&dir.join("addr_traddr"), &traddr))
            .and_then(|()| self.write(&dir.join("addr_trsvcid"), &trsvcid));
        if let Err(e) = setup {
            let _ = self.rmdir(&dir);
            return Err(e);
        }
        tracing::info!(id, %traddr, port, "nvmet: created TCP port");
        Ok(dir)
    }

    /// Resize: tells the target to re-read the backing file size, which raises a namespace
    /// change event so the initiator picks up the new capacity without reconnecting.
    pub fn revalidate(&self, disk: &SimDisk) -> Result<(), SimError> {
        let nqn = checked_nqn(disk)?;
        let attr = self
            .subsystem_dir(nqn)
            .join("namespaces")
            .join(NSID)
            .join("revalidate_size");
        if self.exists(&attr)? {
            self.write(&attr, "1")?;
            tracing::info!(%nqn, size = disk.size, "nvmet: namespace size revalidated");
        } else {
            tracing::warn!(%nqn, "nvmet: kernel has no revalidate_size; the initiator sees the new size only after a reconnect");
        }
        Ok(())
    }

    /// Unlinks the subsystem from every port, disables the namespace and removes it all.
    /// Ports stay: other disks may use them, and an idle port costs nothing.
    pub fn unexport(&self, nqn: &str) -> Result<(), SimError> {
        let ports = self.nvmet().join("ports");
        for id in self.list(&ports)? {
            let link = ports.join(id).join("subsystems").join(nqn);
            if self.exists(&link)? {
                self.unlink(&link)?;
            }
        }
        let subsys = self.subsystem_dir(nqn);
        let namespaces = subsys.join("namespaces");
        if self.exists(&namespaces)? {
            for ns in self.list(&namespaces)? {
                let dir = namespaces.join(ns);
                if self.exists(&dir.join("enable"))? {
                    self.write(&dir.join("enable"), "0")?;
                }
                self.rmdir(&dir)?;
            }
        }
        let allowed = subsys.join("allowed_hosts");
        if self.exists(&allowed)? {
            for host in self.list(&allowed)? {
                self.unlink(&allowed.join(host))?;
            }
        }
        if self.exists(&subsys)? {
            self.rmdir(&subsys)?;
        }
        tracing::info!(%nqn, "nvmet: unexported");
        Ok(())
    }
}

/// The NQN becomes a directory name under configfs, and it arrives over SSH: refuse anything
/// that could name another path.
fn checked_nqn(disk: &SimDisk) -> Result<&str, SimError> {
    let Some(nqn) = disk.nvme_nqn.as_deref() else {
        return Err(SimError::NvmetRefused(format!(
            "disk {} has no nvme-tcp-server-nqn",
            disk.slot
        )));
    };
    checked_name("NQN", nqn)?;
    Ok(nqn)
}

/// Subsystem and host NQNs both become configfs directory names.
fn checked_name(what: &str, nqn: &str) -> Result<(), SimError> {
    if nqn.is_empty()
        || nqn.len() > MAX_NQN_LEN
        || nqn == "."
        || nqn == ".."
        || nqn.chars().any(|c| c == '/' || c.is_control())
    {
        return Err(SimError::NvmetRefused(format!(
            "{what} {nqn:?} cannot be an nvmet configfs name"
        )));
    }
    Ok(())
}

impl Exporter for NvmetExporter {
    fn on_add(&self, disk: &SimDisk, backing: Option<&Path>) -> Result<(), String> {
        self.export(disk, backing).map_err(|e| e.to_string())
    }

    fn on_resize(&self, disk: &SimDisk) {
        if let Err(e) = self.revalidate(disk) {
            tracing::warn!(slot = %disk.slot, error = %e, "nvmet: resize not propagated to the target");
        }
    }

    fn on_remove(&self, disk: &SimDisk) {
        let result = checked_nqn(disk).and_then(|nqn| self.unexport(nqn));
        if let Err(e) = result {
            tracing::warn!(slot = %disk.slot, error = %e, "nvmet: removing the export failed");
        }
    }

    fn on_allow_host(&self, disk: &SimDisk) -> Result<(), String> {
        self.set_host_access(disk).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::{Sim, SimConfig, Storage};

    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-a";

    fn exporter(root: &Path) -> NvmetExporter {
        let mut cfg = NvmetConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        cfg.configfs = root.to_path_buf();
        NvmetExporter::new_plain_dir(cfg).unwrap()
    }

    fn disk(slot: &str, nqn: &str, port: u16) -> SimDisk {
        SimDisk {
            slot: slot.into(),
            file_path: format!("/storage-pool/{slot}.img"),
            size: 1 << 20,
            nvme_export: true,
            nvme_port: Some(port),
            nvme_nqn: Some(nqn.into()),
            allow_host: String::new(),
        }
    }

    fn attr(path: PathBuf) -> String {
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    #[test]
    fn export_writes_subsystem_namespace_port_and_link() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let backing = root.path().join("pvc-a.img");
        x.export(&disk("pvc-a", NQN, 4420), Some(&backing)).unwrap();

        let s = root.path().join("nvmet/subsystems").join(NQN);
        assert_eq!(attr(s.join("attr_allow_any_host")), "1");
        assert_eq!(
            attr(s.join("namespaces/1/device_path")),
            backing.to_string_lossy()
        );
        assert_eq!(attr(s.join("namespaces/1/buffered_io")), "1");
        assert_eq!(attr(s.join("namespaces/1/enable")), "1");
        let p = root.path().join("nvmet/ports/4420");
        assert_eq!(attr(p.join("addr_trtype")), "tcp");
        assert_eq!(attr(p.join("addr_adrfam")), "ipv4");
        assert_eq!(attr(p.join("addr_traddr")), "127.0.0.1");
        assert_eq!(attr(p.join("addr_trsvcid")), "4420");
        assert_eq!(
            std::fs::read_link(p.join("subsystems").join(NQN)).unwrap(),
            s
        );
    }

    #[test]
    fn disks_on_one_port_share_it_and_other_ports_get_their_own() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let b = root.path().join("b.img");
        x.export(&disk("pvc-a", NQN, 4420), Some(&b)).unwrap();
        x.export(&disk("pvc-b", "nqn.x:pvc-b", 4420), Some(&b))
            .unwrap();
        x.export(&disk("pvc-c", "nqn.x:pvc-c", 4421), Some(&b))
            .unwrap();
        let ports = root.path().join("nvmet/ports");
        let mut ids: Vec<_> = std::fs::read_dir(&ports)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, ["4420", "4421"]);
        assert!(ports.join("4420/subsystems/nqn.x:pvc-b").is_symlink());
        assert!(ports.join("4421/subsystems/nqn.x:pvc-c").is_symlink());
    }

    #[test]
    fn an_existing_port_for_the_address_is_reused_whatever_its_id() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let p = root.path().join("nvmet/ports/7");
        std::fs::create_dir_all(p.join("subsystems")).unwrap();
        for (k, v) in [
            ("addr_trtype", "tcp\n"),
            ("addr_traddr", "127.0.0.1\n"),
            ("addr_trsvcid", "4420\n"),
        ] {
            std::fs::write(p.join(k), v).unwrap();
        }
        x.export(&disk("pvc-a", NQN, 4420), Some(&root.path().join("a.img")))
            .unwrap();
        assert!(p.join("subsystems").join(NQN).is_symlink());
        assert!(!root.path().join("nvmet/ports/4420").exists());
    }

    fn port_of(root: &Path, traddr: &str, port: u16) -> PathBuf {
        let ports = root.join("nvmet/ports");
        std::fs::read_dir(&ports)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                attr(p.join("addr_traddr")) == traddr
                    && attr(p.join("addr_trsvcid")) == port.to_string()
            })
            .unwrap()
    }

    #[test]
    fn several_addresses_export_every_disk_on_each_and_a_path_can_be_taken_away() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = NvmetConfig::with_addresses(vec![
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]);
        assert_eq!(cfg.traddrs.len(), 2, "duplicates dropped");
        cfg.configfs = root.path().to_path_buf();
        let x = NvmetExporter::new_plain_dir(cfg).unwrap();
        let b = root.path().join("a.img");
        x.export(&disk("pvc-a", NQN, 4420), Some(&b)).unwrap();
        x.export(&disk("pvc-b", "nqn.x:pvc-b", 4420), Some(&b))
            .unwrap();
        let p1 = port_of(root.path(), "127.0.0.1", 4420);
        let p2 = port_of(root.path(), "127.0.0.2", 4420);
        assert_ne!(p1, p2);
        for p in [&p1, &p2] {
            assert!(
                p.join("subsystems").join(NQN).is_symlink(),
                "{}",
                p.display()
            );
            assert!(p.join("subsystems/nqn.x:pvc-b").is_symlink());
        }
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        x.set_path(NQN, two, 4420, false).unwrap();
        x.set_path(NQN, two, 4420, false).unwrap();
        assert!(!p2.join("subsystems").join(NQN).is_symlink());
        assert!(
            p2.join("subsystems/nqn.x:pvc-b").is_symlink(),
            "other disks keep the path"
        );
        assert!(
            p1.join("subsystems").join(NQN).is_symlink(),
            "the other path stays"
        );
        x.set_path(NQN, two, 4420, true).unwrap();
        x.set_path(NQN, two, 4420, true).unwrap();
        assert!(p2.join("subsystems").join(NQN).is_symlink());
        assert!(
            x.set_path(NQN, "10.9.9.9".parse().unwrap(), 4420, true)
                .is_err()
        );
        assert!(x.set_path("nqn.x:none", two, 4420, true).is_err());
        x.unexport(NQN).unwrap();
        assert!(!p1.join("subsystems").join(NQN).is_symlink());
        assert!(!p2.join("subsystems").join(NQN).is_symlink());
    }

    #[test]
    fn resize_writes_revalidate_size_when_the_kernel_has_it() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let d = disk("pvc-a", NQN, 4420);
        x.export(&d, Some(&root.path().join("a.img"))).unwrap();
        let attr_path = root
            .path()
            .join("nvmet/subsystems")
            .join(NQN)
            .join("namespaces/1/revalidate_size");
        // Absent (old kernel): nothing is invented.
        x.revalidate(&d).unwrap();
        assert!(!attr_path.exists());
        std::fs::write(&attr_path, "0\n").unwrap();
        x.revalidate(&d).unwrap();
        assert_eq!(attr(attr_path), "1");
    }

    #[test]
    fn unexport_unlinks_and_removes_the_subsystem_but_keeps_the_port() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let b = root.path().join("a.img");
        x.export(&disk("pvc-a", NQN, 4420), Some(&b)).unwrap();
        x.export(&disk("pvc-b", "nqn.x:pvc-b", 4420), Some(&b))
            .unwrap();
        x.unexport(NQN).unwrap();
        let nvmet = root.path().join("nvmet");
        assert!(!nvmet.join("subsystems").join(NQN).exists());
        assert!(!nvmet.join("ports/4420/subsystems").join(NQN).is_symlink());
        assert!(nvmet.join("ports/4420/subsystems/nqn.x:pvc-b").is_symlink());
        assert!(nvmet.join("subsystems/nqn.x:pvc-b").is_dir());
    }

    #[test]
    fn a_stale_subsystem_from_an_earlier_run_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let s = root.path().join("nvmet/subsystems").join(NQN);
        std::fs::create_dir_all(s.join("namespaces/1")).unwrap();
        std::fs::write(s.join("namespaces/1/device_path"), "/old.img\n").unwrap();
        let b = root.path().join("new.img");
        x.export(&disk("pvc-a", NQN, 4420), Some(&b)).unwrap();
        assert_eq!(
            attr(s.join("namespaces/1/device_path")),
            b.to_string_lossy()
        );
    }

    #[test]
    fn nqns_that_name_other_paths_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let b = root.path().join("a.img");
        for bad in ["", "..", ".", "a/../../etc", "nqn\nx", &"n".repeat(224)] {
            let e = x.export(&disk("pvc-a", bad, 4420), Some(&b)).unwrap_err();
            assert!(matches!(e, SimError::NvmetRefused(_)), "{bad:?}: {e}");
        }
        assert_eq!(
            std::fs::read_dir(root.path().join("nvmet/subsystems"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn memory_storage_cannot_be_exported() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let e = x.export(&disk("pvc-a", NQN, 4420), None).unwrap_err();
        assert!(e.to_string().contains("--storage-dir"), "{e}");
    }

    #[test]
    fn a_failed_export_is_undone() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        // A regular file where the port directory must go makes the port step fail after the
        // subsystem exists.
        std::fs::write(root.path().join("nvmet/ports/4420"), "").unwrap();
        let e = x
            .export(&disk("pvc-a", NQN, 4420), Some(&root.path().join("a.img")))
            .unwrap_err();
        assert!(e.to_string().contains("nvmet/ports"), "{e}");
        assert!(!root.path().join("nvmet/subsystems").join(NQN).exists());
    }

    #[test]
    fn new_refuses_a_root_without_nvmet() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = NvmetConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        cfg.configfs = root.path().to_path_buf();
        let e = NvmetExporter::new(cfg).unwrap_err();
        assert!(e.to_string().contains("nvmet module"), "{e}");
    }

    #[test]
    fn a_hanging_operation_fails_with_a_timeout_naming_the_path() {
        let root = tempfile::tempdir().unwrap();
        let mut x = exporter(root.path());
        x.cfg.op_timeout = Duration::from_millis(50);
        let path = root.path().join("stuck");
        let e = x
            .op("write", &path, |_| {
                std::thread::sleep(Duration::from_secs(2));
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(e, SimError::NvmetTimeout { .. }), "{e}");
        assert!(e.to_string().contains("stuck"), "{e}");
    }

    /// The whole path: `/disk add`, `/disk set`, `/disk remove` through the simulator's model.
    #[tokio::test]
    async fn simulator_commands_drive_the_exporter() {
        let root = tempfile::tempdir().unwrap();
        let storage = root.path().join("storage");
        let mut cfg = SimConfig::for_tests();
        cfg.storage = Storage::Dir(storage.clone());
        cfg.exporter = Arc::new(exporter(&root.path().join("cfs")));
        let sim = Sim::start(cfg).await.unwrap();
        sim.run_local(&format!(
            "/disk add type=file file-path=/storage-pool/v/pvc-a.img file-size=1M slot=pvc-a \
             nvme-tcp-export=yes nvme-tcp-server-port=4421 nvme-tcp-server-nqn={NQN}"
        ))
        .unwrap();
        let s = root.path().join("cfs/nvmet/subsystems").join(NQN);
        assert_eq!(
            attr(s.join("namespaces/1/device_path")),
            storage.join("storage-pool/v/pvc-a.img").to_string_lossy()
        );
        let link = root
            .path()
            .join("cfs/nvmet/ports/4421/subsystems")
            .join(NQN);
        assert!(link.is_symlink());

        std::fs::write(s.join("namespaces/1/revalidate_size"), "0\n").unwrap();
        sim.run_local("/disk set [find slot=pvc-a] file-size=2M")
            .unwrap();
        assert_eq!(attr(s.join("namespaces/1/revalidate_size")), "1");

        sim.run_local("/disk remove [find slot=pvc-a]").unwrap();
        assert!(!s.exists());
        assert!(!link.is_symlink());
    }

    const HOST_A: &str = "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e";
    const HOST_B: &str = "nqn.2014-08.org.nvmexpress:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae7";

    fn linked_hosts(subsys: &Path) -> Vec<String> {
        let dir = subsys.join("allowed_hosts");
        if !dir.exists() {
            return Vec::new();
        }
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_allowed_host_closes_the_subsystem_to_everyone_else() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let mut d = disk("pvc-a", NQN, 4420);
        d.allow_host = HOST_A.into();
        x.export(&d, Some(&root.path().join("a.img"))).unwrap();
        let s = root.path().join("nvmet/subsystems").join(NQN);
        assert_eq!(attr(s.join("attr_allow_any_host")), "0");
        assert_eq!(linked_hosts(&s), [HOST_A]);
        assert_eq!(
            std::fs::read_link(s.join("allowed_hosts").join(HOST_A)).unwrap(),
            root.path().join("nvmet/hosts").join(HOST_A)
        );
        assert!(root.path().join("nvmet/hosts").join(HOST_A).is_dir());
    }

    #[test]
    fn host_access_swaps_and_opens_again() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let mut d = disk("pvc-a", NQN, 4420);
        x.export(&d, Some(&root.path().join("a.img"))).unwrap();
        let s = root.path().join("nvmet/subsystems").join(NQN);

        d.allow_host = HOST_A.into();
        x.set_host_access(&d).unwrap();
        assert_eq!(attr(s.join("attr_allow_any_host")), "0");
        assert_eq!(linked_hosts(&s), [HOST_A]);
        // Repeating is a no-op, not an error (the link exists already).
        x.set_host_access(&d).unwrap();
        assert_eq!(linked_hosts(&s), [HOST_A]);

        d.allow_host = HOST_B.into();
        x.set_host_access(&d).unwrap();
        assert_eq!(attr(s.join("attr_allow_any_host")), "0");
        assert_eq!(linked_hosts(&s), [HOST_B]);

        d.allow_host.clear();
        x.set_host_access(&d).unwrap();
        assert_eq!(attr(s.join("attr_allow_any_host")), "1");
        assert!(linked_hosts(&s).is_empty());

        // Unexport removes a restricted subsystem too.
        d.allow_host = HOST_A.into();
        x.set_host_access(&d).unwrap();
        x.unexport(NQN).unwrap();
        assert!(!s.exists());
    }

    #[test]
    fn host_nqns_that_name_other_paths_are_refused_and_change_nothing() {
        let root = tempfile::tempdir().unwrap();
        let x = exporter(root.path());
        let mut d = disk("pvc-a", NQN, 4420);
        x.export(&d, Some(&root.path().join("a.img"))).unwrap();
        let s = root.path().join("nvmet/subsystems").join(NQN);
        for bad in ["..", "a/../../x", "nqn\nx"] {
            d.allow_host = bad.into();
            let e = x.set_host_access(&d).unwrap_err();
            assert!(matches!(e, SimError::NvmetRefused(_)), "{bad:?}: {e}");
            assert_eq!(attr(s.join("attr_allow_any_host")), "1", "{bad:?}");
        }
        let unexported = disk("pvc-b", "nqn.x:pvc-b", 4420);
        assert!(x.set_host_access(&unexported).is_err());
    }

    /// `/disk set … nvme-tcp-server-allow-host-name=` over the simulator reaches configfs and
    /// `/disk print detail`; a value nvmet refuses fails the command and keeps the old one.
    #[tokio::test]
    async fn disk_set_allow_host_drives_the_exporter() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = SimConfig::for_tests();
        cfg.storage = Storage::Dir(root.path().join("storage"));
        cfg.exporter = Arc::new(exporter(&root.path().join("cfs")));
        let sim = Sim::start(cfg).await.unwrap();
        sim.run_local(&format!(
            "/disk add type=file file-path=/storage-pool/v/pvc-a.img file-size=1M slot=pvc-a \
             nvme-tcp-export=yes nvme-tcp-server-nqn={NQN}"
        ))
        .unwrap();
        let s = root.path().join("cfs/nvmet/subsystems").join(NQN);
        sim.run_local(&format!(
            "/disk set [find slot=pvc-a] nvme-tcp-server-allow-host-name=\"{HOST_A}\""
        ))
        .unwrap();
        assert_eq!(attr(s.join("attr_allow_any_host")), "0");
        assert_eq!(linked_hosts(&s), [HOST_A]);
        let printed = sim
            .run_local("/disk print detail where slot=pvc-a")
            .unwrap();
        let disks = routeros::disk::parse_disks(&printed).unwrap();
        assert_eq!(disks[0].allow_host.as_deref(), Some(HOST_A));

        let e = sim
            .run_local("/disk set [find slot=pvc-a] nvme-tcp-server-allow-host-name=\"a/b\"")
            .unwrap_err();
        assert!(e.starts_with("failure:"), "{e}");
        assert_eq!(sim.disks()[0].allow_host, HOST_A);
        assert_eq!(linked_hosts(&s), [HOST_A]);

        sim.run_local("/disk set [find slot=pvc-a] nvme-tcp-server-allow-host-name=\"\"")
            .unwrap();
        assert_eq!(attr(s.join("attr_allow_any_host")), "1");
        assert!(linked_hosts(&s).is_empty());
    }

    /// Disks without `nvme-tcp-export=yes` never reach the kernel target.
    #[tokio::test]
    async fn unexported_disks_leave_configfs_alone() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = SimConfig::for_tests();
        cfg.storage = Storage::Dir(root.path().join("storage"));
        cfg.exporter = Arc::new(exporter(&root.path().join("cfs")));
        let sim = Sim::start(cfg).await.unwrap();
        sim.run_local(
            "/disk add type=file file-path=/storage-pool/v/pvc-a.img file-size=1M slot=pvc-a",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_dir(root.path().join("cfs/nvmet/subsystems"))
                .unwrap()
                .count(),
            0
        );
    }
}
