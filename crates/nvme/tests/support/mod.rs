//! A fake sysfs shaped like the kernel's: real directories under `devices/virtual/...` and
//! relative symlinks under `class/...`, so that code which forgets to follow links (the earlier
//! driver's enumeration bug) fails here too.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub const VOL1: &str = "nqn.2000-02.com.mikrotik:pvc-11111111-1111-4111-8111-111111111111";
pub const VOL2: &str = "nqn.2000-02.com.mikrotik:pvc-22222222-2222-4222-8222-222222222222";
pub const BOOT: &str = "nqn.2000-02.com.mikrotik:nixos-root";
pub const PREFIX: &str = "nqn.2000-02.com.mikrotik:pvc-";

pub struct FakeSys {
    pub dir: tempfile::TempDir,
}

impl FakeSys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = FakeSys { dir };
        for d in [
            "class/nvme",
            "class/nvme-subsystem",
            "class/block",
            "devices/virtual/nvme-fabrics/ctl",
            "devices/virtual/nvme-subsystem",
        ] {
            fs::create_dir_all(s.root().join(d)).unwrap();
        }
        fs::create_dir_all(s.dev()).unwrap();
        s
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    pub fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    fn subsys_dir(&self, s: u32) -> PathBuf {
        self.root()
            .join(format!("devices/virtual/nvme-subsystem/nvme-subsys{s}"))
    }

    pub fn ctrl_dir(&self, c: u32) -> PathBuf {
        self.root()
            .join(format!("devices/virtual/nvme-fabrics/ctl/nvme{c}"))
    }

    pub fn add_subsystem(&self, s: u32, nqn: &str) {
        let d = self.subsys_dir(s);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("subsysnqn"), nqn);
        write(&d.join("iopolicy"), "numa");
        symlink(
            format!("../../devices/virtual/nvme-subsystem/nvme-subsys{s}"),
            self.root()
                .join(format!("class/nvme-subsystem/nvme-subsys{s}")),
        )
        .unwrap();
    }

    /// Controller `nvme{c}` of subsystem `s`, at `traddr:port`.
    pub fn add_controller(&self, c: u32, s: u32, nqn: &str, state: &str, traddr: &str, port: u16) {
        let d = self.ctrl_dir(c);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("subsysnqn"), nqn);
        write(&d.join("state"), state);
        write(&d.join("transport"), "tcp");
        write(
            &d.join("address"),
            &format!("traddr={traddr},trsvcid={port},src_addr=10.0.0.2"),
        );
        write(&d.join("cntlid"), "1");
        fs::write(d.join("delete_controller"), "").unwrap();
        // Generic char device: must never be taken for a block device.
        fs::create_dir_all(d.join(format!("ng{c}n1"))).unwrap();
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}"),
            self.root().join(format!("class/nvme/nvme{c}")),
        )
        .unwrap();
        if self.subsys_dir(s).exists() {
            symlink(
                format!("../../nvme-fabrics/ctl/nvme{c}"),
                self.subsys_dir(s).join(format!("nvme{c}")),
            )
            .unwrap();
        }
    }

    /// Native multipath: head `nvme{s}n{n}` under the subsystem, hidden `nvme{s}c{c}n{n}` paths.
    pub fn add_multipath_ns(&self, s: u32, n: u32, nsid: u32, ctrls: &[u32], minor: u32) {
        let head = self.subsys_dir(s).join(format!("nvme{s}n{n}"));
        fs::create_dir_all(head.join("multipath")).unwrap();
        write(&head.join("dev"), &format!("259:{minor}"));
        write(&head.join("nsid"), &nsid.to_string());
        symlink(
            format!("../../devices/virtual/nvme-subsystem/nvme-subsys{s}/nvme{s}n{n}"),
            self.root().join(format!("class/block/nvme{s}n{n}")),
        )
        .unwrap();
        // A partition, as after someone ran fdisk: not a namespace.
        fs::create_dir_all(head.join(format!("nvme{s}n{n}p1"))).unwrap();
        for c in ctrls {
            let name = format!("nvme{s}c{c}n{n}");
            let p = self.ctrl_dir(*c).join(&name);
            fs::create_dir_all(&p).unwrap();
            write(&p.join("nsid"), &nsid.to_string());
            symlink(
                format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}/{name}"),
                self.root().join(format!("class/block/{name}")),
            )
            .unwrap();
        }
    }

    /// Multipath off: `nvme{c}n{n}` directly under controller `c`.
    pub fn add_plain_ns(&self, c: u32, n: u32, nsid: u32, minor: u32) {
        let name = format!("nvme{c}n{n}");
        let p = self.ctrl_dir(c).join(&name);
        fs::create_dir_all(&p).unwrap();
        write(&p.join("dev"), &format!("259:{minor}"));
        write(&p.join("nsid"), &nsid.to_string());
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}/{name}"),
            self.root().join(format!("class/block/{name}")),
        )
        .unwrap();
    }

    pub fn set_state(&self, c: u32, state: &str) {
        write(&self.ctrl_dir(c).join("state"), state);
    }

    /// What the kernel does on delete: controller, its class link and block entries go away.
    pub fn remove_controller(&self, c: u32) {
        let d = self.ctrl_dir(c);
        for e in fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let _ = fs::remove_file(self.root().join("class/block").join(&name));
        }
        fs::remove_dir_all(d).unwrap();
        fs::remove_file(self.root().join(format!("class/nvme/nvme{c}"))).unwrap();
        for s in fs::read_dir(self.root().join("devices/virtual/nvme-subsystem"))
            .unwrap()
            .flatten()
        {
            let _ = fs::remove_file(s.path().join(format!("nvme{c}")));
        }
    }

    pub fn remove_subsystem(&self, s: u32) {
        let d = self.subsys_dir(s);
        for e in fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let _ = fs::remove_file(self.root().join("class/block").join(&name));
        }
        fs::remove_dir_all(d).unwrap();
        fs::remove_file(
            self.root()
                .join(format!("class/nvme-subsystem/nvme-subsys{s}")),
        )
        .unwrap();
    }

    pub fn delete_written(&self, c: u32) -> String {
        fs::read_to_string(self.ctrl_dir(c).join("delete_controller")).unwrap()
    }
}

fn write(p: &Path, s: &str) {
    fs::write(p, format!("{s}\n")).unwrap();
}

pub fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn host() -> nvme::HostIdentity {
    nvme::HostIdentity::from_uuid(
        uuid::Uuid::parse_str("7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f").unwrap(),
    )
    .unwrap()
}

pub fn config(sys: &FakeSys) -> nvme::InitiatorConfig {
    let mut c = nvme::InitiatorConfig::new(nvme::ManagedPrefix::new(PREFIX).unwrap());
    c.sysfs_root = sys.root();
    c.dev_root = sys.dev();
    c.fabrics_path = sys.dir.path().join("nvme-fabrics");
    c.connect_timeout = std::time::Duration::from_secs(5);
    c.disconnect_timeout = std::time::Duration::from_secs(5);
    c.sysfs_timeout = std::time::Duration::from_secs(5);
    c
}

pub fn nqn(s: &str) -> nvme::Nqn {
    nvme::Nqn::new(s).unwrap()
}
