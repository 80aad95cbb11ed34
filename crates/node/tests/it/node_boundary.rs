//! The node plugin's boundary and its concurrency rules against the fake kernel: paths confined
//! to the kubelet directory without symlinks, removal of only what the driver made, its own
//! leftover publish mounts cleaned at unstage, conflicting stage retries, publish_context
//! preferred over volume_context, cancelled unstages, and the per-volume lock.
#![allow(clippy::unwrap_used, dead_code, unused_imports)]
include!("common/node_env.rs");

use mount::MountSys;

fn calls_on(e: &Env, p: &Path) -> Vec<Call> {
    e.calls().into_iter().filter(|c| c.path() == p).collect()
}

fn assert_rule(r: Result<(), tonic::Status>, rule: &str) {
    let err = r.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains(rule), "{}", err.message());
}

// ---------------------------------------------------------------- paths (#1)

#[tokio::test]
async fn publish_outside_the_kubelet_dir_or_through_a_symlink_is_refused_and_creates_nothing() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let etc = e.path("etc");
    let outside = [
        etc.join("evil"),
        e.path("kubelet/pods/../../etc/evil"),
        e.path("kubeletX/pods/p1/mount"),
        e.path("kubelet"),
    ];
    for t in &outside {
        assert_rule(
            e.publish(VOL, t, fs_cap("ext4", &[]), false).await,
            "below the kubelet directory",
        );
    }
    assert!(
        !etc.exists(),
        "publish created something outside the kubelet dir"
    );

    // A symlink anywhere below the kubelet dir is never followed, for a mkdir or a mount.
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(e.path("kubelet/pods")).unwrap();
    symlink(&etc, e.path("kubelet/pods/pod-x")).unwrap();
    let through = e.path("kubelet/pods/pod-x/volumes/kubernetes.io~csi/pvc-1/mount");
    assert_rule(
        e.publish(VOL, &through, fs_cap("ext4", &[]), false).await,
        "is a symlink",
    );
    assert!(
        !etc.join("volumes").exists(),
        "mkdir went through the symlink"
    );
    assert!(
        e.calls()
            .iter()
            .all(|c| !matches!(c, Call::Bind { .. } | Call::MknodBlock { .. })),
        "{:#?}",
        e.calls()
    );
    // Block targets and staging paths follow the same rule.
    assert_rule(
        e.publish(VOL, &etc.join("sda"), block_cap(), false).await,
        "below the kubelet directory",
    );
    let err = e
        .node
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: VOL.into(),
            staging_target_path: etc.join("stage").display().to_string(),
            volume_capability: Some(fs_cap("ext4", &[])),
            volume_context: context(NQN),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(!etc.join("stage").exists());
}

#[tokio::test]
async fn unpublish_removes_only_what_the_driver_made() {
    let e = Env::new();
    // A file outside the kubelet dir, and one inside it, that the driver never created.
    let shadow = e.path("etc/shadow");
    fs::create_dir_all(shadow.parent().unwrap()).unwrap();
    fs::write(&shadow, "root:$6$secret").unwrap();
    e.kernel.sys.set_node(&shadow, NodeKind::File);
    assert_rule(
        e.unpublish(VOL, &shadow).await,
        "below the kubelet directory",
    );
    let inside = e.path("kubelet/pods/p1/notes");
    fs::create_dir_all(inside.parent().unwrap()).unwrap();
    fs::write(&inside, "not volume data").unwrap();
    e.kernel.sys.set_node(&inside, NodeKind::File);
    assert_rule(e.unpublish(VOL, &inside).await, "did not create");
    // Another device's node (say the root disk's) at a target is not this volume's.
    let sda = e.path("kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-1/pod-1");
    e.kernel
        .sys
        .set_node(&sda, NodeKind::BlockDevice(DevNum { major: 8, minor: 0 }));
    assert_rule(e.unpublish(VOL, &sda).await, "not this volume's device");
    // A link swapped in for the target is refused, not followed or removed.
    let link = e.path("kubelet/pods/p1/link");
    symlink(&shadow, &link).unwrap();
    assert_rule(e.unpublish(VOL, &link).await, "is a symlink");
    assert_eq!(fs::read_to_string(&shadow).unwrap(), "root:$6$secret");
    assert_eq!(fs::read_to_string(&inside).unwrap(), "not volume data");
    assert!(fs::symlink_metadata(&link).is_ok());
    assert!(
        e.calls().iter().all(|c| !matches!(c, Call::Unmount { .. })),
        "{:#?}",
        e.calls()
    );

    // What publish makes (or a CO's empty placeholder) is removed as before.
    let placeholder = e.path("kubelet/pods/p1/placeholder");
    fs::write(&placeholder, "").unwrap();
    e.kernel.sys.set_node(&placeholder, NodeKind::File);
    e.unpublish(VOL, &placeholder).await.unwrap();
    assert!(!placeholder.exists());
}

// ---------------------------------------------------------------- leftovers (#4)

fn leftover(e: &Env) -> PathBuf {
    e.path("kubelet/pods/uid-1/volumes/kubernetes.io~csi/pvc-1/mount")
}

#[tokio::test]
async fn unstage_cleans_its_own_leftover_publish_mount_nothing_uses() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    // A bind of the staged device at a pod's CSI mount path that kubelet no longer lists.
    let left = leftover(&e);
    fs::create_dir_all(&left).unwrap();
    e.kernel.sys.set_node(&left, NodeKind::Directory);
    e.kernel.sys.add_mount(
        "/dev/nvme0n1",
        DevNum {
            major: 259,
            minor: 1,
        },
        &left,
        "ext4",
    );
    e.unstage(VOL).await.unwrap();
    assert_eq!(
        calls_on(&e, &left),
        vec![Call::Unmount {
            target: left.clone(),
            mode: UnmountMode::Normal
        }]
    );
    assert!(!left.exists(), "the leftover's empty directory is removed");
    assert!(e.kernel.deleted(0), "unstage went on to disconnect");
    assert!(e.node.staged_volumes().is_empty());
}

#[tokio::test]
async fn unstage_still_refuses_a_leftover_in_use_and_any_other_mount() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let dev = DevNum {
        major: 259,
        minor: 1,
    };
    let left = leftover(&e);
    e.kernel.sys.add_mount("/dev/nvme0n1", dev, &left, "ext4");
    // A process whose working directory is inside the leftover.
    let pid = e.path("proc/4242");
    fs::create_dir_all(&pid).unwrap();
    symlink(left.join("data"), pid.join("cwd")).unwrap();
    let err = e.unstage(VOL).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("in use"), "{}", err.message());
    fs::remove_file(pid.join("cwd")).unwrap();

    // A mount of the device anywhere but a kubelet publish path is never ours to remove.
    let foreign = e.path("kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/x");
    e.kernel
        .sys
        .add_mount("/dev/nvme0n1", dev, &foreign, "ext4");
    let err = e.unstage(VOL).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains(&foreign.display().to_string()),
        "{}",
        err.message()
    );
    assert!(calls_on(&e, &left).is_empty(), "{:#?}", e.calls());
    assert!(calls_on(&e, &foreign).is_empty());
    assert!(!e.kernel.deleted(0));
}

// ---------------------------------------------------------------- conflicting retries (#5)

#[tokio::test]
async fn a_stage_retry_with_another_fs_type_or_mount_flags_is_already_exists() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &["noatime", "nodiratime"]))
        .await
        .unwrap();
    for cap in [
        fs_cap("xfs", &["noatime", "nodiratime"]),
        fs_cap("ext4", &["noatime"]),
        fs_cap("ext4", &[]),
        block_cap(),
    ] {
        let err = e.stage(VOL, NQN, cap).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
        assert!(
            err.message().contains("already staged"),
            "{}",
            err.message()
        );
    }
    // The same flags in another order are the same request.
    e.stage(VOL, NQN, fs_cap("ext4", &["nodiratime", "noatime"]))
        .await
        .unwrap();
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1);

    let b = "default:pvc-22222222-2222-4222-8222-222222222222";
    e.stage(b, NQN2, block_cap()).await.unwrap();
    let err = e.stage(b, NQN2, fs_cap("ext4", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
}

// ---------------------------------------------------------------- publish_context (#14.13)

#[tokio::test]
async fn stage_connects_to_the_address_in_publish_context_when_there_is_one() {
    let e = Env::new();
    let publish: HashMap<String, String> = [
        ("nvme_address", "10.0.0.7"),
        ("nvme_port", "4421"),
        ("nvme_nqn", NQN),
        ("fs_type", "ext4"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    e.node
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: VOL.into(),
            staging_target_path: e.staging(VOL).display().to_string(),
            volume_capability: Some(fs_cap("ext4", &[])),
            volume_context: context(NQN),
            publish_context: publish.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let connect = &e.kernel.connects()[0];
    assert!(
        connect.contains("traddr=10.0.0.7") && connect.contains("trsvcid=4421"),
        "{connect}"
    );
    let staged = &e.node.staged_volumes()[0];
    assert_eq!((staged.address.as_str(), staged.port), ("10.0.0.7", 4421));

    // Validated like volume_context: a bad value is refused before anything is connected.
    let mut bad = publish;
    bad.insert("nvme_address".into(), "rds.example".into());
    let err = e
        .node
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: "default:pvc-22222222-2222-4222-8222-222222222222".into(),
            staging_target_path: e.path("kubelet/staging/b").display().to_string(),
            volume_capability: Some(fs_cap("ext4", &[])),
            volume_context: context(NQN2),
            publish_context: bad,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(
        err.message().contains("publish_context"),
        "{}",
        err.message()
    );
    assert_eq!(e.kernel.connects().len(), 1);
}

// ---------------------------------------------------------------- unstage rules (#6)

#[tokio::test]
async fn a_cancelled_unstage_never_forces_an_unmount_or_disconnects() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let staging = e.staging(VOL);
    // The unmount hangs in the kernel; kubelet's deadline cancels the RPC meanwhile.
    e.kernel.sys.stall_at(&staging, Duration::from_millis(600));
    let cancelled = tokio::time::timeout(Duration::from_millis(100), e.unstage(VOL)).await;
    assert!(cancelled.is_err(), "the unstage was expected to still run");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!e.kernel.deleted(0), "a cancelled unstage disconnected");
    assert!(
        e.calls().iter().all(|c| !matches!(
            c,
            Call::Unmount {
                mode: UnmountMode::Detach | UnmountMode::Force,
                ..
            }
        )),
        "{:#?}",
        e.calls()
    );
    assert_eq!(e.node.staged_volumes().len(), 1, "record dropped");
    // kubelet's next try finishes the job.
    e.unstage(VOL).await.unwrap();
    assert!(e.kernel.deleted(0));
}

#[tokio::test]
async fn unstage_never_guesses_block_from_a_missing_staging_mount() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    // The staging mount vanished (someone unmounted it); the pod's bind mount is still live.
    let staging = e.staging(VOL);
    e.kernel.sys.unmount(&staging, UnmountMode::Normal).unwrap();
    let before = e.calls().len();
    let err = e.unstage(VOL).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains(&t.display().to_string()),
        "{}",
        err.message()
    );
    assert!(
        e.calls()[before..]
            .iter()
            .all(|c| !matches!(c, Call::Unmount { .. })),
        "unstage unmounted the live publish mount: {:#?}",
        &e.calls()[before..]
    );
    assert!(!e.kernel.deleted(0));
}

#[tokio::test]
async fn the_volume_lock_serialises_one_volume_while_a_stuck_one_does_not_stop_another() {
    let e = Arc::new(Env::new());
    let b = "default:pvc-22222222-2222-4222-8222-222222222222";
    // Volume A's mount is stuck in the kernel for a while; B's target answers.
    e.kernel
        .sys
        .stall_at(&e.staging(VOL), Duration::from_millis(700));
    let done = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let run = |name: &'static str, delay: u64| {
        let (e, done) = (Arc::clone(&e), Arc::clone(&done));
        async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let r = match name {
                "stage A" => e.stage(VOL, NQN, fs_cap("ext4", &[])).await,
                "unstage A" => e.unstage(VOL).await,
                _ => {
                    e.stage(b, NQN2, fs_cap("ext4", &[])).await?;
                    let t = e.target("pb");
                    e.publish(b, &t, fs_cap("ext4", &[]), false).await
                }
            };
            done.lock().unwrap().push(name);
            r
        }
    };
    let (a, un, other) = tokio::join!(
        tokio::spawn(run("stage A", 0)),
        tokio::spawn(run("unstage A", 150)),
        tokio::spawn(run("stage and publish B", 150)),
    );
    a.unwrap().unwrap();
    un.unwrap().unwrap();
    other.unwrap().unwrap();
    assert_eq!(
        *done.lock().unwrap(),
        vec!["stage and publish B", "stage A", "unstage A"]
    );
    // The unstage ran after the stage's mount, so it found and removed it.
    let on_a = calls_on(&e, &e.staging(VOL));
    assert!(
        matches!(
            on_a.as_slice(),
            [
                Call::Mount { .. },
                Call::Unmount {
                    mode: UnmountMode::Normal,
                    ..
                }
            ]
        ),
        "{on_a:#?}"
    );
}

#[tokio::test]
async fn unpublish_never_unmounts_another_volumes_mount() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    // Another driver's (or the host's) mount below the kubelet dir, named with our volume id.
    let other = e.path("kubelet/pods/uid-9/volumes/kubernetes.io~nfs/share");
    fs::create_dir_all(&other).unwrap();
    e.kernel.sys.add_mount(
        "/dev/sdb1",
        DevNum {
            major: 8,
            minor: 17,
        },
        &other,
        "ext4",
    );
    assert_rule(e.unpublish(VOL, &other).await, "not volume");
    assert!(calls_on(&e, &other).is_empty(), "{:#?}", e.calls());
    // This volume's own publish mount still comes off.
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    e.unpublish(VOL, &t).await.unwrap();
    assert_eq!(calls_on(&e, &t).last().map(Call::op), Some("unmount"));
}
