//! The RDS appliances this controller manages, by name.
//!
//! Flags describe the default appliance; a backends file may add more. A StorageClass picks one
//! with the `backend` parameter and the volume id remembers it (see `volume_id`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use rds::RdsClient;
use routeros::{FilePath, Port};

use crate::error::DriverError;

/// Everything the controller needs to place and export volumes on one appliance.
pub struct Backend {
    pub name: String,
    pub client: Arc<RdsClient>,
    /// Where nodes connect for NVMe/TCP (the storage network, often not the SSH address): one
    /// address per path of NVMe multipath, in order of preference. Never empty, no duplicates
    /// ([`Backends::new`] refuses anything else; `config` also bounds the count).
    pub nvme_addresses: Vec<IpAddr>,
    pub nvme_port: Port,
    /// Default directory for backing files.
    pub volume_path: FilePath,
    /// Directories a StorageClass may choose with `volumePath` (always includes `volume_path`).
    pub allowed_paths: Vec<FilePath>,
    /// Host key verification is off for this backend: said loudly at start and by Probe.
    pub insecure: bool,
    /// `user@host:port`, for logs and messages; never contains secrets.
    pub target: String,
}

impl Backend {
    /// Whether `path` is one of the allowed directories or lies under one (whole components).
    pub fn allows(&self, dir: &FilePath) -> bool {
        self.allowed_paths
            .iter()
            .any(|base| dir == base || dir.is_under(base))
    }

    /// The preferred storage address (what a single-path `nvmeAddress` carries).
    pub fn nvme_address(&self) -> IpAddr {
        self.nvme_addresses[0]
    }

    /// Whether nodes may be sent to `addr` for this backend's volumes.
    pub fn has_nvme_address(&self, addr: &IpAddr) -> bool {
        self.nvme_addresses.contains(addr)
    }

    /// The storage addresses for messages: `10.0.1.2,10.0.2.2`.
    pub fn nvme_addresses_text(&self) -> String {
        let text: Vec<String> = self.nvme_addresses.iter().map(|a| a.to_string()).collect();
        text.join(",")
    }
}

pub struct Backends {
    default: String,
    by_name: BTreeMap<String, Arc<Backend>>,
}

impl Backends {
    /// `backends` must contain one named `default`.
    pub fn new(default: &str, backends: Vec<Backend>) -> Result<Self, DriverError> {
        let mut by_name = BTreeMap::new();
        for b in backends {
            if !crate::volume_id::is_backend_name(&b.name) {
                return Err(DriverError::InvalidBackendName(b.name));
            }
            let name = b.name.clone();
            let mut seen = Vec::new();
            for a in &b.nvme_addresses {
                if seen.contains(a) {
                    return Err(DriverError::Config(format!(
                        "backend {name}: storage address {a} is listed twice"
                    )));
                }
                seen.push(*a);
            }
            if seen.is_empty() {
                return Err(DriverError::Config(format!(
                    "backend {name}: no storage (NVMe/TCP) address"
                )));
            }
            if by_name.insert(name.clone(), Arc::new(b)).is_some() {
                return Err(DriverError::DuplicateBackend(name));
            }
        }
        if !by_name.contains_key(default) {
            return Err(DriverError::NoDefaultBackend(default.to_string()));
        }
        Ok(Backends {
            default: default.to_string(),
            by_name,
        })
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Backend>> {
        self.by_name.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.by_name.values()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(addresses: &[&str]) -> Backend {
        let exec = Arc::new(rds::testing::ScriptedExec::new());
        let dir = FilePath::new("/storage-pool/metal-csi").unwrap();
        Backend {
            name: "rds1".into(),
            client: Arc::new(RdsClient::new(exec, rds::ClientConfig::default())),
            nvme_addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            nvme_port: Port::new(4420).unwrap(),
            volume_path: dir.clone(),
            allowed_paths: vec![dir],
            insecure: false,
            target: "t".into(),
        }
    }

    #[test]
    fn a_backend_has_at_least_one_storage_address_and_none_twice() {
        let ok = Backends::new("rds1", vec![backend(&["10.0.1.2", "10.0.2.2"])]).unwrap();
        let b = ok.get("rds1").unwrap();
        assert_eq!(b.nvme_address().to_string(), "10.0.1.2");
        assert_eq!(b.nvme_addresses_text(), "10.0.1.2,10.0.2.2");
        assert!(b.has_nvme_address(&"10.0.2.2".parse().unwrap()));
        assert!(!b.has_nvme_address(&"10.0.3.2".parse().unwrap()));
        for (addresses, why) in [
            (&[][..], "no storage"),
            (&["10.0.1.2", "10.0.1.2"][..], "listed twice"),
        ] {
            let Err(e) = Backends::new("rds1", vec![backend(addresses)]) else {
                panic!("{addresses:?} accepted");
            };
            assert!(e.to_string().contains(why), "{e}");
        }
    }
}
