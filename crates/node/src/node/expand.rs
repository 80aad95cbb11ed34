//! NodeExpandVolume: make the kernel see the grown namespace, grow the filesystem, and answer
//! with the size actually measured (echoing the request would report a size the kernel may not
//! see yet).

use std::path::PathBuf;

use csi::v1 as pb;
use csi::v1::volume_capability::AccessType;
use mount::FsType;

use super::context::{self, required};
use super::{Inner, mount_err, nvme_err, sysio};
use vocab::error::{DriverError, Result};

impl Inner {
    pub(crate) async fn expand(
        &self,
        req: pb::NodeExpandVolumeRequest,
    ) -> Result<pb::NodeExpandVolumeResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let path = PathBuf::from(required("volume_path", &req.volume_path)?);
        let wanted = req
            .capacity_range
            .as_ref()
            .map_or(0, |c| c.required_bytes.max(0));
        let wanted = u64::try_from(wanted).unwrap_or(0);
        self.wait_ready().await?;
        let _guard = self.locks.lock(volume_id).await;
        let record = self.state.get(volume_id);
        let nqn = match &record {
            Some(r) => r.nqn()?,
            None => context::nqn_of_volume(volume_id)?,
        };
        let block = matches!(
            req.volume_capability
                .as_ref()
                .and_then(|c| c.access_type.as_ref()),
            Some(AccessType::Block(_))
        ) || record.as_ref().is_some_and(|r| r.is_block());

        let device = self
            .initiator
            .resolve_verified(&nqn)
            .await
            .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?
            .ok_or_else(|| {
                DriverError::FailedPrecondition(format!(
                    "volume {volume_id} has no NVMe device on this node (not staged?)"
                ))
            })?;
        let fs = if block {
            None
        } else {
            let table = self
                .mounter
                .mount_table()
                .await
                .map_err(|e| mount_err("reading the mount table", e))?;
            let entry = table.top_mount_at(&path).ok_or_else(|| {
                DriverError::NotFound(format!("volume path {} is not mounted", path.display()))
            })?;
            let fs: FsType = entry.fs_type.parse().map_err(|_| {
                DriverError::FailedPrecondition(format!(
                    "{} holds a {} filesystem, which this driver cannot grow",
                    path.display(),
                    entry.fs_type
                ))
            })?;
            Some(fs)
        };

        let live: Vec<String> = device
            .controllers
            .iter()
            .filter(|c| c.state.is_live())
            .map(|c| c.name.clone())
            .collect();
        if live.is_empty() {
            return Err(DriverError::Unavailable(format!(
                "no live controller for {nqn} to rescan; retry when it has reconnected"
            )));
        }
        for ctrl in &live {
            sysio::rescan_controller(&self.cfg.sysfs_root, ctrl, self.cfg.deadlines.sysfs).await?;
        }
        let size = self.settled_size(&device.name, wanted).await?;
        if size < wanted {
            return Err(DriverError::Unavailable(format!(
                "{} is still {size} bytes after a namespace rescan, {wanted} requested; the target has not grown it yet",
                device.path.display()
            )));
        }
        if let Some(fs) = fs {
            mount::format::resize(&*self.runner, fs, &device.path, &path, &self.cfg.format)
                .await
                .map_err(|e| {
                    mount_err(
                        &format!("growing the {fs} filesystem on {}", path.display()),
                        e,
                    )
                })?;
        }
        tracing::info!(volume = volume_id, device = %device.path.display(), size, "expanded");
        Ok(pb::NodeExpandVolumeResponse {
            capacity_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        })
    }

    /// The rescan is asynchronous in the kernel: poll the size until it reaches `wanted` or the
    /// settle deadline passes, then report what is there.
    async fn settled_size(&self, name: &str, wanted: u64) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + self.cfg.deadlines.expand_settle;
        loop {
            let size =
                sysio::device_size(&self.cfg.sysfs_root, name, self.cfg.deadlines.sysfs).await?;
            if size >= wanted || tokio::time::Instant::now() >= deadline {
                return Ok(size);
            }
            tokio::time::sleep(self.cfg.deadlines.device_poll).await;
        }
    }
}
