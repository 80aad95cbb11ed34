//! RouterOS CLI, as spoken by a MikroTik ROSE Data Server, without any I/O.
//!
//! Two halves: typed command builders (every interpolated value is a validated newtype, so no
//! caller can smuggle a `;` or `[` into a command line), and parsers for the text RouterOS
//! prints back (`print detail` records that wrap, space-grouped numbers, `key: value`
//! monitors, `failure: …` errors on either stream). Keeping this crate pure lets the parsers
//! be fuzzed and property-tested, and lets the simulator and the client share one truth.

// Unwrap is the team rule's exception for tests: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod capacity;
pub mod command;
pub mod disk;
pub mod error;
pub mod file;
pub mod monitor;
pub mod record;
pub mod size;
pub mod value;

pub use capacity::Capacity;
pub use command::{Command, DiskAdd, NvmeExport};
pub use disk::Disk;
pub use error::{Failure, FailureKind, ParseError, ValueError};
pub use file::FileEntry;
pub use monitor::SystemResource;
pub use record::{Record, parse_records, parse_records_checked};
pub use value::{ByteSize, FilePath, HostNqn, MountPoint, Nqn, Port, Slot};
