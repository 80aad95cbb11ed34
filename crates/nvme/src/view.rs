//! Every NVMe subsystem on the host from one sysfs walk.
//!
//! Looking up one NQN walks every controller (its subsystem is found by reading each one's
//! `subsysnqn`), so a caller that looks at each of N volumes in turn pays N walks of N
//! controllers. The node monitor checks every staged volume on every pass; it takes one
//! [`HostView`] per pass instead, so a pass costs one walk. A view is a snapshot: good for
//! deciding that nothing needs doing, never a basis for a repair (that reads sysfs afresh).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::nqn::Nqn;
use crate::sysfs::{Device, Subsystem, device_of};

#[derive(Debug, Clone, Default)]
pub struct HostView {
    subsystems: HashMap<String, Subsystem>,
    dev_root: PathBuf,
}

impl HostView {
    pub(crate) fn new(subsystems: Vec<Subsystem>, dev_root: PathBuf) -> Self {
        HostView {
            subsystems: subsystems.into_iter().map(|s| (s.nqn.clone(), s)).collect(),
            dev_root,
        }
    }

    /// The subsystem of `nqn` as the walk saw it; `None` when the host had no trace of it.
    pub fn subsystem(&self, nqn: &Nqn) -> Option<&Subsystem> {
        self.subsystems.get(nqn.as_str())
    }

    /// The block device a fresh resolution would have chosen at the time of the walk.
    pub fn device(&self, nqn: &Nqn) -> Option<Device> {
        device_of(&self.dev_root, self.subsystem(nqn)?)
    }

    pub fn len(&self) -> usize {
        self.subsystems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subsystems.is_empty()
    }
}
