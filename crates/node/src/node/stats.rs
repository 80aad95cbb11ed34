//! NodeGetVolumeStats: usage by statvfs (block volumes: size from sysfs) and a VolumeCondition
//! that says what is wrong — stale mount, read-only filesystem, controller not live, or a target
//! re-bound under a running pod. A missing device is abnormal, never "inconclusive".
//!
//! The mount table is read before anything touches the path: `stat` of a mount root on a dead
//! device can hang, and for a stale mount no statvfs is attempted at all.

use std::path::{Path, PathBuf};

use csi::v1 as pb;
use csi::v1::volume_usage::Unit;
use mount::{MountHealth, NodeKind, classify};
use nvme::Device;

use super::context::{self, required};
use super::recovery::describe;
use super::stage::devnum;
use super::{Inner, mount_err, nvme_err, sysio};
use vocab::error::{DriverError, Result};

fn controllers_problem(device: &Device) -> Option<String> {
    if device.has_live_controller() {
        return None;
    }
    let list: Vec<String> = device
        .controllers
        .iter()
        .map(|c| format!("{}={}", c.name, c.state))
        .collect();
    Some(format!(
        "NVMe controller not live ({})",
        if list.is_empty() {
            "none left".to_string()
        } else {
            list.join(",")
        }
    ))
}

fn condition(problems: &[String]) -> pb::VolumeCondition {
    if problems.is_empty() {
        pb::VolumeCondition {
            abnormal: false,
            message: "volume is healthy".into(),
        }
    } else {
        pb::VolumeCondition {
            abnormal: true,
            message: problems.join("; "),
        }
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Inner {
    pub(crate) async fn stats(
        &self,
        req: pb::NodeGetVolumeStatsRequest,
    ) -> Result<pb::NodeGetVolumeStatsResponse> {
        let volume_id = required("volume_id", &req.volume_id)?;
        let path = PathBuf::from(required("volume_path", &req.volume_path)?);
        let _guard = self.locks.lock(volume_id).await;
        let record = self.state.get(volume_id);
        let nqn = match &record {
            Some(r) => r.nqn()?,
            None => context::nqn_of_volume(volume_id)?,
        };
        let device = self
            .initiator
            .resolve_verified(&nqn)
            .await
            .map_err(|e| nvme_err(&format!("resolving {nqn}"), e))?;
        let table = self
            .mounter
            .mount_table()
            .await
            .map_err(|e| mount_err("reading the mount table", e))?;
        let mut problems = Vec::new();
        // A multipath volume lacking paths is degraded (no redundancy) even while it works.
        let path_problem = match &record {
            Some(r) if r.addresses.len() > 1 => match r.targets() {
                Ok(t) => self
                    .path_report(&nqn, &t)
                    .await
                    .ok()
                    .and_then(|rep| rep.problem()),
                Err(_) => None,
            },
            _ => None,
        };
        let recorded_here = record
            .as_ref()
            .is_some_and(|r| r.staging_path == path || r.published.contains_key(&path));
        if let Some(r) = &record
            && r.published.get(&path).is_some_and(|p| p.needs_restart)
        {
            problems.push(
                "recovered from a stale mount; containers started before the recovery still use the old mount and need a restart"
                    .to_string(),
            );
        }

        if let Some(top) = table.top_mount_at(&path) {
            let ours = recorded_here || device.as_ref().is_some_and(|d| devnum(d) == Some(top.dev));
            if !ours {
                return Err(DriverError::NotFound(format!(
                    "{} is not a mount of volume {volume_id}",
                    path.display()
                )));
            }
            let expect_ro = top.mount_options.iter().any(|o| o == "ro");
            let verdict = classify(
                &table,
                self.sys.as_ref(),
                &path,
                device.as_ref().map(|d| d.path.as_path()),
                expect_ro,
            );
            let stale = match &verdict {
                Ok(MountHealth::Ok) => false,
                Ok(MountHealth::ReadOnly) => {
                    problems.push(describe(&MountHealth::ReadOnly));
                    false
                }
                Ok(h) => {
                    problems.push(describe(h));
                    true
                }
                Err(e) => {
                    problems.push(format!("mount check failed: {e}"));
                    false
                }
            };
            if let Some(d) = &device
                && let Some(p) = controllers_problem(d)
            {
                problems.push(p);
            }
            problems.extend(path_problem.clone());
            if stale {
                // The monitor reports and repairs it now instead of at its next tick; reporting
                // here too would count every kubelet poll as a new stale mount.
                self.kick.notify_one();
                return Ok(pb::NodeGetVolumeStatsResponse {
                    usage: vec![],
                    volume_condition: Some(condition(&problems)),
                });
            }
            let usage = match self.mounter.usage(&path).await {
                Ok(u) => vec![
                    pb::VolumeUsage {
                        available: as_i64(u.available_bytes),
                        total: as_i64(u.total_bytes),
                        used: as_i64(u.used_bytes),
                        unit: Unit::Bytes as i32,
                    },
                    pb::VolumeUsage {
                        available: as_i64(u.available_inodes),
                        total: as_i64(u.total_inodes),
                        used: as_i64(u.used_inodes),
                        unit: Unit::Inodes as i32,
                    },
                ],
                Err(e) => {
                    problems.push(format!("statvfs failed: {e}"));
                    vec![]
                }
            };
            return Ok(pb::NodeGetVolumeStatsResponse {
                usage,
                volume_condition: Some(condition(&problems)),
            });
        }

        // Not a mount point: a published block device node, or nothing of ours.
        let kind = self.lstat(&path).await?;
        let NodeKind::BlockDevice(node_dev) = kind else {
            return Err(DriverError::NotFound(format!(
                "{} is neither a mounted filesystem nor a device node of volume {volume_id}",
                path.display()
            )));
        };
        let Some(d) = device else {
            if !recorded_here {
                return Err(DriverError::NotFound(format!(
                    "{} is not a device node of volume {volume_id}",
                    path.display()
                )));
            }
            problems.push(format!("NVMe device for {nqn} is gone"));
            return Ok(pb::NodeGetVolumeStatsResponse {
                usage: vec![],
                volume_condition: Some(condition(&problems)),
            });
        };
        if devnum(&d) != Some(node_dev) {
            if !recorded_here {
                return Err(DriverError::NotFound(format!(
                    "{} ({node_dev}) is not a device node of volume {volume_id}",
                    path.display()
                )));
            }
            problems.push(format!(
                "device node stale: {} is {node_dev}, the NQN now resolves to {}",
                path.display(),
                d.name
            ));
            self.kick.notify_one();
        }
        if let Some(p) = controllers_problem(&d) {
            problems.push(p);
        }
        problems.extend(path_problem);
        let usage =
            match sysio::device_size(&self.cfg.sysfs_root, &d.name, self.cfg.deadlines.sysfs).await
            {
                Ok(size) => vec![pb::VolumeUsage {
                    available: 0,
                    total: as_i64(size),
                    used: 0,
                    unit: Unit::Bytes as i32,
                }],
                Err(e) => {
                    problems.push(format!("device size unreadable: {e}"));
                    vec![]
                }
            };
        Ok(pb::NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(condition(&problems)),
        })
    }

    pub(crate) async fn lstat(&self, path: &Path) -> Result<NodeKind> {
        let p = path.to_path_buf();
        mount::sys::with_deadline(
            &self.sys,
            "lstat",
            path,
            self.cfg.deadlines.syscall,
            move |s| s.node_kind(&p),
        )
        .await
        .map_err(|e| mount_err("inspecting the volume path", e))
    }
}
