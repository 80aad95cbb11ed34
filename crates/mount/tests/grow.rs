#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! Growing a filesystem that is smaller than its device, against outputs captured from the real
//! tools (e2fsprogs 1.47.0, xfsprogs 6.1.0) and a scripted runner.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use mount::exec::BoxFuture;
use mount::grow::{geometry, grow_to_device, parse_dumpe2fs, parse_xfs_statfs};
use mount::{
    CommandOutput, CommandRunner, CommandSpec, Error, FormatConfig, FsGeometry, FsType, GrowOutcome,
};

/// `dumpe2fs -h` of `mkfs.ext4 -m 0` on a 1 GiB device (stdout only; the banner is on stderr).
const DUMPE2FS_1G: &str = "\
Filesystem volume name:   <none>
Last mounted on:          <not available>
Filesystem UUID:          21afc4bb-9e06-4c79-a85c-f7f76244d23b
Filesystem magic number:  0xEF53
Filesystem revision #:    1 (dynamic)
Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum
Filesystem state:         clean
Inode count:              65536
Block count:              262144
Reserved block count:     0
Overhead clusters:        12949
Free blocks:              249189
Free inodes:              65525
First block:              0
Block size:               4096
Fragment size:            4096
Reserved GDT blocks:      127
Blocks per group:         32768
Inode size:\t          256
Total journal size:       32M
Total journal blocks:     8192
";

/// `xfs_io -r -c statfs <mount point>` of a 400 MiB XFS mount.
const XFS_STATFS_400M: &str = "\
fd.path = \"/tmp/xm\"
statfs.f_bsize = 4096
statfs.f_blocks = 86016
statfs.f_bavail = 80230
statfs.f_files = 204800
statfs.f_ffree = 204797
statfs.f_flags = 0x1020
geom.bsize = 4096
geom.agcount = 4
geom.agblocks = 25600
geom.datablocks = 102400
geom.rtblocks = 0
geom.rtextents = 0
geom.rtextsize = 1
geom.sunit = 0
geom.swidth = 0
counts.freedata = 80832
counts.freertx = 0
counts.freeino = 61
counts.allocino = 64
";

/// The same command on a path that is not on XFS: no `geom.` lines.
const STATFS_NOT_XFS: &str = "\
fd.path = \"/tmp\"
statfs.f_bsize = 4096
statfs.f_blocks = 66053021
statfs.f_bavail = 14369147
statfs.f_files = 16777216
statfs.f_ffree = 16283425
statfs.f_flags = 0x1020
";

const DEV: &str = "/dev/nvme1n1";
const STAGE: &str = "/stage";
const GIB: u64 = 1 << 30;

#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<CommandOutput, Error>>>,
    ran: Mutex<Vec<CommandSpec>>,
}

impl Scripted {
    fn new(answers: Vec<Result<CommandOutput, Error>>) -> Self {
        Scripted {
            answers: Mutex::new(answers.into()),
            ran: Mutex::default(),
        }
    }
    fn ran(&self) -> Vec<String> {
        self.ran
            .lock()
            .unwrap()
            .iter()
            .map(CommandSpec::display)
            .collect()
    }
    fn deadlines(&self) -> Vec<Duration> {
        self.ran
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.deadline)
            .collect()
    }
}

impl CommandRunner for Scripted {
    fn run<'a>(&'a self, spec: &'a CommandSpec) -> BoxFuture<'a, mount::Result<CommandOutput>> {
        self.ran.lock().unwrap().push(spec.clone());
        let next = self.answers.lock().unwrap().pop_front();
        Box::pin(
            async move { next.unwrap_or_else(|| panic!("unscripted command {}", spec.display())) },
        )
    }
}

fn exit(code: i32, stdout: &str) -> Result<CommandOutput, Error> {
    Ok(CommandOutput {
        code: Some(code),
        stdout: stdout.to_string(),
        stderr: String::new(),
    })
}

fn cfg() -> FormatConfig {
    FormatConfig {
        probe_deadline: Duration::from_secs(7),
        resize_deadline: Duration::from_secs(99),
        ..FormatConfig::default()
    }
}

async fn grow(r: &Scripted, fs: FsType, device_bytes: u64) -> mount::Result<GrowOutcome> {
    grow_to_device(
        r,
        fs,
        Path::new(DEV),
        Path::new(STAGE),
        device_bytes,
        &cfg(),
    )
    .await
}

#[test]
fn real_tool_outputs_parse_to_the_filesystem_size() {
    let ext4 = parse_dumpe2fs(DUMPE2FS_1G).unwrap();
    assert_eq!(
        ext4,
        FsGeometry {
            block_size: 4096,
            blocks: 262_144
        }
    );
    assert_eq!(
        ext4.bytes(),
        GIB,
        "Block count, not the statfs count net of overhead"
    );
    let xfs = parse_xfs_statfs(XFS_STATFS_400M).unwrap();
    assert_eq!(
        xfs.bytes(),
        400 << 20,
        "geom.datablocks, not statfs.f_blocks"
    );
}

#[test]
fn outputs_without_the_fields_are_refused() {
    assert!(parse_xfs_statfs(STATFS_NOT_XFS).is_none());
    assert!(parse_dumpe2fs("").is_none());
    assert!(parse_dumpe2fs("Reserved block count: 5\nBlock size: 4096\n").is_none());
    assert!(parse_dumpe2fs("Block count: 0\nBlock size: 4096\n").is_none());
    assert!(parse_dumpe2fs("Block count: lots\nBlock size: 4096\n").is_none());
    assert!(parse_xfs_statfs("geom.bsize = 4096\ngeom.datablocks = -1\n").is_none());
}

#[tokio::test]
async fn ext4_smaller_than_its_device_is_grown_online_through_the_device() {
    let r = Scripted::new(vec![exit(0, DUMPE2FS_1G), exit(0, "")]);
    let out = grow(&r, FsType::Ext4, 2 * GIB).await.unwrap();
    assert_eq!(
        out,
        GrowOutcome::Grown {
            from_bytes: GIB,
            device_bytes: 2 * GIB
        }
    );
    assert_eq!(
        r.ran(),
        ["dumpe2fs -h /dev/nvme1n1", "resize2fs /dev/nvme1n1"]
    );
    assert_eq!(
        r.deadlines(),
        [Duration::from_secs(7), Duration::from_secs(99)],
        "probe deadline for the read, NodeExpandVolume's resize deadline for the grow"
    );
}

#[tokio::test]
async fn xfs_smaller_than_its_device_is_grown_through_the_mount_point() {
    let r = Scripted::new(vec![exit(0, XFS_STATFS_400M), exit(0, "")]);
    let out = grow(&r, FsType::Xfs, GIB).await.unwrap();
    assert!(matches!(out, GrowOutcome::Grown { from_bytes, .. } if from_bytes == 400 << 20));
    assert_eq!(r.ran(), ["xfs_io -r -c statfs /stage", "xfs_growfs /stage"]);
}

#[tokio::test]
async fn a_filesystem_that_fills_or_exceeds_its_device_is_never_touched() {
    for device_bytes in [GIB, GIB + 4096, GIB / 2] {
        let r = Scripted::new(vec![exit(0, DUMPE2FS_1G)]);
        let out = grow(&r, FsType::Ext4, device_bytes).await.unwrap();
        assert_eq!(
            out,
            GrowOutcome::Fits {
                fs_bytes: GIB,
                device_bytes
            }
        );
        assert_eq!(r.ran(), ["dumpe2fs -h /dev/nvme1n1"], "{device_bytes}");
    }
}

#[tokio::test]
async fn an_unreadable_size_is_an_error_and_nothing_is_grown() {
    let r = Scripted::new(vec![exit(0, STATFS_NOT_XFS)]);
    let err = grow(&r, FsType::Xfs, 2 * GIB).await.unwrap_err();
    assert!(matches!(err, Error::Geometry { .. }), "{err}");
    assert!(
        err.to_string().contains("xfs_io -r -c statfs /stage"),
        "{err}"
    );

    let r = Scripted::new(vec![exit(8, "Couldn't find valid filesystem superblock.")]);
    let err = geometry(&r, FsType::Ext4, Path::new(DEV), Path::new(STAGE), &cfg())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommandFailed { .. }), "{err}");
    assert_eq!(r.ran(), ["dumpe2fs -h /dev/nvme1n1"]);
}

#[tokio::test]
async fn a_failed_grow_is_reported_with_the_tool_output() {
    let r = Scripted::new(vec![
        exit(0, DUMPE2FS_1G),
        exit(1, "resize2fs: Permission denied to resize filesystem"),
    ]);
    let err = grow(&r, FsType::Ext4, 2 * GIB).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("resize2fs /dev/nvme1n1") && msg.contains("Permission denied"),
        "{msg}"
    );
}
