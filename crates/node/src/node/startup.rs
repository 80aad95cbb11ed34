//! Startup cleanup: disconnect leftover managed subsystems that can no longer serve I/O.
//!
//! Only NQNs under the managed prefix are candidates (hosts boot from NVMe-oF; the earlier
//! driver's unfiltered cleanup could disconnect a node's own root disk). Of those, only orphans
//! (no controller, all dead, or no block device) that nothing has mounted and that are not
//! recorded as staged: a staged volume is repaired by the monitor instead, and a healthy
//! unmounted connection may be a block volume a VM is using.

use std::collections::BTreeSet;

use mount::{DevNum, DeviceRef};
use nvme::Nqn;

use super::Inner;

/// What the startup cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupReport {
    pub disconnected: Vec<String>,
    /// NQN and why it was left alone.
    pub kept: Vec<(String, String)>,
    pub errors: Vec<String>,
}

impl Inner {
    pub(crate) async fn startup(&self) -> StartupReport {
        match tokio::time::timeout(self.cfg.deadlines.startup, self.cleanup()).await {
            Ok(r) => r,
            Err(_) => StartupReport {
                errors: vec![format!(
                    "startup cleanup did not finish within {:?}",
                    self.cfg.deadlines.startup
                )],
                ..StartupReport::default()
            },
        }
    }

    async fn cleanup(&self) -> StartupReport {
        let mut report = StartupReport::default();
        let orphans = match self.initiator.orphans().await {
            Ok(o) => o,
            Err(e) => {
                report
                    .errors
                    .push(format!("listing managed subsystems: {e}"));
                return report;
            }
        };
        if orphans.is_empty() {
            return report;
        }
        let table = match self.mounter.mount_table().await {
            Ok(t) => t,
            Err(e) => {
                // Without the mount table nothing can be proven unmounted: touch nothing.
                report.errors.push(format!("reading the mount table: {e}"));
                return report;
            }
        };
        let staged: BTreeSet<String> = self.state.all().into_iter().map(|v| v.nqn).collect();
        for o in orphans {
            let nqn = o.subsystem.nqn.clone();
            if staged.contains(&nqn) {
                report
                    .kept
                    .push((nqn, "staged; the monitor repairs it".into()));
                continue;
            }
            let mounted: Vec<String> = o
                .subsystem
                .namespaces
                .iter()
                .filter_map(|ns| ns.dev)
                .flat_map(|(major, minor)| {
                    table
                        .mounts_of_device(&DeviceRef::Number(DevNum { major, minor }))
                        .into_iter()
                        .map(|e| e.mount_point.display().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            if !mounted.is_empty() {
                report
                    .kept
                    .push((nqn, format!("mounted at {}", mounted.join(", "))));
                continue;
            }
            let result = match Nqn::new(nqn.clone()) {
                Ok(n) => self.initiator.disconnect(&n).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(_) => {
                    tracing::warn!(nqn = %nqn, health = %o.health_text(), "disconnected orphaned subsystem at startup");
                    report.disconnected.push(nqn);
                }
                Err(e) => report.errors.push(format!("disconnecting {nqn}: {e}")),
            }
        }
        report
    }
}

trait HealthText {
    fn health_text(&self) -> String;
}

impl HealthText for nvme::SubsystemReport {
    fn health_text(&self) -> String {
        format!("{:?}", self.health)
    }
}
