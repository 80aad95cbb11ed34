//! NodePublishVolume and NodeUnpublishVolume.
//!
//! Filesystem volumes are bind mounts of the staging mount (made read-only, nosuid, nodev and —
//! unless the StorageClass allows exec — noexec by a bind remount, because the kernel ignores
//! flags on the bind itself). Block volumes get a device node made with mknod from the
//! major:minor sysfs reports for the NQN's device: bind-mounting /dev caused mount storms in the
//! earlier driver. Both are idempotent, and unpublish removes only the exact target path.

use std::path::PathBuf;

use csi::v1 as pb;
use mount::{DevNum, MountOptions, OptionPolicy};
use nvme::Nqn;

use super::context::{self, Access, required};
use super::state::PublishRecord;
use super::{Inner, mount_err, nvme_err, sysio};
use crate::error::{DriverError, Result};
use crate::params;

impl Inner {
    /// The volume's NQN: the staged record wins, then volume_context, then the volume id.
    fn nqn_for(
        &self,
        volume_id: &str,
        ctx: &std::collections::HashMap<String, String>,
    ) -> Result<Nqn> {
        if let Some(r) = self.state.get(volume_id) {
            return r.nqn();
        }
        if let Some(n) = ctx.get(params::C_NQN) {
            return Nqn::new(n.as_str())
                .map_err(|e| DriverError::InvalidArgument(format!("volume_context nqn: {e}")));
        }
        context::nqn_of_volume(volume_id)
    }

    pub(crate) async fn publish(
        &self,
        req: pb::NodePublishVolumeRequest,
    ) -> Result<pb::NodePublishVolumeResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let staging = PathBuf::from(required("staging_target_path", &req.staging_target_path)?);
        let target = PathBuf::from(required("target_path", &req.target_path)?);
        let cap = context::capability(req.volume_capability.as_ref())?;
        let read_only = req.readonly || cap.read_only_mode;
        self.wait_ready().await?;
        let _guard = self.locks.lock(volume_id).await;
        let nqn = self.nqn_for(volume_id, &req.volume_context)?;
        let record = self.state.get(volume_id);

        match &cap.access {
            Access::Block => {
                let device = self
                    .initiator
                    .resolve_verified(&nqn)
                    .await
                    .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?
                    .ok_or_else(|| {
                        DriverError::FailedPrecondition(format!(
                            "no block device for {nqn} on this node (was NodeStageVolume called?)"
                        ))
                    })?;
                let (major, minor) = device.dev.ok_or_else(|| {
                    DriverError::Internal(format!("sysfs shows no major:minor for {}", device.name))
                })?;
                self.mounter
                    .publish_block(DevNum { major, minor }, &target, read_only)
                    .await
                    .map_err(|e| publish_err(&target, e))?;
            }
            Access::Filesystem { fs, mount_flags } => {
                let allow_exec = match &record {
                    Some(r) => r.allow_exec,
                    None => match req.volume_context.get(params::C_ALLOW_EXEC) {
                        Some(v) => params::parse_bool(params::C_ALLOW_EXEC, v)?,
                        None => false,
                    },
                };
                let full =
                    mount::build_mount_options(mount_flags, Some(*fs), OptionPolicy { allow_exec })
                        .map_err(|e| mount_err("invalid mount options", e))?;
                // Filesystem data options were applied at stage; a bind takes per-mount flags.
                let mut opts = MountOptions {
                    flags: full.flags,
                    data: Vec::new(),
                };
                opts.flags.read_only = read_only;
                let table = self
                    .mounter
                    .mount_table()
                    .await
                    .map_err(|e| mount_err("reading the mount table", e))?;
                if !table.is_mount_point(&staging) {
                    return Err(DriverError::FailedPrecondition(format!(
                        "staging path {} is not mounted (was NodeStageVolume called?)",
                        staging.display()
                    )));
                }
                if let Some(r) = &record {
                    // A stale staging mount would be published as a dead filesystem.
                    self.recover_with_retries(r).await.map_err(|e| {
                        DriverError::Internal(format!("stale staging mount not recovered: {e}"))
                    })?;
                }
                if !table.is_mount_point(&target) {
                    sysio::mkdir(&target, self.cfg.deadlines.syscall).await?;
                }
                self.mounter
                    .bind_mount(&staging, &target, &opts)
                    .await
                    .map_err(|e| publish_err(&target, e))?;
            }
        }
        if record.is_some() {
            let (id, t) = (volume_id.to_string(), target.clone());
            let res = self
                .state
                .update(move |m| {
                    if let Some(r) = m.get_mut(&id) {
                        r.published.insert(
                            t,
                            PublishRecord {
                                read_only,
                                needs_restart: false,
                            },
                        );
                    }
                })
                .await;
            if let Err(e) = res {
                tracing::error!(volume = volume_id, error = %e, "could not persist publish target");
            }
        }
        tracing::info!(volume = volume_id, target = %target.display(), read_only, "published");
        Ok(pb::NodePublishVolumeResponse {})
    }

    pub(crate) async fn unpublish(
        &self,
        req: pb::NodeUnpublishVolumeRequest,
    ) -> Result<pb::NodeUnpublishVolumeResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let target = PathBuf::from(required("target_path", &req.target_path)?);
        self.wait_ready().await?;
        let _guard = self.locks.lock(volume_id).await;
        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        if table.is_mount_point(&target) {
            self.mounter
                .unmount(&target, false)
                .await
                .map_err(|e| mount_err(&format!("unmounting {}", target.display()), e))?;
        }
        match self.mounter.remove_target(&target).await {
            Ok(()) => {}
            // Gone between the check and the unlink: the goal is reached.
            Err(mount::Error::Syscall { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            // Not empty after the unmount: whatever is in there was never on the volume; leave it.
            Err(mount::Error::Syscall {
                op: "rmdir",
                source,
                ..
            }) => {
                tracing::warn!(target = %target.display(), error = %source, "target directory left in place");
            }
            Err(e) => return Err(mount_err(&format!("removing {}", target.display()), e)),
        }
        if self.state.get(volume_id).is_some() {
            let id = volume_id.to_string();
            let t = target.clone();
            if let Err(e) = self
                .state
                .update(move |m| {
                    if let Some(r) = m.get_mut(&id) {
                        r.published.remove(&t);
                    }
                })
                .await
            {
                tracing::error!(volume = volume_id, error = %e, "could not persist unpublish");
            }
        }
        Ok(pb::NodeUnpublishVolumeResponse {})
    }
}

/// A target already holding something else is the CSI "published with incompatible
/// parameters" case.
fn publish_err(target: &std::path::Path, e: mount::Error) -> DriverError {
    match e {
        mount::Error::Target { .. } => {
            DriverError::AlreadyExists(format!("cannot publish at {}: {e}", target.display()))
        }
        other => mount_err(&format!("publishing at {}", target.display()), other),
    }
}
