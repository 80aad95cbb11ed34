//! Node-side filesystem layer for rds-csi: mount table parsing, mount syscalls behind a trait,
//! the mount-option policy, the "format only an empty device" decision, filesystem tools with
//! deadlines, growing a filesystem smaller than its device, unmount safety and stale-mount
//! classification.
//!
//! Every external effect goes through [`MountSys`] (kernel calls) or [`CommandRunner`] (tools),
//! so all decisions are unit-tested rootless with [`fake::RecordingSys`] and scripted runners.

pub mod error;
pub mod exec;
pub mod fake;
pub mod format;
pub mod fstype;
pub mod grow;
pub mod inuse;
pub mod mounter;
pub mod mountinfo;
pub mod options;
pub mod stale;
pub mod sys;

pub use error::{Error, Result};
pub use exec::{CommandOutput, CommandRunner, CommandSpec, TokioRunner};
pub use format::{FormatConfig, FormatOutcome, FsckVerdict, Probe};
pub use fstype::FsType;
pub use grow::{FsGeometry, GrowOutcome};
pub use inuse::{InUseProbe, InUseQuery, InUseReport};
pub use mounter::{MountOutcome, Mounter, MounterConfig, UnmountOutcome};
pub use mountinfo::{DevNum, DeviceRef, MountEntry, MountTable};
pub use options::{MountOptions, OptionPolicy, build_mount_options};
pub use stale::{MountHealth, classify};
pub use sys::{FsUsage, MountFlags, MountSys, NodeKind, RealSys, UnmountMode};
