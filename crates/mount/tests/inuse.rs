#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mount::{DevNum, InUseProbe, InUseQuery, MountTable};

const STAGE: &str = "/var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi/abc/globalmount";
const DEV: DevNum = DevNum {
    major: 259,
    minor: 7,
};
const OWN_PID: u32 = 4242;

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let h = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(h.proc().join("self")).unwrap();
        std::fs::create_dir_all(h.sys().join("dev/block/259:7/holders")).unwrap();
        h
    }
    fn proc(&self) -> PathBuf {
        self.dir.path().join("proc")
    }
    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }
    fn link(&self, pid: u32, name: &str, target: &Path) {
        let p = self.proc().join(pid.to_string()).join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }
    fn probe(&self) -> InUseProbe {
        InUseProbe {
            proc_root: self.proc(),
            sys_root: self.sys(),
            own_pid: OWN_PID,
            deadline: Duration::from_secs(10),
        }
    }
}

fn query(dev: DevNum) -> InUseQuery {
    InUseQuery {
        mount_path: PathBuf::from(STAGE),
        dev: Some(dev),
        device_paths: vec![PathBuf::from("/dev/nvme1n1")],
    }
}

fn table() -> MountTable {
    MountTable::parse(&format!(
        "22 1 259:2 / / rw - ext4 /dev/nvme0n1p2 rw\n310 22 259:7 / {STAGE} rw - ext4 /dev/nvme1n1 rw\n"
    ))
}

#[tokio::test]
async fn nothing_found_when_only_unrelated_and_own_users_exist() {
    let h = Host::new();
    h.link(OWN_PID, "fd/5", Path::new("/dev/nvme1n1"));
    h.link(OWN_PID, "cwd", Path::new(STAGE));
    h.link(999, "fd/1", Path::new("/dev/nvme10n1"));
    h.link(998, "fd/1", Path::new(&format!("{STAGE}-other/file")));
    h.link(997, "cwd", Path::new("/"));
    h.link(997, "root", Path::new("/"));
    let r = h.probe().check(&table(), &query(DEV)).await.unwrap();
    assert!(!r.in_use(), "{r:?}");
    assert_eq!(r.summary(), "not in use");
}

#[tokio::test]
async fn open_device_node_counts() {
    let h = Host::new();
    h.link(1234, "fd/3", Path::new("/dev/nvme1n1"));
    let r = h.probe().check(&table(), &query(DEV)).await.unwrap();
    assert_eq!(r.processes.len(), 1);
    assert_eq!(r.processes[0].pid, 1234);
    assert_eq!(r.processes[0].what, "fd/3 -> /dev/nvme1n1");
    assert!(r.summary().contains("processes: 1234"));
}

#[tokio::test]
async fn open_file_or_cwd_under_the_mount_counts() {
    let h = Host::new();
    h.link(1235, "fd/0", Path::new(&format!("{STAGE}/data/file")));
    h.link(1236, "cwd", Path::new(&format!("{STAGE}/sub")));
    let r = h.probe().check(&table(), &query(DEV)).await.unwrap();
    let pids: Vec<u32> = r.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [1235, 1236]);
}

#[tokio::test]
async fn open_file_matched_by_device_number_across_namespaces() {
    // The link text is what the process sees in its own mount namespace, so it does not start
    // with the host path; the device number of the open file still gives it away.
    let h = Host::new();
    let data = h.dir.path().join("data");
    std::fs::write(&data, b"x").unwrap();
    let raw = std::fs::metadata(&data).unwrap().dev();
    let dev = DevNum {
        major: rustix::fs::major(raw),
        minor: rustix::fs::minor(raw),
    };
    h.link(777, "fd/4", &data);
    let r = h
        .probe()
        .check(&MountTable::default(), &query(dev))
        .await
        .unwrap();
    assert_eq!(r.processes.len(), 1, "{r:?}");
    assert_eq!(r.processes[0].pid, 777);
    // The same open file is no user of an unrelated device.
    let r = h
        .probe()
        .check(
            &MountTable::default(),
            &query(DevNum { major: 1, minor: 1 }),
        )
        .await
        .unwrap();
    assert!(r.processes.is_empty(), "{r:?}");
}

#[tokio::test]
async fn sysfs_holders_count() {
    let h = Host::new();
    std::fs::create_dir_all(h.sys().join("dev/block/259:7/holders/dm-0")).unwrap();
    let r = h.probe().check(&table(), &query(DEV)).await.unwrap();
    assert_eq!(r.holders, ["dm-0"]);
    assert!(r.in_use());
}

#[tokio::test]
async fn missing_sysfs_entry_means_no_holders() {
    let h = Host::new();
    let r = h
        .probe()
        .check(
            &table(),
            &query(DevNum {
                major: 259,
                minor: 99,
            }),
        )
        .await
        .unwrap();
    assert!(r.holders.is_empty());
}

#[tokio::test]
async fn other_mounts_of_the_device_count_but_not_the_mount_itself() {
    let h = Host::new();
    let r = h.probe().check(&table(), &query(DEV)).await.unwrap();
    assert!(r.other_mounts.is_empty());
    let t = MountTable::parse(&format!(
        "310 22 259:7 / {STAGE} rw - ext4 /dev/nvme1n1 rw\n311 22 259:7 / /pods/p1/mount rw - ext4 /dev/nvme1n1 rw\n"
    ));
    let r = h.probe().check(&t, &query(DEV)).await.unwrap();
    assert_eq!(r.other_mounts, [PathBuf::from("/pods/p1/mount")]);
    assert!(r.summary().contains("other mounts: /pods/p1/mount"));
}

#[tokio::test]
async fn unreadable_proc_root_is_an_error_not_not_in_use() {
    let h = Host::new();
    let mut probe = h.probe();
    probe.proc_root = h.dir.path().join("no-proc");
    assert!(probe.check(&table(), &query(DEV)).await.is_err());
}

#[tokio::test]
async fn real_proc_scan_finds_nothing_for_an_unused_device() {
    let probe = InUseProbe::default();
    let q = InUseQuery {
        mount_path: PathBuf::from("/definitely/not/mounted/here"),
        dev: Some(DevNum {
            major: 4095,
            minor: 1_048_000,
        }),
        device_paths: vec![PathBuf::from("/dev/does-not-exist")],
    };
    let r = probe.check(&MountTable::default(), &q).await.unwrap();
    assert!(!r.in_use(), "{r:?}");
}
