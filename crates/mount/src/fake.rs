//! A recording [`MountSys`] for tests (here and in the driver): it logs every call in order,
//! keeps a simulated mount table it can write out as mountinfo, and can be told to fail or stall.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::mountinfo::DevNum;
use crate::sys::{FsUsage, MountFlags, MountSys, NodeKind, UnmountMode};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: PathBuf,
        target: PathBuf,
        fs_type: String,
        flags: MountFlags,
        data: String,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
    },
    RemountBind {
        target: PathBuf,
        flags: MountFlags,
    },
    Unmount {
        target: PathBuf,
        mode: UnmountMode,
    },
    MknodBlock {
        path: PathBuf,
        dev: DevNum,
        mode: u32,
    },
    Statvfs {
        path: PathBuf,
    },
}

impl Call {
    /// The operation name used by [`RecordingSys::fail_next`] and [`RecordingSys::stall`].
    pub fn op(&self) -> &'static str {
        match self {
            Call::Mount { .. } => "mount",
            Call::Bind { .. } => "bind",
            Call::RemountBind { .. } => "remount_bind",
            Call::Unmount { .. } => "unmount",
            Call::MknodBlock { .. } => "mknod_block",
            Call::Statvfs { .. } => "statvfs",
        }
    }

    /// The path the call acts on (the target of a mount).
    pub fn path(&self) -> &Path {
        match self {
            Call::Mount { target, .. }
            | Call::Bind { target, .. }
            | Call::RemountBind { target, .. }
            | Call::Unmount { target, .. } => target,
            Call::MknodBlock { path, .. } | Call::Statvfs { path } => path,
        }
    }
}

#[derive(Debug, Clone)]
struct FakeMount {
    id: u32,
    dev: DevNum,
    target: PathBuf,
    fs_type: String,
    source: String,
    flags: MountFlags,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    failures: HashMap<&'static str, VecDeque<i32>>,
    stalls: HashMap<&'static str, Duration>,
    path_stalls: HashMap<PathBuf, Duration>,
    nodes: HashMap<PathBuf, NodeKind>,
    usage: FsUsage,
    mounts: Vec<FakeMount>,
    next_id: u32,
    mountinfo: Option<PathBuf>,
    /// Unmounts of these targets "succeed" without removing the mount (a busy lazy case).
    sticky: Vec<PathBuf>,
}

/// The recording fake.
#[derive(Debug, Default)]
pub struct RecordingSys {
    state: Mutex<State>,
}

impl RecordingSys {
    pub fn new() -> Self {
        RecordingSys::default()
    }

    /// Keeps `path` in sync with the simulated mount table after every change, in mountinfo
    /// format, so code reading mountinfo sees the fake's mounts.
    pub fn with_mountinfo(path: &Path) -> Self {
        let sys = RecordingSys::default();
        sys.lock().mountinfo = Some(path.to_path_buf());
        sys.sync_mountinfo();
        sys
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's own result.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Makes the next call of `op` fail with `errno`.
    pub fn fail_next(&self, op: &'static str, errno: i32) {
        self.lock().failures.entry(op).or_default().push_back(errno);
    }

    /// Makes every call of `op` sleep first (simulates a kernel call stuck on a dead device).
    pub fn stall(&self, op: &'static str, how_long: Duration) {
        self.lock().stalls.insert(op, how_long);
    }

    /// Makes every call on `path` sleep first: one volume's target stuck while others answer.
    pub fn stall_at(&self, path: &Path, how_long: Duration) {
        self.lock().path_stalls.insert(path.to_path_buf(), how_long);
    }

    /// Declares what `lstat(path)` returns.
    pub fn set_node(&self, path: &Path, kind: NodeKind) {
        self.lock().nodes.insert(path.to_path_buf(), kind);
    }

    pub fn set_usage(&self, usage: FsUsage) {
        self.lock().usage = usage;
    }

    /// Normal unmounts of `target` return success but leave it mounted (the mount stays until a
    /// detach), like a target that stays busy.
    pub fn make_sticky(&self, target: &Path) {
        self.lock().sticky.push(target.to_path_buf());
    }

    /// Adds a pre-existing mount (e.g. one left by a previous plugin run).
    pub fn add_mount(&self, source: &str, dev: DevNum, target: &Path, fs_type: &str) {
        {
            let mut st = self.lock();
            st.next_id += 1;
            let id = st.next_id + 100;
            st.mounts.push(FakeMount {
                id,
                dev,
                target: target.to_path_buf(),
                fs_type: fs_type.to_string(),
                source: source.to_string(),
                flags: MountFlags::default(),
            });
        }
        self.sync_mountinfo();
    }

    fn begin(&self, call: Call) -> io::Result<()> {
        let op = call.op();
        let (stall, fail) = {
            let mut st = self.lock();
            let stall = st
                .stalls
                .get(op)
                .or_else(|| st.path_stalls.get(call.path()))
                .copied();
            st.calls.push(call);
            let fail = st.failures.get_mut(op).and_then(VecDeque::pop_front);
            (stall, fail)
        };
        if let Some(d) = stall {
            std::thread::sleep(d);
        }
        match fail {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn sync_mountinfo(&self) {
        let st = self.lock();
        let Some(path) = st.mountinfo.clone() else {
            return;
        };
        let mut text = String::from("1 0 0:1 / / rw,relatime shared:1 - rootfs rootfs rw\n");
        for m in &st.mounts {
            text.push_str(&format!(
                "{} 1 {} / {} {} shared:{} - {} {} rw\n",
                m.id,
                m.dev,
                escape(&m.target),
                render(m.flags),
                m.id,
                m.fs_type,
                m.source
            ));
        }
        drop(st);
        // Test helper: a failed write surfaces as a confusing test failure soon enough.
        let _ = std::fs::write(path, text);
    }
}

/// Per-mount options in the kernel's order and spelling.
fn render(f: MountFlags) -> String {
    let mut out = vec![if f.read_only { "ro" } else { "rw" }];
    for (on, name) in [
        (f.nosuid, "nosuid"),
        (f.nodev, "nodev"),
        (f.noexec, "noexec"),
        (f.sync, "sync"),
        (f.nodiratime, "nodiratime"),
        (f.noatime, "noatime"),
        (f.relatime, "relatime"),
        (f.lazytime, "lazytime"),
    ] {
        if on {
            out.push(name);
        }
    }
    out.join(",")
}

fn escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012")
}

impl MountSys for RecordingSys {
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fs_type: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        self.begin(Call::Mount {
            source: source.to_path_buf(),
            target: target.to_path_buf(),
            fs_type: fs_type.to_string(),
            flags,
            data: data.to_string(),
        })?;
        {
            let mut st = self.lock();
            let dev = match st.nodes.get(source) {
                Some(NodeKind::BlockDevice(d)) => *d,
                _ => DevNum {
                    major: 0,
                    minor: 99,
                },
            };
            st.next_id += 1;
            let id = st.next_id + 100;
            st.mounts.push(FakeMount {
                id,
                dev,
                target: target.to_path_buf(),
                fs_type: fs_type.to_string(),
                source: source.to_string_lossy().into_owned(),
                flags,
            });
        }
        self.sync_mountinfo();
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        self.begin(Call::Bind {
            source: source.to_path_buf(),
            target: target.to_path_buf(),
        })?;
        {
            let mut st = self.lock();
            let Some(src) = st.mounts.iter().rev().find(|m| m.target == source).cloned() else {
                return Err(io::Error::from_raw_os_error(22));
            };
            st.next_id += 1;
            let id = st.next_id + 100;
            st.mounts.push(FakeMount {
                id,
                target: target.to_path_buf(),
                ..src
            });
        }
        self.sync_mountinfo();
        Ok(())
    }

    fn remount_bind(&self, target: &Path, flags: MountFlags) -> io::Result<()> {
        self.begin(Call::RemountBind {
            target: target.to_path_buf(),
            flags,
        })?;
        {
            let mut st = self.lock();
            match st.mounts.iter_mut().rev().find(|m| m.target == target) {
                Some(m) => m.flags = flags,
                None => return Err(io::Error::from_raw_os_error(22)),
            }
        }
        self.sync_mountinfo();
        Ok(())
    }

    fn unmount(&self, target: &Path, mode: UnmountMode) -> io::Result<()> {
        self.begin(Call::Unmount {
            target: target.to_path_buf(),
            mode,
        })?;
        {
            let mut st = self.lock();
            let sticky = st.sticky.iter().any(|t| t == target);
            if sticky && mode == UnmountMode::Normal {
                return Ok(());
            }
            match st.mounts.iter().rposition(|m| m.target == target) {
                Some(i) => {
                    st.mounts.remove(i);
                }
                None => return Err(io::Error::from_raw_os_error(22)),
            }
        }
        self.sync_mountinfo();
        Ok(())
    }

    fn mknod_block(&self, path: &Path, dev: DevNum, mode: u32) -> io::Result<()> {
        self.begin(Call::MknodBlock {
            path: path.to_path_buf(),
            dev,
            mode,
        })?;
        self.lock()
            .nodes
            .insert(path.to_path_buf(), NodeKind::BlockDevice(dev));
        Ok(())
    }

    fn statvfs(&self, path: &Path) -> io::Result<FsUsage> {
        self.begin(Call::Statvfs {
            path: path.to_path_buf(),
        })?;
        Ok(self.lock().usage)
    }

    fn node_kind(&self, path: &Path) -> io::Result<NodeKind> {
        Ok(self
            .lock()
            .nodes
            .get(path)
            .copied()
            .unwrap_or(NodeKind::Missing))
    }
}
