//! The controller's integration tests in one binary (one module per former test file): the
//! real controller stack from `sandbox` behind real gRPC, including fencing and bounds as the
//! CSI surface shows them. Shared request builders in `common`.

#![allow(clippy::unwrap_used)]

mod common;
mod conformance_gaps;
mod controller_faults;
mod controller_faults_more;
mod controller_grpc;
mod controller_guarantees;
mod fencing_grpc;
mod host_fencing_grpc;
mod kubevirt_contract;
mod orphans_sim;
mod snapshots_grpc;
