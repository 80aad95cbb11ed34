//! NodePublishVolume and NodeUnpublishVolume.
//!
//! Filesystem volumes are bind mounts of the staging mount (made read-only, nosuid, nodev and —
//! unless the StorageClass allows exec — noexec by a bind remount, because the kernel ignores
//! flags on the bind itself). Block volumes get a device node made with mknod from the
//! major:minor sysfs reports for the NQN's device, because bind-mounting /dev causes mount
//! storms. Both are idempotent, and unpublish removes only the exact target path.

use std::path::Path;

use csi::v1 as pb;
use mount::{DevNum, MountOptions, NodeKind, OptionPolicy};
use nvme::Nqn;

use super::context::{self, Access, required};
use super::state::PublishRecord;
use super::{Inner, mount_err, nvme_err, paths, sysio};
use vocab::error::{DriverError, Result};
use vocab::params;

impl Inner {
    /// The volume's NQN: the staged record wins, then publish_context (the RDS's current
    /// record), then volume_context, then the volume id.
    fn nqn_for(
        &self,
        volume_id: &str,
        ctx: &std::collections::HashMap<String, String>,
        publish: &std::collections::HashMap<String, String>,
    ) -> Result<Nqn> {
        if let Some(r) = self.state.get(volume_id) {
            return r.nqn();
        }
        if let Some(n) = publish
            .get(vocab::params::PC_NVME_NQN)
            .filter(|n| !n.trim().is_empty())
        {
            return Nqn::new(n.trim()).map_err(|e| {
                DriverError::InvalidArgument(format!(
                    "publish_context {}: {e}",
                    vocab::params::PC_NVME_NQN
                ))
            });
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
        let staging = self.confine("staging_target_path", &req.staging_target_path)?;
        let target = self.confine("target_path", &req.target_path)?;
        let cap = context::capability(req.volume_capability.as_ref())?;
        let read_only = req.readonly || cap.read_only_mode;
        self.wait_ready().await?;
        let _guard = self.locks.lock(volume_id).await;
        let nqn = self.nqn_for(volume_id, &req.volume_context, &req.publish_context)?;
        let record = self.state.get(volume_id);
        let (root, deadline) = (&self.cfg.kubelet_dir, self.cfg.deadlines.syscall);
        sysio::inspect(root, &staging, deadline).await?;
        sysio::inspect(root, &target, deadline).await?;

        match &cap.access {
            Access::Block => {
                // The parent is made here, symlink-free; the node itself by mknod below.
                if let Some(parent) = target
                    .parent()
                    .filter(|p| p.starts_with(root) && *p != root)
                {
                    sysio::mkdir(root, parent, deadline).await?;
                }
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
                    sysio::mkdir(root, &target, deadline).await?;
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
        let target = self.confine("target_path", &req.target_path)?;
        self.wait_ready().await?;
        let _guard = self.locks.lock(volume_id).await;
        let found =
            sysio::inspect(&self.cfg.kubelet_dir, &target, self.cfg.deadlines.syscall).await?;
        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        if let Some(top) = table.top_mount_at(&target) {
            self.ensure_our_mount(volume_id, &target, top.dev, &table)
                .await?;
            self.mounter
                .unmount(&target, false)
                .await
                .map_err(|e| mount_err(&format!("unmounting {}", target.display()), e))?;
        } else {
            self.ensure_ours(volume_id, &target, found).await?;
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

impl Inner {
    /// A mount at a target is unmounted only when it is this volume's: recorded by publish, or
    /// of the device of the volume's staging mount or NQN. Another driver's or the host's mount
    /// below the kubelet directory is never this RPC's to remove.
    async fn ensure_our_mount(
        &self,
        volume_id: &str,
        target: &Path,
        dev: DevNum,
        table: &mount::MountTable,
    ) -> Result<()> {
        let record = self.state.get(volume_id);
        if let Some(r) = &record {
            if r.published.contains_key(target) {
                return Ok(());
            }
            if table
                .top_mount_at(&r.staging_path)
                .is_some_and(|m| m.dev == dev)
            {
                return Ok(());
            }
        }
        let nqn = match &record {
            Some(r) => r.nqn()?,
            None => context::nqn_of_volume(volume_id)?,
        };
        let current = self
            .initiator
            .resolve_verified(&nqn)
            .await
            .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?;
        if current.as_ref().and_then(super::stage::devnum) == Some(dev) {
            return Ok(());
        }
        Err(DriverError::InvalidArgument(format!(
            "target_path {} is a mount of device {dev}, which is not volume {volume_id}'s; NodeUnpublishVolume unmounts only this volume's own publish mounts",
            target.display()
        )))
    }

    /// Unpublish removes only what publish makes: a directory (removed only when empty), the
    /// device node of this volume, or the empty placeholder file a CO creates for a block
    /// target. Anything else at a target (a file with content, another device's node) was not
    /// made by this driver and is refused, however the target path was chosen.
    async fn ensure_ours(&self, volume_id: &str, target: &Path, found: paths::Found) -> Result<()> {
        let t = target.to_path_buf();
        let kind = mount::sys::with_deadline(
            &self.sys,
            "lstat",
            target,
            self.cfg.deadlines.syscall,
            move |s| s.node_kind(&t),
        )
        .await
        .map_err(|e| mount_err("checking the target", e))?;
        let refuse = |what: String| {
            Err(DriverError::InvalidArgument(format!(
                "target_path {} holds {what}, which this driver did not create; NodeUnpublishVolume removes only an empty directory, this volume's device node or an empty placeholder file",
                target.display()
            )))
        };
        match kind {
            NodeKind::Missing | NodeKind::Directory => Ok(()),
            NodeKind::File => match found {
                paths::Found::File { len: 0 } => Ok(()),
                paths::Found::File { len } => refuse(format!("a regular file of {len} bytes")),
                _ => refuse("a regular file".to_string()),
            },
            NodeKind::BlockDevice(dev) => {
                let recorded = self
                    .state
                    .get(volume_id)
                    .is_some_and(|r| r.published.contains_key(target));
                if recorded {
                    return Ok(());
                }
                let nqn = match self.state.get(volume_id) {
                    Some(r) => r.nqn()?,
                    None => context::nqn_of_volume(volume_id)?,
                };
                let current = self
                    .initiator
                    .resolve_verified(&nqn)
                    .await
                    .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?;
                if current.as_ref().and_then(super::stage::devnum) == Some(dev) {
                    return Ok(());
                }
                refuse(format!("a device node for {dev}, not this volume's device"))
            }
            NodeKind::Other => refuse("a special file".to_string()),
        }
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
