#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use mount::fake::RecordingSys;
use mount::{DevNum, MountHealth, MountTable, NodeKind, classify};

const STAGE: &str = "/stage/vol";
const D7: DevNum = DevNum {
    major: 259,
    minor: 7,
};
const D9: DevNum = DevNum {
    major: 259,
    minor: 9,
};

fn table(source: &str, dev: &str, super_opts: &str) -> MountTable {
    MountTable::parse(&format!(
        "310 22 {dev} / {STAGE} rw,relatime - ext4 {source} {super_opts}\n"
    ))
}

fn sys_with(nodes: &[(&str, NodeKind)]) -> RecordingSys {
    let sys = RecordingSys::new();
    for (p, k) in nodes {
        sys.set_node(Path::new(p), *k);
    }
    sys
}

#[test]
fn healthy_mount_is_ok() {
    let sys = sys_with(&[("/dev/nvme1n1", NodeKind::BlockDevice(D7))]);
    let h = classify(
        &table("/dev/nvme1n1", "259:7", "rw"),
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme1n1")),
        false,
    )
    .unwrap();
    assert_eq!(h, MountHealth::Ok);
    assert!(h.is_ok());
}

#[test]
fn nothing_mounted() {
    let sys = sys_with(&[]);
    let h = classify(
        &MountTable::default(),
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme1n1")),
        false,
    )
    .unwrap();
    assert_eq!(h, MountHealth::NotMounted);
}

#[test]
fn source_node_gone() {
    let sys = sys_with(&[("/dev/nvme2n1", NodeKind::BlockDevice(D9))]);
    let h = classify(
        &table("/dev/nvme1n1", "259:7", "rw"),
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme2n1")),
        false,
    )
    .unwrap();
    assert_eq!(
        h,
        MountHealth::DeviceGone {
            source: "/dev/nvme1n1".into()
        }
    );
}

#[test]
fn nqn_resolves_to_nothing_is_device_gone_not_inconclusive() {
    let sys = sys_with(&[("/dev/nvme1n1", NodeKind::BlockDevice(D7))]);
    let h = classify(
        &table("/dev/nvme1n1", "259:7", "rw"),
        &sys,
        Path::new(STAGE),
        None,
        false,
    )
    .unwrap();
    assert!(matches!(h, MountHealth::DeviceGone { .. }));
}

#[test]
fn device_number_changed_under_the_same_name() {
    // After a reconnect /dev/nvme1n1 exists again but is a different namespace.
    let sys = sys_with(&[("/dev/nvme1n1", NodeKind::BlockDevice(D9))]);
    let h = classify(
        &table("/dev/nvme1n1", "259:7", "rw"),
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme1n1")),
        false,
    )
    .unwrap();
    assert_eq!(
        h,
        MountHealth::DeviceChanged {
            mounted: D7,
            current: D9
        }
    );
}

#[test]
fn same_device_number_different_source_name() {
    let sys = sys_with(&[
        ("/dev/nvme1n1", NodeKind::BlockDevice(D7)),
        ("/dev/nvme4n1", NodeKind::BlockDevice(D7)),
    ]);
    let h = classify(
        &table("/dev/nvme1n1", "259:7", "rw"),
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme4n1")),
        false,
    )
    .unwrap();
    assert_eq!(
        h,
        MountHealth::SourceMismatch {
            mounted: "/dev/nvme1n1".into(),
            current: "/dev/nvme4n1".into()
        }
    );
}

#[test]
fn superblock_read_only_after_error() {
    let sys = sys_with(&[("/dev/nvme1n1", NodeKind::BlockDevice(D7))]);
    let t = table("/dev/nvme1n1", "259:7", "ro,errors=remount-ro");
    let h = classify(
        &t,
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme1n1")),
        false,
    )
    .unwrap();
    assert_eq!(h, MountHealth::ReadOnly);
    let h = classify(
        &t,
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme1n1")),
        true,
    )
    .unwrap();
    assert_eq!(h, MountHealth::Ok, "expected read-only volume is healthy");
}

#[test]
fn top_most_mount_is_classified() {
    let sys = sys_with(&[
        ("/dev/nvme1n1", NodeKind::BlockDevice(D7)),
        ("/dev/nvme2n1", NodeKind::BlockDevice(D9)),
    ]);
    let t = MountTable::parse(&format!(
        "310 22 259:7 / {STAGE} rw - ext4 /dev/nvme1n1 rw\n311 22 259:9 / {STAGE} rw - ext4 /dev/nvme2n1 rw\n"
    ));
    let h = classify(
        &t,
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme1n1")),
        false,
    )
    .unwrap();
    assert_eq!(
        h,
        MountHealth::DeviceChanged {
            mounted: D9,
            current: D7
        }
    );
}

#[test]
fn current_device_not_a_block_device_is_an_error() {
    let sys = sys_with(&[("/dev/nvme1n1", NodeKind::File)]);
    let r = classify(
        &table("/dev/nvme1n1", "259:7", "rw"),
        &sys,
        Path::new(STAGE),
        Some(Path::new("/dev/nvme1n1")),
        false,
    );
    assert!(r.is_err());
}
