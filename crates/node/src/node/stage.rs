//! NodeStageVolume and NodeUnstageVolume.
//!
//! Stage: connect by NQN (already connected is decided from sysfs), wait for the block device
//! the NQN resolves to, and for filesystem volumes format only a provably empty device and
//! mount it at the staging path. A retry of a finished stage changes nothing; a failed stage
//! undoes only what it did itself (it disconnects only a connection it created and only when
//! nothing is mounted from the device). Block volumes leave the staging path untouched.
//!
//! An existing filesystem smaller than its device (a snapshot restored, or a volume cloned, into
//! a larger volume) is grown online once mounted, as Kubernetes' mount-utils `ResizeFs` does at
//! stage; a retry of a finished stage checks again, so a plugin killed between the mount and the
//! grow still ends with a full-size filesystem. Read-only stages are never grown.
//!
//! Unstage: unmount the staging path (bounded, never forced while something uses it), then
//! disconnect only when nothing else uses the device.

use std::path::{Path, PathBuf};

use csi::v1 as pb;
use mount::{
    DevNum, DeviceRef, FormatOutcome, FsType, GrowOutcome, InUseQuery, MountOptions, MountOutcome,
    NodeKind, OptionPolicy,
};
use nvme::{ConnectParams, Device, Nqn};

use super::context::{self, Access, required};
use super::paths;
use super::state::{StagedKind, StagedVolume};
use super::{Inner, mount_err, nvme_err, sysio};
use vocab::error::{DriverError, Result};

pub(crate) fn devnum(d: &Device) -> Option<DevNum> {
    d.dev.map(|(major, minor)| DevNum { major, minor })
}

/// Same access type, filesystem and mount flags (in any order): a stage retried with anything
/// else asks for a volume staged differently, which CSI answers with ALREADY_EXISTS.
fn same_kind(a: &StagedKind, b: &StagedKind) -> bool {
    match (a, b) {
        (StagedKind::Block, StagedKind::Block) => true,
        (
            StagedKind::Filesystem {
                fs_type: fa,
                mount_flags: ma,
            },
            StagedKind::Filesystem {
                fs_type: fb,
                mount_flags: mb,
            },
        ) => fa == fb && flag_set(ma) == flag_set(mb),
        _ => false,
    }
}

fn flag_set(m: &[String]) -> std::collections::BTreeSet<&str> {
    m.iter().map(|s| s.trim()).collect()
}

fn describe(k: &StagedKind) -> String {
    match k {
        StagedKind::Block => "a raw block volume".to_string(),
        StagedKind::Filesystem {
            fs_type,
            mount_flags,
        } if mount_flags.is_empty() => format!("{fs_type} without mount flags"),
        StagedKind::Filesystem {
            fs_type,
            mount_flags,
        } => format!("{fs_type} with mount flags [{}]", mount_flags.join(",")),
    }
}

/// What a stage has done so far that a failure must undo: one record, undone in one place
/// ([`Inner::roll_back`]), so the stage is all or nothing whichever step fails.
#[derive(Debug, Default)]
struct Rollback {
    /// This call made the NVMe connection (one found in place is never undone).
    connected_here: bool,
    /// This call mounted the staging path (a mount found in place is left).
    mounted_here: bool,
}

impl Inner {
    pub(crate) async fn stage(
        &self,
        req: pb::NodeStageVolumeRequest,
    ) -> Result<pb::NodeStageVolumeResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let staging = self.confine("staging_target_path", &req.staging_target_path)?;
        let cap = context::capability(req.volume_capability.as_ref())?;
        let sc =
            context::stage_context_with(&req.volume_context, &req.publish_context, &self.prefix)?;
        // Options are validated before anything is touched, so a bad StorageClass never leaves
        // a connection behind.
        let fs_opts = match &cap.access {
            Access::Block => None,
            Access::Filesystem { fs, mount_flags } => {
                let opts = mount::build_mount_options(
                    mount_flags,
                    Some(*fs),
                    OptionPolicy {
                        allow_exec: sc.allow_exec,
                    },
                )
                .map_err(|e| mount_err("invalid mount options", e))?;
                Some((*fs, mount_flags.clone(), opts))
            }
        };
        // Growing writes the filesystem: never for a stage that only reads.
        let read_only =
            cap.read_only_mode || fs_opts.as_ref().is_some_and(|(_, _, o)| o.flags.read_only);
        self.wait_ready().await?;
        let _guard = self.locks.lock(volume_id).await;

        let previous = self.state.get(volume_id);
        if let Some(prev) = &previous
            && prev.staging_path != staging
        {
            return Err(DriverError::FailedPrecondition(format!(
                "volume {volume_id} is already staged at {}; unstage it there first",
                prev.staging_path.display()
            )));
        }
        let nqn = sc.params.nqn.clone();
        let kind = match &fs_opts {
            None => StagedKind::Block,
            Some((fs, flags, _)) => StagedKind::Filesystem {
                fs_type: fs.to_string(),
                mount_flags: flags.clone(),
            },
        };
        if let Some(prev) = &previous
            && !same_kind(&prev.kind, &kind)
        {
            return Err(DriverError::AlreadyExists(format!(
                "volume {volume_id} is already staged at {} as {}; this request asks for {}. Unstage it first to change how it is staged",
                staging.display(),
                describe(&prev.kind),
                describe(&kind)
            )));
        }
        sysio::inspect(&self.cfg.kubelet_dir, &staging, self.cfg.deadlines.syscall).await?;
        let mut record = StagedVolume::new(volume_id, &sc.params, &staging, kind, sc.allow_exec)
            .with_paths(&sc.targets)
            .with_pvc(sc.pvc.clone());
        if let Some(prev) = &previous {
            record.published = prev.published.clone();
        }

        if let Some((fs, _, _)) = &fs_opts
            && self
                .already_staged(volume_id, &nqn, &staging, &record)
                .await?
        {
            if !read_only {
                // The mount predates this call, so a failure leaves it for the next retry.
                self.grow_staged(volume_id, &nqn, &staging, *fs).await?;
            }
            // Paths added to the volume since (or missing) are connected; none failing fails
            // a stage whose mount works.
            if let Err(e) = self.connect_paths(&sc.path_params()).await {
                tracing::warn!(volume = volume_id, error = %e, "connecting the volume's paths");
            }
            self.remember(record.clone()).await;
            self.report_paths(&record).await;
            return Ok(pb::NodeStageVolumeResponse {});
        }

        let mut done = Rollback::default();
        let device = match self
            .attach(
                volume_id,
                &sc.path_params(),
                &staging,
                fs_opts.as_ref(),
                read_only,
                &mut done,
            )
            .await
        {
            Ok(device) => device,
            Err(e) => return Err(self.roll_back(done, &nqn, &staging, e).await),
        };
        tracing::info!(volume = volume_id, nqn = %nqn, device = %device.path.display(), staging = %staging.display(), paths = sc.targets.len(), "staged");
        self.remember(record.clone()).await;
        self.report_paths(&record).await;
        Ok(pb::NodeStageVolumeResponse {})
    }

    /// The steps of a stage that change the node: connect, wait for the device, format and
    /// mount, grow. Each step that must be undone if a later one fails is noted in `done`.
    async fn attach(
        &self,
        volume_id: &str,
        paths: &[ConnectParams],
        staging: &Path,
        fs_opts: Option<&(FsType, Vec<String>, MountOptions)>,
        read_only: bool,
        done: &mut Rollback,
    ) -> Result<Device> {
        let Some(nqn) = paths.first().map(|p| &p.nqn) else {
            return Err(DriverError::Internal("no NVMe/TCP path to connect".into()));
        };
        // Every path at once; one is enough, the others are retried by the monitor.
        let connect = self.connect_paths(paths).await?;
        done.connected_here = connect.created;
        if done.connected_here {
            self.observer.nvme_connected(volume_id, nqn.as_str());
        }
        if !connect.connected.is_empty() || !connect.failed.is_empty() {
            tracing::info!(volume = volume_id, nqn = %nqn, connected = ?connect.connected, failed = ?connect.failed, withheld = ?connect.withheld, "NVMe/TCP paths");
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
        if let Some((fs, _, opts)) = fs_opts {
            let (formatted, mounted) = self.format_and_mount(&device, staging, *fs, opts).await?;
            done.mounted_here = mounted == MountOutcome::Mounted;
            // A filesystem mkfs just made fills its device; only an existing one can be smaller.
            if formatted == FormatOutcome::Existing && !read_only {
                self.grow_to_device(volume_id, &device, staging, *fs)
                    .await?;
            }
        }
        Ok(device)
    }

    /// Undoes what a failed stage did, newest first, and returns the error to report.
    async fn roll_back(
        &self,
        done: Rollback,
        nqn: &Nqn,
        staging: &Path,
        cause: DriverError,
    ) -> DriverError {
        let cause = if done.mounted_here {
            self.undo_mount(staging, cause).await
        } else {
            cause
        };
        self.undo_connect(done.connected_here, nqn).await;
        cause
    }

    /// Persists a record; a failure only costs automatic recovery after a restart, so it is
    /// logged loudly instead of failing a volume that works.
    pub(crate) async fn remember(&self, record: StagedVolume) {
        let id = record.volume_id.clone();
        if let Err(e) = self.state.put(record).await {
            tracing::error!(volume = %id, error = %e, "could not persist node state; this volume will not be recovered automatically after a plugin restart");
        }
    }

    /// `true` when the staging path already carries this NQN's current device. A mount of
    /// something else is an error, except our own stale mount, which is recovered.
    async fn already_staged(
        &self,
        volume_id: &str,
        nqn: &Nqn,
        staging: &Path,
        record: &StagedVolume,
    ) -> Result<bool> {
        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        let Some(top) = table.top_mount_at(staging) else {
            return Ok(false);
        };
        let device = self
            .initiator
            .resolve_verified(nqn)
            .await
            .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?;
        if let Some(d) = &device
            && devnum(d) == Some(top.dev)
            && top.source == d.path.to_string_lossy()
        {
            return Ok(true);
        }
        if self.state.get(volume_id).is_some() {
            // Our own mount, but of a device the NQN no longer resolves to.
            self.recover_with_retries(record).await?;
            return Ok(true);
        }
        Err(DriverError::FailedPrecondition(format!(
            "staging path {} is already mounted from {} ({}), which is not the device of {nqn}",
            staging.display(),
            top.source,
            top.dev
        )))
    }

    /// Disconnects after a failed stage, but only a connection this call made and only when
    /// nothing is mounted from the NQN's device.
    async fn undo_connect(&self, connected_here: bool, nqn: &Nqn) {
        if !connected_here {
            return;
        }
        let device = self.initiator.resolve(nqn).await.ok().flatten();
        if let Some(d) = device.as_ref().and_then(devnum) {
            match self.mounter.mount_table().await {
                Ok(t) if t.mounts_of_device(&DeviceRef::Number(d)).is_empty() => {}
                Ok(_) => {
                    tracing::warn!(nqn = %nqn, "not undoing connect: the device is mounted");
                    return;
                }
                Err(e) => {
                    tracing::warn!(nqn = %nqn, error = %e, "not undoing connect: mount table unreadable");
                    return;
                }
            }
        }
        match self.initiator.disconnect(nqn).await {
            Ok(_) => {
                tracing::info!(nqn = %nqn, "undid the connect of a failed stage");
                self.observer.nvme_disconnected("", nqn.as_str());
            }
            Err(e) => {
                tracing::warn!(nqn = %nqn, error = %e, "could not undo the connect of a failed stage")
            }
        }
    }

    /// The `/dev` node appears (udev/devtmpfs) a moment after sysfs lists the device.
    pub(crate) async fn wait_for_node(&self, device: &Device) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.cfg.deadlines.device_wait;
        loop {
            let p = device.path.clone();
            let kind = mount::sys::with_deadline(
                &self.sys,
                "lstat",
                &device.path,
                self.cfg.deadlines.syscall,
                move |s| s.node_kind(&p),
            )
            .await
            .map_err(|e| mount_err("checking the device node", e))?;
            if matches!(kind, NodeKind::BlockDevice(_)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Unavailable(format!(
                    "{} is listed in sysfs but its device node did not appear within {:?}",
                    device.path.display(),
                    self.cfg.deadlines.device_wait
                )));
            }
            tokio::time::sleep(self.cfg.deadlines.device_poll).await;
        }
    }

    /// Grows the filesystem of an already staged volume if it is smaller than its device. A
    /// mount found read-only (staged earlier with `ro`) is left alone whatever this call asks.
    async fn grow_staged(
        &self,
        volume_id: &str,
        nqn: &Nqn,
        staging: &Path,
        fs: FsType,
    ) -> Result<()> {
        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        if table.top_mount_at(staging).is_none_or(|m| m.is_read_only()) {
            return Ok(());
        }
        let device = self
            .initiator
            .resolve_verified(nqn)
            .await
            .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?
            .ok_or_else(|| {
                DriverError::Unavailable(format!(
                    "{nqn} has no block device right now; retry when it has reconnected"
                ))
            })?;
        self.grow_to_device(volume_id, &device, staging, fs).await
    }

    /// Grows the filesystem mounted at `staging` to the size of `device` when it is smaller (a
    /// snapshot restored or a volume cloned into a larger volume); one that fills or exceeds the
    /// device is left alone. Errors carry NodeExpandVolume's codes (INTERNAL for a failed tool,
    /// UNAVAILABLE for one past its deadline).
    async fn grow_to_device(
        &self,
        volume_id: &str,
        device: &Device,
        staging: &Path,
        fs: FsType,
    ) -> Result<()> {
        let device_bytes =
            sysio::device_size(&self.cfg.sysfs_root, &device.name, self.cfg.deadlines.sysfs)
                .await?;
        let outcome = mount::grow::grow_to_device(
            &*self.runner,
            fs,
            &device.path,
            staging,
            device_bytes,
            &self.cfg.format,
        )
        .await
        .map_err(|e| {
            mount_err(
                &format!(
                    "growing the {fs} filesystem of volume {volume_id} on {} to its device size ({device_bytes} bytes)",
                    device.path.display()
                ),
                e,
            )
        })?;
        match outcome {
            GrowOutcome::Grown {
                from_bytes,
                device_bytes,
            } => tracing::info!(
                volume = volume_id,
                device = %device.path.display(),
                from_bytes,
                device_bytes,
                "grew the filesystem to its device (restored or cloned into a larger volume)"
            ),
            GrowOutcome::Fits {
                fs_bytes,
                device_bytes,
            } => tracing::debug!(
                volume = volume_id,
                fs_bytes,
                device_bytes,
                "filesystem fills its device"
            ),
        }
        Ok(())
    }

    /// Unmounts what a failed stage mounted itself, so the stage is all or nothing and
    /// kubelet's retry starts clean. Returns the error to report, naming the mount when it
    /// could not be removed.
    async fn undo_mount(&self, staging: &Path, cause: DriverError) -> DriverError {
        match self.mounter.unmount(staging, false).await {
            Ok(_) => {
                tracing::info!(staging = %staging.display(), "undid the mount of a failed stage");
                cause
            }
            Err(e) => {
                tracing::warn!(staging = %staging.display(), error = %e, "could not undo the mount of a failed stage");
                let note = format!(
                    "; {} is still mounted ({e}) and is left for NodeUnstageVolume",
                    staging.display()
                );
                match cause {
                    DriverError::Internal(m) => DriverError::Internal(m + &note),
                    DriverError::Unavailable(m) => DriverError::Unavailable(m + &note),
                    other => other,
                }
            }
        }
    }

    async fn format_and_mount(
        &self,
        device: &Device,
        staging: &Path,
        fs: FsType,
        opts: &MountOptions,
    ) -> Result<(FormatOutcome, MountOutcome)> {
        self.wait_for_node(device).await?;
        let outcome =
            mount::format::ensure_filesystem(&*self.runner, &device.path, fs, &self.cfg.format)
                .await
                .map_err(|e| {
                    mount_err(
                        &format!("preparing the filesystem on {}", device.path.display()),
                        e,
                    )
                })?;
        tracing::info!(device = %device.path.display(), ?outcome, "filesystem ready");
        sysio::mkdir(&self.cfg.kubelet_dir, staging, self.cfg.deadlines.syscall).await?;
        let mounted = self
            .mounter
            .mount_filesystem(&device.path, staging, fs, opts)
            .await
            .map_err(|e| {
                mount_err(
                    &format!(
                        "mounting {} at {}",
                        device.path.display(),
                        staging.display()
                    ),
                    e,
                )
            })?;
        Ok((outcome, mounted))
    }

    pub(crate) async fn unstage(
        &self,
        req: pb::NodeUnstageVolumeRequest,
    ) -> Result<pb::NodeUnstageVolumeResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let staging = self.confine("staging_target_path", &req.staging_target_path)?;
        self.wait_ready().await?;
        let _guard = self.locks.lock(volume_id).await;
        sysio::inspect(&self.cfg.kubelet_dir, &staging, self.cfg.deadlines.syscall).await?;
        let record = self.state.get(volume_id);
        let nqn = match &record {
            Some(r) => r.nqn()?,
            None => context::nqn_of_volume(volume_id)?,
        };

        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        if let Some(top) = table.top_mount_at(&staging) {
            let (leftovers, others): (Vec<PathBuf>, Vec<PathBuf>) = table
                .mounts_of_device(&DeviceRef::Number(top.dev))
                .into_iter()
                .filter(|e| e.mount_point != staging)
                .map(|e| e.mount_point.clone())
                .partition(|p| paths::is_publish_target(&self.cfg.kubelet_dir, p));
            if !others.is_empty() {
                let others: Vec<String> = others.iter().map(|p| p.display().to_string()).collect();
                return Err(DriverError::FailedPrecondition(format!(
                    "volume {volume_id} is still mounted at {}; unpublish it before unstaging",
                    others.join(", ")
                )));
            }
            self.clean_leftovers(volume_id, top.dev, &leftovers).await?;
            self.mounter
                .unmount(&staging, true)
                .await
                .map_err(|e| mount_err(&format!("unmounting {}", staging.display()), e))?;
        }

        let device = self
            .initiator
            .resolve_verified(&nqn)
            .await
            .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?;
        if let Some(d) = &device {
            self.ensure_unused(d, &staging).await?;
        }
        match self.initiator.disconnect(&nqn).await {
            Ok(out) => {
                if !out.deleted.is_empty() {
                    tracing::info!(volume = volume_id, nqn = %nqn, controllers = ?out.deleted, "disconnected");
                    self.observer.nvme_disconnected(volume_id, nqn.as_str());
                }
            }
            Err(e) if e.class() == nvme::ErrorClass::NotManaged => {
                tracing::warn!(volume = volume_id, nqn = %nqn, "NQN is outside the managed prefix; left connected");
            }
            Err(e) => return Err(nvme_err(&format!("disconnecting {nqn}"), e)),
        }
        if let Some(r) = &record {
            if let Err(e) = self.state.remove(volume_id).await {
                tracing::error!(volume = volume_id, error = %e, "could not persist node state after unstage");
            }
            self.forget_paths(volume_id, r.pvc());
        }
        Ok(pb::NodeUnstageVolumeResponse {})
    }

    /// kubelet calls NodeUnstageVolume only once it has unpublished every target of the volume,
    /// so a bind mount of the staged device still sitting at a kubelet publish path is this
    /// driver's own, left behind when kubelet lost track of it (a crash between mount and
    /// record). Each one nothing uses is unmounted (never forced) and its empty directory
    /// removed; one still in use fails the unstage, so no pod loses a mounted volume.
    async fn clean_leftovers(
        &self,
        volume_id: &str,
        dev: DevNum,
        leftovers: &[PathBuf],
    ) -> Result<()> {
        for target in leftovers {
            let table = self
                .mounter
                .mount_table()
                .await
                .map_err(|e| mount_err("reading the mount table", e))?;
            // By device number too: a process using the volume through any mount, in any mount
            // namespace this plugin can see, keeps the leftover.
            let query = InUseQuery {
                mount_path: target.clone(),
                dev: Some(dev),
                device_paths: Vec::new(),
            };
            let report = self
                .mounter
                .config()
                .in_use
                .check(&table, &query)
                .await
                .map_err(|e| mount_err("checking whether a leftover publish mount is in use", e))?;
            if !report.processes.is_empty() || !report.holders.is_empty() {
                return Err(DriverError::FailedPrecondition(format!(
                    "volume {volume_id} is still mounted at {}, which kubelet no longer lists but is in use ({}); not unstaging",
                    target.display(),
                    report.summary()
                )));
            }
            tracing::warn!(volume = volume_id, target = %target.display(), device = %dev, "unmounting a leftover publish mount of this volume before unstaging");
            self.mounter
                .unmount(target, false)
                .await
                .map_err(|e| mount_err(&format!("unmounting leftover {}", target.display()), e))?;
            if let Err(e) = self.mounter.remove_target(target).await {
                tracing::warn!(target = %target.display(), error = %e, "leftover publish directory left in place");
            }
            let (id, t) = (volume_id.to_string(), target.clone());
            if let Err(e) = self
                .state
                .update(move |m| {
                    if let Some(r) = m.get_mut(&id) {
                        r.published.remove(&t);
                    }
                })
                .await
            {
                tracing::error!(volume = volume_id, error = %e, "could not persist the removal of a leftover publish target");
            }
        }
        Ok(())
    }

    /// Fails (FAILED_PRECONDITION, so kubelet retries) while anything visible uses the device:
    /// a mount anywhere, a holder (dm, md), or a process with it open.
    async fn ensure_unused(&self, device: &Device, staging: &Path) -> Result<()> {
        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        let dev = devnum(device);
        if let Some(d) = dev {
            let mounts: Vec<String> = table
                .mounts_of_device(&DeviceRef::Number(d))
                .into_iter()
                .map(|e| e.mount_point.display().to_string())
                .collect();
            if !mounts.is_empty() {
                return Err(DriverError::FailedPrecondition(format!(
                    "{} is still mounted at {}; not disconnecting",
                    device.path.display(),
                    mounts.join(", ")
                )));
            }
        }
        let query = InUseQuery {
            mount_path: staging.to_path_buf(),
            dev,
            device_paths: vec![device.path.clone()],
        };
        let report = self
            .mounter
            .config()
            .in_use
            .check(&table, &query)
            .await
            .map_err(|e| mount_err("checking whether the device is in use", e))?;
        if report.in_use() {
            return Err(DriverError::FailedPrecondition(format!(
                "{} is still in use ({}); not disconnecting",
                device.path.display(),
                report.summary()
            )));
        }
        Ok(())
    }
}
