//! CSI v1 protocol bindings (generated from `proto/csi.proto`) plus the
//! unix-socket plumbing every CSI endpoint needs.
//!
//! Users write `csi::v1::identity_server::Identity`,
//! `csi::v1::CreateVolumeRequest`, `csi::uds::connect(..)`, and so on.

mod error;
pub mod json;
pub mod names;
mod redact;
pub mod uds;

pub use error::Error;

/// Generated messages, enums, servers (`*_server`) and clients
/// (`*_client`) for package `csi.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("csi.v1");
}

/// The encoded `FileDescriptorSet` of `csi.proto` (with imports), for
/// reflection and for tests that pin the wire schema.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/csi_descriptor.bin"));
