//! The RDS as the driver sees it: typed operations (`get_disk`, `create_disk`, …) run as
//! RouterOS commands over one SSH connection.
//!
//! Layers: [`Exec`] runs one command line and returns both streams (SSH in production,
//! anything in unit tests); [`RdsClient`] builds commands with `routeros`, applies deadlines
//! and retries, detects RouterOS failures on either stream and classifies every error
//! once ([`ErrorClass`]), so the gRPC layer maps classes to codes in one place.

mod backoff;
pub mod client;
pub mod error;
pub mod exec;
pub mod hostkey;
pub mod ssh;
pub mod testing;

pub use client::{
    ClientConfig, CommandEvent, CommandObserver, CreateOutcome, DeleteOutcome, RdsClient,
};
pub use error::{ErrorClass, RdsError};
pub use exec::{Exec, ExecFuture, ExecOutput};
pub use hostkey::HostKeyPolicy;
pub use ssh::{SshConfig, SshTransport};
