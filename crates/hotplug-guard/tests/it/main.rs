//! The hot-plug guard's integration tests in one binary (one module per former test file).

#![allow(clippy::unwrap_used)]

mod hotplug_guard_server;
mod prop_admission;
