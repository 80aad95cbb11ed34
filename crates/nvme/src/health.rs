//! Is a connected subsystem usable? Orphan classification.
//!
//! "Orphaned" means the kernel still knows the NQN but it cannot serve I/O and will not recover
//! on its own: no controllers left, every controller dead or being deleted, or no block device.
//! Controllers that are `connecting`/`resetting` are *not* orphaned: with ctrl_loss_tmo=-1 the
//! kernel brings them back by itself (about 1.5 s after the target returns, same device name),
//! while a repair would delete the controller and renumber the device under a mounted filesystem.

use crate::sysfs::{ControllerState, Subsystem};

/// Why a subsystem is considered orphaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanReason {
    /// The subsystem entry survives but no controller references it.
    NoControllers,
    /// Every controller is dead, deleting or in an unknown state.
    AllControllersDead {
        controllers: Vec<(String, ControllerState)>,
    },
    /// Controllers exist but no namespace has a block device.
    NoBlockDevice {
        controllers: Vec<(String, ControllerState)>,
    },
}

impl std::fmt::Display for OrphanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |c: &[(String, ControllerState)]| {
            c.iter()
                .map(|(n, s)| format!("{n}={s}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            OrphanReason::NoControllers => f.write_str("no controllers"),
            OrphanReason::AllControllersDead { controllers } => {
                write!(
                    f,
                    "no live or recovering controller ({})",
                    list(controllers)
                )
            }
            OrphanReason::NoBlockDevice { controllers } => {
                write!(f, "no block device ({})", list(controllers))
            }
        }
    }
}

/// Health of one subsystem in one sysfs snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// At least one live controller and a block device.
    Healthy,
    /// No live controller yet, but the kernel is reconnecting and the block device is there.
    Recovering {
        controllers: Vec<(String, ControllerState)>,
    },
    Orphaned(OrphanReason),
}

impl Health {
    pub fn is_orphaned(&self) -> bool {
        matches!(self, Health::Orphaned(_))
    }
}

/// Classifies a subsystem snapshot. Note that right after a connect the namespace scan is still
/// running, so `NoBlockDevice` with a live controller can be transient; callers that just
/// connected should wait for the device rather than repair.
pub fn assess(sub: &Subsystem) -> Health {
    let states: Vec<(String, ControllerState)> = sub
        .controllers
        .iter()
        .map(|c| (c.name.clone(), c.state.clone()))
        .collect();
    if states.is_empty() {
        return Health::Orphaned(OrphanReason::NoControllers);
    }
    if !states.iter().any(|(_, s)| s.is_live() || s.is_recovering()) {
        return Health::Orphaned(OrphanReason::AllControllersDead {
            controllers: states,
        });
    }
    if sub.namespaces.is_empty() {
        return Health::Orphaned(OrphanReason::NoBlockDevice {
            controllers: states,
        });
    }
    if states.iter().any(|(_, s)| s.is_live()) {
        Health::Healthy
    } else {
        Health::Recovering {
            controllers: states,
        }
    }
}

/// A subsystem together with its assessment, as returned by enumeration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsystemReport {
    pub subsystem: Subsystem,
    pub health: Health,
}
