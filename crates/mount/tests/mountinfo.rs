#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use mount::mountinfo::read_mount_table;
use mount::{DevNum, DeviceRef, MountTable};

// Written for these tests in the kernel's format: root fs, a staged NVMe ext4 volume published
// twice (bind mounts), a path with escapes, stacked mounts and a malformed line.
const SAMPLE: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
25 22 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4008152k,nr_inodes=1002038,mode=755
310 22 259:7 / /var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi/abc/globalmount rw,relatime shared:150 - ext4 /dev/nvme1n1 rw
311 22 259:7 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount rw,nosuid,nodev,noexec,relatime shared:150 - ext4 /dev/nvme1n1 rw
312 22 259:7 / /var/lib/kubelet/pods/p2/volumes/kubernetes.io~csi/pvc-1/mount ro,nosuid,nodev,noexec,relatime shared:150 master:2 - ext4 /dev/nvme1n1 rw
400 22 0:60 / /mnt/with\\040space\\011tab\\012nl\\134bs rw,relatime - tmpfs my\\040src rw
500 22 0:70 / /stack rw,relatime - tmpfs first rw
501 500 0:71 / /stack rw,relatime - tmpfs second rw
502 501 259:9 /sub/dir /stack rw,relatime propagate_from:5 unbindable - xfs /dev/nvme3n1 ro,attr2,inode64
this line is garbage
600 22 0:80 / /no-separator rw,relatime tmpfs x rw extra
";

#[test]
fn parses_every_field_of_a_line_with_optional_fields() {
    let t = MountTable::parse(SAMPLE);
    let e = t
        .top_mount_at(Path::new(
            "/var/lib/kubelet/pods/p2/volumes/kubernetes.io~csi/pvc-1/mount",
        ))
        .unwrap();
    assert_eq!(e.mount_id, 312);
    assert_eq!(e.parent_id, 22);
    assert_eq!(
        e.dev,
        DevNum {
            major: 259,
            minor: 7
        }
    );
    assert_eq!(e.root, Path::new("/"));
    assert_eq!(
        e.mount_options,
        ["ro", "nosuid", "nodev", "noexec", "relatime"]
    );
    assert_eq!(e.optional_fields, ["shared:150", "master:2"]);
    assert_eq!(e.fs_type, "ext4");
    assert_eq!(e.source, "/dev/nvme1n1");
    assert_eq!(e.super_options, ["rw"]);
    assert!(e.is_read_only());
    assert!(!e.super_read_only());
}

#[test]
fn line_without_optional_fields_has_none() {
    let t = MountTable::parse(SAMPLE);
    let e = t.top_mount_at(Path::new("/stack")).unwrap();
    assert_eq!(e.optional_fields, ["propagate_from:5", "unbindable"]);
    let first = &t.mounts_at(Path::new("/stack"))[0];
    assert!(first.optional_fields.is_empty());
}

#[test]
fn decodes_octal_escapes_in_mount_point_and_source() {
    let t = MountTable::parse(SAMPLE);
    let e = t
        .top_mount_at(Path::new("/mnt/with space\ttab\nnl\\bs"))
        .expect("escaped mount point found");
    assert_eq!(e.source, "my src");
}

#[test]
fn stacked_mounts_last_one_wins() {
    let t = MountTable::parse(SAMPLE);
    let all = t.mounts_at(Path::new("/stack"));
    assert_eq!(
        all.iter().map(|e| e.mount_id).collect::<Vec<_>>(),
        [500, 501, 502]
    );
    let top = t.top_mount_at(Path::new("/stack")).unwrap();
    assert_eq!(top.mount_id, 502);
    assert_eq!(top.source, "/dev/nvme3n1");
    assert_eq!(top.root, Path::new("/sub/dir"));
    assert!(top.super_read_only());
}

#[test]
fn malformed_lines_are_skipped_and_reported() {
    let t = MountTable::parse(SAMPLE);
    assert_eq!(t.skipped_lines(), [11, 12]);
    assert_eq!(t.entries().len(), 10);
}

#[test]
fn is_mount_point_normalises_trailing_slashes_but_not_prefixes() {
    let t = MountTable::parse(SAMPLE);
    assert!(t.is_mount_point(Path::new("/stack/")));
    assert!(t.is_mount_point(Path::new("/stack/./")));
    assert!(!t.is_mount_point(Path::new("/stack/sub")));
    assert!(!t.is_mount_point(Path::new("/stac")));
}

#[test]
fn mounts_of_device_by_number_and_by_source() {
    let t = MountTable::parse(SAMPLE);
    let by_num = t.mounts_of_device(&DeviceRef::Number(DevNum {
        major: 259,
        minor: 7,
    }));
    assert_eq!(
        by_num.iter().map(|e| e.mount_id).collect::<Vec<_>>(),
        [310, 311, 312]
    );
    let by_src = t.mounts_of_device(&DeviceRef::Source("/dev/nvme1n1".to_string()));
    assert_eq!(by_num, by_src);
    assert!(
        t.mounts_of_device(&DeviceRef::Source("/dev/nvme9n1".to_string()))
            .is_empty()
    );
}

#[test]
fn devnum_parse_rejects_garbage() {
    assert_eq!(
        "8:16".parse::<DevNum>().unwrap(),
        DevNum {
            major: 8,
            minor: 16
        }
    );
    assert!("8".parse::<DevNum>().is_err());
    assert!("a:1".parse::<DevNum>().is_err());
    assert!("1:".parse::<DevNum>().is_err());
}

#[tokio::test]
async fn reads_file_and_reports_missing_file_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mountinfo");
    std::fs::write(&p, SAMPLE).unwrap();
    let t = read_mount_table(&p, Duration::from_secs(5)).await.unwrap();
    assert!(t.is_mount_point(Path::new("/proc")));
    let err = read_mount_table(&dir.path().join("nope"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn real_self_mountinfo_parses_without_skips() {
    let t = read_mount_table(Path::new("/proc/self/mountinfo"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(t.skipped_lines().is_empty());
    assert!(t.is_mount_point(Path::new("/")));
}
