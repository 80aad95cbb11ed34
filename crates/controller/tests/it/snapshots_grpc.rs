//! Snapshots, restores and clones over the real stack: gRPC on a unix socket → controller → SSH
//! (host key pinned) → rds-sim, whose disks are real sparse files here so a test can prove that
//! a restored volume holds the snapshot's bytes. Cases follow csi-sanity's snapshot and
//! content-source checks for CREATE_DELETE_SNAPSHOT, LIST_SNAPSHOTS and CLONE_VOLUME.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use controller::orphans::{OrphanConfig, OrphanReconciler};
use csi::v1 as pb;
use fencing::clock::ManualClock;
use tonic::Code;
use vocab::Backends;
use vocab::config::build_backend;

type Client = csi::v1::controller_client::ControllerClient<tonic::transport::Channel>;

const MARKER_AT: u64 = 10 << 20;

/// A sandbox whose simulator keeps disk contents as files under the returned directory.
async fn start_on_disk() -> (Sandbox, tempfile::TempDir) {
    start_on_disk_with(|_| {}).await
}

async fn start_on_disk_with(f: impl FnOnce(&mut SandboxOptions)) -> (Sandbox, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let path = store.path().to_path_buf();
    let h = start_with(|o| {
        o.storage = rds_sim::Storage::Dir(path);
        f(o);
    })
    .await;
    (h, store)
}

/// The real file behind an RDS path on backend `name`.
fn backing(store: &tempfile::TempDir, backend: &str, rds_path: &str) -> PathBuf {
    store
        .path()
        .join(backend)
        .join(rds_path.trim_start_matches('/'))
}

fn write_marker(path: &PathBuf, text: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(MARKER_AT)).unwrap();
    f.write_all(text).unwrap();
    f.sync_all().unwrap();
}

fn read_marker(path: &PathBuf, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(MARKER_AT)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn snap_req(name: &str, source: &str) -> pb::CreateSnapshotRequest {
    pb::CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        ..Default::default()
    }
}

async fn snapshot(c: &mut Client, name: &str, source: &str) -> pb::Snapshot {
    snapshot_ok(c, snap_req(name, source)).await
}

fn from_snapshot(name: &str, gib: i64, snapshot_id: &str) -> pb::CreateVolumeRequest {
    let mut r = create_req(name, gib);
    r.volume_content_source = Some(pb::VolumeContentSource {
        r#type: Some(pb::volume_content_source::Type::Snapshot(
            pb::volume_content_source::SnapshotSource {
                snapshot_id: snapshot_id.into(),
            },
        )),
    });
    r
}

fn from_volume(name: &str, gib: i64, volume_id: &str) -> pb::CreateVolumeRequest {
    let mut r = create_req(name, gib);
    r.volume_content_source = Some(pb::VolumeContentSource {
        r#type: Some(pb::volume_content_source::Type::Volume(
            pb::volume_content_source::VolumeSource {
                volume_id: volume_id.into(),
            },
        )),
    });
    r
}

fn list_req(source: &str, id: &str) -> pb::ListSnapshotsRequest {
    pb::ListSnapshotsRequest {
        source_volume_id: source.into(),
        snapshot_id: id.into(),
        ..Default::default()
    }
}

async fn list_ids(c: &mut Client, req: pb::ListSnapshotsRequest) -> Vec<String> {
    c.list_snapshots(req)
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.snapshot.unwrap().snapshot_id)
        .collect()
}

fn sim_disk(h: &Sandbox, slot: &str) -> Option<rds_sim::SimDisk> {
    h.sim().disks().into_iter().find(|d| d.slot == slot)
}

fn slot_of(id: &str) -> &str {
    id.split_once(':').map_or(id, |(_, s)| s)
}

// ---------------------------------------------------------------- CreateSnapshot

#[tokio::test]
async fn create_snapshot_refuses_a_missing_name_or_source() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let r = h
        .controller
        .create_snapshot(snap_req("", &v.volume_id))
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
    let err = h
        .controller
        .create_snapshot(snap_req("snap-name", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("source volume"), "{}", err.message());
    // Unknown VolumeSnapshotClass parameters are refused by name; the sidecar's own are fine.
    let mut typo = snap_req("with-params", &v.volume_id);
    typo.parameters.insert("compresion".into(), "yes".into());
    let err = h.controller.create_snapshot(typo).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("compresion"), "{}", err.message());
    assert!(h.sim().disks().iter().all(|d| !d.slot.starts_with("snap-")));
    let mut meta = snap_req("with-params", &v.volume_id);
    meta.parameters.insert(
        "csi.storage.k8s.io/volumesnapshot/name".into(),
        "data-snap".into(),
    );
    snapshot_ok(&mut h.controller, meta).await;
    h.stop().await;
}

async fn snapshot_ok(c: &mut Client, req: pb::CreateSnapshotRequest) -> pb::Snapshot {
    c.create_snapshot(req)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
}

#[tokio::test]
async fn create_snapshot_of_a_missing_volume_is_not_found() {
    let mut h = start().await;
    for source in [
        "default:pvc-00000000-0000-0000-0000-000000000000",
        "pvc-00000000-0000-0000-0000-000000000000",
        "not-a-volume-id",
        "nowhere:pvc-00000000-0000-0000-0000-000000000000",
    ] {
        let r = h.controller.create_snapshot(snap_req("s1", source)).await;
        assert_eq!(code(r), Code::NotFound, "{source}");
    }
    assert!(h.sim().disks().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn create_snapshot_copies_without_export_and_retries_return_the_same_snapshot() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 3)).await;
    h.sim().clear_commands();
    let first = snapshot(&mut h.controller, "nightly-1", &v.volume_id).await;
    assert!(first.ready_to_use);
    assert_eq!(first.source_volume_id, v.volume_id);
    assert_eq!(first.size_bytes, 3 * GIB);
    assert!(first.snapshot_id.starts_with("default:snap-"), "{first:?}");
    let created_at = first.creation_time.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - created_at.seconds).abs() < 60, "{created_at:?}");

    let add = h
        .sim()
        .commands()
        .into_iter()
        .find(|c| c.starts_with("/disk add"))
        .unwrap();
    let source_slot = slot_of(&v.volume_id);
    assert!(
        add.contains(&format!("copy-from=[find slot={source_slot}]")),
        "{add}"
    );
    assert!(!add.contains("nvme-tcp"), "{add}");
    assert!(!add.contains("file-size"), "{add}");
    let disk = sim_disk(&h, slot_of(&first.snapshot_id)).unwrap();
    assert!(!disk.nvme_export, "{disk:?}");
    assert_eq!(disk.size, 3 << 30);
    assert!(
        disk.file_path.starts_with("/storage-pool/metal-csi/snap-")
            && disk.file_path.contains(&format!(".src-{source_slot}.")),
        "{disk:?}"
    );

    // Same name, same source: the same snapshot, creation time included, and no second copy.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = snapshot(&mut h.controller, "nightly-1", &v.volume_id).await;
    assert_eq!(again, first);
    let adds = h
        .sim()
        .commands()
        .iter()
        .filter(|c| c.starts_with("/disk add"))
        .count();
    assert_eq!(adds, 1);
    // A bare legacy source id names the same volume on the default backend.
    let legacy = snapshot(&mut h.controller, "nightly-1", source_slot).await;
    assert_eq!(legacy.snapshot_id, first.snapshot_id);
    h.stop().await;
}

#[tokio::test]
async fn same_name_from_another_volume_is_already_exists() {
    let mut h = start().await;
    let a = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let b = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    snapshot(&mut h.controller, "taken", &a.volume_id).await;
    let err = h
        .controller
        .create_snapshot(snap_req("taken", &b.volume_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&a.volume_id), "{}", err.message());
    // Even a source that does not exist cannot claim the name.
    let r = h
        .controller
        .create_snapshot(snap_req(
            "taken",
            "default:pvc-00000000-0000-0000-0000-000000000000",
        ))
        .await;
    assert_eq!(code(r), Code::AlreadyExists);
    h.stop().await;
}

/// A snapshot disk whose file records no lineage (as the earlier driver made them): a retry
/// succeeds, reports the requested source, and keeps one creation time.
#[tokio::test]
async fn a_retry_succeeds_when_lineage_is_missing() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let slot = controller::snapshots::ids::slot_for_name("legacy-snap").unwrap();
    h.sim()
        .run_local(&format!(
            "/disk add type=file copy-from=[find slot={}] file-path=/storage-pool/metal-csi/{}.img slot={}",
            slot_of(&v.volume_id),
            slot.as_str(),
            slot.as_str()
        ))
        .unwrap();
    let first = snapshot(&mut h.controller, "legacy-snap", &v.volume_id).await;
    assert_eq!(first.snapshot_id, format!("default:{}", slot.as_str()));
    assert_eq!(first.source_volume_id, v.volume_id);
    assert!(first.ready_to_use);
    let again = snapshot(&mut h.controller, "legacy-snap", &v.volume_id).await;
    assert_eq!(again.creation_time, first.creation_time);
    // A source that cannot be a volume of ours cannot be the one it was cut from.
    let r = h
        .controller
        .create_snapshot(snap_req("legacy-snap", "not-a-volume"))
        .await;
    assert_eq!(code(r), Code::AlreadyExists);
    // It can be listed, fetched and deleted like any other.
    let ids = list_ids(&mut h.controller, list_req("", &first.snapshot_id)).await;
    assert_eq!(ids, vec![first.snapshot_id.clone()]);
    h.controller
        .delete_snapshot(pb::DeleteSnapshotRequest {
            snapshot_id: first.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(sim_disk(&h, slot.as_str()).is_none());
    assert!(h.sim().files().iter().all(|f| !f.path.contains("snap-")));
    h.stop().await;
}

/// Lineage lives on the RDS: a second controller (a restart, no Kubernetes) sees the same source
/// and creation time, and answers a retry without a new copy.
#[tokio::test]
async fn lineage_survives_a_controller_restart() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let first = snapshot(&mut h.controller, "kept", &v.volume_id).await;

    let settings = vec![h.sims[0].settings.clone()];
    let mut fresh = Sandbox::serve(tempfile::tempdir().unwrap(), vec![], &settings, None)
        .await
        .unwrap();
    let listed = fresh
        .controller
        .list_snapshots(list_req(&v.volume_id, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(listed.entries[0].snapshot.as_ref().unwrap(), &first);
    let retry = snapshot(&mut fresh.controller, "kept", &v.volume_id).await;
    assert_eq!(retry, first);
    let other = created(&mut fresh.controller, create_req(&pvc_name(), 1)).await;
    let r = fresh
        .controller
        .create_snapshot(snap_req("kept", &other.volume_id))
        .await;
    assert_eq!(code(r), Code::AlreadyExists);
    fresh.stop().await;
    h.stop().await;
}

// ---------------------------------------------------------------- ListSnapshots / GetSnapshot

#[tokio::test]
async fn list_snapshots_filters_by_id_and_source_and_pages() {
    let mut h = start().await;
    let a = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let b = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let a1 = snapshot(&mut h.controller, "a1", &a.volume_id).await;
    let a2 = snapshot(&mut h.controller, "a2", &a.volume_id).await;
    let b1 = snapshot(&mut h.controller, "b1", &b.volume_id).await;
    let all: BTreeSet<String> = [&a1, &a2, &b1]
        .iter()
        .map(|s| s.snapshot_id.clone())
        .collect();

    let listed = list_ids(&mut h.controller, list_req("", "")).await;
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert_eq!(listed.len(), 3);
    // Volumes never show up as snapshots, nor snapshots as volumes.
    let vols = h
        .controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vols.entries.len(), 2);

    let of_a: BTreeSet<String> = list_ids(&mut h.controller, list_req(&a.volume_id, ""))
        .await
        .into_iter()
        .collect();
    assert_eq!(
        of_a,
        [a1.snapshot_id.clone(), a2.snapshot_id.clone()].into()
    );
    assert_eq!(
        list_ids(&mut h.controller, list_req("", &b1.snapshot_id)).await,
        vec![b1.snapshot_id.clone()]
    );
    assert_eq!(
        list_ids(&mut h.controller, list_req(&a.volume_id, &b1.snapshot_id)).await,
        Vec::<String>::new()
    );
    let missing = format!(
        "default:{}",
        controller::snapshots::ids::slot_for_name("never-made")
            .unwrap()
            .as_str()
    );
    for (source, id) in [
        ("", missing.as_str()),
        ("", "not-a-snapshot-id"),
        ("default:pvc-00000000-0000-0000-0000-000000000000", ""),
        ("garbage id", ""),
    ] {
        assert!(
            list_ids(&mut h.controller, list_req(source, id))
                .await
                .is_empty(),
            "{source:?} {id:?}"
        );
    }

    // Pages of one: every snapshot exactly once, then no token, from one listing of the RDS.
    let prints = |h: &Sandbox| {
        h.sim()
            .commands()
            .iter()
            .filter(|c| c.starts_with("/disk print"))
            .count()
    };
    let prints_before = prints(&h);
    let mut token = String::new();
    let mut paged = Vec::new();
    for _ in 0..4 {
        let page = h
            .controller
            .list_snapshots(pb::ListSnapshotsRequest {
                max_entries: 1,
                starting_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 1);
        paged.extend(
            page.entries
                .into_iter()
                .map(|e| e.snapshot.unwrap().snapshot_id),
        );
        token = page.next_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, listed);
    assert_eq!(prints(&h) - prints_before, 1, "one /disk print per walk");
    // Filtered by source, pages of one: the source's snapshots in order, again one listing.
    let prints_before = prints(&h);
    let (mut token, mut of_a_paged) = (String::new(), Vec::new());
    loop {
        let page = h
            .controller
            .list_snapshots(pb::ListSnapshotsRequest {
                max_entries: 1,
                starting_token: token.clone(),
                source_volume_id: a.volume_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 1);
        of_a_paged.extend(
            page.entries
                .into_iter()
                .map(|e| e.snapshot.unwrap().snapshot_id),
        );
        token = page.next_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        of_a_paged,
        listed
            .iter()
            .filter(|id| of_a.contains(*id))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(prints(&h) - prints_before, 1, "one /disk print per walk");
    let r = h
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            starting_token: "bogus".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(r), Code::Aborted);
    let r = h
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            max_entries: -1,
            ..Default::default()
        })
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
    h.stop().await;
}

#[tokio::test]
async fn get_snapshot_answers_for_known_ids_only() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let s = snapshot(&mut h.controller, "one", &v.volume_id).await;
    let got = h
        .controller
        .get_snapshot(pb::GetSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(got, s);
    for (id, want) in [
        ("", Code::InvalidArgument),
        ("nope", Code::NotFound),
        (
            "default:snap-00000000-0000-0000-0000-000000000000-at-0000000000",
            Code::NotFound,
        ),
        // A volume id is not a snapshot id.
        (v.volume_id.as_str(), Code::NotFound),
    ] {
        let r = h
            .controller
            .get_snapshot(pb::GetSnapshotRequest {
                snapshot_id: id.into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(r), want, "{id:?}");
    }
    h.stop().await;
}

// ---------------------------------------------------------------- DeleteSnapshot

#[tokio::test]
async fn delete_snapshot_is_idempotent_and_leaves_the_source_alone() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let s = snapshot(&mut h.controller, "gone-soon", &v.volume_id).await;
    let del = |id: &str| pb::DeleteSnapshotRequest {
        snapshot_id: id.into(),
        ..Default::default()
    };
    assert_eq!(
        code(h.controller.delete_snapshot(del("")).await),
        Code::InvalidArgument
    );
    for unknown in [
        "not-ours",
        "default:snap-00000000-0000-0000-0000-000000000000-at-0000000000",
    ] {
        assert_eq!(
            code(h.controller.delete_snapshot(del(unknown)).await),
            Code::Ok
        );
    }
    // Deleting a snapshot id never deletes a volume.
    assert_eq!(
        code(h.controller.delete_snapshot(del(&v.volume_id)).await),
        Code::Ok
    );
    assert!(sim_disk(&h, slot_of(&v.volume_id)).is_some());

    h.controller
        .delete_snapshot(del(&s.snapshot_id))
        .await
        .unwrap();
    assert!(sim_disk(&h, slot_of(&s.snapshot_id)).is_none());
    assert!(
        h.sim().files().iter().all(|f| !f.path.contains("snap-")),
        "{:?}",
        h.sim().files()
    );
    assert_eq!(
        code(h.controller.delete_snapshot(del(&s.snapshot_id)).await),
        Code::Ok
    );
    assert!(sim_disk(&h, slot_of(&v.volume_id)).is_some());
    h.stop().await;
}

/// `/file remove` failing after `/disk remove` leaves the file; the retried delete finds no
/// disk and removes the file by its name (the orphan reconciler never touches snapshot files).
#[tokio::test]
async fn a_retried_delete_removes_a_file_left_behind() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let s = snapshot(&mut h.controller, "half-deleted", &v.volume_id).await;
    h.sim()
        .run_local(&format!(
            "/disk remove [find slot={}]",
            slot_of(&s.snapshot_id)
        ))
        .unwrap();
    assert!(h.sim().files().iter().any(|f| f.path.contains("snap-")));
    h.controller
        .delete_snapshot(pb::DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        h.sim().files().iter().all(|f| !f.path.contains("snap-")),
        "{:?}",
        h.sim().files()
    );
    h.stop().await;
}

/// CoW copies are independent: deleting the source volume keeps the snapshot, which still
/// restores.
#[tokio::test]
async fn deleting_the_source_volume_keeps_its_snapshots_restorable() {
    let (mut h, store) = start_on_disk().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let path = backing(&store, "default", &v.volume_context["volumePath"]);
    write_marker(&path, b"before-delete");
    let s = snapshot(&mut h.controller, "outlives", &v.volume_id).await;
    h.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(sim_disk(&h, slot_of(&v.volume_id)).is_none());
    let ids = list_ids(&mut h.controller, list_req(&v.volume_id, "")).await;
    assert_eq!(ids, vec![s.snapshot_id.clone()]);
    let r = created(
        &mut h.controller,
        from_snapshot(&pvc_name(), 1, &s.snapshot_id),
    )
    .await;
    let restored = backing(&store, "default", &r.volume_context["volumePath"]);
    assert_eq!(read_marker(&restored, 13), b"before-delete");
    h.stop().await;
}

// ---------------------------------------------------------------- CreateVolume from a source

#[tokio::test]
async fn restore_from_a_snapshot_holds_the_snapshot_content() {
    let (mut h, store) = start_on_disk().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 2)).await;
    let src = backing(&store, "default", &v.volume_context["volumePath"]);
    write_marker(&src, b"original");
    let s = snapshot(&mut h.controller, "point-in-time", &v.volume_id).await;
    let snap_disk = sim_disk(&h, slot_of(&s.snapshot_id)).unwrap();
    assert_eq!(
        read_marker(&backing(&store, "default", &snap_disk.file_path), 8),
        b"original"
    );
    write_marker(&src, b"changed!");

    h.sim().clear_commands();
    let req = from_snapshot(&pvc_name(), 2, &s.snapshot_id);
    let source = req.volume_content_source.clone();
    let r = created(&mut h.controller, req.clone()).await;
    assert_eq!(r.content_source, source, "content_source must be echoed");
    assert_eq!(r.capacity_bytes, 2 * GIB);
    let restored = backing(&store, "default", &r.volume_context["volumePath"]);
    assert_eq!(read_marker(&restored, 8), b"original");
    assert_eq!(read_marker(&src, 8), b"changed!");
    let add = h
        .sim()
        .commands()
        .into_iter()
        .find(|c| c.starts_with("/disk add"))
        .unwrap();
    assert!(
        add.contains(&format!(
            "copy-from=[find slot={}]",
            slot_of(&s.snapshot_id)
        )) && add.contains("nvme-tcp-export=yes")
            && add.contains("file-size="),
        "{add}"
    );
    let disk = sim_disk(&h, slot_of(&r.volume_id)).unwrap();
    assert!(disk.nvme_export);
    // The snapshot itself is still not exported.
    assert!(!sim_disk(&h, slot_of(&s.snapshot_id)).unwrap().nvme_export);
    // Idempotent: the same request returns the same volume.
    let again = created(&mut h.controller, req).await;
    assert_eq!(again.volume_id, r.volume_id);
    assert_eq!(again.content_source, source);
    h.stop().await;
}

#[tokio::test]
async fn restore_size_rules() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 2)).await;
    let s = snapshot(&mut h.controller, "sized", &v.volume_id).await;

    // Larger than the snapshot: the copy is grown to the request.
    let big = created(
        &mut h.controller,
        from_snapshot(&pvc_name(), 5, &s.snapshot_id),
    )
    .await;
    assert_eq!(big.capacity_bytes, 5 * GIB);
    assert_eq!(sim_disk(&h, slot_of(&big.volume_id)).unwrap().size, 5 << 30);

    // No size, or less than the snapshot without a limit: the snapshot's size.
    let mut none = from_snapshot(&pvc_name(), 0, &s.snapshot_id);
    none.capacity_range = None;
    assert_eq!(
        created(&mut h.controller, none).await.capacity_bytes,
        2 * GIB
    );
    let small = created(
        &mut h.controller,
        from_snapshot(&pvc_name(), 1, &s.snapshot_id),
    )
    .await;
    assert_eq!(small.capacity_bytes, 2 * GIB);

    // A limit below the snapshot cannot be met: OUT_OF_RANGE, and nothing is created.
    let before = h.sim().disks().len();
    let mut capped = from_snapshot(&pvc_name(), 1, &s.snapshot_id);
    capped.capacity_range = Some(pb::CapacityRange {
        required_bytes: GIB,
        limit_bytes: GIB,
    });
    let err = h.controller.create_volume(capped).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert!(err.message().contains("source"), "{}", err.message());
    let mut clone_capped = from_volume(&pvc_name(), 1, &v.volume_id);
    clone_capped.capacity_range = Some(pb::CapacityRange {
        required_bytes: GIB,
        limit_bytes: GIB,
    });
    assert_eq!(
        code(h.controller.create_volume(clone_capped).await),
        Code::OutOfRange
    );
    assert_eq!(h.sim().disks().len(), before);
    h.stop().await;
}

#[tokio::test]
async fn a_missing_source_is_not_found_and_creates_nothing() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let before = h.sim().disks().len();
    for req in [
        from_snapshot(
            &pvc_name(),
            1,
            "default:snap-00000000-0000-0000-0000-000000000000-at-0000000000",
        ),
        from_snapshot(&pvc_name(), 1, "not-a-snapshot"),
        // A volume id is not a snapshot.
        from_snapshot(&pvc_name(), 1, &v.volume_id),
        from_volume(
            &pvc_name(),
            1,
            "default:pvc-00000000-0000-0000-0000-000000000000",
        ),
        from_volume(&pvc_name(), 1, "not-a-volume"),
    ] {
        let r = h.controller.create_volume(req.clone()).await;
        assert_eq!(code(r), Code::NotFound, "{:?}", req.volume_content_source);
    }
    let mut empty = create_req(&pvc_name(), 1);
    empty.volume_content_source = Some(pb::VolumeContentSource { r#type: None });
    assert_eq!(
        code(h.controller.create_volume(empty).await),
        Code::InvalidArgument
    );
    assert_eq!(h.sim().disks().len(), before);
    h.stop().await;
}

#[tokio::test]
async fn clone_of_a_volume_holds_its_content() {
    let (mut h, store) = start_on_disk().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let src = backing(&store, "default", &v.volume_context["volumePath"]);
    write_marker(&src, b"golden-image");
    let req = from_volume(&pvc_name(), 1, &v.volume_id);
    let c = created(&mut h.controller, req.clone()).await;
    assert_eq!(c.content_source, req.volume_content_source);
    assert_ne!(c.volume_id, v.volume_id);
    let cloned = backing(&store, "default", &c.volume_context["volumePath"]);
    assert_eq!(read_marker(&cloned, 12), b"golden-image");
    // Independent afterwards: writing the clone leaves the source as it was.
    write_marker(&cloned, b"clone-edited");
    assert_eq!(read_marker(&src, 12), b"golden-image");
    assert!(sim_disk(&h, slot_of(&c.volume_id)).unwrap().nvme_export);
    h.stop().await;
}

#[tokio::test]
async fn sources_on_another_backend_are_refused() {
    let mut h = start_with(|o| o.backends = vec!["default".into(), "rds2".into()]).await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let s = snapshot(&mut h.controller, "here", &v.volume_id).await;
    for mut req in [
        from_snapshot(&pvc_name(), 1, &s.snapshot_id),
        from_volume(&pvc_name(), 1, &v.volume_id),
    ] {
        req.parameters.insert("backend".into(), "rds2".into());
        let err = h.controller.create_volume(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("cross"), "{}", err.message());
    }
    assert!(h.sims[1].sim.disks().is_empty());
    // The snapshot name is taken on every backend: a same-named snapshot of another volume is
    // refused even if it would live elsewhere.
    let mut on2 = create_req(&pvc_name(), 1);
    on2.parameters.insert("backend".into(), "rds2".into());
    let w = created(&mut h.controller, on2).await;
    assert!(w.volume_id.starts_with("rds2:"), "{}", w.volume_id);
    let r = h
        .controller
        .create_snapshot(snap_req("here", &w.volume_id))
        .await;
    assert_eq!(code(r), Code::AlreadyExists);
    let s2 = snapshot(&mut h.controller, "there", &w.volume_id).await;
    assert!(s2.snapshot_id.starts_with("rds2:snap-"), "{s2:?}");
    let listed = list_ids(&mut h.controller, list_req("", "")).await;
    assert_eq!(listed.len(), 2);
    h.stop().await;
}

// ---------------------------------------------------------------- Orphans

/// Snapshot disks and their files are never orphan candidates, even with their source volume
/// and every PV gone and deletion enabled.
#[tokio::test]
async fn snapshots_are_never_orphans() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let s = snapshot(&mut h.controller, "precious", &v.volume_id).await;
    h.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let backend = build_backend(&h.sims[0].settings, None).unwrap();
    let backends = Arc::new(Backends::new("default", vec![backend]).unwrap());
    let clock = Arc::new(ManualClock::default());
    let config = OrphanConfig {
        grace_period: Duration::from_secs(60),
        delete: true,
        ..OrphanConfig::default()
    };
    let r =
        OrphanReconciler::new(backends, h.cluster.clone(), config, true).with_clock(clock.clone());
    for _ in 0..3 {
        let report = r.run_once().await;
        assert_eq!(report.error, None);
        assert!(
            report
                .findings
                .iter()
                .all(|f| !f.slot.starts_with("snap-") && !f.path.contains("snap-")),
            "{:?}",
            report.findings
        );
        clock.advance(Duration::from_secs(120));
    }
    let disk = sim_disk(&h, slot_of(&s.snapshot_id)).unwrap();
    assert!(h.sim().files().iter().any(|f| f.path == disk.file_path));
    h.stop().await;
}

// ---------------------------------------------------------------- remaining sanity shapes

/// csi-sanity: "should succeed when creating snapshot with maximum-length name" (128 characters),
/// and "check the presence of new snapshots in the snapshot list" (and their absence once deleted).
#[tokio::test]
async fn a_maximum_length_name_works_and_lists_track_creation_and_deletion() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let before = list_ids(&mut h.controller, list_req("", "")).await;
    assert!(before.is_empty(), "{before:?}");
    let name = "s".repeat(128);
    let s = snapshot(&mut h.controller, &name, &v.volume_id).await;
    assert_eq!(snapshot(&mut h.controller, &name, &v.volume_id).await, s);
    assert_eq!(
        list_ids(&mut h.controller, list_req("", "")).await,
        vec![s.snapshot_id.clone()]
    );
    h.controller
        .delete_snapshot(pb::DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        list_ids(&mut h.controller, list_req("", ""))
            .await
            .is_empty()
    );
    // csi-sanity: "should fail when the starting_token is greater than total number of
    // snapshots" sends a number it made up.
    let r = h
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            starting_token: "10".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(r), Code::Aborted);
    h.stop().await;
}

// ---------------------------------------------------------------- faults

/// The copy happens but its reply is lost (connection dropped after apply): the client resolves
/// the ambiguity with a print instead of a second `/disk add`, and the snapshot it reports is the
/// one made, lineage and all. Dropped before apply: the add is retried and succeeds. Neither
/// leaves a second copy.
#[tokio::test]
async fn a_lost_reply_to_the_copy_is_resolved_without_a_second_copy() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    h.sim()
        .faults()
        .drop_next_at("/disk add", rds_sim::Timing::AfterApply);
    let s = snapshot(&mut h.controller, "lost-reply", &v.volume_id).await;
    assert_eq!(s.source_volume_id, v.volume_id);
    let disk = sim_disk(&h, slot_of(&s.snapshot_id)).unwrap();
    assert!(!disk.nvme_export);
    assert_eq!(
        snapshot(&mut h.controller, "lost-reply", &v.volume_id).await,
        s
    );

    h.sim()
        .faults()
        .drop_next_at("/disk add", rds_sim::Timing::BeforeApply);
    let r = created(
        &mut h.controller,
        from_snapshot(&pvc_name(), 1, &s.snapshot_id),
    )
    .await;
    assert!(sim_disk(&h, slot_of(&r.volume_id)).unwrap().nvme_export);
    let snaps = h
        .sim()
        .disks()
        .iter()
        .filter(|d| d.slot.starts_with("snap-"))
        .count();
    assert_eq!(snaps, 1);
    assert_eq!(h.sim().disks().len(), 3);
    // `/disk add`s that create `slot` (a `copy-from=[find slot=…]` token ends in `]`).
    let adds = |slot: &str| {
        let target = format!("slot={slot}");
        h.sim()
            .commands()
            .iter()
            .filter(|c| c.starts_with("/disk add") && c.split_whitespace().any(|t| t == target))
            .count()
    };
    // One copy sent for the snapshot (the lost reply was resolved by a print), two for the
    // restore (the first never arrived).
    assert_eq!(adds(slot_of(&s.snapshot_id)), 1);
    assert_eq!(adds(slot_of(&r.volume_id)), 2);
    h.stop().await;
}

/// Concurrent CreateSnapshot calls for one name (a CO that lost track, or two controllers)
/// make one copy and all answer with it.
#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_copy() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let mut calls = Vec::new();
    for _ in 0..6 {
        let mut c = h.controller.clone();
        let src = v.volume_id.clone();
        calls.push(tokio::spawn(async move {
            snapshot(&mut c, "at-once", &src).await
        }));
    }
    // A second controller on the same RDS races the first one's lock.
    let settings = vec![h.sims[0].settings.clone()];
    let mut other = Sandbox::serve(tempfile::tempdir().unwrap(), vec![], &settings, None)
        .await
        .unwrap();
    let theirs = snapshot(&mut other.controller, "at-once", &v.volume_id).await;
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| *a == theirs),
        "{answers:?} {theirs:?}"
    );
    let copies = h
        .sim()
        .disks()
        .iter()
        .filter(|d| d.slot.starts_with("snap-"))
        .count();
    assert_eq!(copies, 1);
    other.stop().await;
    h.stop().await;
}
