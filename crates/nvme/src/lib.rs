//! NVMe-oF (TCP) initiator for the rds-csi node plugin.
//!
//! Split by external effect so each is replaceable in tests: [`host_identity`] (files under
//! `/etc/nvme` and the plugin's state dir), [`fabrics`] (the `/dev/nvme-fabrics` control file),
//! [`cli`] (nvme-cli fallback), [`sysfs`] (read-only model of the kernel tree, any root).
//! [`initiator::Initiator`] ties them together with a deadline on every kernel write, external
//! command and sysfs scan. Devices are always found by NQN, never by controller number, and
//! automated disconnects are confined to the [`ManagedPrefix`].

mod cli;
mod deadline;
pub mod error;
pub mod fabrics;
pub mod health;
pub mod host_identity;
pub mod initiator;
pub mod nqn;
pub mod params;
pub mod resolver;
pub mod sysfs;
pub mod view;

pub use error::{ErrorClass, NvmeError, Result};
pub use fabrics::{FabricsAnswer, FabricsDevice, FabricsFile};
pub use health::{Health, OrphanReason, SubsystemReport, assess};
pub use host_identity::{
    HostIdentity, HostIdentityConfig, IdentitySource, LoadedIdentity, load_host_identity,
};
pub use initiator::{
    CleanupResult, ConnectMethod, ConnectOutcome, DisconnectOutcome, Initiator, InitiatorConfig,
    RepairOutcome,
};
pub use nqn::{ManagedPrefix, Nqn};
pub use params::{ConnectParams, CtrlLossTmo, TargetAddress};
pub use resolver::Resolver;
pub use sysfs::{
    Controller, ControllerAddress, ControllerState, Device, Multipath, Namespace, NamespaceKind,
    PathState, Subsystem, Sysfs, path_states,
};
pub use view::HostView;
