//! The `vocab` crate's integration tests in one binary (one module per former test file).

#![allow(clippy::unwrap_used)]

mod module_graph;
