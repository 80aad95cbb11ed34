//! The node plugin's integration tests in one binary (one module per former test file); the
//! node environment (`common/node_env.rs`) is included by the modules that use it.

#![allow(clippy::unwrap_used)]

mod node_boundary;
mod node_multipath;
mod node_service;
mod prop_node_context;
mod prop_params;
