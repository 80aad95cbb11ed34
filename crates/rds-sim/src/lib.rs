//! A RouterOS simulator that tests, `rds-csi sim` and `rds-csi demo` talk to over real SSH.
//!
//! It exists so the driver's SSH client, command builders and parsers meet realistic RouterOS
//! behaviour (wrapped output, CRLF, `failure: …` texts, silent no-ops) and realistic trouble
//! (latency, dropped connections before or after a mutation, hangs, reboots) without hardware.
//!
//! Entry points: [`Sim::start`] with a [`SimConfig`], then [`Sim::faults`] to inject trouble
//! and [`Sim::disks`] / [`Sim::files`] / [`Sim::commands`] to assert on effects. With
//! [`NvmetExporter`] as the exporter, exported disks become real Linux NVMe/TCP subsystems.

mod command;
mod config;
mod error;
mod faults;
mod keys;
mod model;
mod nvmet;
mod render;
mod server;
mod sim;
mod style;

pub use config::{SimConfig, Storage};
pub use error::SimError;
pub use faults::{Faults, Timing};
pub use keys::{ClientKey, generate_client_key, generate_client_key_rsa, write_client_key};
pub use model::{Exporter, NoExporter, SimDisk, SimFile};
pub use nvmet::{HostAccess, NvmetConfig, NvmetExporter};
pub use sim::{Sim, run_until};
pub use style::OutputStyle;

/// Re-exported so callers can name durations without importing std.
pub type Latency = std::time::Duration;
