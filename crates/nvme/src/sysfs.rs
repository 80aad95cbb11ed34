//! A read-only model of the kernel's NVMe sysfs tree, rooted at a configurable path.
//!
//! Controller numbers are not stable (a reconnect can turn `nvme0` into `nvme3`, and
//! `/dev/nvme0n1` can then be a *different* volume), so nothing here is looked up by number:
//! every answer starts from the subsystem NQN. Entries under `class/` are symlinks on a real
//! kernel; all reads follow them. Block device names are only ever taken from what sysfs lists,
//! never constructed from a controller number.
//!
//! Layout relied upon (see tests/support for the fake tree):
//! - `class/nvme-subsystem/nvme-subsysS/subsysnqn`, plus `nvmeSnN` head block devices when
//!   native multipath is on;
//! - `class/nvme/nvmeC/{state,address,transport,subsysnqn}`, plus `nvmeCnN` block devices
//!   (multipath off) or hidden `nvmeScCnN` per-path devices (multipath on, no `/dev` node);
//! - `class/block/<name>`, whose target's parent directory owns `subsysnqn` — used to re-verify
//!   that a device still belongs to an NQN.

use std::fs;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::{NvmeError, Result};

/// Kernel controller state (`/sys/class/nvme/nvmeX/state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerState {
    Live,
    New,
    Connecting,
    Resetting,
    Deleting,
    DeletingNoIo,
    Dead,
    Unknown(String),
}

impl ControllerState {
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "live" => ControllerState::Live,
            "new" => ControllerState::New,
            "connecting" => ControllerState::Connecting,
            "resetting" => ControllerState::Resetting,
            "deleting" => ControllerState::Deleting,
            "deleting (no IO)" => ControllerState::DeletingNoIo,
            "dead" => ControllerState::Dead,
            other => ControllerState::Unknown(other.to_string()),
        }
    }

    pub fn is_live(&self) -> bool {
        *self == ControllerState::Live
    }

    /// States the kernel leaves on its own (reconnect loop or reset); with ctrl_loss_tmo=-1 a
    /// target outage parks the controller here and it returns to `live` by itself.
    pub fn is_recovering(&self) -> bool {
        matches!(
            self,
            ControllerState::New | ControllerState::Connecting | ControllerState::Resetting
        )
    }
}

impl std::fmt::Display for ControllerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ControllerState::Live => "live",
            ControllerState::New => "new",
            ControllerState::Connecting => "connecting",
            ControllerState::Resetting => "resetting",
            ControllerState::Deleting => "deleting",
            ControllerState::DeletingNoIo => "deleting (no IO)",
            ControllerState::Dead => "dead",
            ControllerState::Unknown(s) => s,
        })
    }
}

/// Parsed `address` attribute, e.g. `traddr=10.0.0.1,trsvcid=4420,src_addr=10.0.0.2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerAddress {
    pub traddr: Option<IpAddr>,
    pub trsvcid: Option<u16>,
    pub raw: String,
}

impl ControllerAddress {
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        let mut traddr = None;
        let mut trsvcid = None;
        for part in raw.split(',') {
            match part.split_once('=') {
                Some(("traddr", v)) => traddr = v.trim().parse().ok(),
                Some(("trsvcid", v)) => trsvcid = v.trim().parse().ok(),
                _ => {}
            }
        }
        ControllerAddress {
            traddr,
            trsvcid,
            raw: raw.to_string(),
        }
    }

    pub fn matches(&self, ip: IpAddr, port: u16) -> bool {
        self.traddr == Some(ip) && self.trsvcid == Some(port)
    }
}

/// One controller (one path to a subsystem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `nvmeC` — only meaningful for this snapshot.
    pub name: String,
    pub subsysnqn: String,
    pub state: ControllerState,
    pub transport: String,
    pub address: ControllerAddress,
    /// Hidden per-path devices (`nvmeScCnN`) under this controller; they have no `/dev` node.
    pub paths: Vec<String>,
}

/// How a block device relates to its subsystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceKind {
    /// `nvmeSnN` under the subsystem: native multipath head, survives path changes.
    MultipathHead,
    /// `nvmeCnN` under controller `controller` (multipath off): dies with that controller.
    PerController { controller: String },
}

/// A block device found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub kind: NamespaceKind,
    pub nsid: Option<u32>,
    /// major:minor from `dev`, so callers can mknod instead of bind-mounting /dev.
    pub dev: Option<(u32, u32)>,
}

/// A subsystem and everything attached to it, as seen in one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsystem {
    /// `nvme-subsysS`, or `None` when controllers for the NQN exist without a subsystem entry.
    pub name: Option<String>,
    pub nqn: String,
    pub controllers: Vec<Controller>,
    /// Block devices that have a `class/block` entry, best candidate first.
    pub namespaces: Vec<Namespace>,
}

impl Subsystem {
    pub fn live_controllers(&self) -> impl Iterator<Item = &Controller> {
        self.controllers.iter().filter(|c| c.state.is_live())
    }

    /// Controllers whose NQN and address match a connect request.
    pub fn controllers_at(&self, ip: IpAddr, port: u16) -> impl Iterator<Item = &Controller> {
        self.controllers
            .iter()
            .filter(move |c| c.address.matches(ip, port))
    }
}

/// Whether the kernel's native NVMe multipath is on (`/sys/module/nvme_core/parameters/multipath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Multipath {
    /// `Y`: every path of a subsystem feeds one head block device (`nvmeSnN`).
    Enabled,
    /// `N` (`nvme_core.multipath=N`), or a kernel built without `CONFIG_NVME_MULTIPATH`: each
    /// controller gets a block device of its own, so a second path would be a second device
    /// for the same volume. `reason` says which, for logs and VolumeCondition.
    Disabled { reason: String },
    /// `nvme_core` is not loaded (no `/sys/module/nvme_core`): nothing can be said yet.
    Unknown,
}

impl Multipath {
    pub fn is_disabled(&self) -> bool {
        matches!(self, Multipath::Disabled { .. })
    }
}

/// One configured path (target address) of a subsystem and the controllers the kernel has
/// for it right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    pub target: crate::params::TargetAddress,
    /// Controllers at this address (normally one), with their states.
    pub controllers: Vec<(String, ControllerState)>,
}

impl PathState {
    /// A controller of this path carries I/O.
    pub fn is_live(&self) -> bool {
        self.controllers.iter().any(|(_, s)| s.is_live())
    }

    /// No controller at all for this address (never connected, or deleted by the kernel or an
    /// operator): only a new connect brings it back.
    pub fn is_absent(&self) -> bool {
        !self
            .controllers
            .iter()
            .any(|(_, s)| s.is_live() || s.is_recovering())
    }

    /// `address:port` (IPv6 in brackets), as paths are named in reports.
    pub fn name(&self) -> String {
        std::net::SocketAddr::new(self.target.ip(), self.target.port()).to_string()
    }

    /// `address:port (nvme1=connecting)`, or `address:port (no controller)`.
    pub fn describe(&self) -> String {
        if self.controllers.is_empty() {
            return format!("{} (no controller)", self.name());
        }
        let list: Vec<String> = self
            .controllers
            .iter()
            .map(|(n, s)| format!("{n}={s}"))
            .collect();
        format!("{} ({})", self.name(), list.join(","))
    }
}

/// The state of each of `targets` among `controllers` (one subsystem's), in `targets` order.
pub fn path_states(
    controllers: &[Controller],
    targets: &[crate::params::TargetAddress],
) -> Vec<PathState> {
    targets
        .iter()
        .map(|t| PathState {
            target: *t,
            controllers: controllers
                .iter()
                .filter(|c| c.address.matches(t.ip(), t.port()))
                .map(|c| (c.name.clone(), c.state.clone()))
                .collect(),
        })
        .collect()
}

/// The block device that carries an NQN's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub nqn: String,
    /// Kernel block device name, e.g. `nvme2n1`.
    pub name: String,
    /// `<dev root>/<name>`.
    pub path: PathBuf,
    pub dev: Option<(u32, u32)>,
    pub kind: NamespaceKind,
    pub controllers: Vec<Controller>,
}

impl Device {
    pub fn has_live_controller(&self) -> bool {
        self.controllers.iter().any(|c| c.state.is_live())
    }
}

/// Who owns a block device right now, read through its sysfs ancestry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOwner {
    pub nqn: String,
    pub dev: Option<(u32, u32)>,
}

/// Shapes of `nvme*` names that matter; partitions and generic char devices parse as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NvmeName {
    Controller(u32),
    Namespace(u32, u32),
    Path(u32, u32, u32),
}

pub(crate) fn parse_name(s: &str) -> Option<NvmeName> {
    fn num(s: &str) -> Option<(u32, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if end == 0 || (end > 1 && s.starts_with('0')) {
            return None;
        }
        Some((s[..end].parse().ok()?, &s[end..]))
    }
    let (a, rest) = num(s.strip_prefix("nvme")?)?;
    if rest.is_empty() {
        return Some(NvmeName::Controller(a));
    }
    if let Some(r) = rest.strip_prefix('c') {
        let (c, r) = num(r)?;
        let (n, r) = num(r.strip_prefix('n')?)?;
        return r.is_empty().then_some(NvmeName::Path(a, c, n));
    }
    let (n, r) = num(rest.strip_prefix('n')?)?;
    r.is_empty().then_some(NvmeName::Namespace(a, n))
}

/// The block device of a subsystem: its first namespace in preference order (multipath head,
/// then namespaces of live controllers; see `Sysfs::subsystem`).
pub(crate) fn device_of(dev_root: &Path, sub: &Subsystem) -> Option<Device> {
    let ns = sub.namespaces.first()?;
    Some(Device {
        nqn: sub.nqn.clone(),
        name: ns.name.clone(),
        path: dev_root.join(&ns.name),
        dev: ns.dev,
        kind: ns.kind.clone(),
        controllers: sub.controllers.clone(),
    })
}

/// Entry point to the tree. Cheap to clone; holds only paths.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
    dev_root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new("/sys", "/dev")
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>, dev_root: impl Into<PathBuf>) -> Self {
        Sysfs {
            root: root.into(),
            dev_root: dev_root.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Native multipath setting of the loaded `nvme_core` (read on every call: the module can be
    /// reloaded with another setting while the plugin runs).
    pub fn multipath(&self) -> Result<Multipath> {
        let module = self.root.join("module/nvme_core");
        match read_attr(&module.join("parameters/multipath"))? {
            Some(v) if matches!(v.as_str(), "Y" | "y" | "1") => Ok(Multipath::Enabled),
            Some(v) => Ok(Multipath::Disabled {
                reason: format!(
                    "native NVMe multipath is disabled in the kernel (nvme_core.multipath={v})"
                ),
            }),
            None if exists(&module)? => Ok(Multipath::Disabled {
                reason: "the kernel's nvme_core has no multipath support (built without CONFIG_NVME_MULTIPATH)".into(),
            }),
            None => Ok(Multipath::Unknown),
        }
    }

    /// `class/nvme/<ctrl>` — where `delete_controller` lives.
    pub fn controller_dir(&self, name: &str) -> PathBuf {
        self.root.join("class/nvme").join(name)
    }

    /// Every controller on the host (including PCIe and other vendors' fabrics).
    pub fn controllers(&self) -> Result<Vec<Controller>> {
        let mut out = Vec::new();
        for name in list_names(&self.root.join("class/nvme"))? {
            if !matches!(parse_name(&name), Some(NvmeName::Controller(_))) {
                continue;
            }
            if let Some(c) = self.controller(&name)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One controller by its current name; `None` if it vanished.
    pub fn controller(&self, name: &str) -> Result<Option<Controller>> {
        let dir = self.controller_dir(name);
        let Some(subsysnqn) = read_attr(&dir.join("subsysnqn"))? else {
            return Ok(None);
        };
        let state = read_attr(&dir.join("state"))?
            .map(|s| ControllerState::parse(&s))
            .unwrap_or(ControllerState::Unknown(String::new()));
        let transport = read_attr(&dir.join("transport"))?.unwrap_or_default();
        let address =
            ControllerAddress::parse(&read_attr(&dir.join("address"))?.unwrap_or_default());
        let paths = list_names(&dir)?
            .into_iter()
            .filter(|n| matches!(parse_name(n), Some(NvmeName::Path(..))))
            .collect();
        Ok(Some(Controller {
            name: name.to_string(),
            subsysnqn,
            state,
            transport,
            address,
            paths,
        }))
    }

    /// Every subsystem on the host, including ones this driver must never touch.
    pub fn subsystems(&self) -> Result<Vec<Subsystem>> {
        let controllers = self.controllers()?;
        let mut out = Vec::new();
        for name in list_names(&self.root.join("class/nvme-subsystem"))? {
            let dir = self.root.join("class/nvme-subsystem").join(&name);
            let Some(nqn) = read_attr(&dir.join("subsysnqn"))? else {
                continue;
            };
            out.push(self.assemble(Some(name), nqn, &controllers)?);
        }
        // Controllers whose subsystem entry is missing still need to be visible to cleanup.
        let mut stray: Vec<&str> = controllers
            .iter()
            .map(|c| c.subsysnqn.as_str())
            .filter(|nqn| !out.iter().any(|s| s.nqn == *nqn))
            .collect();
        stray.sort_unstable();
        stray.dedup();
        for nqn in stray {
            out.push(self.assemble(None, nqn.to_string(), &controllers)?);
        }
        Ok(out)
    }

    /// The controllers whose `subsysnqn` is `nqn`. Every controller on the host is looked at
    /// (a controller whose subsystem entry is gone still counts), but only its `subsysnqn` is
    /// read unless it matches: one small read per foreign controller instead of a full one.
    fn controllers_of(&self, nqn: &str) -> Result<Vec<Controller>> {
        let mut out = Vec::new();
        for name in list_names(&self.root.join("class/nvme"))? {
            if !matches!(parse_name(&name), Some(NvmeName::Controller(_))) {
                continue;
            }
            let owner = read_attr(&self.controller_dir(&name).join("subsysnqn"))?;
            if owner.as_deref() != Some(nqn) {
                continue;
            }
            if let Some(c) = self.controller(&name)?
                && c.subsysnqn == nqn
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The subsystem for `nqn`, or `None` when nothing on the host carries it.
    pub fn subsystem(&self, nqn: &str) -> Result<Option<Subsystem>> {
        let controllers = self.controllers_of(nqn)?;
        for name in list_names(&self.root.join("class/nvme-subsystem"))? {
            let dir = self.root.join("class/nvme-subsystem").join(&name);
            if read_attr(&dir.join("subsysnqn"))?.as_deref() == Some(nqn) {
                return self
                    .assemble(Some(name), nqn.to_string(), &controllers)
                    .map(Some);
            }
        }
        if controllers.iter().any(|c| c.subsysnqn == nqn) {
            return self.assemble(None, nqn.to_string(), &controllers).map(Some);
        }
        Ok(None)
    }

    fn assemble(&self, name: Option<String>, nqn: String, all: &[Controller]) -> Result<Subsystem> {
        let controllers: Vec<Controller> =
            all.iter().filter(|c| c.subsysnqn == nqn).cloned().collect();
        let mut namespaces = Vec::new();
        if let Some(sub) = &name {
            let dir = self.root.join("class/nvme-subsystem").join(sub);
            for n in list_names(&dir)? {
                if matches!(parse_name(&n), Some(NvmeName::Namespace(..)))
                    && let Some(ns) =
                        self.namespace(&dir.join(&n), &n, NamespaceKind::MultipathHead)?
                {
                    namespaces.push(ns);
                }
            }
        }
        for c in &controllers {
            let dir = self.controller_dir(&c.name);
            for n in list_names(&dir)? {
                if matches!(parse_name(&n), Some(NvmeName::Namespace(..))) {
                    let kind = NamespaceKind::PerController {
                        controller: c.name.clone(),
                    };
                    if let Some(ns) = self.namespace(&dir.join(&n), &n, kind)? {
                        namespaces.push(ns);
                    }
                }
            }
        }
        // Heads first (they survive path loss), then namespaces of live controllers, then by
        // namespace id and name so the choice is deterministic.
        let rank = |ns: &Namespace| match &ns.kind {
            NamespaceKind::MultipathHead => 0,
            NamespaceKind::PerController { controller } => {
                if controllers
                    .iter()
                    .any(|c| &c.name == controller && c.state.is_live())
                {
                    1
                } else {
                    2
                }
            }
        };
        namespaces.sort_by(|a, b| {
            (rank(a), a.nsid.unwrap_or(u32::MAX), &a.name).cmp(&(
                rank(b),
                b.nsid.unwrap_or(u32::MAX),
                &b.name,
            ))
        });
        Ok(Subsystem {
            name,
            nqn,
            controllers,
            namespaces,
        })
    }

    /// A namespace directory counts only if the block class lists it (otherwise there is no
    /// device node to hand out).
    fn namespace(&self, dir: &Path, name: &str, kind: NamespaceKind) -> Result<Option<Namespace>> {
        if !exists(&self.root.join("class/block").join(name))? {
            return Ok(None);
        }
        let nsid = read_attr(&dir.join("nsid"))?.and_then(|s| s.parse().ok());
        let dev = read_attr(&dir.join("dev"))?.and_then(|s| parse_dev(&s));
        Ok(Some(Namespace {
            name: name.to_string(),
            kind,
            nsid,
            dev,
        }))
    }

    /// Uncached NQN → block device resolution.
    pub fn device(&self, nqn: &str) -> Result<Option<Device>> {
        let Some(sub) = self.subsystem(nqn)? else {
            return Ok(None);
        };
        Ok(self.device_of(&sub))
    }

    pub(crate) fn device_of(&self, sub: &Subsystem) -> Option<Device> {
        device_of(&self.dev_root, sub)
    }

    pub(crate) fn dev_root(&self) -> &Path {
        &self.dev_root
    }

    /// Re-reads, through the device's own sysfs ancestry, which NQN owns block device `name`
    /// right now, together with its current major:minor. `None` if the device is gone.
    pub fn owner_of_block(&self, name: &str) -> Result<Option<BlockOwner>> {
        let link = self.root.join("class/block").join(name);
        let target = match fs::canonicalize(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(NvmeError::Io {
                    op: "resolve block device",
                    path: link,
                    source,
                });
            }
        };
        let Some(parent) = target.parent() else {
            return Ok(None);
        };
        let owner = read_attr(&parent.join("subsysnqn"))?;
        let dev = read_attr(&target.join("dev"))?.and_then(|s| parse_dev(&s));
        Ok(owner.map(|nqn| BlockOwner { nqn, dev }))
    }
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Sorted entry names; a missing directory is an empty one (the module may not be loaded, or the
/// controller vanished between listing and reading).
fn list_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(NvmeError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| NvmeError::Io {
            op: "list",
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort_by_key(|n| natural_key(n));
    Ok(names)
}

/// Orders `nvme2` before `nvme10`.
fn natural_key(s: &str) -> (String, Vec<u64>) {
    let letters: String = s.chars().filter(|c| !c.is_ascii_digit()).collect();
    let nums = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    (letters, nums)
}

/// Trimmed attribute; `None` when the file (or its controller) is gone or empty.
fn read_attr(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        // ENODEV: attribute of a controller being torn down.
        Err(e) if e.raw_os_error() == Some(19) => Ok(None),
        Err(source) => Err(NvmeError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn exists(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(false),
        Err(source) => Err(NvmeError::Io {
            op: "stat",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("nvme0"), Some(NvmeName::Controller(0)));
        assert_eq!(parse_name("nvme12"), Some(NvmeName::Controller(12)));
        assert_eq!(parse_name("nvme1n2"), Some(NvmeName::Namespace(1, 2)));
        assert_eq!(parse_name("nvme2c1n2"), Some(NvmeName::Path(2, 1, 2)));
        for none in [
            "nvme",
            "nvme0n1p1",
            "ng0n1",
            "nvme-subsys0",
            "nvme0c",
            "nvme0n",
            "nvme01",
        ] {
            assert_eq!(parse_name(none), None, "{none}");
        }
    }

    #[test]
    fn address_and_state() {
        let a = ControllerAddress::parse("traddr=10.0.0.1,trsvcid=4420,src_addr=10.0.0.2\n");
        assert!(a.matches("10.0.0.1".parse().unwrap(), 4420));
        assert!(!a.matches("10.0.0.2".parse().unwrap(), 4420));
        assert!(!a.matches("10.0.0.1".parse().unwrap(), 4421));
        assert_eq!(ControllerState::parse("live\n"), ControllerState::Live);
        assert_eq!(
            ControllerState::parse("deleting (no IO)"),
            ControllerState::DeletingNoIo
        );
        assert!(ControllerState::parse("connecting").is_recovering());
        assert!(!ControllerState::parse("deleting").is_recovering());
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["nvme10", "nvme2", "nvme1"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["nvme1", "nvme2", "nvme10"]);
    }
}
