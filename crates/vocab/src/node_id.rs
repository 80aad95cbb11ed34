//! The CSI node id: `<node-name>/<host-nqn>`.
//!
//! Host fencing needs the controller to know which NVMe host NQN a node presents to the RDS,
//! and the node id is the one value the CO hands from NodeGetInfo to every ControllerPublish
//! without any extra API access (RBAC, a Node annotation watcher). `/` cannot appear in a
//! Kubernetes node name, so the split is unambiguous. Everything except host fencing (the
//! attachment bookkeeping, events, VolumeAttachments, KubeVirt grouping, rebuild) keys on the
//! node NAME, which is what VolumeAttachments carry; that is why the id is parsed once, at the
//! gRPC boundary, and only the name travels on.
//!
//! A bare `<node-name>` (a node plugin from before host fencing) stays valid: such a node can
//! attach volumes without host fencing, but not those that ask for it.

use std::fmt;

use nvme::Nqn;

use crate::error::{DriverError, Result};

/// CSI: "The size of this field SHALL NOT exceed 256 bytes" (NodeGetInfoResponse.node_id).
/// Kubernetes accepts 256 on CSINode since 1.23.
pub const MAX_NODE_ID_LEN: usize = 256;

/// What CSINode accepts in Kubernetes 1.14–1.21 (1.22: 192). A longer id is valid CSI and
/// works on 1.23+, but node-driver-registrar cannot register it on older clusters.
pub const OLD_KUBERNETES_NODE_ID_LEN: usize = 128;

const SEPARATOR: char = '/';

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId {
    /// The Kubernetes node name.
    pub name: String,
    /// `None` for an old-format id (no host NQN reported).
    pub host_nqn: Option<Nqn>,
}

impl NodeId {
    /// Parses the node id of a ControllerPublish/Unpublish request. Malformed ids are
    /// INVALID_ARGUMENT: they did not come from this driver's NodeGetInfo.
    pub fn parse(raw: &str) -> Result<NodeId> {
        let bad = |why: String| {
            DriverError::InvalidArgument(format!(
                "node ID {:?} is not <node-name> or <node-name>/<host-nqn> as this driver's NodeGetInfo reports it: {why}",
                raw.chars().take(300).collect::<String>()
            ))
        };
        if raw.is_empty() {
            return Err(bad("empty".into()));
        }
        if raw.len() > MAX_NODE_ID_LEN {
            return Err(bad(format!(
                "{} bytes, CSI allows at most {MAX_NODE_ID_LEN}",
                raw.len()
            )));
        }
        let (name, nqn) = match raw.split_once(SEPARATOR) {
            None => (raw, None),
            Some((name, nqn)) => (name, Some(nqn)),
        };
        if name.trim().is_empty() {
            return Err(bad("the node name is empty".into()));
        }
        let host_nqn = nqn
            .map(|n| {
                Nqn::new(n).map_err(|e| bad(format!("the part after '/' is not a host NQN: {e}")))
            })
            .transpose()?;
        Ok(NodeId {
            name: name.to_string(),
            host_nqn,
        })
    }

    /// The id a node plugin reports. Fails (a startup error, not an RPC error) when the
    /// result could not round-trip: a name with `/`, or an id longer than CSI allows.
    pub fn compose(name: &str, host_nqn: &Nqn) -> Result<String> {
        if name.trim().is_empty() {
            return Err(DriverError::Config("node id must not be empty".into()));
        }
        if name.contains(SEPARATOR) {
            return Err(DriverError::Config(format!(
                "node name {name:?} contains '/', which separates the node name from the host NQN in the CSI node id; use the Kubernetes node name"
            )));
        }
        let id = format!("{name}{SEPARATOR}{host_nqn}");
        if id.len() > MAX_NODE_ID_LEN {
            return Err(DriverError::Config(format!(
                "the CSI node id {id:?} would be {} bytes, more than the {MAX_NODE_ID_LEN} CSI allows; the node name ({} bytes) plus '/' and the host NQN ({} bytes) must fit",
                id.len(),
                name.len(),
                host_nqn.as_str().len()
            )));
        }
        if id.len() > OLD_KUBERNETES_NODE_ID_LEN {
            tracing::error!(
                node_id_bytes = id.len(),
                node_name_bytes = name.len(),
                "the CSI node id is {} bytes: Kubernetes 1.21 and older refuse CSINode node ids over {OLD_KUBERNETES_NODE_ID_LEN} bytes (1.22: over 192), so node-driver-registrar cannot register this node there; on those versions keep node names to {} bytes, or run Kubernetes 1.23 or newer",
                id.len(),
                OLD_KUBERNETES_NODE_ID_LEN - 1 - host_nqn.as_str().len()
            );
        }
        Ok(id)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host_nqn {
            Some(n) => write!(f, "{}{SEPARATOR}{n}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn composed_ids_parse_back_to_name_and_nqn() {
        let nqn = Nqn::new(HOST).unwrap();
        let id = NodeId::compose("worker-1.example.com", &nqn).unwrap();
        assert_eq!(id, format!("worker-1.example.com/{HOST}"));
        let parsed = NodeId::parse(&id).unwrap();
        assert_eq!(parsed.name, "worker-1.example.com");
        assert_eq!(parsed.host_nqn, Some(nqn));
        assert_eq!(parsed.to_string(), id);
    }

    #[test]
    fn a_bare_name_is_the_old_format_without_nqn() {
        let parsed = NodeId::parse("worker-1").unwrap();
        assert_eq!(parsed.name, "worker-1");
        assert_eq!(parsed.host_nqn, None);
        // csi-sanity's made-up node ids stay plain names.
        assert!(NodeId::parse("some-fake-node-id").is_ok());
    }

    #[test]
    fn malformed_ids_are_invalid_argument() {
        let too_long = format!("{}/{HOST}", "n".repeat(MAX_NODE_ID_LEN));
        for bad in [
            "",
            "/nqn.2014-08.org.nvmexpress:uuid:x",
            "worker/",
            "worker/not-an-nqn",
            "worker/nqn.2014-08.org.nvmexpress:uuid:a,b=c",
            &too_long,
        ] {
            let e = NodeId::parse(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}: {e}");
        }
    }

    #[test]
    fn compose_refuses_what_could_not_round_trip() {
        let nqn = Nqn::new(HOST).unwrap();
        assert!(NodeId::compose("a/b", &nqn).is_err());
        assert!(NodeId::compose(" ", &nqn).is_err());
        // Longest name that still fits.
        let fits = "n".repeat(MAX_NODE_ID_LEN - 1 - HOST.len());
        assert_eq!(NodeId::compose(&fits, &nqn).unwrap().len(), MAX_NODE_ID_LEN);
        let e = NodeId::compose(&format!("{fits}x"), &nqn).unwrap_err();
        assert!(e.to_string().contains("256"), "{e}");
    }
}
