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
    /// Where nodes connect for NVMe/TCP (the storage network, often not the SSH address).
    pub nvme_address: IpAddr,
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
