//! The Node service against a fake kernel: a sysfs tree shaped like the real one (symlinks under
//! `class/`), a fabrics control file that "creates" controllers in it, `mount::fake::RecordingSys`
//! keeping a mountinfo file, and a scripted tool runner. Real-kernel behaviour is proven by the
//! VM suite; this file pins the decisions.
#![allow(clippy::unwrap_used)]
include!("common/node_env.rs");

// ---------------------------------------------------------------- stage

#[tokio::test]
async fn stage_formats_a_blank_device_once_and_a_retry_does_not_stack_mounts() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();

    let staging = e.staging(VOL);
    assert_eq!(e.mounts_of(&staging), 1, "{:#?}", e.calls());
    assert_eq!(e.tools.count("mkfs.ext4"), 1, "{:?}", e.tools.programs());
    assert_eq!(e.kernel.connects().len(), 1, "second stage reconnected");
    let connect = &e.kernel.connects()[0];
    assert!(
        connect.contains("ctrl_loss_tmo=-1") && connect.contains("reconnect_delay=2"),
        "{connect}"
    );
    // The device mounted is the one sysfs resolves for the NQN.
    assert!(e.calls().iter().any(|c| matches!(c,
        Call::Mount { source, target, fs_type, .. }
            if *source == e.path("dev/nvme0n1") && *target == staging && fs_type == "ext4")));
    let staged = e.node.staged_volumes();
    assert_eq!(staged.len(), 1);
    assert_eq!(staged[0].nqn, NQN);
    assert_eq!(staged[0].reconnect_delay, 2);
}

#[tokio::test]
async fn an_existing_filesystem_is_mounted_never_reformatted() {
    let e = Env::new();
    e.tools.set_blkid(&e.path("dev/nvme0n1"), Blkid::Fs("xfs"));
    e.stage(VOL, NQN, fs_cap("xfs", &[])).await.unwrap();
    assert_eq!(e.tools.count("mkfs.xfs") + e.tools.count("mkfs.ext4"), 0);
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1);
}

#[tokio::test]
async fn an_uncertain_blkid_refuses_to_format_and_undoes_its_own_connect() {
    let e = Env::new();
    e.tools.set_blkid(&e.path("dev/nvme0n1"), Blkid::Fail(4));
    let err = e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap_err();
    assert!(
        err.message().contains("refusing to format"),
        "{}",
        err.message()
    );
    assert_eq!(e.tools.count("blkid"), 2, "probe is retried");
    assert_eq!(e.tools.count("mkfs.ext4"), 0);
    assert_eq!(e.mounts_of(&e.staging(VOL)), 0);
    assert!(
        e.kernel.deleted(0),
        "the connect made by this call is undone"
    );
    assert!(e.node.staged_volumes().is_empty());
}

#[tokio::test]
async fn a_failed_stage_leaves_a_connection_it_did_not_make() {
    let e = Env::new();
    let (c, name, _) = e.kernel.add_volume(NQN, "live", 1 << 30);
    e.tools
        .set_blkid(&e.path(&format!("dev/{name}")), Blkid::Fail(8));
    assert!(e.stage(VOL, NQN, fs_cap("ext4", &[])).await.is_err());
    assert!(
        e.kernel.connects().is_empty(),
        "already connected per sysfs"
    );
    assert!(!e.kernel.deleted(c));
}

#[tokio::test]
async fn staging_mounts_are_nosuid_nodev_noexec_by_default() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &["noatime"]))
        .await
        .unwrap();
    let f = mount_flags_of(&e.calls(), &e.staging(VOL));
    assert!(f.nosuid && f.nodev && f.noexec && f.noatime, "{f:?}");
}

#[tokio::test]
async fn allow_exec_drops_noexec_but_never_nosuid() {
    let e = Env::new();
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &[("allowExec", "true")])
        .await
        .unwrap();
    let f = mount_flags_of(&e.calls(), &e.staging(VOL));
    assert!(!f.noexec && f.nosuid && f.nodev, "{f:?}");
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    let f = mount_flags_of(&e.calls(), &t);
    assert!(!f.noexec && f.nosuid && f.nodev, "{f:?}");
}

#[tokio::test]
async fn a_rejected_mount_option_names_the_allowed_list_and_touches_nothing() {
    let e = Env::new();
    let err = e
        .stage(VOL, NQN, fs_cap("ext4", &["suid"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("allowed options: ro, rw"),
        "{}",
        err.message()
    );
    assert!(e.kernel.connects().is_empty());
    let err = e
        .stage(VOL, NQN, fs_cap("ext4", &["exec"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "exec needs allowExec");
}

#[tokio::test]
async fn missing_context_and_fields_are_invalid_argument() {
    let e = Env::new();
    let err = e
        .node
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: VOL.into(),
            staging_target_path: e.staging(VOL).display().to_string(),
            volume_capability: Some(fs_cap("ext4", &[])),
            volume_context: [("nqn".to_string(), NQN.to_string())].into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("nvmeAddress, nvmePort"),
        "{}",
        err.message()
    );
    let err = e
        .node
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: VOL.into(),
            volume_capability: Some(fs_cap("ext4", &[])),
            volume_context: context(NQN),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("staging_target_path"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn block_stage_connects_only_and_creates_nothing() {
    let e = Env::new();
    e.stage(VOL, NQN, block_cap()).await.unwrap();
    assert_eq!(e.kernel.connects().len(), 1);
    assert!(e.calls().is_empty(), "{:#?}", e.calls());
    assert_eq!(e.tools.count("blkid"), 0);
    assert!(!e.staging(VOL).exists());
}

// ---------------------------------------------------------------- publish

#[tokio::test]
async fn publish_binds_the_staging_mount_read_only_and_is_idempotent() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), true).await.unwrap();
    e.publish(VOL, &t, fs_cap("ext4", &[]), true).await.unwrap();
    let binds: Vec<_> = e
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Bind { .. }))
        .collect();
    assert_eq!(
        binds,
        vec![Call::Bind {
            source: e.staging(VOL),
            target: t.clone()
        }]
    );
    let f = mount_flags_of(&e.calls(), &t);
    assert!(f.read_only && f.noexec && f.nosuid && f.nodev, "{f:?}");
    assert!(t.is_dir(), "target directory created");
    // Same target, different access: incompatible.
    let err = e
        .publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn publish_without_staging_is_failed_precondition() {
    let e = Env::new();
    let err = e
        .publish(VOL, &e.target("p1"), fs_cap("ext4", &[]), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(e.calls().iter().all(|c| !matches!(c, Call::Bind { .. })));
}

#[tokio::test]
async fn block_publish_is_mknod_of_the_nqn_device_never_a_bind_of_dev() {
    let e = Env::new();
    e.stage(VOL, NQN, block_cap()).await.unwrap();
    let t = e.path("kubelet/plugins/volumeDevices/publish/pvc-1/pod-1");
    e.publish(VOL, &t, block_cap(), false).await.unwrap();
    e.publish(VOL, &t, block_cap(), false).await.unwrap();
    let calls = e.calls();
    assert_eq!(
        calls,
        vec![Call::MknodBlock {
            path: t.clone(),
            dev: DevNum {
                major: 259,
                minor: 1
            },
            mode: 0o660
        }]
    );
    assert!(t.parent().unwrap().is_dir());
    e.unpublish(VOL, &t).await.unwrap();
    e.unpublish(VOL, &t).await.unwrap();
}

#[tokio::test]
async fn unpublish_unmounts_only_the_target_and_is_idempotent() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    e.unpublish(VOL, &t).await.unwrap();
    e.unpublish(VOL, &t).await.unwrap();
    let unmounts: Vec<_> = e
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Unmount { .. }))
        .collect();
    assert_eq!(
        unmounts,
        vec![Call::Unmount {
            target: t.clone(),
            mode: UnmountMode::Normal
        }]
    );
    let stats = e.stats(VOL, &e.staging(VOL)).await.unwrap();
    assert!(
        !stats.volume_condition.unwrap().abnormal,
        "staging untouched"
    );
}

// ---------------------------------------------------------------- unstage

#[tokio::test]
async fn unstage_refuses_while_published_and_then_disconnects() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();

    let err = e.unstage(VOL).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains(&t.display().to_string()),
        "{}",
        err.message()
    );
    assert!(!e.kernel.deleted(0));
    assert!(
        e.calls().iter().all(|c| !matches!(c, Call::Unmount { .. })),
        "nothing forced"
    );

    e.unpublish(VOL, &t).await.unwrap();
    assert!(
        e.seen.any("connected"),
        "the stage's own connect is reported"
    );
    assert!(!e.seen.any("disconnected"));
    e.unstage(VOL).await.unwrap();
    assert!(e.kernel.deleted(0));
    assert!(
        e.seen.any("disconnected"),
        "the unstage's disconnect is reported"
    );
    assert!(e.node.staged_volumes().is_empty());
    // Not staged any more: still OK.
    e.unstage(VOL).await.unwrap();
}

#[tokio::test]
async fn unstage_of_a_busy_mount_fails_cleanly_without_disconnecting() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    // A second mount of the same device that the plugin did not make (another namespace's view).
    e.kernel.sys.add_mount(
        "/dev/nvme0n1",
        DevNum {
            major: 259,
            minor: 1,
        },
        Path::new("/somewhere/else"),
        "ext4",
    );
    let err = e.unstage(VOL).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(!e.kernel.deleted(0));
}

#[tokio::test]
async fn unstage_of_a_mount_that_will_not_go_away_is_not_forced_when_in_use() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    // umount keeps "succeeding" without effect; a holder (dm device) sits on the device.
    e.kernel.sys.make_sticky(&e.staging(VOL));
    let holders = e.path("sys/dev/block/259:1/holders/dm-0");
    fs::create_dir_all(&holders).unwrap();
    let err = e.unstage(VOL).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
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
    assert!(!e.kernel.deleted(0));
}

// ---------------------------------------------------------------- stats

#[tokio::test]
async fn stats_report_usage_and_each_abnormal_condition() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();

    let s = e.stats(VOL, &t).await.unwrap();
    let c = s.volume_condition.unwrap();
    assert!(!c.abnormal, "{}", c.message);
    assert_eq!(s.usage.len(), 2);
    assert_eq!(s.usage[0].total, 10 << 30);
    assert_eq!(s.usage[1].used, 10);

    e.kernel.set_state(0, "connecting");
    let c = e.stats(VOL, &t).await.unwrap().volume_condition.unwrap();
    assert!(
        c.abnormal && c.message.contains("not live"),
        "{}",
        c.message
    );
    e.kernel.set_state(0, "live");

    // The device disappears under the mount.
    e.kernel.remove_controller(0);
    let s = e.stats(VOL, &t).await.unwrap();
    let c = s.volume_condition.unwrap();
    assert!(c.abnormal && c.message.contains("stale"), "{}", c.message);
    assert!(s.usage.is_empty(), "no statvfs on a stale mount");
    assert!(
        !e.seen.any("stale"),
        "stats only detect; the monitor reports and repairs"
    );
    // The monitor reconnects (the controller is gone) and remounts from the new device.
    let report = e.node.monitor_pass().await;
    assert!(
        matches!(report.get(VOL), Some(VolumeCheck::Recovered(_))),
        "{report:?}"
    );
    assert!(e.seen.any("stale") && e.seen.any("recovered"));
    assert_eq!(e.tools.count("mkfs.ext4"), 1);

    let err = e.stats(VOL, &e.path("nowhere")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn stats_of_a_block_volume_use_the_sysfs_size() {
    let e = Env::new();
    e.stage(VOL, NQN, block_cap()).await.unwrap();
    let t = e.path("kubelet/publish/dev1");
    e.publish(VOL, &t, block_cap(), false).await.unwrap();
    let s = e.stats(VOL, &t).await.unwrap();
    assert_eq!(s.usage[0].total, 1 << 30);
    assert!(!s.volume_condition.unwrap().abnormal);
}

// ---------------------------------------------------------------- expand

#[tokio::test]
async fn expansion_rescans_grows_ext4_on_the_device_and_returns_the_measured_size() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    e.kernel.set_size(0, 3 << 30);
    let r = e
        .node
        .node_expand_volume(Request::new(pb::NodeExpandVolumeRequest {
            volume_id: VOL.into(),
            volume_path: t.display().to_string(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 2 << 30,
                limit_bytes: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 3 << 30, "measured, not requested");
    assert!(e.kernel.rescanned(0));
    assert!(
        e.tools
            .programs()
            .contains(&format!("resize2fs {}", e.path("dev/nvme0n1").display())),
        "{:?}",
        e.tools.programs()
    );
}

#[tokio::test]
async fn expansion_grows_xfs_through_the_mount_point_and_fails_when_the_device_did_not_grow() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("xfs", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("xfs", &[]), false).await.unwrap();
    let req = |bytes: i64| pb::NodeExpandVolumeRequest {
        volume_id: VOL.into(),
        volume_path: t.display().to_string(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    let err = e
        .node
        .node_expand_volume(Request::new(req(4 << 30)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert_eq!(e.tools.count("xfs_growfs"), 0);
    e.kernel.set_size(0, 4 << 30);
    e.node
        .node_expand_volume(Request::new(req(4 << 30)))
        .await
        .unwrap();
    assert!(
        e.tools
            .programs()
            .contains(&format!("xfs_growfs {}", t.display()))
    );
}

// ---------------------------------------------------------------- recovery

#[tokio::test]
async fn renumbered_device_is_remounted_from_the_new_name_without_formatting() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    assert_eq!(e.tools.count("mkfs.ext4"), 1);

    // Disconnect + reconnect behind our back: nvme0 → nvme3, /dev/nvme0n1 gone.
    e.kernel.remove_controller(0);
    e.kernel.next_ctrl.store(3, Ordering::SeqCst);
    let (_, name, dev) = e.kernel.add_volume(NQN, "live", 1 << 30);
    assert_eq!(name, "nvme3n1");

    let report = e.node.monitor_pass().await;
    assert!(
        matches!(report.get(VOL), Some(VolumeCheck::Recovered(_))),
        "{report:?}"
    );
    let new_dev = e.path("dev/nvme3n1");
    assert!(e.calls().iter().any(|c| matches!(c,
        Call::Mount { source, target, .. } if *source == new_dev && *target == e.staging(VOL))));
    assert_eq!(e.tools.count("mkfs.ext4"), 1, "nothing formatted twice");
    assert_eq!(e.tools.count("blkid"), 1, "recovery never probes to format");
    assert!(
        e.kernel.connects().len() == 1,
        "kernel had reconnected; no extra connect"
    );
    // The publish target was re-bound to the new mount, and stats tell pods to restart.
    let table = mount::MountTable::parse(&fs::read_to_string(e.path("mountinfo")).unwrap());
    assert_eq!(table.top_mount_at(&t).unwrap().dev, dev);
    assert_eq!(table.top_mount_at(&e.staging(VOL)).unwrap().dev, dev);
    let c = e.stats(VOL, &t).await.unwrap().volume_condition.unwrap();
    assert!(c.abnormal && c.message.contains("restart"), "{}", c.message);
    assert!(e.seen.any("stale") && e.seen.any("recovered"));
    // Healthy now: the next pass does nothing.
    let report = e.node.monitor_pass().await;
    assert_eq!(report.get(VOL), Some(&VolumeCheck::Healthy));
}

#[tokio::test]
async fn a_deleted_controller_is_reconnected_with_the_remembered_parameters_after_a_restart() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let first = e.kernel.connects()[0].clone();
    // Kernel 6.12: the controller is deleted despite ctrl_loss_tmo=-1. The plugin restarts too.
    e.kernel.remove_controller(0);
    let restarted = build(e.dir.path(), &e.kernel, &e.tools, &e.seen);
    let report = restarted.monitor_pass().await;
    assert!(
        matches!(report.get(VOL), Some(VolumeCheck::Recovered(d)) if d.contains("reconnected")),
        "{report:?}"
    );
    assert_eq!(e.kernel.connects(), vec![first.clone(), first]);
    assert!(e.calls().iter().any(|c| matches!(c,
        Call::Mount { source, .. } if *source == e.path("dev/nvme1n1"))));
    assert_eq!(e.tools.count("mkfs.ext4"), 1);
    assert!(e.seen.any("lost"));
}

#[tokio::test]
async fn a_reconnecting_controller_is_left_to_the_kernel() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    e.kernel.set_state(0, "connecting");
    let report = e.node.monitor_pass().await;
    assert!(
        matches!(report.get(VOL), Some(VolumeCheck::Waiting(_))),
        "{report:?}"
    );
    assert!(e.seen.any("lost"));
    assert!(!e.kernel.deleted(0));
    e.kernel.set_state(0, "live");
    let report = e.node.monitor_pass().await;
    assert_eq!(report.get(VOL), Some(&VolumeCheck::Healthy));
    assert!(e.seen.any("restored"));
}

#[tokio::test]
async fn block_device_nodes_follow_a_renumbered_device() {
    let e = Env::new();
    e.stage(VOL, NQN, block_cap()).await.unwrap();
    let t = e.path("kubelet/publish/dev1");
    e.publish(VOL, &t, block_cap(), false).await.unwrap();
    e.kernel.remove_controller(0);
    let (_, _, dev) = e.kernel.add_volume(NQN, "live", 1 << 30);
    let report = e.node.monitor_pass().await;
    assert!(
        matches!(report.get(VOL), Some(VolumeCheck::Recovered(_))),
        "{report:?}"
    );
    assert!(e.calls().contains(&Call::MknodBlock {
        path: t.clone(),
        dev,
        mode: 0o660
    }));
}

// ---------------------------------------------------------------- startup

#[tokio::test]
async fn startup_cleanup_disconnects_only_unmounted_managed_orphans() {
    let e = Env::new();
    let (dead, _, _) = e.kernel.add_volume(NQN, "dead", 1 << 30);
    let (mounted, _, mdev) = e.kernel.add_volume(NQN2, "dead", 1 << 30);
    e.kernel
        .sys
        .add_mount("/dev/nvme1n1", mdev, Path::new("/var/lib/x"), "ext4");
    let (boot, _, _) = e.kernel.add_volume(BOOT, "dead", 1 << 30);
    let (healthy, _, _) = e.kernel.add_volume(
        "nqn.2000-02.com.mikrotik:pvc-33333333-3333-4333-8333-333333333333",
        "live",
        1 << 30,
    );
    let report = e.node.startup().await;
    assert_eq!(report.disconnected, vec![NQN.to_string()], "{report:?}");
    assert!(
        report
            .kept
            .iter()
            .any(|(n, why)| n == NQN2 && why.contains("mounted"))
    );
    assert!(e.kernel.deleted(dead));
    assert!(!e.kernel.deleted(mounted));
    assert!(!e.kernel.deleted(boot), "foreign NQN touched");
    assert!(!e.kernel.deleted(healthy));
}

// ---------------------------------------------------------------- identity of the node

#[tokio::test]
async fn capabilities_and_info() {
    let e = Env::new();
    let caps = e
        .node
        .node_get_capabilities(Request::new(pb::NodeGetCapabilitiesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let types: Vec<i32> = caps
        .iter()
        .map(|c| match &c.r#type {
            Some(pb::node_service_capability::Type::Rpc(r)) => r.r#type,
            None => 0,
        })
        .collect();
    use pb::node_service_capability::rpc::Type as T;
    for t in [
        T::StageUnstageVolume,
        T::GetVolumeStats,
        T::VolumeCondition,
        T::ExpandVolume,
        T::SingleNodeMultiWriter,
    ] {
        assert!(types.contains(&(t as i32)), "{t:?} missing");
    }
    let info = e
        .node
        .node_get_info(Request::new(pb::NodeGetInfoRequest {}))
        .await
        .unwrap()
        .into_inner();
    // `<node name>/<host NQN>`: the controller needs the NQN for host fencing.
    assert_eq!(
        info.node_id,
        "node-1/nqn.2014-08.org.nvmexpress:uuid:7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f"
    );
    assert_eq!(info.max_volumes_per_node, 7);
}

// ---------------------------------------------------------------- csi-sanity request shapes
//
// The requests below are the ones csi-sanity (pkg/sanity/node.go) sends, field for field, so a
// change in the order of the driver's checks cannot turn an INVALID_ARGUMENT into something else
// unnoticed. The VM suite sends the same shapes through `rds-csi csi` to the real binary.

/// An id in csi-sanity's default generator's shape: valid, but for no volume of this driver.
const SANITY_ID: &str = "fake-volume-id-5b4f1b0a-3c1e-4a8e-9d59-0f1b8e6f7a21";

fn assert_invalid(r: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let err = r.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(
        err.message().contains(field),
        "message should name {field}: {}",
        err.message()
    );
}

#[tokio::test]
async fn sanity_missing_fields_are_invalid_argument_for_every_node_rpc() {
    let e = Env::new();
    let n = &e.node;
    let staging = e.staging(VOL).display().to_string();
    let target = e.target("p1").display().to_string();
    let device: HashMap<String, String> = [("device".to_string(), "/dev/mock".to_string())].into();

    // NodePublishVolume
    assert_invalid(
        n.node_publish_volume(Request::new(pb::NodePublishVolumeRequest::default()))
            .await,
        "volume_id",
    );
    let no_target = pb::NodePublishVolumeRequest {
        volume_id: SANITY_ID.into(),
        ..Default::default()
    };
    // Sanity sends no staging path either; the driver stages, so that is reported first.
    assert_eq!(
        n.node_publish_volume(Request::new(no_target.clone()))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_invalid(
        n.node_publish_volume(Request::new(pb::NodePublishVolumeRequest {
            staging_target_path: staging.clone(),
            ..no_target
        }))
        .await,
        "target_path",
    );
    let no_cap = pb::NodePublishVolumeRequest {
        volume_id: SANITY_ID.into(),
        target_path: target.clone(),
        volume_capability: None,
        ..Default::default()
    };
    assert_eq!(
        n.node_publish_volume(Request::new(no_cap.clone()))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_invalid(
        n.node_publish_volume(Request::new(pb::NodePublishVolumeRequest {
            staging_target_path: staging.clone(),
            ..no_cap
        }))
        .await,
        "capability",
    );

    // NodeUnpublishVolume
    assert_invalid(
        n.node_unpublish_volume(Request::new(pb::NodeUnpublishVolumeRequest::default()))
            .await,
        "volume_id",
    );
    assert_invalid(
        n.node_unpublish_volume(Request::new(pb::NodeUnpublishVolumeRequest {
            volume_id: SANITY_ID.into(),
            target_path: String::new(),
        }))
        .await,
        "target_path",
    );

    // NodeStageVolume
    assert_invalid(
        n.node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            staging_target_path: staging.clone(),
            volume_capability: Some(fs_cap("ext4", &[])),
            publish_context: device.clone(),
            ..Default::default()
        }))
        .await,
        "volume_id",
    );
    assert_invalid(
        n.node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: SANITY_ID.into(),
            volume_capability: Some(fs_cap("ext4", &[])),
            publish_context: device.clone(),
            ..Default::default()
        }))
        .await,
        "staging_target_path",
    );
    // Sanity creates a real volume for this one; its context is what CreateVolume returned.
    assert_invalid(
        n.node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: VOL.into(),
            staging_target_path: staging.clone(),
            publish_context: device,
            volume_context: context(NQN),
            ..Default::default()
        }))
        .await,
        "capability",
    );

    // NodeUnstageVolume
    assert_invalid(
        n.node_unstage_volume(Request::new(pb::NodeUnstageVolumeRequest {
            volume_id: String::new(),
            staging_target_path: staging,
        }))
        .await,
        "volume_id",
    );
    assert_invalid(
        n.node_unstage_volume(Request::new(pb::NodeUnstageVolumeRequest {
            volume_id: SANITY_ID.into(),
            staging_target_path: String::new(),
        }))
        .await,
        "staging_target_path",
    );

    // NodeGetVolumeStats
    assert_invalid(
        n.node_get_volume_stats(Request::new(pb::NodeGetVolumeStatsRequest {
            volume_path: "some/path".into(),
            ..Default::default()
        }))
        .await,
        "volume_id",
    );
    assert_invalid(
        n.node_get_volume_stats(Request::new(pb::NodeGetVolumeStatsRequest {
            volume_id: SANITY_ID.into(),
            ..Default::default()
        }))
        .await,
        "volume_path",
    );

    // NodeExpandVolume
    assert_invalid(
        n.node_expand_volume(Request::new(pb::NodeExpandVolumeRequest {
            volume_path: target,
            volume_capability: Some(fs_cap("ext4", &[])),
            ..Default::default()
        }))
        .await,
        "volume_id",
    );
    assert_invalid(
        n.node_expand_volume(Request::new(pb::NodeExpandVolumeRequest {
            volume_id: VOL.into(),
            volume_capability: Some(fs_cap("ext4", &[])),
            ..Default::default()
        }))
        .await,
        "volume_path",
    );

    // None of it touched the kernel or the mount table.
    assert!(e.kernel.connects().is_empty());
    assert!(e.calls().is_empty(), "{:#?}", e.calls());
    assert!(e.node.staged_volumes().is_empty());
}

#[tokio::test]
async fn sanity_unknown_volumes_are_not_found_for_stats_and_expand() {
    let e = Env::new();
    let err = e
        .node
        .node_get_volume_stats(Request::new(pb::NodeGetVolumeStatsRequest {
            volume_id: SANITY_ID.into(),
            volume_path: "some/path".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    let err = e
        .node
        .node_expand_volume(Request::new(pb::NodeExpandVolumeRequest {
            volume_id: SANITY_ID.into(),
            volume_path: "some/path".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(e.kernel.connects().is_empty());
}

#[tokio::test]
async fn sanity_node_unpublish_removes_the_target_path() {
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    let t = e.target("p1");
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    assert!(t.is_dir(), "publish creates the target directory");
    // What lstat reports for it once the bind mount is gone (the fake answers from its table).
    e.kernel.sys.set_node(&t, NodeKind::Directory);
    e.unpublish(VOL, &t).await.unwrap();
    assert!(
        !t.exists(),
        "target path left behind after NodeUnpublishVolume"
    );
    assert!(
        e.dir.path().join("kubelet/pods/p1").is_dir(),
        "only the target itself is removed"
    );
    e.unpublish(VOL, &t).await.unwrap();
}

#[tokio::test]
async fn sanity_node_lifecycle_should_work_and_each_call_repeated_answers_the_same() {
    let e = Env::new();
    let t = e.target("p1");
    for _ in 0..2 {
        e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    }
    for _ in 0..2 {
        e.publish(VOL, &t, fs_cap("ext4", &[]), false)
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let s = e.stats(VOL, &t).await.unwrap();
        assert_eq!(s.usage.len(), 2, "bytes and inodes");
        assert!(!s.volume_condition.unwrap().abnormal);
    }
    e.kernel.sys.set_node(&t, NodeKind::Directory);
    for _ in 0..2 {
        e.unpublish(VOL, &t).await.unwrap();
    }
    for _ in 0..2 {
        e.unstage(VOL).await.unwrap();
    }
    assert_eq!(e.kernel.connects().len(), 1, "one connect for two stages");
    assert!(e.kernel.deleted(0), "unstage disconnected");
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1);
    assert_eq!(e.mounts_of(&t), 0, "publish is a bind, not a mount");
    assert!(!t.exists());
    assert!(e.node.staged_volumes().is_empty());
}

// ---------------------------------------------------------------- plugin restarts
//
// The VM suite kills the real process (`node.fault.restart-with-mounts`, `node.fault.kill-mid-stage`);
// these pin the same decisions on the fake kernel: a new NodeService over the same state
// directory and the same kernel is what a restarted plugin is.

#[tokio::test]
async fn a_restarted_plugin_repeats_stage_and_publish_of_mounted_volumes_without_a_second_mount() {
    let e = Env::new();
    let t = e.target("p1");
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    e.publish(VOL, &t, fs_cap("ext4", &[]), false)
        .await
        .unwrap();
    let restarted = build(e.dir.path(), &e.kernel, &e.tools, &e.seen);
    let report = restarted.startup().await;
    assert!(report.disconnected.is_empty(), "{report:?}");
    assert_eq!(restarted.staged_volumes().len(), 1, "state survives");
    for _ in 0..2 {
        restarted
            .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
                volume_id: VOL.into(),
                staging_target_path: e.staging(VOL).display().to_string(),
                volume_capability: Some(fs_cap("ext4", &[])),
                volume_context: context(NQN),
                ..Default::default()
            }))
            .await
            .unwrap();
        restarted
            .node_publish_volume(Request::new(pb::NodePublishVolumeRequest {
                volume_id: VOL.into(),
                staging_target_path: e.staging(VOL).display().to_string(),
                target_path: t.display().to_string(),
                volume_capability: Some(fs_cap("ext4", &[])),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    assert_eq!(
        e.kernel.connects().len(),
        1,
        "no reconnect after the restart"
    );
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1);
    let binds = e
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Bind { .. }))
        .count();
    assert_eq!(binds, 1, "{:#?}", e.calls());
    assert_eq!(e.tools.count("mkfs.ext4"), 1);
    let s = restarted
        .node_get_volume_stats(Request::new(pb::NodeGetVolumeStatsRequest {
            volume_id: VOL.into(),
            volume_path: t.display().to_string(),
            staging_target_path: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!s.volume_condition.unwrap().abnormal);
}

#[tokio::test]
async fn a_stage_cut_off_after_the_connect_is_completed_by_the_retry_on_one_controller() {
    let e = Env::new();
    // What the killed plugin left: the controller it connected, no record, nothing mounted.
    let (c, _, _) = e.kernel.add_volume(NQN, "live", 1 << 30);
    let restarted = build(e.dir.path(), &e.kernel, &e.tools, &e.seen);
    restarted.startup().await;
    restarted
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: VOL.into(),
            staging_target_path: e.staging(VOL).display().to_string(),
            volume_capability: Some(fs_cap("ext4", &[])),
            volume_context: context(NQN),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(!e.kernel.deleted(c), "the live controller is reused");
    assert!(e.kernel.connects().is_empty(), "no second connect");
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1);
    assert_eq!(restarted.staged_volumes().len(), 1);
}

// ---------------------------------------------------------------- grow at stage

/// A stage with the given access mode.
fn fs_cap_mode(fs: &str, flags: &[&str], mode: Mode) -> pb::VolumeCapability {
    let mut cap = fs_cap(fs, flags);
    cap.access_mode = Some(AccessMode { mode: mode as i32 });
    cap
}

fn staging_mounted(e: &Env) -> bool {
    let table = mount::MountTable::parse(&fs::read_to_string(e.path("mountinfo")).unwrap());
    table.top_mount_at(&e.staging(VOL)).is_some()
}

#[tokio::test]
async fn a_restored_ext4_smaller_than_its_device_is_grown_online_after_the_mount_and_only_once() {
    let e = Env::new();
    // A 1 GiB snapshot restored into a 2 GiB volume: the device is 2 GiB, its ext4 is 1 GiB.
    let (c, name, _) = e.kernel.add_volume(NQN, "live", 2 << 30);
    let dev = e.path(&format!("dev/{name}"));
    e.tools.set_blkid(&dev, Blkid::Fs("ext4"));
    e.tools.set_fs_bytes(&dev, 1 << 30);
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();

    let ran = e.tools.programs();
    let grow = format!("resize2fs {}", dev.display());
    let probe = format!("dumpe2fs -h {}", dev.display());
    assert_eq!(e.tools.count("mkfs.ext4"), 0, "an existing filesystem");
    assert_eq!(
        ran.iter().position(|p| *p == grow),
        ran.iter().position(|p| *p == probe).map(|i| i + 1),
        "size read, then grown: {ran:?}"
    );
    let at_grow = e.tools.mounts_at_grow.lock().unwrap().clone();
    assert_eq!(at_grow.len(), 1);
    assert!(
        at_grow[0].contains(&e.staging(VOL).display().to_string()),
        "resize2fs ran while the staging mount existed (online): {at_grow:?}"
    );
    assert!(!e.kernel.deleted(c));
    assert_eq!(e.node.staged_volumes().len(), 1);

    // The retry of a finished stage reads the size again, finds it full, grows nothing.
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    assert_eq!(e.tools.count("resize2fs"), 1, "{:?}", e.tools.programs());
    assert_eq!(e.tools.count("dumpe2fs"), 2);
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1);
}

#[tokio::test]
async fn a_cloned_xfs_smaller_than_its_device_is_grown_through_the_staging_mount() {
    let e = Env::new();
    let (_, name, _) = e.kernel.add_volume(NQN, "live", 4 << 30);
    let dev = e.path(&format!("dev/{name}"));
    e.tools.set_blkid(&dev, Blkid::Fs("xfs"));
    e.tools.set_fs_bytes(&e.staging(VOL), 1 << 30);
    e.stage(VOL, NQN, fs_cap("xfs", &[])).await.unwrap();
    let staging = e.staging(VOL).display().to_string();
    let ran = e.tools.programs();
    assert!(
        ran.contains(&format!("xfs_io -r -c statfs {staging}"))
            && ran.contains(&format!("xfs_growfs {staging}")),
        "{ran:?}"
    );
    assert_eq!(e.tools.count("resize2fs"), 0);
}

#[tokio::test]
async fn a_filesystem_that_fills_or_exceeds_its_device_or_was_just_made_is_not_grown() {
    // Just formatted: mkfs made it the device's size, so its size is not even read.
    let e = Env::new();
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    assert_eq!(e.tools.count("mkfs.ext4"), 1);
    assert_eq!(e.tools.count("dumpe2fs") + e.tools.count("resize2fs"), 0);

    // Existing and exactly the device's size, or one block short (tolerated), or larger.
    for fs_bytes in [1 << 30, (1 << 30) - 4096, 3 << 30] {
        let e = Env::new();
        let (_, name, _) = e.kernel.add_volume(NQN, "live", 1 << 30);
        let dev = e.path(&format!("dev/{name}"));
        e.tools.set_blkid(&dev, Blkid::Fs("ext4"));
        e.tools.set_fs_bytes(&dev, fs_bytes);
        e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
        assert_eq!(e.tools.count("dumpe2fs"), 1, "{fs_bytes}");
        assert_eq!(
            e.tools.count("resize2fs"),
            0,
            "{fs_bytes}: never shrunk or touched"
        );
    }
}

#[tokio::test]
async fn read_only_stages_never_grow() {
    for (cap, what) in [
        (
            fs_cap_mode("ext4", &[], Mode::MultiNodeReaderOnly),
            "reader-only mode",
        ),
        (fs_cap("ext4", &["ro"]), "ro mount flag"),
    ] {
        let e = Env::new();
        let (_, name, _) = e.kernel.add_volume(NQN, "live", 2 << 30);
        let dev = e.path(&format!("dev/{name}"));
        e.tools.set_blkid(&dev, Blkid::Fs("ext4"));
        e.tools.set_fs_bytes(&dev, 1 << 30);
        e.stage(VOL, NQN, cap.clone()).await.unwrap();
        e.stage(VOL, NQN, cap).await.unwrap();
        assert_eq!(
            e.tools.count("dumpe2fs") + e.tools.count("resize2fs"),
            0,
            "{what}: {:?}",
            e.tools.programs()
        );
        assert!(staging_mounted(&e), "{what}");
    }

    // A later stage that asks for rw over a read-only staging is a conflict (ALREADY_EXISTS),
    // and grows nothing.
    let e = Env::new();
    let (_, name, _) = e.kernel.add_volume(NQN, "live", 2 << 30);
    let dev = e.path(&format!("dev/{name}"));
    e.tools.set_blkid(&dev, Blkid::Fs("ext4"));
    e.tools.set_fs_bytes(&dev, 1 << 30);
    e.stage(VOL, NQN, fs_cap("ext4", &["ro"])).await.unwrap();
    let err = e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
    assert_eq!(e.tools.count("resize2fs"), 0, "{:?}", e.tools.programs());
}

#[tokio::test]
async fn a_failed_grow_fails_the_stage_and_undoes_its_mount_and_connect_and_the_retry_grows() {
    let e = Env::new();
    // The connect (made by this stage) brings a 1 GiB device holding a 512 MiB ext4.
    let dev = e.path("dev/nvme0n1");
    e.tools.set_blkid(&dev, Blkid::Fs("ext4"));
    e.tools.set_fs_bytes(&dev, 512 << 20);
    *e.tools.grow.lock().unwrap() = Some(GrowAnswer::Fail(1));
    let err = e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{}", err.message());
    assert!(
        err.message().contains("resize2fs")
            && err.message().contains("no space for new group descriptors")
            && err.message().contains(VOL),
        "names the tool, its complaint and the volume: {}",
        err.message()
    );
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1, "it had been mounted");
    assert!(!staging_mounted(&e), "the mount this stage made is undone");
    assert!(e.kernel.deleted(0), "the connect this stage made is undone");
    assert!(e.node.staged_volumes().is_empty());

    // kubelet retries: the kernel has dropped the controller; the grow works this time.
    e.kernel.remove_controller(0);
    *e.tools.grow.lock().unwrap() = None;
    let dev = e.path("dev/nvme1n1");
    e.tools.set_blkid(&dev, Blkid::Fs("ext4"));
    e.tools.set_fs_bytes(&dev, 512 << 20);
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    assert!(
        e.tools
            .programs()
            .contains(&format!("resize2fs {}", dev.display()))
    );
    assert!(staging_mounted(&e));
    assert_eq!(e.node.staged_volumes().len(), 1);
}

#[tokio::test]
async fn a_grow_past_its_deadline_is_unavailable_like_node_expand() {
    let e = Env::new();
    let dev = e.path("dev/nvme0n1");
    e.tools.set_blkid(&dev, Blkid::Fs("xfs"));
    e.tools.set_fs_bytes(&e.staging(VOL), 256 << 20);
    *e.tools.grow.lock().unwrap() = Some(GrowAnswer::Timeout);
    let err = e.stage(VOL, NQN, fs_cap("xfs", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("xfs_growfs"), "{}", err.message());
    assert!(!staging_mounted(&e));
    assert!(e.kernel.deleted(0));
}

#[tokio::test]
async fn a_stage_retry_grows_a_mounted_filesystem_left_small_and_a_failure_keeps_the_mount() {
    let e = Env::new();
    let (c, name, _) = e.kernel.add_volume(NQN, "live", 2 << 30);
    let dev = e.path(&format!("dev/{name}"));
    e.tools.set_blkid(&dev, Blkid::Fs("ext4"));
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    assert_eq!(e.tools.count("resize2fs"), 0, "fills its device");

    // As if the plugin had been killed between the mount and the grow: the mounted filesystem
    // is smaller than its device. A failed grow on the retry leaves the mount it found.
    e.tools.set_fs_bytes(&dev, 1 << 30);
    *e.tools.grow.lock().unwrap() = Some(GrowAnswer::Fail(1));
    let err = e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{}", err.message());
    assert!(staging_mounted(&e), "a mount older than this call stays");
    assert!(!e.kernel.deleted(c));

    *e.tools.grow.lock().unwrap() = None;
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    assert_eq!(e.tools.count("resize2fs"), 2);
    assert_eq!(e.mounts_of(&e.staging(VOL)), 1, "never mounted twice");
}
