//! CreateSnapshot, DeleteSnapshot, ListSnapshots, GetSnapshot, and the content source of a
//! CreateVolume (restore from a snapshot, clone of a volume).
//!
//! A snapshot is a `/disk add type=file copy-from=[find slot=<volume>]` without an NVMe/TCP
//! export: a copy-on-write copy on the RDS's Btrfs pool, independent of its source once made
//! (deleting the volume leaves the snapshot intact, and the other way round). The copy is
//! complete when the command returns, so `ready_to_use` is always true.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use csi::v1 as pb;
use csi::v1::volume_content_source::Type as SourceType;
use routeros::{DiskAdd, FilePath, Slot};
use tracing::{info, warn};

use super::ids::{self, SNAP_PREFIX, SnapshotId};
use super::lineage::{self, Lineage};
use crate::paging;
use fencing::AttachmentManager;
use vocab::backend::{Backend, Backends};
use vocab::error::{DriverError, Result};
use vocab::volume_id::VolumeId;

/// Token prefix for ListSnapshots paging; anything else is rejected as ABORTED (CSI spec).
/// Lock keys of snapshots never collide with volume ids (`<backend>:pvc-…`).
const LOCK_PREFIX: &str = "snapshot/";
/// Parameters the sidecars may add (`--extra-create-metadata`); nothing else is understood.
const K8S_PREFIX: &str = "csi.storage.k8s.io/";

pub struct SnapshotService {
    backends: Arc<Backends>,
    /// Owner of the controller's one per-volume lock (`fencing::manager` documents the order).
    fencing: Arc<AttachmentManager>,
    /// Listings kept for paged ListSnapshots walks (see `paging`): one RDS read per walk.
    listings: paging::Snapshots<(String, pb::Snapshot)>,
}

/// The disk a new volume is copied from, and its size.
#[derive(Debug, Clone)]
pub struct CopySource {
    pub slot: Slot,
    pub bytes: u64,
}

/// Size of a volume made from a source of `source` bytes when the request alone would allocate
/// `allocated`: never smaller than the source (a copy cannot shrink), larger when asked. A limit
/// below the source cannot be met: OUT_OF_RANGE, as the CSI spec names that case.
pub fn restore_size(allocated: u64, source: u64, range: Option<&pb::CapacityRange>) -> Result<u64> {
    let limit = range.map_or(0, |r| r.limit_bytes);
    if limit > 0 && source > limit as u64 {
        return Err(DriverError::OutOfRange(format!(
            "the source is {source} bytes, more than limit_bytes {limit}; a volume made from it cannot be smaller than its source"
        )));
    }
    Ok(allocated.max(source))
}

impl SnapshotService {
    pub fn new(backends: Arc<Backends>, fencing: Arc<AttachmentManager>) -> Self {
        SnapshotService {
            backends,
            fencing,
            listings: paging::Snapshots::default(),
        }
    }

    fn default_backend(&self) -> &str {
        self.backends.default_name()
    }

    pub async fn create(
        &self,
        req: pb::CreateSnapshotRequest,
    ) -> Result<pb::CreateSnapshotResponse> {
        if req.name.is_empty() {
            return Err(DriverError::InvalidArgument(
                "snapshot name is required".into(),
            ));
        }
        if req.source_volume_id.is_empty() {
            return Err(DriverError::InvalidArgument(
                "source volume ID is required".into(),
            ));
        }
        // No VolumeSnapshotClass parameter means anything yet: a typo must not pass unnoticed.
        let mut unknown: Vec<&str> = req
            .parameters
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with(K8S_PREFIX))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(DriverError::InvalidArgument(format!(
                "unknown VolumeSnapshotClass parameters {unknown:?}; this driver takes none"
            )));
        }
        let slot = ids::slot_for_name(&req.name).map_err(|e| {
            DriverError::Internal(format!("deriving a snapshot slot for {:?}: {e}", req.name))
        })?;
        // Source volume first, then the snapshot: a DeleteVolume of the source waits for the
        // copy, and a copy never starts on a volume being deleted.
        let _source_guard = self.fencing.locks().lock(&req.source_volume_id).await;
        let _guard = self
            .fencing
            .locks()
            .lock(&format!("{LOCK_PREFIX}{}", slot.as_str()))
            .await;
        // The name is the idempotency key on every appliance, not only the source's.
        if let Some((backend, disk)) = self.find(&slot).await? {
            let id = SnapshotId {
                backend: backend.name.clone(),
                slot,
            };
            let snapshot = self.existing_for(&id, &backend, &disk, &req.source_volume_id)?;
            info!(snapshot = %id, name = %req.name, "snapshot already existed from the same source");
            return Ok(pb::CreateSnapshotResponse {
                snapshot: Some(snapshot),
            });
        }
        let source =
            VolumeId::parse(&req.source_volume_id, self.default_backend()).map_err(|why| {
                DriverError::NotFound(format!(
                    "source volume {:?} not found: {why}",
                    req.source_volume_id
                ))
            })?;
        let backend = self.backends.get(&source.backend).ok_or_else(|| {
            DriverError::NotFound(format!(
                "source volume {source} not found: backend {:?} is not configured",
                source.backend
            ))
        })?;
        let src_disk = backend
            .client
            .get_disk(&source.slot)
            .await
            .map_err(|e| DriverError::rds(format!("looking up source volume {source}"), e))?
            .ok_or_else(|| {
                DriverError::NotFound(format!(
                    "source volume {source} not found on backend {}",
                    backend.name
                ))
            })?;
        let dir = vocab::ownership::owned(backend, &src_disk)
            .map_err(|why| DriverError::FailedPrecondition(format!("{why}; refusing to copy it")))?
            .dir;
        let id = SnapshotId {
            backend: backend.name.clone(),
            slot: slot.clone(),
        };
        let file_path = dir
            .join(&lineage::file_name(&slot, &source.slot, SystemTime::now()))
            .map_err(|e| DriverError::Internal(format!("snapshot file path for {id}: {e}")))?;
        let spec = DiskAdd {
            slot,
            file_path: file_path.clone(),
            file_size: None,
            nvme: None,
            copy_from: Some(source.slot.clone()),
        };
        info!(snapshot = %id, name = %req.name, source = %source, path = file_path.as_str(), "creating snapshot");
        let outcome = backend.client.create_disk(&spec).await.map_err(|e| {
            DriverError::rds(format!("copying volume {source} into snapshot {id}"), e)
        })?;
        let snapshot = if outcome.created {
            snapshot_of(&id, &outcome.disk, Some(&source))
        } else {
            // Made by an attempt whose answer was lost: it must still be from this source.
            self.existing_for(&id, backend, &outcome.disk, &req.source_volume_id)?
        };
        Ok(pb::CreateSnapshotResponse {
            snapshot: Some(snapshot),
        })
    }

    /// The snapshot disk under `slot` on whichever backend has it.
    async fn find(&self, slot: &Slot) -> Result<Option<(Arc<Backend>, routeros::Disk)>> {
        for backend in self.backends.all() {
            let disk = backend.client.get_disk(slot).await.map_err(|e| {
                DriverError::rds(
                    format!(
                        "looking up snapshot {} on backend {}",
                        slot.as_str(),
                        backend.name
                    ),
                    e,
                )
            })?;
            if let Some(disk) = disk {
                return Ok(Some((backend.clone(), disk)));
            }
        }
        Ok(None)
    }

    /// An existing snapshot answers a CreateSnapshot only if it was cut from the requested
    /// volume. Missing lineage cannot prove otherwise, so it is accepted (CSI wants a retry to
    /// succeed) and the requested source is reported.
    fn existing_for(
        &self,
        id: &SnapshotId,
        backend: &Backend,
        disk: &routeros::Disk,
        requested: &str,
    ) -> Result<pb::Snapshot> {
        if managed_snapshot(backend, disk).is_none() {
            return Err(DriverError::AlreadyExists(format!(
                "snapshot slot {} on backend {} is taken by a disk this driver did not make (type {:?}, file {:?}, exported {})",
                id.slot.as_str(),
                backend.name,
                disk.kind,
                disk.file_path,
                disk.nvme_export
            )));
        }
        let recorded = recorded_lineage(disk);
        let wanted = VolumeId::parse(requested, self.default_backend()).ok();
        match (&recorded.source, &wanted) {
            (Some(src), Some(w)) if w.backend == id.backend && src == &w.slot => {
                Ok(snapshot_of(id, disk, wanted.as_ref()))
            }
            (Some(src), _) => Err(DriverError::AlreadyExists(format!(
                "snapshot {id} already exists from volume {}:{}, not from {requested:?}; use another name",
                id.backend,
                src.as_str()
            ))),
            // Not even an id of ours: this snapshot cannot have been cut from it.
            (None, None) => Err(DriverError::AlreadyExists(format!(
                "snapshot {id} already exists and {requested:?} is not a volume of this driver; use another name"
            ))),
            (None, Some(_)) => {
                warn!(snapshot = %id, requested, "snapshot records no source; accepting the retry as from the requested volume");
                Ok(snapshot_of(id, disk, wanted.as_ref()))
            }
        }
    }

    pub async fn delete(
        &self,
        req: pb::DeleteSnapshotRequest,
    ) -> Result<pb::DeleteSnapshotResponse> {
        if req.snapshot_id.is_empty() {
            return Err(DriverError::InvalidArgument(
                "snapshot ID is required".into(),
            ));
        }
        let id = match SnapshotId::parse(&req.snapshot_id, self.default_backend()) {
            Ok(id) => id,
            Err(why) => {
                info!(snapshot = %req.snapshot_id, %why, "delete of a snapshot id that is not ours: nothing to do");
                return Ok(pb::DeleteSnapshotResponse {});
            }
        };
        let backend = self.backends.get(&id.backend).ok_or_else(|| {
            DriverError::FailedPrecondition(format!(
                "snapshot {id} lives on backend {:?}, which is not configured in this controller; configured: {}",
                id.backend,
                self.backends.names().join(", ")
            ))
        })?;
        let _guard = self
            .fencing
            .locks()
            .lock(&format!("{LOCK_PREFIX}{}", id.slot.as_str()))
            .await;
        let disk = backend.client.get_disk(&id.slot).await.map_err(|e| {
            DriverError::rds(format!("looking up snapshot {id} before deleting it"), e)
        })?;
        let Some(disk) = disk else {
            self.sweep_files(backend, &id).await?;
            return Ok(pb::DeleteSnapshotResponse {});
        };
        if managed_snapshot(backend, &disk).is_none() {
            return Err(DriverError::FailedPrecondition(format!(
                "disk {} on backend {} is not a snapshot this driver made (type {:?}, file {:?}, exported {}); refusing to delete it",
                id.slot.as_str(),
                backend.name,
                disk.kind,
                disk.file_path,
                disk.nvme_export
            )));
        }
        let outcome = backend
            .client
            .delete_found_disk(&disk)
            .await
            .map_err(|e| DriverError::rds(format!("deleting snapshot {id}"), e))?;
        if let Some(file) = &outcome.leftover_file {
            warn!(snapshot = %id, file, "snapshot disk removed but its file could not be; a retried DeleteSnapshot removes it");
        }
        Ok(pb::DeleteSnapshotResponse {})
    }

    /// The disk is gone; a file left by an earlier delete whose file removal failed is removed
    /// now. The orphan reconciler never touches `snap-` files, so this is their only cleanup.
    async fn sweep_files(&self, backend: &Backend, id: &SnapshotId) -> Result<()> {
        let plain = format!("{}.img", id.slot.as_str());
        let tagged = format!("{}.", id.slot.as_str());
        for dir in &backend.allowed_paths {
            let files = backend.client.list_files(dir).await.map_err(|e| {
                DriverError::rds(format!("looking for files left by snapshot {id}"), e)
            })?;
            for f in files {
                let name = f.name.rsplit('/').next().unwrap_or(&f.name);
                let ours = name == plain || (name.starts_with(&tagged) && name.ends_with(".img"));
                let is_dir = f.kind.as_deref().is_some_and(|k| k.contains("directory"));
                if !ours || is_dir {
                    continue;
                }
                let Ok(path) = FilePath::new(&f.name) else {
                    continue;
                };
                info!(snapshot = %id, file = path.as_str(), "removing the file a deleted snapshot left behind");
                backend.client.remove_file(&path).await.map_err(|e| {
                    DriverError::rds(
                        format!("removing file {} of snapshot {id}", path.as_str()),
                        e,
                    )
                })?;
            }
        }
        Ok(())
    }

    pub async fn get(&self, req: pb::GetSnapshotRequest) -> Result<pb::GetSnapshotResponse> {
        if req.snapshot_id.is_empty() {
            return Err(DriverError::InvalidArgument(
                "snapshot ID is required".into(),
            ));
        }
        let id = SnapshotId::parse(&req.snapshot_id, self.default_backend()).map_err(|why| {
            DriverError::NotFound(format!("snapshot {:?} not found: {why}", req.snapshot_id))
        })?;
        let snapshot = self
            .lookup(&id)
            .await?
            .ok_or_else(|| DriverError::NotFound(format!("snapshot {id} not found")))?;
        Ok(pb::GetSnapshotResponse {
            snapshot: Some(snapshot),
        })
    }

    /// One snapshot by id; `None` when its backend is not configured or it does not exist.
    async fn lookup(&self, id: &SnapshotId) -> Result<Option<pb::Snapshot>> {
        let Some(backend) = self.backends.get(&id.backend) else {
            return Ok(None);
        };
        let disk = backend
            .client
            .get_disk(&id.slot)
            .await
            .map_err(|e| DriverError::rds(format!("looking up snapshot {id}"), e))?;
        Ok(disk
            .filter(|d| managed_snapshot(backend, d).is_some())
            .map(|d| snapshot_of(id, &d, None)))
    }

    pub async fn list(&self, req: pb::ListSnapshotsRequest) -> Result<pb::ListSnapshotsResponse> {
        let token = paging::parse_token(req.max_entries, &req.starting_token)?;
        let after = match token {
            None => None,
            Some(t) => Some(
                SnapshotId::parse(t.after, self.default_backend())
                    .map_err(|why| paging::invalid_token(&req.starting_token, why))?
                    .to_string(),
            ),
        };
        let token = token.zip(after.as_deref()).map(|(t, after)| paging::Token {
            after,
            snapshot: t.snapshot,
        });
        // A filter naming something that cannot be ours matches nothing (not an error: CSI
        // lists are queries).
        let source = if req.source_volume_id.is_empty() {
            None
        } else {
            match VolumeId::parse(&req.source_volume_id, self.default_backend()) {
                Ok(v) => Some(v.to_string()),
                Err(_) => return Ok(empty_list()),
            }
        };
        let matches = |(_, s): &(String, pb::Snapshot)| {
            source
                .as_ref()
                .is_none_or(|want| s.source_volume_id == *want)
        };
        let (page, next_token) = if !req.snapshot_id.is_empty() {
            let Ok(id) = SnapshotId::parse(&req.snapshot_id, self.default_backend()) else {
                return Ok(empty_list());
            };
            let mut one = Vec::new();
            if let Some(s) = self.lookup(&id).await? {
                one.push((id.to_string(), s));
            }
            one.retain(|e| matches(e));
            let (page, next) = paging::page(
                &one,
                |(id, _)| id.clone(),
                after.as_deref(),
                req.max_entries,
            );
            (page.to_vec(), next)
        } else {
            paging::walk_where(
                &self.listings,
                token,
                req.max_entries,
                |(id, _): &(String, pb::Snapshot)| id.clone(),
                matches,
                || self.all_snapshots(),
            )
            .await?
        };
        Ok(pb::ListSnapshotsResponse {
            entries: page
                .into_iter()
                .map(|(_, s)| pb::list_snapshots_response::Entry { snapshot: Some(s) })
                .collect(),
            next_token,
        })
    }

    /// Every snapshot of every backend, sorted by id (the order pages are cut in).
    async fn all_snapshots(&self) -> Result<Vec<(String, pb::Snapshot)>> {
        let prefix = Slot::new(SNAP_PREFIX)
            .map_err(|e| DriverError::Internal(format!("snapshot slot prefix: {e}")))?;
        let mut all = Vec::new();
        for backend in self.backends.all() {
            let disks = backend.client.list_disks(&prefix).await.map_err(|e| {
                DriverError::rds(format!("listing snapshots on backend {}", backend.name), e)
            })?;
            for disk in disks {
                let Ok(id) = SnapshotId::parse(&disk.slot, &backend.name) else {
                    continue;
                };
                if managed_snapshot(backend, &disk).is_some() {
                    all.push((id.to_string(), snapshot_of(&id, &disk, None)));
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    /// Resolves a CreateVolume content source to the disk to copy. A source that does not exist
    /// is NOT_FOUND (CSI); one on another appliance than the new volume cannot be copied.
    pub async fn copy_source(
        &self,
        source: &pb::VolumeContentSource,
        target: &Backend,
    ) -> Result<CopySource> {
        let (what, raw, backend_name, slot) = match &source.r#type {
            None => {
                return Err(DriverError::InvalidArgument(
                    "volume_content_source names neither a snapshot nor a volume".into(),
                ));
            }
            Some(SourceType::Snapshot(s)) => {
                if s.snapshot_id.is_empty() {
                    return Err(DriverError::InvalidArgument(
                        "volume_content_source.snapshot.snapshot_id is required".into(),
                    ));
                }
                let id =
                    SnapshotId::parse(&s.snapshot_id, self.default_backend()).map_err(|why| {
                        DriverError::NotFound(format!(
                            "source snapshot {:?} not found: {why}",
                            s.snapshot_id
                        ))
                    })?;
                ("snapshot", s.snapshot_id.as_str(), id.backend, id.slot)
            }
            Some(SourceType::Volume(v)) => {
                if v.volume_id.is_empty() {
                    return Err(DriverError::InvalidArgument(
                        "volume_content_source.volume.volume_id is required".into(),
                    ));
                }
                let id = VolumeId::parse(&v.volume_id, self.default_backend()).map_err(|why| {
                    DriverError::NotFound(format!(
                        "source volume {:?} not found: {why}",
                        v.volume_id
                    ))
                })?;
                ("volume", v.volume_id.as_str(), id.backend, id.slot)
            }
        };
        let backend = self.backends.get(&backend_name).ok_or_else(|| {
            DriverError::NotFound(format!(
                "source {what} {raw:?} not found: backend {backend_name:?} is not configured"
            ))
        })?;
        if backend.name != target.name {
            return Err(DriverError::InvalidArgument(format!(
                "source {what} {raw:?} is on backend {:?} but the new volume would be on {:?}; copies cannot cross appliances, so use a StorageClass with backend {:?}",
                backend.name, target.name, backend.name
            )));
        }
        let disk = backend
            .client
            .get_disk(&slot)
            .await
            .map_err(|e| DriverError::rds(format!("looking up source {what} {raw:?}"), e))?
            .ok_or_else(|| {
                DriverError::NotFound(format!(
                    "source {what} {raw:?} not found on backend {}",
                    backend.name
                ))
            })?;
        let managed = if what == "volume" {
            vocab::ownership::owned(backend, &disk).map(|_| ())
        } else {
            managed_snapshot(backend, &disk).map(|_| ()).ok_or_else(|| {
                vocab::ownership::Foreign(
                    "it is not a snapshot disk under the driver's volume paths".into(),
                )
            })
        };
        if let Err(why) = managed {
            return Err(DriverError::InvalidArgument(format!(
                "source {what} {raw:?} cannot be copied: {why}"
            )));
        }
        let bytes = disk.capacity_bytes().ok_or_else(|| {
            DriverError::Internal(format!(
                "RDS did not report a size for source {what} {raw:?}"
            ))
        })?;
        Ok(CopySource { slot, bytes })
    }
}

fn empty_list() -> pb::ListSnapshotsResponse {
    pb::ListSnapshotsResponse {
        entries: vec![],
        next_token: String::new(),
    }
}

/// The directory of a file disk under the backend's allowed paths (where its copies go too).
fn managed_dir(backend: &Backend, disk: &routeros::Disk) -> Option<FilePath> {
    if disk.kind.as_deref() != Some("file") {
        return None;
    }
    let path = FilePath::new(disk.file_path.as_deref()?).ok()?;
    let (dir, _) = path.as_str().rsplit_once('/')?;
    let dir = FilePath::new(dir).ok()?;
    backend.allows(&dir).then_some(dir)
}

/// A snapshot disk as this driver makes them: a file disk under the volume paths, not exported.
fn managed_snapshot(backend: &Backend, disk: &routeros::Disk) -> Option<FilePath> {
    if disk.nvme_export || !ids::is_snapshot_slot(&disk.slot) {
        return None;
    }
    managed_dir(backend, disk)
}

fn recorded_lineage(disk: &routeros::Disk) -> Lineage {
    disk.file_path
        .as_deref()
        .map(|p| lineage::parse(&disk.slot, p))
        .unwrap_or_default()
}

/// The CSI view of a snapshot disk. The source is the recorded one, else `fallback` (the
/// requested source of a retry); the creation time is the recorded one, else the Unix epoch,
/// which is at least the same on every call.
fn snapshot_of(
    id: &SnapshotId,
    disk: &routeros::Disk,
    fallback: Option<&VolumeId>,
) -> pb::Snapshot {
    let l = recorded_lineage(disk);
    let source_volume_id = match (&l.source, fallback) {
        (Some(slot), _) => VolumeId {
            backend: id.backend.clone(),
            slot: slot.clone(),
        }
        .to_string(),
        (None, Some(v)) => v.to_string(),
        (None, None) => String::new(),
    };
    let created = l.created.unwrap_or(UNIX_EPOCH);
    let secs = created
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    pb::Snapshot {
        size_bytes: disk.capacity_bytes().unwrap_or(0).min(i64::MAX as u64) as i64,
        snapshot_id: id.to_string(),
        source_volume_id,
        creation_time: Some(prost_types::Timestamp {
            seconds: secs.min(i64::MAX as u64) as i64,
            nanos: 0,
        }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(required: i64, limit: i64) -> Option<pb::CapacityRange> {
        Some(pb::CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        })
    }

    #[test]
    fn restored_volumes_are_never_smaller_than_their_source() {
        const G: u64 = 1 << 30;
        assert_eq!(restore_size(G, 5 * G, None).unwrap(), 5 * G);
        assert_eq!(
            restore_size(8 * G, 5 * G, range(8 * G as i64, 0).as_ref()).unwrap(),
            8 * G
        );
        assert_eq!(
            restore_size(5 * G, 5 * G, range(5 * G as i64, 5 * G as i64).as_ref()).unwrap(),
            5 * G
        );
        assert!(matches!(
            restore_size(G, 5 * G, range(G as i64, 2 * G as i64).as_ref()),
            Err(DriverError::OutOfRange(_))
        ));
    }
}
