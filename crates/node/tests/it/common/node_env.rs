// The node service's fake kernel, shared by the node test binaries through `include!` (a
// module would need every item public): a sysfs tree shaped like the real one (symlinks under
// `class/`), a fabrics control file that "creates" controllers in it, `mount::fake::RecordingSys`
// keeping a mountinfo file, and a scripted tool runner.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csi::v1 as pb;
use csi::v1::node_server::Node;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use node::{NodeConfig, NodeObserver, NodeParts, NodeService, VolumeCheck};
use mount::fake::{Call, RecordingSys};
use mount::{CommandOutput, CommandRunner, CommandSpec, DevNum, FsUsage, NodeKind, UnmountMode};
use tonic::{Code, Request};

const VOL: &str = "default:pvc-11111111-1111-4111-8111-111111111111";
const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-11111111-1111-4111-8111-111111111111";
const NQN2: &str = "nqn.2000-02.com.mikrotik:pvc-22222222-2222-4222-8222-222222222222";
const BOOT: &str = "nqn.2000-02.com.mikrotik:nixos-root";

// ---------------------------------------------------------------- fake kernel

/// The sysfs tree plus the device nodes the fake syscall layer reports.
struct Kernel {
    root: PathBuf,
    dev: PathBuf,
    sys: Arc<RecordingSys>,
    next_ctrl: AtomicU32,
    next_minor: AtomicU32,
    subsys: Mutex<HashMap<String, u32>>,
    fabrics_path: PathBuf,
    connects: Mutex<Vec<String>>,
    /// Native multipath (`nvme_core.multipath=Y`): connects add paths under one head device.
    multipath: std::sync::atomic::AtomicBool,
    /// Target addresses whose connects are refused (ECONNREFUSED), as when a port is down.
    refused: Mutex<Vec<String>>,
    /// Target addresses whose connects sleep in the "kernel" until released (an address that
    /// never answers), at most [`HOLD_LIMIT`].
    held: Mutex<Vec<String>>,
    /// The head device (name, number) of each NQN with multipath on.
    heads: Mutex<HashMap<String, (String, DevNum)>>,
}

impl Kernel {
    fn ctrl_dir(&self, c: u32) -> PathBuf {
        self.root
            .join(format!("devices/virtual/nvme-fabrics/ctl/nvme{c}"))
    }

    fn subsys_dir(&self, s: u32) -> PathBuf {
        self.root
            .join(format!("devices/virtual/nvme-subsystem/nvme-subsys{s}"))
    }

    fn subsystem_for(&self, nqn: &str) -> u32 {
        let mut m = self.subsys.lock().unwrap();
        if let Some(s) = m.get(nqn) {
            return *s;
        }
        let s = m.len() as u32;
        m.insert(nqn.to_string(), s);
        let d = self.subsys_dir(s);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("subsysnqn"), nqn);
        symlink(
            format!("../../devices/virtual/nvme-subsystem/nvme-subsys{s}"),
            self.root
                .join(format!("class/nvme-subsystem/nvme-subsys{s}")),
        )
        .unwrap();
        s
    }

    /// A controller with one plain namespace `nvme{c}n1` (multipath off) of `size` bytes.
    /// Returns (controller number, device name, device number).
    fn add_volume(&self, nqn: &str, state: &str, size: u64) -> (u32, String, DevNum) {
        self.add_volume_at(nqn, state, size, "10.0.0.1", "4420")
    }

    /// A controller (state `state`) of `nqn` at `traddr:trsvcid`, its entries only.
    fn add_controller(&self, nqn: &str, state: &str, traddr: &str, trsvcid: &str) -> (u32, u32) {
        let c = self.next_ctrl.fetch_add(1, Ordering::SeqCst);
        let s = self.subsystem_for(nqn);
        let d = self.ctrl_dir(c);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("subsysnqn"), nqn);
        write(&d.join("state"), state);
        write(&d.join("transport"), "tcp");
        write(
            &d.join("address"),
            &format!("traddr={traddr},trsvcid={trsvcid},src_addr=10.0.0.2"),
        );
        fs::write(d.join("delete_controller"), "").unwrap();
        fs::write(d.join("rescan_controller"), "").unwrap();
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}"),
            self.root.join(format!("class/nvme/nvme{c}")),
        )
        .unwrap();
        symlink(
            format!("../../nvme-fabrics/ctl/nvme{c}"),
            self.subsys_dir(s).join(format!("nvme{c}")),
        )
        .unwrap();
        (c, s)
    }

    /// Multipath on: one more path (controller at `traddr`) of `nqn`, whose namespace is the
    /// subsystem's head `nvme{s}n1` (created with the first path, kept while any path exists)
    /// plus a hidden `nvme{s}c{c}n1`. Returns (controller number, head name, head number).
    fn add_path(&self, nqn: &str, traddr: &str, trsvcid: &str, size: u64) -> (u32, String, DevNum) {
        let (c, s) = self.add_controller(nqn, "live", traddr, trsvcid);
        let hidden = format!("nvme{s}c{c}n1");
        let p = self.ctrl_dir(c).join(&hidden);
        fs::create_dir_all(&p).unwrap();
        write(&p.join("nsid"), "1");
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}/{hidden}"),
            self.root.join(format!("class/block/{hidden}")),
        )
        .unwrap();
        let mut heads = self.heads.lock().unwrap();
        let (name, dev) = heads
            .entry(nqn.to_string())
            .or_insert_with(|| {
                let minor = self.next_minor.fetch_add(1, Ordering::SeqCst);
                let name = format!("nvme{s}n1");
                let h = self.subsys_dir(s).join(&name);
                fs::create_dir_all(&h).unwrap();
                write(&h.join("dev"), &format!("259:{minor}"));
                write(&h.join("nsid"), "1");
                write(&h.join("size"), &(size / 512).to_string());
                symlink(
                    format!("../../devices/virtual/nvme-subsystem/nvme-subsys{s}/{name}"),
                    self.root.join(format!("class/block/{name}")),
                )
                .unwrap();
                let dev = DevNum { major: 259, minor };
                self.sys
                    .set_node(&self.dev.join(&name), NodeKind::BlockDevice(dev));
                (name, dev)
            })
            .clone();
        (c, name, dev)
    }

    #[allow(dead_code)]
    /// Turns native multipath on or off (`/sys/module/nvme_core/parameters/multipath`).
    fn set_multipath(&self, on: bool) {
        self.multipath.store(on, Ordering::SeqCst);
        let p = self.root.join("module/nvme_core/parameters");
        fs::create_dir_all(&p).unwrap();
        write(&p.join("multipath"), if on { "Y" } else { "N" });
    }

    #[allow(dead_code)]
    fn hold(&self, traddr: &str, held: bool) {
        let mut h = self.held.lock().unwrap();
        h.retain(|a| a != traddr);
        if held {
            h.push(traddr.to_string());
        }
    }

    #[allow(dead_code)]
    fn refuse(&self, traddr: &str, refused: bool) {
        let mut r = self.refused.lock().unwrap();
        r.retain(|a| a != traddr);
        if refused {
            r.push(traddr.to_string());
        }
    }

    /// A controller with one plain namespace `nvme{c}n1` (multipath off) at `traddr`.
    fn add_volume_at(
        &self,
        nqn: &str,
        state: &str,
        size: u64,
        traddr: &str,
        trsvcid: &str,
    ) -> (u32, String, DevNum) {
        let minor = self.next_minor.fetch_add(1, Ordering::SeqCst);
        let (c, _) = self.add_controller(nqn, state, traddr, trsvcid);
        let d = self.ctrl_dir(c);
        let name = format!("nvme{c}n1");
        let ns = d.join(&name);
        fs::create_dir_all(&ns).unwrap();
        write(&ns.join("dev"), &format!("259:{minor}"));
        write(&ns.join("nsid"), "1");
        write(&ns.join("size"), &(size / 512).to_string());
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}/{name}"),
            self.root.join(format!("class/block/{name}")),
        )
        .unwrap();
        let dev = DevNum { major: 259, minor };
        self.sys
            .set_node(&self.dev.join(&name), NodeKind::BlockDevice(dev));
        (c, name, dev)
    }

    fn set_state(&self, c: u32, state: &str) {
        write(&self.ctrl_dir(c).join("state"), state);
    }

    fn set_size(&self, c: u32, size: u64) {
        write(
            &self.ctrl_dir(c).join(format!("nvme{c}n1/size")),
            &(size / 512).to_string(),
        );
    }

    fn deleted(&self, c: u32) -> bool {
        fs::read_to_string(self.ctrl_dir(c).join("delete_controller"))
            .map(|s| s == "1")
            .unwrap_or(false)
    }

    fn rescanned(&self, c: u32) -> bool {
        fs::read_to_string(self.ctrl_dir(c).join("rescan_controller")).unwrap() == "1"
    }

    /// What the kernel does when a controller is deleted: its entries and /dev node go away.
    fn remove_controller(&self, c: u32) {
        let name = format!("nvme{c}n1");
        let _ = fs::remove_file(self.root.join("class/block").join(&name));
        fs::remove_dir_all(self.ctrl_dir(c)).unwrap();
        fs::remove_file(self.root.join(format!("class/nvme/nvme{c}"))).unwrap();
        for s in fs::read_dir(self.root.join("devices/virtual/nvme-subsystem"))
            .unwrap()
            .flatten()
        {
            let _ = fs::remove_file(s.path().join(format!("nvme{c}")));
        }
        self.sys.set_node(&self.dev.join(&name), NodeKind::Missing);
    }

    fn connects(&self) -> Vec<String> {
        self.connects.lock().unwrap().clone()
    }
}

fn write(p: &Path, s: &str) {
    fs::write(p, format!("{s}\n")).unwrap();
}

/// Longest a held connect sleeps, so a test that forgets to release one still ends.
const HOLD_LIMIT: Duration = Duration::from_secs(20);

/// `/dev/nvme-fabrics`: a connect creates a live controller with one namespace.
struct Fabrics(Arc<Kernel>);

impl nvme::FabricsDevice for Fabrics {
    fn path(&self) -> &Path {
        &self.0.fabrics_path
    }

    fn submit(&self, options: &str) -> nvme::Result<String> {
        let opt = |k: &str| {
            options
                .split(',')
                .find_map(|kv| kv.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        let (nqn, traddr, trsvcid) = (opt("nqn="), opt("traddr="), opt("trsvcid="));
        self.0.connects.lock().unwrap().push(options.to_string());
        let since = std::time::Instant::now();
        while self.0.held.lock().unwrap().contains(&traddr) && since.elapsed() < HOLD_LIMIT {
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.0.refused.lock().unwrap().contains(&traddr) {
            return Err(nvme::NvmeError::KernelRefused {
                op: "connect",
                path: self.0.fabrics_path.clone(),
                errno: 111,
                source: std::io::Error::from_raw_os_error(111),
            });
        }
        let c = if self.0.multipath.load(Ordering::SeqCst) {
            self.0.add_path(&nqn, &traddr, &trsvcid, 1 << 30).0
        } else {
            self.0
                .add_volume_at(&nqn, "live", 1 << 30, &traddr, &trsvcid)
                .0
        };
        Ok(format!("instance={c},cntlid=1\n"))
    }
}

// ---------------------------------------------------------------- scripted tools

#[derive(Clone)]
enum Blkid {
    Empty,
    Fs(&'static str),
    Fail(i32),
}

/// How the scripted grow tools (resize2fs, xfs_growfs) answer; success when unset.
#[derive(Clone, Copy)]
enum GrowAnswer {
    Fail(i32),
    Timeout,
}

#[derive(Default)]
struct Tools {
    calls: Mutex<Vec<CommandSpec>>,
    blkid: Mutex<HashMap<String, Blkid>>,
    formatted: Mutex<HashMap<String, String>>,
    /// Filesystem sizes reported by `dumpe2fs -h` (key: device) and `xfs_io statfs` (key: mount
    /// point). Unscripted, a filesystem is larger than any device here, so nothing is grown; a
    /// successful grow tool drops the entry (the filesystem now fills its device).
    fs_bytes: Mutex<HashMap<String, u64>>,
    grow: Mutex<Option<GrowAnswer>>,
    /// The mountinfo file, and what it held each time a grow tool ran (proves "after mounting").
    mountinfo: Mutex<Option<PathBuf>>,
    mounts_at_grow: Mutex<Vec<String>>,
}

impl Tools {
    fn programs(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.display())
            .collect()
    }

    fn count(&self, program: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.program == program)
            .count()
    }

    fn set_fs_bytes(&self, key: &Path, bytes: u64) {
        self.fs_bytes
            .lock()
            .unwrap()
            .insert(key.display().to_string(), bytes);
    }

    fn set_blkid(&self, device: &Path, b: Blkid) {
        self.blkid
            .lock()
            .unwrap()
            .insert(device.display().to_string(), b);
    }
}

impl CommandRunner for Tools {
    fn run<'a>(
        &'a self,
        spec: &'a CommandSpec,
    ) -> mount::exec::BoxFuture<'a, mount::Result<CommandOutput>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(spec.clone());
            let device = spec.args.last().cloned().unwrap_or_default();
            let ok = |stdout: String| CommandOutput {
                code: Some(0),
                stdout,
                stderr: String::new(),
            };
            Ok(match spec.program.as_str() {
                "blkid" => {
                    if let Some(fs) = self.formatted.lock().unwrap().get(&device) {
                        return Ok(ok(format!("DEVNAME={device}\nTYPE={fs}\n")));
                    }
                    let b = self
                        .blkid
                        .lock()
                        .unwrap()
                        .get(&device)
                        .cloned()
                        .unwrap_or(Blkid::Empty);
                    match b {
                        Blkid::Empty => CommandOutput {
                            code: Some(2),
                            ..CommandOutput::default()
                        },
                        Blkid::Fs(t) => ok(format!("DEVNAME={device}\nTYPE={t}\n")),
                        Blkid::Fail(c) => CommandOutput {
                            code: Some(c),
                            stdout: String::new(),
                            stderr: "cannot read".into(),
                        },
                    }
                }
                "mkfs.ext4" | "mkfs.xfs" => {
                    let fs = spec.program.trim_start_matches("mkfs.").to_string();
                    self.formatted.lock().unwrap().insert(device, fs);
                    ok(String::new())
                }
                "dumpe2fs" | "xfs_io" => {
                    let bytes = self
                        .fs_bytes
                        .lock()
                        .unwrap()
                        .get(&device)
                        .copied()
                        .unwrap_or(1 << 40);
                    ok(if spec.program == "dumpe2fs" {
                        format!("Block count:  {}\nBlock size:  4096\n", bytes / 4096)
                    } else {
                        format!(
                            "fd.path = \"{device}\"\ngeom.bsize = 4096\ngeom.datablocks = {}\n",
                            bytes / 4096
                        )
                    })
                }
                "resize2fs" | "xfs_growfs" => {
                    let table = self
                        .mountinfo
                        .lock()
                        .unwrap()
                        .as_ref()
                        .map(|p| fs::read_to_string(p).unwrap_or_default())
                        .unwrap_or_default();
                    self.mounts_at_grow.lock().unwrap().push(table);
                    match *self.grow.lock().unwrap() {
                        Some(GrowAnswer::Fail(c)) => CommandOutput {
                            code: Some(c),
                            stdout: String::new(),
                            stderr: "resize failed: no space for new group descriptors".into(),
                        },
                        Some(GrowAnswer::Timeout) => {
                            return Err(mount::Error::CommandTimeout {
                                command: spec.display(),
                                deadline: spec.deadline,
                            });
                        }
                        None => {
                            self.fs_bytes.lock().unwrap().remove(&device);
                            ok(String::new())
                        }
                    }
                }
                _ => ok(String::new()),
            })
        })
    }
}

// ---------------------------------------------------------------- observer

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl NodeObserver for Seen {
    fn stale_detected(&self, v: &str, reason: &str) {
        self.0.lock().unwrap().push(format!("stale {v} {reason}"));
    }
    fn recovered(&self, v: &str, detail: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("recovered {v} {detail}"));
    }
    fn recovery_failed(&self, v: &str, e: &str) {
        self.0.lock().unwrap().push(format!("failed {v} {e}"));
    }
    fn connection_lost(&self, v: &str, _nqn: &str, state: &str) {
        self.0.lock().unwrap().push(format!("lost {v} {state}"));
    }
    fn connection_restored(&self, v: &str, _nqn: &str) {
        self.0.lock().unwrap().push(format!("restored {v}"));
    }
    fn nvme_connected(&self, v: &str, _nqn: &str) {
        self.0.lock().unwrap().push(format!("connected {v}"));
    }
    fn nvme_disconnected(&self, v: &str, _nqn: &str) {
        self.0.lock().unwrap().push(format!("disconnected {v}"));
    }
    fn paths_changed(
        &self,
        v: &str,
        pvc: Option<(String, String)>,
        live: usize,
        total: usize,
        missing: &[String],
    ) {
        self.0.lock().unwrap().push(format!(
            "paths {v} {live}/{total} missing={} pvc={pvc:?}",
            missing.join(",")
        ));
    }
}

impl Seen {
    fn any(&self, prefix: &str) -> bool {
        self.0.lock().unwrap().iter().any(|s| s.starts_with(prefix))
    }

    #[allow(dead_code)]
    fn all(&self, prefix: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.starts_with(prefix))
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------- harness

struct Env {
    dir: tempfile::TempDir,
    kernel: Arc<Kernel>,
    tools: Arc<Tools>,
    seen: Arc<Seen>,
    node: NodeService,
}

fn config(dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::new("node-1");
    c.max_volumes = 7;
    c.sysfs_root = dir.join("sys");
    c.dev_root = dir.join("dev");
    c.mountinfo = dir.join("mountinfo");
    c.proc_root = dir.join("proc");
    c.fabrics_path = dir.join("nvme-fabrics");
    c.state_dir = dir.join("state");
    c.kubelet_dir = dir.join("kubelet");
    let d = &mut c.deadlines;
    d.connect = Duration::from_secs(5);
    d.device_wait = Duration::from_secs(2);
    d.device_poll = Duration::from_millis(10);
    d.unmount_wait = Duration::from_millis(100);
    d.unmount_poll = Duration::from_millis(10);
    d.expand_settle = Duration::from_millis(200);
    c.recovery.initial_backoff = Duration::from_millis(5);
    c.recovery.max_backoff = Duration::from_millis(20);
    c.format.probe_attempts = 2;
    c.format.probe_interval = Duration::from_millis(5);
    c
}

impl Env {
    fn new() -> Env {
        Env::with_config(|_| {})
    }

    /// [`Env::new`] with the node's configuration changed by `tune`.
    fn with_config(tune: impl FnOnce(&mut NodeConfig)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        for d in [
            "class/nvme",
            "class/nvme-subsystem",
            "class/block",
            "devices/virtual/nvme-fabrics/ctl",
            "devices/virtual/nvme-subsystem",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        fs::create_dir_all(dir.path().join("kubelet")).unwrap();
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        let sys = Arc::new(RecordingSys::with_mountinfo(&dir.path().join("mountinfo")));
        sys.set_usage(FsUsage {
            total_bytes: 10 << 30,
            used_bytes: 1 << 30,
            available_bytes: 9 << 30,
            total_inodes: 1000,
            used_inodes: 10,
            available_inodes: 990,
        });
        let kernel = Arc::new(Kernel {
            root,
            dev: dir.path().join("dev"),
            sys,
            next_ctrl: AtomicU32::new(0),
            next_minor: AtomicU32::new(1),
            subsys: Mutex::new(HashMap::new()),
            fabrics_path: dir.path().join("nvme-fabrics"),
            connects: Mutex::new(Vec::new()),
            multipath: std::sync::atomic::AtomicBool::new(false),
            refused: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            heads: Mutex::new(HashMap::new()),
        });
        let tools = Arc::new(Tools::default());
        *tools.mountinfo.lock().unwrap() = Some(dir.path().join("mountinfo"));
        let seen = Arc::new(Seen::default());
        let node = build_with(dir.path(), &kernel, &tools, &seen, tune);
        Env {
            dir,
            kernel,
            tools,
            seen,
            node,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn calls(&self) -> Vec<Call> {
        self.kernel.sys.calls()
    }

    fn mounts_of(&self, target: &Path) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Mount { target: t, .. } if t == target))
            .count()
    }

    async fn stage(
        &self,
        vol: &str,
        nqn: &str,
        cap: pb::VolumeCapability,
    ) -> Result<(), tonic::Status> {
        self.stage_with(vol, nqn, cap, &[]).await
    }

    async fn stage_with(
        &self,
        vol: &str,
        nqn: &str,
        cap: pb::VolumeCapability,
        extra: &[(&str, &str)],
    ) -> Result<(), tonic::Status> {
        let mut ctx = context(nqn);
        for (k, v) in extra {
            ctx.insert(k.to_string(), v.to_string());
        }
        self.node
            .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
                volume_id: vol.into(),
                staging_target_path: self.staging(vol).display().to_string(),
                volume_capability: Some(cap),
                volume_context: ctx,
                ..Default::default()
            }))
            .await
            .map(|_| ())
    }

    fn staging(&self, vol: &str) -> PathBuf {
        self.path(&format!("kubelet/staging/{}", vol.replace(':', "_")))
    }

    fn target(&self, name: &str) -> PathBuf {
        self.path(&format!("kubelet/pods/{name}/volume"))
    }

    async fn publish(
        &self,
        vol: &str,
        target: &Path,
        cap: pb::VolumeCapability,
        readonly: bool,
    ) -> Result<(), tonic::Status> {
        self.node
            .node_publish_volume(Request::new(pb::NodePublishVolumeRequest {
                volume_id: vol.into(),
                staging_target_path: self.staging(vol).display().to_string(),
                target_path: target.display().to_string(),
                volume_capability: Some(cap),
                readonly,
                ..Default::default()
            }))
            .await
            .map(|_| ())
    }

    async fn unpublish(&self, vol: &str, target: &Path) -> Result<(), tonic::Status> {
        self.node
            .node_unpublish_volume(Request::new(pb::NodeUnpublishVolumeRequest {
                volume_id: vol.into(),
                target_path: target.display().to_string(),
            }))
            .await
            .map(|_| ())
    }

    async fn unstage(&self, vol: &str) -> Result<(), tonic::Status> {
        self.node
            .node_unstage_volume(Request::new(pb::NodeUnstageVolumeRequest {
                volume_id: vol.into(),
                staging_target_path: self.staging(vol).display().to_string(),
            }))
            .await
            .map(|_| ())
    }

    async fn stats(
        &self,
        vol: &str,
        path: &Path,
    ) -> Result<pb::NodeGetVolumeStatsResponse, tonic::Status> {
        self.node
            .node_get_volume_stats(Request::new(pb::NodeGetVolumeStatsRequest {
                volume_id: vol.into(),
                volume_path: path.display().to_string(),
                staging_target_path: String::new(),
            }))
            .await
            .map(|r| r.into_inner())
    }
}

fn build(dir: &Path, kernel: &Arc<Kernel>, tools: &Arc<Tools>, seen: &Arc<Seen>) -> NodeService {
    build_with(dir, kernel, tools, seen, |_| {})
}

fn build_with(
    dir: &Path,
    kernel: &Arc<Kernel>,
    tools: &Arc<Tools>,
    seen: &Arc<Seen>,
    tune: impl FnOnce(&mut NodeConfig),
) -> NodeService {
    let mut cfg = config(dir);
    tune(&mut cfg);
    let host = nvme::HostIdentity::from_uuid(
        uuid::Uuid::parse_str("7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f").unwrap(),
    )
    .unwrap();
    let prefix = nvme::ManagedPrefix::new(cfg.managed_prefix.clone()).unwrap();
    let initiator = nvme::Initiator::with_fabrics(
        cfg.initiator_config(prefix),
        host,
        Arc::new(Fabrics(kernel.clone())),
    );
    NodeService::with_parts(
        cfg,
        NodeParts {
            initiator: Arc::new(initiator),
            sys: kernel.sys.clone(),
            runner: tools.clone(),
            observer: seen.clone(),
        },
    )
    .unwrap()
}

fn context(nqn: &str) -> HashMap<String, String> {
    [
        ("nqn", nqn),
        ("nvmeAddress", "10.0.0.1"),
        ("nvmePort", "4420"),
        ("ctrlLossTmo", "-1"),
        ("reconnectDelay", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn fs_cap(fs: &str, flags: &[&str]) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn block_cap() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn mount_flags_of(calls: &[Call], target: &Path) -> mount::MountFlags {
    calls
        .iter()
        .rev()
        .find_map(|c| match c {
            Call::Mount {
                target: t, flags, ..
            } if t == target => Some(*flags),
            Call::RemountBind { target: t, flags } if t == target => Some(*flags),
            _ => None,
        })
        .unwrap()
}
