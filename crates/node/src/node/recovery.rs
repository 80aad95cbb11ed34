//! Stale-mount detection and recovery.
//!
//! What goes wrong on a real NVMe/TCP host: the controller is deleted and reconnected (by an
//! operator, by a cleanup script, or by kernel 6.12 despite ctrl_loss_tmo=-1), the
//! namespace comes back under another name (`nvme0n1` → `nvme3n1`) and the old name may even
//! belong to another volume now. The staging mount then points at a dead device. Recovery
//! reconnects with the parameters remembered at stage time, remounts the staging path from the
//! device now serving the NQN (never formatting: the filesystem is there), and re-binds publish
//! targets. Containers that were already running keep the old mount — a bind cannot be swapped
//! under them — so those targets are reported as needing a pod restart, not hidden.

use std::path::Path;

use mount::{MountHealth, MountOptions, NodeKind, OptionPolicy, UnmountMode, classify};
use nvme::{Device, Health};

use super::Inner;
use super::stage::devnum;
use super::state::{StagedKind, StagedVolume};
use super::{mount_err, nvme_err};
use vocab::error::{DriverError, Result};

/// What one recovery attempt found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// Connected, live, and mounted from the right device: nothing to do.
    Healthy,
    /// Something was repaired; the text says what.
    Recovered(String),
    /// The kernel is reconnecting by itself (ctrl_loss_tmo keeps it trying); interfering would
    /// renumber the device under the mount, so nothing is done yet.
    Waiting(String),
}

/// Human text for a stale verdict, as shown in VolumeCondition and events.
pub fn describe(h: &MountHealth) -> String {
    match h {
        MountHealth::Ok => "healthy".into(),
        MountHealth::NotMounted => "not mounted".into(),
        MountHealth::DeviceGone { source } => {
            format!("mount stale: device {source} is gone")
        }
        MountHealth::DeviceChanged { mounted, current } => format!(
            "mount stale: device changed (mounted {mounted}, the NQN now resolves to {current})"
        ),
        MountHealth::SourceMismatch { mounted, current } => format!(
            "mount stale: source mismatch (mounted from {mounted}, the NQN now resolves to {})",
            current.display()
        ),
        MountHealth::ReadOnly => {
            "filesystem is read-only (the kernel remounted it after I/O errors)".into()
        }
    }
}

impl Inner {
    /// Retries [`Inner::recover`] with bounded backoff; for RPCs that need the volume usable now.
    pub(crate) async fn recover_with_retries(&self, rec: &StagedVolume) -> Result<RecoveryOutcome> {
        let attempts = self.cfg.recovery.attempts.max(1);
        let mut last = None;
        for attempt in 1..=attempts {
            match self.recover(rec).await {
                Ok(o) => return Ok(o),
                Err(e) => {
                    tracing::warn!(volume = %rec.volume_id, attempt, error = %e, "recovery attempt failed");
                    self.observer
                        .recovery_failed(&rec.volume_id, &e.to_string());
                    last = Some(e);
                }
            }
            if attempt < attempts {
                tokio::time::sleep(self.cfg.recovery.backoff(attempt)).await;
            }
        }
        Err(last.unwrap_or_else(|| DriverError::Internal("recovery made no attempt".into())))
    }

    /// Checks one staged volume and repairs what can be repaired. The caller holds the lock.
    pub(crate) async fn recover(&self, rec: &StagedVolume) -> Result<RecoveryOutcome> {
        let p = rec.connect_params()?;
        let paths = rec.path_params()?;
        let nqn = &p.nqn;
        let mut done = Vec::new();
        let health = self
            .initiator
            .health(nqn)
            .await
            .map_err(|e| nvme_err(&format!("reading the state of {nqn}"), e))?;
        match health {
            // A multipath volume with a path missing next to a working one is not repaired here:
            // the monitor adds the path without the volume lock (`multipath::repair_paths`).
            Some(Health::Healthy) => {}
            Some(Health::Recovering { controllers }) => {
                let list: Vec<String> = controllers
                    .iter()
                    .map(|(n, s)| format!("{n}={s}"))
                    .collect();
                return Ok(RecoveryOutcome::Waiting(format!(
                    "controller not live, kernel reconnecting ({})",
                    list.join(",")
                )));
            }
            Some(Health::Orphaned(reason)) => {
                // connect_paths disconnects the orphan, then connects every path.
                self.connect_paths(&paths).await.map_err(|e| {
                    DriverError::Unavailable(format!("reconnecting orphaned {nqn}: {e}"))
                })?;
                done.push(format!("reconnected orphaned subsystem ({reason})"));
            }
            None => {
                // Kernel 6.12 deletes the controller when the subsystem disappears on the target,
                // whatever ctrl_loss_tmo says; only the remembered parameters can bring it back.
                self.connect_paths(&paths).await?;
                done.push("reconnected (the controller had been deleted)".to_string());
            }
        }
        let device = self
            .initiator
            .wait_for_device(
                nqn,
                self.cfg.deadlines.device_wait,
                self.cfg.deadlines.device_poll,
            )
            .await
            .map_err(|e| nvme_err(&format!("waiting for the block device of {nqn}"), e))?;

        match &rec.kind {
            StagedKind::Filesystem { mount_flags, .. } => {
                let fs = rec.fs_type().ok_or_else(|| {
                    DriverError::Internal(format!(
                        "volume {} has an unsupported filesystem in its record",
                        rec.volume_id
                    ))
                })?;
                self.wait_for_node(&device).await?;
                let table = self
                    .mounter
                    .mount_table()
                    .await
                    .map_err(|e| mount_err("reading the mount table", e))?;
                let verdict = classify(
                    &table,
                    self.sys.as_ref(),
                    &rec.staging_path,
                    Some(&device.path),
                    false,
                )
                .map_err(|e| {
                    DriverError::Internal(format!("checking {}: {e}", rec.staging_path.display()))
                })?;
                match verdict {
                    MountHealth::Ok => {}
                    MountHealth::ReadOnly => {
                        return Err(DriverError::Internal(format!(
                            "{}: {}; not repaired automatically (unmount and check the filesystem)",
                            rec.staging_path.display(),
                            describe(&verdict)
                        )));
                    }
                    stale => {
                        let why = describe(&stale);
                        tracing::warn!(volume = %rec.volume_id, staging = %rec.staging_path.display(), reason = %why, "stale staging mount");
                        self.observer.stale_detected(&rec.volume_id, &why);
                        let rebound = self.remount(rec, &device, fs, mount_flags).await?;
                        done.push(format!(
                            "{why}; remounted {} from {}{}",
                            rec.staging_path.display(),
                            device.path.display(),
                            if rebound.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " and re-bound {} (running containers keep the old mount until restarted)",
                                    rebound.join(", ")
                                )
                            }
                        ));
                    }
                }
            }
            StagedKind::Block => {
                let replaced = self.refresh_block_nodes(rec, &device).await?;
                if !replaced.is_empty() {
                    done.push(format!(
                        "device changed; re-created device nodes {} for {}",
                        replaced.join(", "),
                        device.path.display()
                    ));
                }
            }
        }
        if done.is_empty() {
            return Ok(RecoveryOutcome::Healthy);
        }
        let detail = done.join("; ");
        tracing::info!(volume = %rec.volume_id, %detail, "recovered");
        self.observer.recovered(&rec.volume_id, &detail);
        Ok(RecoveryOutcome::Recovered(detail))
    }

    /// Replaces the staging mount (and the binds of it we made) by a mount of `device`.
    /// Returns the publish targets that were re-bound.
    async fn remount(
        &self,
        rec: &StagedVolume,
        device: &Device,
        fs: mount::FsType,
        mount_flags: &[String],
    ) -> Result<Vec<String>> {
        let policy = OptionPolicy {
            allow_exec: rec.allow_exec,
        };
        let opts = mount::build_mount_options(mount_flags, Some(fs), policy)
            .map_err(|e| mount_err("invalid recorded mount options", e))?;
        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        for target in rec.published.keys() {
            if table.is_mount_point(target) {
                self.detach(target).await?;
            }
        }
        if table.is_mount_point(&rec.staging_path) {
            self.detach(&rec.staging_path).await?;
        }
        // No probe, no mkfs: the filesystem exists; a recovery must never format.
        self.mounter
            .mount_filesystem(&device.path, &rec.staging_path, fs, &opts)
            .await
            .map_err(|e| mount_err(&format!("remounting {}", rec.staging_path.display()), e))?;
        let mut rebound = Vec::new();
        for (target, pr) in &rec.published {
            let mut o = MountOptions {
                flags: opts.flags,
                data: Vec::new(),
            };
            o.flags.read_only = pr.read_only;
            match self.mounter.bind_mount(&rec.staging_path, target, &o).await {
                Ok(_) => rebound.push(target.display().to_string()),
                Err(e) => {
                    tracing::warn!(volume = %rec.volume_id, target = %target.display(), error = %e, "could not re-bind publish target; kubelet will republish it")
                }
            }
        }
        if !rebound.is_empty() {
            let id = rec.volume_id.clone();
            let targets: Vec<_> = rec.published.keys().cloned().collect();
            if let Err(e) = self
                .state
                .update(move |m| {
                    if let Some(r) = m.get_mut(&id) {
                        for t in &targets {
                            if let Some(p) = r.published.get_mut(t) {
                                p.needs_restart = true;
                            }
                        }
                    }
                })
                .await
            {
                tracing::error!(volume = %rec.volume_id, error = %e, "could not persist recovery state");
            }
        }
        Ok(rebound)
    }

    /// Unmounts a mount of a dead device. A normal unmount first; if processes of the dead
    /// filesystem keep it busy, detach it — nothing can use it any more, and a forced unmount
    /// is never needed.
    async fn detach(&self, target: &Path) -> Result<()> {
        let d = self.cfg.deadlines.syscall;
        let t = target.to_path_buf();
        let normal = mount::sys::with_deadline(&self.sys, "umount", target, d, move |s| {
            s.unmount(&t, UnmountMode::Normal)
        })
        .await;
        if normal.is_ok() {
            return Ok(());
        }
        let t = target.to_path_buf();
        mount::sys::with_deadline(&self.sys, "umount (detach)", target, d, move |s| {
            s.unmount(&t, UnmountMode::Detach)
        })
        .await
        .map_err(|e| mount_err("detaching a stale mount", e))
    }

    /// Block volumes: device nodes made at publish carry the old major:minor after a
    /// renumbering; replace them (a file, never a mount).
    async fn refresh_block_nodes(
        &self,
        rec: &StagedVolume,
        device: &Device,
    ) -> Result<Vec<String>> {
        let Some(current) = devnum(device) else {
            return Ok(Vec::new());
        };
        let mut replaced = Vec::new();
        for (target, pr) in &rec.published {
            let t = target.clone();
            let kind = mount::sys::with_deadline(
                &self.sys,
                "lstat",
                target,
                self.cfg.deadlines.syscall,
                move |s| s.node_kind(&t),
            )
            .await
            .map_err(|e| mount_err("checking a published device node", e))?;
            let NodeKind::BlockDevice(old) = kind else {
                continue;
            };
            if old == current {
                continue;
            }
            let why = format!(
                "device node {} is {old}, the NQN now resolves to {current}",
                target.display()
            );
            self.observer.stale_detected(&rec.volume_id, &why);
            match self.mounter.remove_target(target).await {
                Ok(()) => {}
                Err(mount::Error::Syscall { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(mount_err("removing a stale device node", e)),
            }
            let (t, mode) = (target.clone(), if pr.read_only { 0o440 } else { 0o660 });
            mount::sys::with_deadline(
                &self.sys,
                "mknod",
                target,
                self.cfg.deadlines.syscall,
                move |s| s.mknod_block(&t, current, mode),
            )
            .await
            .map_err(|e| mount_err("re-creating a device node", e))?;
            replaced.push(target.display().to_string());
        }
        Ok(replaced)
    }
}
