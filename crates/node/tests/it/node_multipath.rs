//! NVMe/TCP multipath on the node against the fake kernel (issue #18): every path connected
//! with one host identity, the head device mounted, a path that cannot connect retried in the
//! background (with a pause, and without holding the volume) and reported, a deleted path
//! re-added without touching the mount, unstage of
//! every path, and the kernel's multipath off giving one path and a reason. The real kernel's
//! failover is proven by the VM suite (tests/vm/scenarios.d/13-node-multipath.sh).
#![allow(clippy::unwrap_used, dead_code, unused_imports)]
include!("common/node_env.rs");

const TWO: [(&str, &str); 3] = [
    ("nvmeAddresses", "10.0.0.1,10.0.1.1"),
    ("csi.storage.k8s.io/pvc/namespace", "apps"),
    ("csi.storage.k8s.io/pvc/name", "data"),
];

fn opt(connect: &str, key: &str) -> String {
    connect
        .split(',')
        .find_map(|kv| kv.strip_prefix(key))
        .unwrap()
        .to_string()
}

fn mounts(e: &Env) -> usize {
    e.calls()
        .iter()
        .filter(|c| matches!(c, Call::Mount { .. }))
        .count()
}

/// Multipath on, VOL staged over TWO while 10.0.1.1 refuses connects (its port is down).
async fn stage_with_the_second_path_refused(e: &Env) {
    e.kernel.set_multipath(true);
    e.kernel.refuse("10.0.1.1", true);
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap();
}

#[tokio::test]
async fn stage_connects_every_path_with_one_host_identity_and_mounts_the_head() {
    let e = Env::new();
    e.kernel.set_multipath(true);
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap();
    let connects = e.kernel.connects();
    assert_eq!(connects.len(), 2, "{connects:?}");
    let mut addrs: Vec<String> = connects.iter().map(|c| opt(c, "traddr=")).collect();
    addrs.sort();
    assert_eq!(addrs, ["10.0.0.1", "10.0.1.1"]);
    for key in ["hostnqn=", "hostid=", "nqn=", "trsvcid="] {
        assert_eq!(opt(&connects[0], key), opt(&connects[1], key), "{key}");
    }
    // One head for both paths: the mount is of /dev/nvme0n1, never of a per-path device.
    assert!(e.calls().iter().any(|c| matches!(c,
        Call::Mount { source, .. } if *source == e.path("dev/nvme0n1"))));
    assert_eq!(e.tools.count("mkfs.ext4"), 1);
    let rec = &e.node.staged_volumes()[0];
    assert_eq!(rec.addresses, ["10.0.0.1", "10.0.1.1"]);
    assert_eq!(rec.address, "10.0.0.1");
    assert_eq!(
        e.seen.all("paths"),
        [format!(
            "paths {VOL} 2/2 missing= pvc=Some((\"apps\", \"data\"))"
        )]
    );
    let st = e.stats(VOL, &e.staging(VOL)).await.unwrap();
    assert!(!st.volume_condition.unwrap().abnormal);

    // A repeated stage changes nothing and reports nothing new.
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap();
    assert_eq!(e.kernel.connects().len(), 2);
    assert_eq!(e.seen.all("paths").len(), 1);
}

#[tokio::test]
async fn a_path_that_cannot_connect_does_not_fail_the_stage_and_is_retried_in_the_background() {
    let e = Env::new();
    stage_with_the_second_path_refused(&e).await;
    assert!(
        e.seen
            .any(&format!("paths {VOL} 1/2 missing=10.0.1.1:4420 pvc=Some")),
        "{:?}",
        e.seen.all("paths")
    );
    let st = e.stats(VOL, &e.staging(VOL)).await.unwrap();
    let cond = st.volume_condition.unwrap();
    assert!(cond.abnormal, "{cond:?}");
    assert!(
        cond.message.contains("1 of 2 live") && cond.message.contains("10.0.1.1:4420"),
        "{}",
        cond.message
    );
    assert!(
        !st.usage.is_empty(),
        "a degraded volume still reports usage"
    );

    // Still refused: the monitor tries, fails quietly, and the volume stays Healthy.
    let report = e.node.monitor_pass().await;
    assert_eq!(report.get(VOL), Some(&VolumeCheck::Healthy));
    assert_eq!(e.seen.all("paths").len(), 1);

    // The port is back: the next pass after the repair's pause connects the path without
    // touching the mount.
    e.kernel.refuse("10.0.1.1", false);
    tokio::time::sleep(e.node.config().recovery.max_backoff).await;
    let before = mounts(&e);
    let report = e.node.monitor_pass().await;
    assert!(
        matches!(report.get(VOL), Some(VolumeCheck::Recovered(d)) if d.contains("10.0.1.1:4420")),
        "{report:?}"
    );
    assert_eq!(mounts(&e), before, "the mount is never touched");
    assert!(e.seen.any(&format!("paths {VOL} 2/2 missing= ")));
    let st = e.stats(VOL, &e.staging(VOL)).await.unwrap();
    assert!(!st.volume_condition.unwrap().abnormal);
}

#[tokio::test]
async fn a_path_deleted_by_the_kernel_is_re_added_without_touching_the_mount() {
    let e = Env::new();
    e.kernel.set_multipath(true);
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap();
    e.node.monitor_pass().await;
    let c2 = if opt(&e.kernel.connects()[1], "traddr=") == "10.0.1.1" {
        1
    } else {
        0
    };
    let before = mounts(&e);
    e.kernel.remove_controller(c2);
    // The stats see the missing path at once.
    let st = e.stats(VOL, &e.staging(VOL)).await.unwrap();
    let cond = st.volume_condition.unwrap();
    assert!(
        cond.abnormal && cond.message.contains("10.0.1.1:4420 (no controller)"),
        "{cond:?}"
    );
    let report = e.node.monitor_pass().await;
    assert!(
        matches!(report.get(VOL), Some(VolumeCheck::Recovered(d)) if d.contains("reconnected NVMe/TCP path")),
        "{report:?}"
    );
    assert_eq!(e.kernel.connects().len(), 3);
    assert_eq!(opt(&e.kernel.connects()[2], "traddr="), "10.0.1.1");
    assert_eq!(mounts(&e), before, "the mount is never touched");
    assert!(!e.seen.any("stale"));
}

#[tokio::test]
async fn a_path_that_stays_down_is_retried_after_a_pause_not_on_every_pass() {
    // A pause far longer than the test: every pass after the first failure falls inside it.
    // (The retry once a pause is over is the "retried in the background" test above.)
    let e = Env::with_config(|c| c.recovery.initial_backoff = Duration::from_secs(3600));
    stage_with_the_second_path_refused(&e).await;
    let tries = |e: &Env| {
        e.kernel
            .connects()
            .iter()
            .filter(|c| opt(c, "traddr=") == "10.0.1.1")
            .count()
    };
    assert_eq!(tries(&e), 1, "stage tried it once");
    e.node.monitor_pass().await;
    assert_eq!(tries(&e), 2, "the first pass tries again");
    for _ in 0..3 {
        assert_eq!(
            e.node.monitor_pass().await.get(VOL),
            Some(&VolumeCheck::Healthy)
        );
    }
    assert_eq!(tries(&e), 2, "no retry inside the pause");
    // Still reported as degraded meanwhile, and a failing path is not a failed recovery.
    let cond = e
        .stats(VOL, &e.staging(VOL))
        .await
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(
        cond.abnormal && cond.message.contains("10.0.1.1:4420"),
        "{cond:?}"
    );
    assert!(!e.seen.any("failed"), "{:?}", e.seen.all(""));
}

#[tokio::test]
async fn a_path_that_never_answers_does_not_hold_up_unstage_and_a_late_connect_is_undone() {
    let e = Env::new();
    stage_with_the_second_path_refused(&e).await;
    assert_eq!(e.kernel.connects().len(), 2);
    // The address comes back but its connect sleeps in the kernel until released.
    e.kernel.refuse("10.0.1.1", false);
    e.kernel.hold("10.0.1.1", true);
    let node = e.node.clone();
    let pass = tokio::spawn(async move { node.monitor_pass().await });
    for _ in 0..1000 {
        if e.kernel.connects().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        e.kernel.connects().len(),
        3,
        "the monitor's connect is in the kernel"
    );

    // The connect deadline is 5 s; the unstage does not wait for it.
    let unstage = tokio::time::timeout(Duration::from_secs(2), e.unstage(VOL)).await;
    assert!(
        matches!(unstage, Ok(Ok(()))),
        "unstage waited for the stuck path: {unstage:?}"
    );
    assert!(e.kernel.deleted(0));
    assert!(!pass.is_finished());

    // The kernel finally answers: that controller appeared after the unstage looked, and the
    // repair removes it instead of leaving a path of an unstaged volume behind.
    e.kernel.hold("10.0.1.1", false);
    let report = pass.await.unwrap();
    assert_eq!(report.get(VOL), Some(&VolumeCheck::Healthy));
    assert!(e.kernel.deleted(1), "the late path was disconnected");
    assert!(e.node.staged_volumes().is_empty());
    let paths = e.seen.all(&format!("paths {VOL}"));
    assert!(
        paths.last().is_some_and(|p| p.contains(" 0/0 ")),
        "no path reported after the unstage: {paths:?}"
    );
}

#[tokio::test]
async fn unstage_disconnects_every_path_also_with_one_down_and_reports_none() {
    let e = Env::new();
    e.kernel.set_multipath(true);
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap();
    e.kernel.set_state(1, "connecting");
    e.unstage(VOL).await.unwrap();
    assert!(e.kernel.deleted(0) && e.kernel.deleted(1));
    assert!(
        e.seen.any(&format!("paths {VOL} 0/0 missing= pvc=Some")),
        "{:?}",
        e.seen.all("paths")
    );
    assert!(e.node.staged_volumes().is_empty());
}

#[tokio::test]
async fn with_the_kernels_multipath_off_one_path_is_connected_and_the_reason_reported() {
    let e = Env::new();
    e.kernel.set_multipath(false);
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap();
    assert_eq!(e.kernel.connects().len(), 1, "never a second block device");
    assert_eq!(opt(&e.kernel.connects()[0], "traddr="), "10.0.0.1");
    let st = e.stats(VOL, &e.staging(VOL)).await.unwrap();
    let cond = st.volume_condition.unwrap();
    assert!(
        cond.abnormal
            && cond.message.contains("nvme_core.multipath=N")
            && cond.message.contains("10.0.1.1:4420"),
        "{cond:?}"
    );
    let report = e.node.monitor_pass().await;
    assert_eq!(report.get(VOL), Some(&VolumeCheck::Healthy));
    assert_eq!(e.kernel.connects().len(), 1);

    // The preferred path refused: the next one in order is used instead, still only one.
    let e = Env::new();
    e.kernel.set_multipath(false);
    e.kernel.refuse("10.0.0.1", true);
    e.stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap();
    let ok: Vec<String> = e
        .kernel
        .connects()
        .iter()
        .map(|c| opt(c, "traddr="))
        .collect();
    assert_eq!(ok, ["10.0.0.1", "10.0.1.1"]);
    assert_eq!(
        e.node.monitor_pass().await.get(VOL),
        Some(&VolumeCheck::Healthy)
    );
    assert_eq!(e.kernel.connects().len(), 2);
}

#[tokio::test]
async fn no_path_connecting_fails_the_stage_naming_each_path_and_leaves_nothing() {
    let e = Env::new();
    e.kernel.set_multipath(true);
    e.kernel.refuse("10.0.0.1", true);
    e.kernel.refuse("10.0.1.1", true);
    let err = e
        .stage_with(VOL, NQN, fs_cap("ext4", &[]), &TWO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("10.0.0.1:4420") && err.message().contains("10.0.1.1:4420"),
        "{}",
        err.message()
    );
    assert!(e.node.staged_volumes().is_empty());
    assert_eq!(mounts(&e), 0);
}

#[tokio::test]
async fn a_single_address_volume_is_staged_exactly_as_before() {
    let e = Env::new();
    e.kernel.set_multipath(true);
    e.stage(VOL, NQN, fs_cap("ext4", &[])).await.unwrap();
    assert_eq!(e.kernel.connects().len(), 1);
    let rec = &e.node.staged_volumes()[0];
    assert_eq!(rec.addresses, ["10.0.0.1"]);
    let st = e.stats(VOL, &e.staging(VOL)).await.unwrap();
    assert!(!st.volume_condition.unwrap().abnormal);
    assert_eq!(
        e.seen.all("paths"),
        [format!("paths {VOL} 1/1 missing= pvc=None")]
    );
}
