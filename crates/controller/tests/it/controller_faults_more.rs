//! More controller faults over the real stack (gRPC → controller → SSH → rds-sim): a pool that
//! is really full, a slow RDS (2 s per command), one command that never answers, and two
//! CreateVolume calls for one name racing each other, through one controller and through two,
//! and a DeleteVolume retried after its disk is gone but its backing file is not.
//!
//! Every case checks the gRPC code, that no volume is lost, duplicated or half-made (the sim's
//! disks AND backing files), and that service resumes. The slow-RDS cases assert behaviour (what
//! succeeded, how many commands the sim saw at once, what finished before what), never timings.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use csi::v1 as pb;
use tonic::Code;

/// What the sidecars give one call by default (external-provisioner and -resizer `--timeout`).
const SIDECAR_DEADLINE: Duration = Duration::from_secs(10);
const SLOW: Duration = Duration::from_secs(2);

fn disks_named(h: &Sandbox, slot: &str) -> usize {
    h.sim().disks().iter().filter(|d| d.slot == slot).count()
}

fn files_named(h: &Sandbox, slot: &str) -> usize {
    h.sim()
        .files()
        .iter()
        .filter(|f| f.path.ends_with(&format!("/{slot}.img")))
        .count()
}

fn disk_size(h: &Sandbox, slot: &str) -> u64 {
    h.sim()
        .disks()
        .into_iter()
        .find(|d| d.slot == slot)
        .unwrap()
        .size
}

/// The request with a gRPC deadline, as a sidecar sends it.
fn within<T>(msg: T, deadline: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(deadline);
    r
}

fn grow(volume_id: &str, gib: i64) -> pb::ControllerExpandVolumeRequest {
    pb::ControllerExpandVolumeRequest {
        volume_id: volume_id.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(rwo()),
        ..Default::default()
    }
}

fn delete(volume_id: &str) -> pb::DeleteVolumeRequest {
    pb::DeleteVolumeRequest {
        volume_id: volume_id.into(),
        ..Default::default()
    }
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pool itself is too small (no injected flag): the RDS's own capacity check refuses, the
/// driver answers RESOURCE_EXHAUSTED (the earlier driver's code, and gRPC's "out of space"; the
/// request itself is valid, so neither INVALID_ARGUMENT nor OUT_OF_RANGE), and neither a disk nor
/// a backing file is left. A grow that does not fit is refused the same way and the volume keeps
/// its size. Once space is freed the same request succeeds.
#[tokio::test]
async fn a_pool_too_small_is_resource_exhausted_for_create_and_grow_and_leaves_nothing() {
    let mut h = start_with(|o| o.capacity = 3 << 30).await;
    let a = pvc_name();
    let b = pvc_name();
    let va = created(&mut h.controller, create_req(&a, 2)).await;

    let err = h
        .controller
        .create_volume(create_req(&b, 2))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("space"), "{}", err.message());
    assert_eq!(disks_named(&h, &b), 0, "half-made disk left behind");
    assert_eq!(files_named(&h, &b), 0, "backing file left behind");
    // Nothing of the refused volume is reserved: the free space is the pool minus A.
    let free = h
        .controller
        .get_capacity(pb::GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner()
        .available_capacity;
    assert_eq!(free, GIB);

    let err = h
        .controller
        .controller_expand_volume(grow(&va.volume_id, 4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert_eq!(
        disk_size(&h, &a),
        2 << 30,
        "a refused grow changed the size"
    );
    assert_eq!(files_named(&h, &a), 1);

    // Service resumes: the refused create is retried once there is room, exactly once made.
    h.controller
        .delete_volume(delete(&va.volume_id))
        .await
        .unwrap();
    assert_eq!((disks_named(&h, &a), files_named(&h, &a)), (0, 0));
    let vb = created(&mut h.controller, create_req(&b, 2)).await;
    assert_eq!(vb.capacity_bytes, 2 * GIB);
    let again = created(&mut h.controller, create_req(&b, 2)).await;
    assert_eq!(again.volume_id, vb.volume_id);
    assert_eq!((disks_named(&h, &b), files_named(&h, &b)), (1, 1));
    assert_eq!(h.sim().disks().len(), 1, "{:?}", h.sim().disks());
    h.stop().await;
}

/// Every controller call on an RDS that takes 2 s per command still answers OK within the
/// deadline the sidecars give it (DeleteVolume, the longest, is three commands).
#[tokio::test]
async fn with_two_seconds_per_command_every_call_succeeds_within_the_sidecar_deadline() {
    let mut h = start().await;
    h.sim().faults().set_latency(SLOW);
    let name = pvc_name();
    let c = &mut h.controller;
    let v = c
        .create_volume(within(create_req(&name, 1), SIDECAR_DEADLINE))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    // The idempotent retry a provisioner sends after its own timeout.
    let again = c
        .create_volume(within(create_req(&name, 1), SIDECAR_DEADLINE))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(again.volume_id, v.volume_id);
    let got = c
        .controller_get_volume(within(
            pb::ControllerGetVolumeRequest {
                volume_id: v.volume_id.clone(),
            },
            SIDECAR_DEADLINE,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().capacity_bytes, GIB);
    let listed = c
        .list_volumes(within(pb::ListVolumesRequest::default(), SIDECAR_DEADLINE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let cap = c
        .get_capacity(within(pb::GetCapacityRequest::default(), SIDECAR_DEADLINE))
        .await
        .unwrap()
        .into_inner();
    assert!(cap.available_capacity > 0);
    let grown = c
        .controller_expand_volume(within(grow(&v.volume_id, 2), SIDECAR_DEADLINE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, 2 * GIB);
    assert_eq!(disk_size(&h, &name), 2 << 30);
    let c = &mut h.controller;
    c.delete_volume(within(delete(&v.volume_id), SIDECAR_DEADLINE))
        .await
        .unwrap();
    assert_eq!((disks_named(&h, &name), files_named(&h, &name)), (0, 0));
    h.stop().await;
}

/// Six CreateVolume calls at once on a slow RDS: all succeed, and the sim saw exactly as many
/// commands at once as the session pool allows — more than one (slow commands do not serialize
/// the controller) and never more than the pool (RouterOS stalls with many sessions).
#[tokio::test]
async fn with_two_seconds_per_command_concurrent_creates_use_the_whole_session_pool_and_no_more() {
    let pool = 4;
    let h = start_with(|o| o.max_sessions = pool).await;
    h.sim().faults().set_latency(SLOW);
    h.sim().reset_peak_commands_running();
    let names: Vec<String> = (0..6).map(|_| pvc_name()).collect();
    let mut tasks = Vec::new();
    for n in &names {
        let mut c = h.controller.clone();
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            c.create_volume(within(create_req(&n, 1), Duration::from_secs(30)))
                .await
        }));
    }
    for t in tasks {
        let v = t.await.unwrap().unwrap().into_inner().volume.unwrap();
        assert_eq!(v.capacity_bytes, GIB);
    }
    assert_eq!(
        h.sim().peak_commands_running(),
        pool,
        "commands in flight at the RDS at once should be exactly the session pool"
    );
    for n in &names {
        assert_eq!((disks_named(&h, n), files_named(&h, n)), (1, 1), "{n}");
    }
    h.stop().await;
}

/// One command that never answers holds one session until its deadline; other volumes keep
/// being served meanwhile, and the stuck create itself completes afterwards (its add was never
/// applied, so the retry makes exactly one volume). Also proves the sim's session count sees a
/// session held open and returns to zero when the controller is idle.
#[tokio::test]
async fn a_hung_command_holds_one_session_while_other_volumes_are_served() {
    let h = start_with(|o| o.write_timeout = Duration::from_secs(3)).await;
    let stuck = pvc_name();
    h.sim().faults().hang_next("/disk add");
    let mut c = h.controller.clone();
    let s = stuck.clone();
    let stuck_call = tokio::spawn(async move { c.create_volume(create_req(&s, 1)).await });
    let sim = h.sim();
    wait_for(
        "the stuck add to reach the RDS",
        Duration::from_secs(10),
        || {
            sim.commands()
                .iter()
                .any(|l| l.starts_with("/disk add") && l.contains(&stuck))
        },
    )
    .await;
    assert!(
        h.sim().sessions_open() >= 1,
        "the hung session is not counted"
    );

    let others: Vec<String> = (0..5).map(|_| pvc_name()).collect();
    let mut tasks = Vec::new();
    for n in &others {
        let mut c = h.controller.clone();
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            c.create_volume(create_req(&n, 1)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(
        !stuck_call.is_finished(),
        "the other creates should finish while the hung one still waits for its deadline"
    );
    let v = stuck_call
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, format!("default:{stuck}"));
    for n in others.iter().chain([&stuck]) {
        assert_eq!((disks_named(&h, n), files_named(&h, n)), (1, 1), "{n}");
    }
    let sim = h.sim();
    wait_for("idle sessions to close", Duration::from_secs(10), || {
        sim.sessions_open() == 0
    })
    .await;
    h.stop().await;
}

/// Two CreateVolume calls for one name at the same moment through one controller, on a slow RDS
/// so they really overlap: both OK with the same volume, one disk, one file.
#[tokio::test]
async fn two_concurrent_creates_of_one_name_on_a_slow_rds_make_one_volume() {
    let h = start().await;
    h.sim().faults().set_latency(SLOW);
    let name = pvc_name();
    let (a, b) = {
        let (mut c1, mut c2) = (h.controller.clone(), h.controller.clone());
        tokio::join!(
            c1.create_volume(within(create_req(&name, 1), Duration::from_secs(30))),
            c2.create_volume(within(create_req(&name, 1), Duration::from_secs(30)))
        )
    };
    let (a, b) = (
        a.unwrap().into_inner().volume.unwrap(),
        b.unwrap().into_inner().volume.unwrap(),
    );
    assert_eq!(a.volume_id, b.volume_id);
    assert_eq!(a.volume_context, b.volume_context);
    assert_eq!((disks_named(&h, &name), files_named(&h, &name)), (1, 1));
    h.stop().await;
}

/// The same race through two controller instances on one RDS (two replicas, or an old and a new
/// pod during a rollout): no in-process lock helps here, so the RDS refusing the second add and
/// the driver recognising its own volume is what keeps it to one. Then one replica deletes it and
/// the other's delete is a no-op: nothing is left.
#[tokio::test]
async fn two_concurrent_creates_of_one_name_through_two_controllers_make_one_volume() {
    let h = start().await;
    let settings = vec![h.sims[0].settings.clone()];
    let other = Sandbox::serve(tempfile::tempdir().unwrap(), Vec::new(), &settings, None)
        .await
        .unwrap();
    h.sim().faults().set_latency(Duration::from_millis(500));
    let name = pvc_name();
    let (a, b) = {
        let (mut c1, mut c2) = (h.controller.clone(), other.controller.clone());
        tokio::join!(
            c1.create_volume(create_req(&name, 1)),
            c2.create_volume(create_req(&name, 1))
        )
    };
    let (a, b) = (
        a.unwrap().into_inner().volume.unwrap(),
        b.unwrap().into_inner().volume.unwrap(),
    );
    assert_eq!(a.volume_id, b.volume_id);
    assert_eq!(a.capacity_bytes, b.capacity_bytes);
    let adds = h
        .sim()
        .commands()
        .iter()
        .filter(|l| l.starts_with("/disk add") && l.contains(&name))
        .count();
    assert_eq!(adds, 2, "both controllers should have raced to add");
    assert_eq!((disks_named(&h, &name), files_named(&h, &name)), (1, 1));

    h.sim().faults().set_latency(Duration::ZERO);
    let (mut c1, mut c2) = (h.controller.clone(), other.controller.clone());
    c1.delete_volume(delete(&a.volume_id)).await.unwrap();
    c2.delete_volume(delete(&b.volume_id)).await.unwrap();
    assert_eq!((disks_named(&h, &name), files_named(&h, &name)), (0, 0));
    assert!(h.sim().disks().is_empty() && h.sim().files().is_empty());
    other.stop().await;
    h.stop().await;
}

/// Two DeleteVolume calls for one volume at the same moment through two controllers (no shared
/// lock): both OK, and neither the disk nor its backing file is left. The loser's `/disk remove`
/// and `/file remove` find nothing, which is success, not an error.
#[tokio::test]
async fn two_concurrent_deletes_of_one_volume_through_two_controllers_both_succeed() {
    let mut h = start().await;
    let settings = vec![h.sims[0].settings.clone()];
    let other = Sandbox::serve(tempfile::tempdir().unwrap(), Vec::new(), &settings, None)
        .await
        .unwrap();
    let name = pvc_name();
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    h.sim().faults().set_latency(Duration::from_millis(300));
    let (a, b) = {
        let (mut c1, mut c2) = (h.controller.clone(), other.controller.clone());
        tokio::join!(
            c1.delete_volume(delete(&v.volume_id)),
            c2.delete_volume(delete(&v.volume_id))
        )
    };
    a.unwrap();
    b.unwrap();
    let removes = h
        .sim()
        .commands()
        .iter()
        .filter(|l| l.starts_with("/disk remove"))
        .count();
    assert_eq!(removes, 2, "both controllers should have raced to remove");
    assert_eq!((disks_named(&h, &name), files_named(&h, &name)), (0, 0));
    other.stop().await;
    h.stop().await;
}

/// A disk-less file as a delete that died between `/disk remove` and `/file remove` leaves it:
/// RouterOS keeps the backing file after `/disk remove`.
fn leave_file_without_disk(h: &Sandbox, slot: &str, path: &str) {
    h.sim()
        .run_local(&format!(
            "/disk add type=file file-path={path} file-size=1G slot={slot}"
        ))
        .unwrap();
    h.sim()
        .run_local(&format!("/disk remove [find slot={slot}]"))
        .unwrap();
}

fn file_paths(h: &Sandbox) -> Vec<String> {
    let mut paths: Vec<String> = h.sim().files().into_iter().map(|f| f.path).collect();
    paths.sort();
    paths
}

/// The commands the sim saw since the last clear, by menu and verb (`/disk print`, …).
fn verbs(h: &Sandbox) -> Vec<String> {
    h.sim()
        .commands()
        .iter()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// The retried DeleteVolume of a volume whose disk is already gone removes the `<slot>.img`
/// left behind, in the base volume path and in an extra one, and answers OK. Nothing else is
/// touched: the volume's snapshot (whose file name holds the slot), a file of the same name
/// outside the volume paths, names that merely start or end like it, and another volume. The
/// normal delete keeps its 3 round trips; the disk-gone delete costs one `/file print` more.
#[tokio::test]
async fn delete_of_a_volume_whose_disk_is_gone_removes_its_leftover_file_only() {
    let mut h = start().await;
    let base = "/storage-pool/metal-csi";
    let other = "/storage-pool/other";

    // A volume with a snapshot, then its disk removed as a killed delete would leave it.
    let name = pvc_name();
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    let snap = h
        .controller
        .create_snapshot(pb::CreateSnapshotRequest {
            source_volume_id: v.volume_id.clone(),
            name: format!("snapshot-{}", uuid::Uuid::new_v4()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let snap_files: Vec<String> = file_paths(&h)
        .into_iter()
        .filter(|p| p.contains("/snap-"))
        .collect();
    assert_eq!(snap_files.len(), 1, "{:?}", file_paths(&h));
    assert!(
        snap_files[0].contains(&name),
        "the snapshot's file names its source slot, so a prefix or substring match would hit it: {snap_files:?}"
    );
    h.sim()
        .run_local(&format!("/disk remove [find slot={name}]"))
        .unwrap();

    // A volume in the extra volume path, its disk gone the same way.
    let name2 = pvc_name();
    let mut req = create_req(&name2, 1);
    req.parameters.insert("volumePath".into(), other.into());
    let v2 = created(&mut h.controller, req).await;
    h.sim()
        .run_local(&format!("/disk remove [find slot={name2}]"))
        .unwrap();

    // Look-alikes that must survive.
    let keep = [
        format!("/storage-pool/elsewhere/{name}.img"),
        format!("{base}/x{name}.img"),
        format!("{base}/{name}-2.img"),
        format!("{other}/{name}.img.bak"),
    ];
    for (i, path) in keep.iter().enumerate() {
        leave_file_without_disk(&h, &format!("pvc-decoy-{i}"), path);
    }
    let live = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let before = file_paths(&h);
    assert!(before.contains(&format!("{base}/{name}.img")));
    // A volume made with parameters carries their fingerprint in its name (`ownership`).
    let file2 = before
        .iter()
        .find(|p| p.starts_with(&format!("{other}/{name2}.")) && p.ends_with(".img"))
        .cloned()
        .unwrap();

    h.sim().clear_commands();
    h.controller
        .delete_volume(delete(&v.volume_id))
        .await
        .unwrap();
    assert_eq!(
        verbs(&h),
        ["/disk print", "/file print", "/file remove"],
        "{:?}",
        h.sim().commands()
    );
    h.sim().clear_commands();
    h.controller
        .delete_volume(delete(&v2.volume_id))
        .await
        .unwrap();
    assert_eq!(verbs(&h), ["/disk print", "/file print", "/file remove"]);

    let after = file_paths(&h);
    let expected: Vec<String> = before
        .iter()
        .filter(|p| **p != format!("{base}/{name}.img") && **p != file2)
        .cloned()
        .collect();
    assert_eq!(after, expected, "only the two leftover files are removed");
    for path in keep.iter().chain(&snap_files) {
        assert!(after.contains(path), "{path} was touched: {after:?}");
    }
    assert!(
        h.sim()
            .disks()
            .iter()
            .any(|d| snap.snapshot_id.contains(&d.slot)),
        "the snapshot's disk is untouched: {:?}",
        h.sim().disks()
    );

    // Retried once more (nothing left): OK, one lookup, nothing removed.
    h.sim().clear_commands();
    h.controller
        .delete_volume(delete(&v.volume_id))
        .await
        .unwrap();
    assert_eq!(verbs(&h), ["/disk print", "/file print"]);
    assert_eq!(file_paths(&h), after);

    // A snapshot id sent as a volume id is not a volume: OK without asking the RDS, so its
    // `snap-….img` is never looked up, let alone removed.
    h.sim().clear_commands();
    h.controller
        .delete_volume(delete(&snap.snapshot_id))
        .await
        .unwrap();
    assert!(h.sim().commands().is_empty(), "{:?}", h.sim().commands());
    assert_eq!(file_paths(&h), after);

    // The normal delete keeps its round trips.
    h.sim().clear_commands();
    h.controller
        .delete_volume(delete(&live.volume_id))
        .await
        .unwrap();
    assert_eq!(verbs(&h), ["/disk print", "/disk remove", "/file remove"]);
    h.stop().await;
}

/// An RDS outage while DeleteVolume looks for (or removes) a leftover file is UNAVAILABLE, and a
/// refused removal INTERNAL: never OK with the file left. Once the RDS answers again the retry
/// removes it and answers OK.
#[tokio::test]
async fn delete_with_a_leftover_file_and_an_rds_outage_is_unavailable_until_it_is_gone() {
    let mut h = start().await;
    let name = pvc_name();
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    h.sim()
        .run_local(&format!("/disk remove [find slot={name}]"))
        .unwrap();
    assert_eq!((disks_named(&h, &name), files_named(&h, &name)), (0, 1));

    // Every attempt at the lookup is dropped (the client retries reads 4 times).
    for _ in 0..4 {
        h.sim().faults().drop_next("/file print");
    }
    let err = h
        .controller
        .delete_volume(delete(&v.volume_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("left by volume"),
        "{}",
        err.message()
    );
    assert_eq!(files_named(&h, &name), 1);

    // The lookup answers, every attempt at the removal is dropped before it is applied.
    h.sim().faults().clear();
    for _ in 0..4 {
        h.sim().faults().drop_next("/file remove");
    }
    let err = h
        .controller
        .delete_volume(delete(&v.volume_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(files_named(&h, &name), 1);

    // RouterOS refusing the removal (disk print, file print, then the refused file remove) is
    // an error too, naming the file.
    h.sim().faults().clear();
    h.sim().faults().fail_nth(3, "failure: execution error");
    let err = h
        .controller
        .delete_volume(delete(&v.volume_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(
        err.message().contains(&format!("{name}.img")),
        "{}",
        err.message()
    );
    assert_eq!(files_named(&h, &name), 1);

    h.sim().faults().clear();
    h.controller
        .delete_volume(delete(&v.volume_id))
        .await
        .unwrap();
    assert_eq!((disks_named(&h, &name), files_named(&h, &name)), (0, 0));
    assert!(h.sim().disks().is_empty() && h.sim().files().is_empty());
    h.stop().await;
}
