#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use mount::exec::BoxFuture;
use mount::format::{check_ext4, ensure_filesystem, mkfs_command, probe, resize};
use mount::{
    CommandOutput, CommandRunner, CommandSpec, Error, FormatConfig, FormatOutcome, FsType,
    FsckVerdict, Probe,
};

/// Answers commands from a script, in order, and records what was run.
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

fn timeout() -> Result<CommandOutput, Error> {
    Err(Error::CommandTimeout {
        command: "blkid".into(),
        deadline: Duration::from_secs(1),
    })
}

fn cfg(attempts: u32) -> FormatConfig {
    FormatConfig {
        probe_attempts: attempts,
        probe_interval: Duration::from_millis(1),
        ..FormatConfig::default()
    }
}

const DEV: &str = "/dev/nvme1n1";
const BLKID: &str = "blkid -p -o export /dev/nvme1n1";
const EXT4_EXPORT: &str =
    "DEVNAME=/dev/nvme1n1\nUUID=65fa\nVERSION=1.0\nBLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n";

#[tokio::test]
async fn exit_2_formats_with_documented_mkfs_args() {
    let r = Scripted::new(vec![exit(2, ""), exit(0, "")]);
    let out = ensure_filesystem(&r, Path::new(DEV), FsType::Ext4, &cfg(3))
        .await
        .unwrap();
    assert_eq!(out, FormatOutcome::Formatted);
    assert_eq!(
        r.ran(),
        [
            BLKID,
            "mkfs.ext4 -m 0 -E lazy_itable_init=1,lazy_journal_init=0 /dev/nvme1n1"
        ]
    );
}

#[tokio::test]
async fn exit_2_formats_xfs_without_force() {
    let r = Scripted::new(vec![exit(2, ""), exit(0, "")]);
    ensure_filesystem(&r, Path::new(DEV), FsType::Xfs, &cfg(1))
        .await
        .unwrap();
    assert_eq!(r.ran(), [BLKID, "mkfs.xfs /dev/nvme1n1"]);
}

#[tokio::test]
async fn existing_matching_filesystem_is_never_formatted() {
    let r = Scripted::new(vec![exit(0, EXT4_EXPORT)]);
    let out = ensure_filesystem(&r, Path::new(DEV), FsType::Ext4, &cfg(3))
        .await
        .unwrap();
    assert_eq!(out, FormatOutcome::Existing);
    assert_eq!(r.ran(), [BLKID]);
}

#[tokio::test]
async fn existing_other_filesystem_is_an_error_not_a_reformat() {
    let r = Scripted::new(vec![exit(0, "TYPE=xfs\n")]);
    let err = ensure_filesystem(&r, Path::new(DEV), FsType::Ext4, &cfg(3))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::FilesystemMismatch { found, requested, .. } if found == "xfs" && requested == "ext4"),
        "{err}"
    );
    assert_eq!(r.ran(), [BLKID]);
}

#[tokio::test]
async fn exit_0_without_type_refuses() {
    // A partition table: blkid -p reports PTTYPE but no TYPE.
    let pt = || exit(0, "PTUUID=1234\nPTTYPE=gpt\n");
    let r = Scripted::new(vec![pt(), pt()]);
    let err = ensure_filesystem(&r, Path::new(DEV), FsType::Ext4, &cfg(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ProbeInconclusive { attempts: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("without a filesystem TYPE"),
        "{err}"
    );
    assert!(r.ran().iter().all(|c| c == BLKID));
}

#[tokio::test]
async fn exit_1_4_8_and_timeout_refuse_after_bounded_retries() {
    for bad in [
        exit(1, ""),
        exit(4, ""),
        exit(8, ""),
        timeout(),
        Ok(CommandOutput {
            code: None,
            ..Default::default()
        }),
    ] {
        let r = Scripted::new(vec![
            bad.clone_for_test(),
            bad.clone_for_test(),
            bad.clone_for_test(),
        ]);
        let err = ensure_filesystem(&r, Path::new(DEV), FsType::Ext4, &cfg(3))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::ProbeInconclusive { attempts: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("refusing to format"), "{err}");
        assert_eq!(r.ran(), [BLKID, BLKID, BLKID], "no mkfs after {err}");
    }
}

#[tokio::test]
async fn settling_device_probed_again_until_definitive() {
    let r = Scripted::new(vec![exit(1, ""), timeout(), exit(0, EXT4_EXPORT)]);
    let p = probe(&r, Path::new(DEV), &cfg(5)).await.unwrap();
    assert_eq!(p, Probe::Filesystem("ext4".into()));
    assert_eq!(r.ran().len(), 3);
}

#[tokio::test]
async fn zero_attempts_still_probes_once() {
    let r = Scripted::new(vec![exit(2, "")]);
    assert_eq!(
        probe(&r, Path::new(DEV), &cfg(0)).await.unwrap(),
        Probe::Empty
    );
}

#[tokio::test]
async fn mkfs_failure_reports_output() {
    let r = Scripted::new(vec![
        exit(2, ""),
        Ok(CommandOutput {
            code: Some(1),
            stdout: String::new(),
            stderr: "/dev/nvme1n1 is apparently in use by the system".into(),
        }),
    ]);
    let err = ensure_filesystem(&r, Path::new(DEV), FsType::Ext4, &cfg(1))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("mkfs.ext4")
            && text.contains("in use by the system")
            && text.contains("exit status 1"),
        "{text}"
    );
}

#[test]
fn mkfs_ext4_options_follow_config() {
    let mut c = FormatConfig::default();
    c.ext4.reserved_percent = 5;
    c.ext4.lazy_itable_init = false;
    c.ext4.lazy_journal_init = true;
    let spec = mkfs_command(FsType::Ext4, Path::new(DEV), &c);
    assert_eq!(
        spec.display(),
        "mkfs.ext4 -m 5 -E lazy_itable_init=0,lazy_journal_init=1 /dev/nvme1n1"
    );
    assert_eq!(spec.deadline, c.mkfs_deadline);
}

#[tokio::test]
async fn resize_uses_device_for_ext4_and_mount_point_for_xfs() {
    let r = Scripted::new(vec![exit(0, ""), exit(0, ""), exit(1, "")]);
    resize(
        &r,
        FsType::Ext4,
        Path::new(DEV),
        Path::new("/stage"),
        &cfg(1),
    )
    .await
    .unwrap();
    resize(
        &r,
        FsType::Xfs,
        Path::new(DEV),
        Path::new("/stage"),
        &cfg(1),
    )
    .await
    .unwrap();
    let err = resize(
        &r,
        FsType::Xfs,
        Path::new(DEV),
        Path::new("/stage"),
        &cfg(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::CommandFailed { .. }));
    assert_eq!(
        r.ran(),
        [
            "resize2fs /dev/nvme1n1",
            "xfs_growfs /stage",
            "xfs_growfs /stage"
        ]
    );
}

#[tokio::test]
async fn e2fsck_exit_codes() {
    let r = Scripted::new(vec![
        exit(0, "clean"),
        exit(4, "Inode 12 has illegal blocks"),
        exit(8, ""),
        exit(1, ""),
    ]);
    assert_eq!(
        check_ext4(&r, Path::new(DEV), &cfg(1)).await.unwrap(),
        FsckVerdict::Clean
    );
    assert_eq!(
        check_ext4(&r, Path::new(DEV), &cfg(1)).await.unwrap(),
        FsckVerdict::ErrorsFound("Inode 12 has illegal blocks".into())
    );
    assert!(check_ext4(&r, Path::new(DEV), &cfg(1)).await.is_err());
    assert!(matches!(
        check_ext4(&r, Path::new(DEV), &cfg(1)).await.unwrap(),
        FsckVerdict::ErrorsFound(_)
    ));
    assert!(r.ran().iter().all(|c| c == "e2fsck -n /dev/nvme1n1"));
}

#[test]
fn fs_type_parsing() {
    assert_eq!("".parse::<FsType>().unwrap(), FsType::Ext4);
    assert_eq!("xfs".parse::<FsType>().unwrap(), FsType::Xfs);
    assert!(
        matches!("btrfs".parse::<FsType>(), Err(Error::UnsupportedFilesystem(t)) if t == "btrfs")
    );
}

trait CloneForTest {
    fn clone_for_test(&self) -> Self;
}

impl CloneForTest for Result<CommandOutput, Error> {
    fn clone_for_test(&self) -> Self {
        match self {
            Ok(o) => Ok(o.clone()),
            Err(Error::CommandTimeout { command, deadline }) => Err(Error::CommandTimeout {
                command: command.clone(),
                deadline: *deadline,
            }),
            Err(e) => panic!("not clonable in tests: {e}"),
        }
    }
}
