//! The Kubernetes adapter's integration tests in one binary (one module per former test file),
//! against a real kube-apiserver (`scripts/test-kube`); shared helpers in `kube_common`.

#![allow(clippy::unwrap_used)]

mod kube_cluster;
mod kube_common;
mod kube_fencing;
mod kube_node_events;
mod kube_vmi;
