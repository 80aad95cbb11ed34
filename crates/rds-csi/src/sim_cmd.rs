//! `rds-csi sim`: the RouterOS simulator as a standalone SSH server, for trying the driver
//! without an RDS (point `rds-csi controller --rds-address` at it). With `--nvmet` the disks
//! become real NVMe/TCP subsystems of the local kernel target, for end-to-end node tests.

use std::time::Duration;

use tracing::info;

use crate::args::SimArgs;
use crate::error::CliError;

pub async fn run(a: SimArgs) -> Result<(), CliError> {
    let keys =
        std::fs::read_to_string(&a.authorized_keys).map_err(|source| CliError::AuthorizedKeys {
            path: a.authorized_keys.clone(),
            source,
        })?;
    let authorized_keys: Vec<String> = keys
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if authorized_keys.is_empty() {
        return Err(CliError::NoAuthorizedKeys {
            path: a.authorized_keys.clone(),
        });
    }
    let capacity_bytes = a.capacity;
    let storage = match &a.storage_dir {
        Some(d) => rds_sim::Storage::Dir(d.clone()),
        None => rds_sim::Storage::Memory,
    };
    let mut cfg = rds_sim::SimConfig::for_tests();
    cfg.listen = a.listen;
    cfg.host_key_file = a.host_key_file.clone();
    cfg.authorized_keys = authorized_keys;
    cfg.storage = storage;
    cfg.capacity_bytes = capacity_bytes;
    cfg.pool = a.pool.clone();
    if a.nvmet {
        let mut n = rds_sim::NvmetConfig::with_addresses(a.nvmet_address.clone());
        n.configfs = a.nvmet_configfs.clone();
        let exporter = rds_sim::NvmetExporter::new(n).map_err(CliError::Nvmet)?;
        cfg.exporter = std::sync::Arc::new(exporter);
        info!(addresses = ?a.nvmet_address, "exporting disks through the Linux NVMe target");
    }
    let sim = rds_sim::Sim::start(cfg).await.map_err(CliError::SimStart)?;
    info!(listen = %sim.addr(), fingerprint = %sim.host_key_fingerprint(), "RouterOS simulator listening");
    println!("rds-sim listening on {}", sim.addr());
    println!("host key: {}", sim.host_key_openssh());
    println!("pin it with: --rds-host-key {}", sim.host_key_fingerprint());
    crate::shutdown::signal(Duration::from_secs(5)).await;
    sim.shutdown().await;
    Ok(())
}
