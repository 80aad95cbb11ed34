//! Fencing's integration tests in one binary (one module per former test file).

#![allow(clippy::unwrap_used)]

mod fencing_manager;
mod fencing_vmi;
