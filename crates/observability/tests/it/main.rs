//! Observability's integration tests in one binary (one module per former test file). The
//! request builders are the controller tests' `common` module, shared by path.

#![allow(clippy::unwrap_used)]

#[path = "../../../controller/tests/it/common/mod.rs"]
mod common;
mod metrics_fencing;
mod metrics_node;
mod metrics_pool;
mod metrics_rpc;
mod metrics_ssh;
