#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mount::fake::{Call, RecordingSys};
use mount::{
    DevNum, Error, FsType, FsUsage, InUseProbe, MountOptions, MountOutcome, Mounter, MounterConfig,
    NodeKind, OptionPolicy, UnmountMode, UnmountOutcome, build_mount_options,
};

const DEV: &str = "/dev/nvme1n1";
const D7: DevNum = DevNum {
    major: 259,
    minor: 7,
};

struct Env {
    dir: tempfile::TempDir,
    sys: Arc<RecordingSys>,
    mounter: Mounter,
}

fn env() -> Env {
    env_with(|_| {})
}

fn env_with(tweak: impl FnOnce(&mut MounterConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mountinfo = dir.path().join("mountinfo");
    let sys = Arc::new(RecordingSys::with_mountinfo(&mountinfo));
    sys.set_node(Path::new(DEV), NodeKind::BlockDevice(D7));
    std::fs::create_dir_all(dir.path().join("proc")).unwrap();
    std::fs::create_dir_all(dir.path().join("sys")).unwrap();
    let mut cfg = MounterConfig {
        mountinfo,
        syscall_deadline: Duration::from_secs(5),
        read_deadline: Duration::from_secs(5),
        unmount_wait: Duration::from_millis(50),
        poll_interval: Duration::from_millis(10),
        mount_storm_threshold: 100,
        in_use: InUseProbe {
            proc_root: dir.path().join("proc"),
            sys_root: dir.path().join("sys"),
            own_pid: 1,
            deadline: Duration::from_secs(5),
        },
    };
    tweak(&mut cfg);
    let mounter = Mounter::new(sys.clone(), cfg);
    Env { dir, sys, mounter }
}

fn opts(user: &[&str], fs: Option<FsType>) -> MountOptions {
    build_mount_options(user, fs, OptionPolicy::default()).unwrap()
}

fn ops(sys: &RecordingSys) -> Vec<(&'static str, PathBuf)> {
    sys.calls()
        .into_iter()
        .map(|c| {
            let p = match &c {
                Call::Mount { target, .. } | Call::Bind { target, .. } => target.clone(),
                Call::RemountBind { target, .. } | Call::Unmount { target, .. } => target.clone(),
                Call::MknodBlock { path, .. } | Call::Statvfs { path } => path.clone(),
            };
            (c.op(), p)
        })
        .collect()
}

#[tokio::test]
async fn mount_filesystem_passes_flags_and_data_and_is_idempotent() {
    let e = env();
    let o = opts(&["noatime", "discard"], Some(FsType::Ext4));
    let out = e
        .mounter
        .mount_filesystem(Path::new(DEV), Path::new("/stage"), FsType::Ext4, &o)
        .await
        .unwrap();
    assert_eq!(out, MountOutcome::Mounted);
    let again = e
        .mounter
        .mount_filesystem(Path::new(DEV), Path::new("/stage"), FsType::Ext4, &o)
        .await
        .unwrap();
    assert_eq!(again, MountOutcome::AlreadyMounted);
    let calls = e.sys.calls();
    assert_eq!(
        calls.len(),
        1,
        "retry must not stack a second mount: {calls:?}"
    );
    match &calls[0] {
        Call::Mount {
            source,
            fs_type,
            flags,
            data,
            ..
        } => {
            assert_eq!(source, Path::new(DEV));
            assert_eq!(fs_type, "ext4");
            assert!(flags.nosuid && flags.nodev && flags.noexec && flags.noatime);
            assert_eq!(data, "discard");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn mount_filesystem_refuses_a_target_holding_another_device() {
    let e = env();
    e.sys.add_mount(
        "/dev/nvme5n1",
        DevNum {
            major: 259,
            minor: 20,
        },
        Path::new("/stage"),
        "ext4",
    );
    let err = e
        .mounter
        .mount_filesystem(
            Path::new(DEV),
            Path::new("/stage"),
            FsType::Ext4,
            &opts(&[], Some(FsType::Ext4)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/dev/nvme5n1"), "{err}");
    assert!(e.sys.calls().is_empty());
}

#[tokio::test]
async fn mount_storm_guard_refuses() {
    let e = env_with(|c| c.mount_storm_threshold = 2);
    e.sys.add_mount(DEV, D7, Path::new("/a"), "ext4");
    e.sys.add_mount(DEV, D7, Path::new("/b"), "ext4");
    let err = e
        .mounter
        .mount_filesystem(
            Path::new(DEV),
            Path::new("/stage"),
            FsType::Ext4,
            &opts(&[], Some(FsType::Ext4)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mount storm"), "{err}");
    assert!(e.sys.calls().is_empty());
}

#[tokio::test]
async fn read_only_bind_is_bind_then_remount_with_all_flags() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    let o = opts(&["ro"], None);
    let out = e
        .mounter
        .bind_mount(Path::new("/stage"), Path::new("/pod/mount"), &o)
        .await
        .unwrap();
    assert_eq!(out, MountOutcome::Mounted);
    let calls = e.sys.calls();
    assert_eq!(
        calls,
        [
            Call::Bind {
                source: "/stage".into(),
                target: "/pod/mount".into()
            },
            Call::RemountBind {
                target: "/pod/mount".into(),
                flags: o.flags
            },
        ]
    );
    assert!(o.flags.read_only && o.flags.nosuid && o.flags.nodev && o.flags.noexec);
    // Retry: already there with the same flags.
    let again = e
        .mounter
        .bind_mount(Path::new("/stage"), Path::new("/pod/mount"), &o)
        .await
        .unwrap();
    assert_eq!(again, MountOutcome::AlreadyMounted);
    assert_eq!(e.sys.calls().len(), 2);
}

#[tokio::test]
async fn bind_with_different_access_mode_is_an_error() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.mounter
        .bind_mount(
            Path::new("/stage"),
            Path::new("/pod/mount"),
            &opts(&["ro"], None),
        )
        .await
        .unwrap();
    let err = e
        .mounter
        .bind_mount(
            Path::new("/stage"),
            Path::new("/pod/mount"),
            &opts(&[], None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Target { .. }), "{err}");
}

#[tokio::test]
async fn failed_remount_undoes_the_bind() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.fail_next("remount_bind", 16);
    let err = e
        .mounter
        .bind_mount(
            Path::new("/stage"),
            Path::new("/pod/mount"),
            &opts(&["ro"], None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Syscall { op: "remount", .. }), "{err}");
    assert_eq!(
        ops(&e.sys),
        [
            ("bind", "/pod/mount".into()),
            ("remount_bind", "/pod/mount".into()),
            ("unmount", "/pod/mount".into())
        ]
    );
    assert!(
        !e.mounter
            .mount_table()
            .await
            .unwrap()
            .is_mount_point(Path::new("/pod/mount"))
    );
}

#[tokio::test]
async fn bind_from_unmounted_source_is_refused() {
    let e = env();
    let err = e
        .mounter
        .bind_mount(
            Path::new("/stage"),
            Path::new("/pod/mount"),
            &opts(&[], None),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a mount point"), "{err}");
    assert!(e.sys.calls().is_empty());
}

#[tokio::test]
async fn unmount_not_mounted_does_nothing() {
    let e = env();
    assert_eq!(
        e.mounter.unmount(Path::new("/stage"), true).await.unwrap(),
        UnmountOutcome::NotMounted
    );
    assert!(e.sys.calls().is_empty());
}

#[tokio::test]
async fn unmount_normal_success() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    assert_eq!(
        e.mounter.unmount(Path::new("/stage"), true).await.unwrap(),
        UnmountOutcome::Unmounted
    );
    assert_eq!(
        e.sys.calls(),
        [Call::Unmount {
            target: "/stage".into(),
            mode: UnmountMode::Normal
        }]
    );
}

#[tokio::test]
async fn unmount_only_removes_the_top_of_a_stack() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    assert_eq!(
        e.mounter.unmount(Path::new("/stage"), false).await.unwrap(),
        UnmountOutcome::Unmounted
    );
    assert!(
        e.mounter
            .mount_table()
            .await
            .unwrap()
            .is_mount_point(Path::new("/stage"))
    );
}

#[tokio::test]
async fn busy_unmount_is_retried_within_the_wait() {
    let e = env_with(|c| c.unmount_wait = Duration::from_secs(5));
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.fail_next("unmount", 16); // EBUSY once, then the user goes away
    assert_eq!(
        e.mounter.unmount(Path::new("/stage"), false).await.unwrap(),
        UnmountOutcome::Unmounted
    );
    assert_eq!(
        ops(&e.sys),
        [("unmount", "/stage".into()), ("unmount", "/stage".into())]
    );
}

#[tokio::test]
async fn without_escalation_a_stuck_mount_is_an_error() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.make_sticky(Path::new("/stage"));
    let err = e
        .mounter
        .unmount(Path::new("/stage"), false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StillMounted { .. }), "{err}");
    assert!(e.sys.calls().iter().all(|c| matches!(
        c,
        Call::Unmount {
            mode: UnmountMode::Normal,
            ..
        }
    )));
}

#[tokio::test]
async fn escalation_detaches_only_when_unused() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.make_sticky(Path::new("/stage"));
    assert_eq!(
        e.mounter.unmount(Path::new("/stage"), true).await.unwrap(),
        UnmountOutcome::Detached
    );
    let calls = e.sys.calls();
    assert_eq!(
        calls.last().unwrap(),
        &Call::Unmount {
            target: "/stage".into(),
            mode: UnmountMode::Detach
        }
    );
    assert!(calls[..calls.len() - 1].iter().all(|c| matches!(
        c,
        Call::Unmount {
            mode: UnmountMode::Normal,
            ..
        }
    )));
}

#[tokio::test]
async fn escalation_refused_when_a_process_uses_the_mount() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.make_sticky(Path::new("/stage"));
    let fd = e.dir.path().join("proc/555/fd");
    std::fs::create_dir_all(&fd).unwrap();
    symlink("/stage/db/wal", fd.join("7")).unwrap();
    let err = e
        .mounter
        .unmount(Path::new("/stage"), true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InUse { users, .. } if users.contains("555")),
        "{err}"
    );
    assert!(!e.sys.calls().iter().any(|c| matches!(
        c,
        Call::Unmount {
            mode: UnmountMode::Detach,
            ..
        }
    )));
}

#[tokio::test]
async fn escalation_refused_when_device_is_mounted_elsewhere() {
    let e = env();
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.add_mount(DEV, D7, Path::new("/pod/mount"), "ext4");
    e.sys.make_sticky(Path::new("/stage"));
    let err = e
        .mounter
        .unmount(Path::new("/stage"), true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InUse { users, .. } if users.contains("/pod/mount")),
        "{err}"
    );
}

#[tokio::test]
async fn hung_umount_times_out_naming_the_path() {
    let e = env_with(|c| {
        c.syscall_deadline = Duration::from_millis(50);
        c.unmount_wait = Duration::from_millis(100);
    });
    e.sys.add_mount(DEV, D7, Path::new("/stage"), "ext4");
    e.sys.stall("unmount", Duration::from_millis(400));
    let err = e
        .mounter
        .unmount(Path::new("/stage"), false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::SyscallTimeout { .. }), "{text}");
    assert!(
        text.contains("/stage") && text.contains("may still be pending"),
        "{text}"
    );
    assert_eq!(
        e.sys.calls().len(),
        1,
        "no second umount while the first is pending"
    );
}

#[tokio::test]
async fn publish_block_uses_mknod_with_mode_and_is_idempotent() {
    let e = env();
    let target = e.dir.path().join("publish/pv/pod");
    assert_eq!(
        e.mounter.publish_block(D7, &target, false).await.unwrap(),
        MountOutcome::Mounted
    );
    assert!(target.parent().unwrap().is_dir(), "parent created");
    assert_eq!(
        e.sys.calls(),
        [Call::MknodBlock {
            path: target.clone(),
            dev: D7,
            mode: 0o660
        }]
    );
    assert_eq!(
        e.mounter.publish_block(D7, &target, false).await.unwrap(),
        MountOutcome::AlreadyMounted
    );
    let err = e
        .mounter
        .publish_block(
            DevNum {
                major: 259,
                minor: 8,
            },
            &target,
            false,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("259:7"), "{err}");
    assert_eq!(e.sys.calls().len(), 1);
    assert!(
        !e.sys
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Bind { .. } | Call::Mount { .. }))
    );
}

#[tokio::test]
async fn publish_block_read_only_mode_and_replaces_empty_file() {
    let e = env();
    let target = e.dir.path().join("pod-ro");
    std::fs::write(&target, b"").unwrap();
    e.sys.set_node(&target, NodeKind::File);
    e.mounter.publish_block(D7, &target, true).await.unwrap();
    assert!(!target.exists(), "empty placeholder removed before mknod");
    assert_eq!(
        e.sys.calls(),
        [Call::MknodBlock {
            path: target,
            dev: D7,
            mode: 0o440
        }]
    );
}

#[tokio::test]
async fn publish_block_keeps_non_empty_file() {
    let e = env();
    let target = e.dir.path().join("pod-data");
    std::fs::write(&target, b"data").unwrap();
    e.sys.set_node(&target, NodeKind::File);
    assert!(e.mounter.publish_block(D7, &target, false).await.is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"data");
    assert!(e.sys.calls().is_empty());
}

#[tokio::test]
async fn remove_target_never_removes_a_mount_point_or_a_non_empty_dir() {
    let e = env();
    let target = e.dir.path().join("target");
    std::fs::create_dir_all(target.join("data")).unwrap();
    e.sys.set_node(&target, NodeKind::Directory);
    e.sys.add_mount(DEV, D7, &target, "ext4");
    let err = e.mounter.remove_target(&target).await.unwrap_err();
    assert!(err.to_string().contains("still a mount point"), "{err}");
    assert!(target.join("data").is_dir());
    e.mounter.unmount(&target, false).await.unwrap();
    let err = e.mounter.remove_target(&target).await.unwrap_err();
    assert!(matches!(err, Error::Syscall { op: "rmdir", .. }), "{err}");
    assert!(target.join("data").is_dir(), "contents survive");
    std::fs::remove_dir(target.join("data")).unwrap();
    e.mounter.remove_target(&target).await.unwrap();
    assert!(!target.exists());
}

#[tokio::test]
async fn remove_target_unlinks_device_node_and_ignores_missing() {
    let e = env();
    let node = e.dir.path().join("node");
    std::fs::write(&node, b"").unwrap();
    e.sys.set_node(&node, NodeKind::BlockDevice(D7));
    e.mounter.remove_target(&node).await.unwrap();
    assert!(!node.exists());
    e.mounter
        .remove_target(&e.dir.path().join("missing"))
        .await
        .unwrap();
}

#[tokio::test]
async fn usage_goes_through_statvfs() {
    let e = env();
    let u = FsUsage {
        total_bytes: 100,
        used_bytes: 40,
        available_bytes: 50,
        total_inodes: 10,
        used_inodes: 3,
        available_inodes: 7,
    };
    e.sys.set_usage(u);
    assert_eq!(e.mounter.usage(Path::new("/stage")).await.unwrap(), u);
    e.sys.fail_next("statvfs", 5);
    let err = e.mounter.usage(Path::new("/stage")).await.unwrap_err();
    assert!(err.to_string().contains("statvfs /stage"), "{err}");
}
