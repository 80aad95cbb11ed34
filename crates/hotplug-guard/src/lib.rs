//! The KubeVirt hot-plug guard: a separately deployed admission webhook (`rds-csi
//! hotplug-guard`) that denies deleting an attachment pod while its volume is still in use.
//!
//! Owns: the rules, the object shapes it reads, the AdmissionReview codec, reloading TLS, the
//! webhook server and its counters (registered through `vocab::registry::MetricRegistry`).
//!
//! May not: depend on the controller, the node plugin, fencing, the `k8s` adapter or
//! observability (so the webhook's program does not link them), nor on the simulator or
//! test-only crates. Depends on `vocab` only (the accept loop and the registry trait).
//!
//! The code lives in the `hotplug_guard` module (the former `hotplug_guard`),
//! re-exported here.

mod hotplug_guard;

pub use self::hotplug_guard::*;
