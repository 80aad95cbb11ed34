//! StorageClass parameters and the volume_context handed to nodes.
//!
//! Parsing is strict: an unknown key or a malformed value is an INVALID_ARGUMENT naming the key,
//! because a typo in a StorageClass should fail the first PVC loudly rather than silently give
//! every volume a default nobody chose.

use std::collections::HashMap;
use std::net::IpAddr;

use routeros::{FilePath, Port};

use crate::backend::{Backend, Backends};
use crate::error::{DriverError, Result};

pub const P_BACKEND: &str = "backend";
pub const P_VOLUME_PATH: &str = "volumePath";
pub const P_NVME_ADDRESS: &str = "nvmeAddress";
pub const P_NVME_PORT: &str = "nvmePort";
/// Which of the backend's storage addresses the class's volumes use (comma-separated).
pub const P_NVME_ADDRESSES: &str = "nvmeAddresses";
pub const P_CTRL_LOSS_TMO: &str = "ctrlLossTmo";
pub const P_RECONNECT_DELAY: &str = "reconnectDelay";
pub const P_KEEP_ALIVE_TMO: &str = "keepAliveTmo";
pub const P_FS_TYPE: &str = "fsType";
pub const P_MIGRATION_TIMEOUT: &str = "migrationTimeoutSeconds";
/// `"true"` lets volumes of the class run executables (mounted without `noexec`).
pub const P_ALLOW_EXEC: &str = "allowExec";
/// `"true"`: ControllerPublish restricts the disk's NVMe/TCP export to the publishing node's
/// host NQN (RDS-side fencing, docs/fencing.md). Off by default until proven on hardware.
pub const P_HOST_FENCING: &str = "hostFencing";
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
pub const PV_NAME: &str = "csi.storage.k8s.io/pv/name";
/// Keys under this prefix come from the external-provisioner (`--extra-create-metadata`) and
/// from kubelet; they are never typos of ours.
const K8S_PREFIX: &str = "csi.storage.k8s.io/";

/// volume_context keys (read by the node plugin; spelled as in the earlier driver).
pub const C_BACKEND: &str = "backend";
pub const C_NVME_ADDRESS: &str = "nvmeAddress";
pub const C_NVME_PORT: &str = "nvmePort";
/// Every NVMe/TCP path's address, comma-separated IP literals in preference order (multipath).
/// `nvmeAddress` keeps carrying the first one, so a node plugin from before multipath still
/// stages the volume over one path during a rolling upgrade.
pub const C_NVME_ADDRESSES: &str = "nvmeAddresses";
pub const C_NQN: &str = "nqn";
pub const C_VOLUME_PATH: &str = "volumePath";
pub const C_CTRL_LOSS_TMO: &str = "ctrlLossTmo";
pub const C_RECONNECT_DELAY: &str = "reconnectDelay";
pub const C_KEEP_ALIVE_TMO: &str = "keepAliveTmo";
pub const C_MIGRATION_TIMEOUT: &str = "migrationTimeoutSeconds";
pub const C_ALLOW_EXEC: &str = "allowExec";
pub const C_HOST_FENCING: &str = "hostFencing";

/// The most NVMe/TCP paths one volume may have. Each path is a kernel controller with its own
/// queues and reconnect worker on every node that stages the volume; an RDS has a handful of
/// ports, so anything longer is a mistake, not a topology.
pub const MAX_NVME_PATHS: usize = 8;

/// Parses a comma-separated list of storage addresses (`nvmeAddresses`, `nvme_addresses`, a
/// backend's list): IP literals only (the kernel's initiator does not resolve names), at least
/// one, at most [`MAX_NVME_PATHS`], no duplicates, order kept (the first is the preferred path).
/// `what` names the field for the error ("StorageClass parameter nvmeAddresses", ...).
pub fn parse_addresses(what: &str, v: &str) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    // Bound the work before splitting: the longest legal list is MAX_NVME_PATHS IPv6 literals.
    if v.len() > MAX_NVME_PATHS * 46 {
        return Err(invalid(format!(
            "{what} is {} bytes long; at most {MAX_NVME_PATHS} comma-separated IP addresses are allowed",
            v.len()
        )));
    }
    for item in v.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(invalid(format!(
                "{what}={v:?} has an empty entry; write comma-separated IP addresses like \"10.0.1.2,10.0.2.2\""
            )));
        }
        let ip: IpAddr = item.parse().map_err(|_| {
            invalid(format!(
                "{what}: {item:?} is not an IP address (host names are not resolved by the kernel's NVMe/TCP initiator)"
            ))
        })?;
        if out.contains(&ip) {
            return Err(invalid(format!("{what}: {ip} is listed twice")));
        }
        out.push(ip);
    }
    if out.len() > MAX_NVME_PATHS {
        return Err(invalid(format!(
            "{what} lists {} addresses; at most {MAX_NVME_PATHS} paths per volume are supported",
            out.len()
        )));
    }
    Ok(out)
}

/// The inverse of [`parse_addresses`].
pub fn format_addresses(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// publish_context keys (snake_case, as the earlier driver wrote them): written by the
/// controller's ControllerPublishVolume, read by the node plugin.
pub const PC_NVME_ADDRESS: &str = "nvme_address";
pub const PC_NVME_PORT: &str = "nvme_port";
/// Every path's address (multipath), as [`C_NVME_ADDRESSES`]; `nvme_address` keeps the
/// first for node plugins from before multipath.
pub const PC_NVME_ADDRESSES: &str = "nvme_addresses";
pub const PC_NVME_NQN: &str = "nvme_nqn";
/// Only for filesystem volumes; absent for raw block.
pub const PC_FS_TYPE: &str = "fs_type";

/// Kernel NVMe-oF timeouts the node passes to `/dev/nvme-fabrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// -1 = retry forever (what keeps volumes usable across outages), 0 = kernel default.
    pub ctrl_loss_tmo: i64,
    pub reconnect_delay: u32,
    /// 0 = kernel default.
    pub keep_alive_tmo: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            ctrl_loss_tmo: -1,
            reconnect_delay: 5,
            keep_alive_tmo: 0,
        }
    }
}

/// Parsed CreateVolume/GetCapacity parameters.
#[derive(Debug, Clone)]
pub struct VolumeParams {
    pub backend: String,
    pub volume_dir: FilePath,
    /// The paths' addresses, preferred first; never empty, each one of the backend's.
    pub nvme_addresses: Vec<IpAddr>,
    pub nvme_port: Port,
    pub timeouts: Timeouts,
    pub migration_timeout_secs: Option<u32>,
    /// Mount without `noexec` (StorageClass `allowExec: "true"`).
    pub allow_exec: bool,
    /// RDS-side host ACL on publish (StorageClass `hostFencing: "true"`).
    pub host_fencing: bool,
    pub pvc_name: Option<String>,
    pub pvc_namespace: Option<String>,
}

fn invalid(msg: String) -> DriverError {
    DriverError::InvalidArgument(msg)
}

/// Strict boolean: only `true` and `false`, so `"yes"` or `"1"` fail loudly instead of meaning
/// whatever a lenient parser guesses.
pub fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(format!(
            "parameter {key}={v:?} must be \"true\" or \"false\""
        ))),
    }
}

fn parse_int<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.trim().parse::<T>().map_err(|_| {
        invalid(format!(
            "StorageClass parameter {key}={v:?} is not a whole number"
        ))
    })
}

/// Resolves the backend named by the parameters (or the default) and parses the rest against it.
pub fn parse<'b>(
    params: &HashMap<String, String>,
    backends: &'b Backends,
) -> Result<(VolumeParams, &'b Backend)> {
    for key in params.keys() {
        let known = [
            P_BACKEND,
            P_VOLUME_PATH,
            P_NVME_ADDRESS,
            P_NVME_ADDRESSES,
            P_NVME_PORT,
            P_CTRL_LOSS_TMO,
            P_RECONNECT_DELAY,
            P_KEEP_ALIVE_TMO,
            P_FS_TYPE,
            P_MIGRATION_TIMEOUT,
            P_ALLOW_EXEC,
            P_HOST_FENCING,
        ];
        if !known.contains(&key.as_str()) && !key.starts_with(K8S_PREFIX) {
            return Err(invalid(format!(
                "unknown StorageClass parameter {key:?}; known parameters: {}",
                known.join(", ")
            )));
        }
    }
    let name = params
        .get(P_BACKEND)
        .map(String::as_str)
        .unwrap_or(backends.default_name());
    let backend = backends.get(name).ok_or_else(|| {
        invalid(format!(
            "StorageClass parameter backend={name:?} names no configured RDS; configured: {}",
            backends.names().join(", ")
        ))
    })?;

    let volume_dir = match params.get(P_VOLUME_PATH) {
        None => backend.volume_path.clone(),
        Some(v) => {
            let p = FilePath::new(v)
                .map_err(|e| invalid(format!("StorageClass parameter volumePath: {e}")))?;
            if !backend.allows(&p) {
                let allowed: Vec<&str> = backend.allowed_paths.iter().map(|p| p.as_str()).collect();
                return Err(invalid(format!(
                    "StorageClass parameter volumePath={v:?} is outside the directories allowed on backend {:?}: {}",
                    backend.name,
                    allowed.join(", ")
                )));
            }
            p
        }
    };
    let nvme_addresses = storage_addresses(params, backend)?;
    let nvme_port = match params.get(P_NVME_PORT) {
        None => backend.nvme_port,
        Some(v) => {
            Port::parse(v).map_err(|e| invalid(format!("StorageClass parameter nvmePort: {e}")))?
        }
    };
    let mut timeouts = Timeouts::default();
    if let Some(v) = params.get(P_CTRL_LOSS_TMO) {
        let n: i64 = parse_int(P_CTRL_LOSS_TMO, v)?;
        // The node hands this to the kernel as an unsigned 32-bit count of seconds; accepting
        // more here would provision volumes that no node can ever stage.
        if n < -1 || n > i64::from(u32::MAX) {
            return Err(invalid(format!(
                "ctrlLossTmo must be -1 (unlimited), 0 (kernel default), or positive up to {}; got {n}",
                u32::MAX
            )));
        }
        timeouts.ctrl_loss_tmo = n;
    }
    if let Some(v) = params.get(P_RECONNECT_DELAY) {
        let n: i64 = parse_int(P_RECONNECT_DELAY, v)?;
        timeouts.reconnect_delay = u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid(format!("reconnectDelay must be positive; got {n}")))?;
    }
    if let Some(v) = params.get(P_KEEP_ALIVE_TMO) {
        let n: i64 = parse_int(P_KEEP_ALIVE_TMO, v)?;
        timeouts.keep_alive_tmo = u32::try_from(n)
            .map_err(|_| invalid(format!("keepAliveTmo must be non-negative; got {n}")))?;
    }
    let migration_timeout_secs = match params.get(P_MIGRATION_TIMEOUT) {
        None => None,
        Some(v) => {
            let n: i64 = parse_int(P_MIGRATION_TIMEOUT, v)?;
            if !(30..=3600).contains(&n) {
                return Err(invalid(format!(
                    "migrationTimeoutSeconds must be between 30 and 3600; got {n}"
                )));
            }
            Some(n as u32)
        }
    };
    let allow_exec = match params.get(P_ALLOW_EXEC) {
        None => false,
        Some(v) => parse_bool(P_ALLOW_EXEC, v)?,
    };
    let host_fencing = match params.get(P_HOST_FENCING) {
        None => false,
        Some(v) => parse_bool(P_HOST_FENCING, v)?,
    };
    if let Some(fs) = params.get(P_FS_TYPE)
        && !crate::capability::FS_TYPES.contains(&fs.as_str())
    {
        return Err(invalid(format!(
            "StorageClass parameter fsType={fs:?} is not supported; use one of {:?}",
            crate::capability::FS_TYPES
        )));
    }
    Ok((
        VolumeParams {
            backend: backend.name.clone(),
            volume_dir,
            nvme_addresses,
            nvme_port,
            timeouts,
            migration_timeout_secs,
            allow_exec,
            host_fencing,
            pvc_name: params.get(PVC_NAME).cloned(),
            pvc_namespace: params.get(PVC_NAMESPACE).cloned(),
        },
        backend,
    ))
}

/// The paths a class's volumes use: `nvmeAddresses` (a subset of the backend's addresses, in the
/// class's order), or `nvmeAddress` (one of them, a single path, as before multipath), or every
/// address of the backend. Both keys: the single one must be the list's first. An address the
/// backend does not list is refused, because ControllerPublish would never send a node there.
fn storage_addresses(params: &HashMap<String, String>, backend: &Backend) -> Result<Vec<IpAddr>> {
    let not_the_backends = |key: &str, a: &IpAddr| {
        invalid(format!(
            "StorageClass parameter {key}: {a} is not a storage address of backend {:?}, which has {}; add it to the backend's nvme_addresses (or --nvme-addresses) first",
            backend.name,
            backend.nvme_addresses_text()
        ))
    };
    let single = match params.get(P_NVME_ADDRESS) {
        None => None,
        Some(v) => {
            let a = v.trim().parse::<IpAddr>().map_err(|_| {
                invalid(format!("StorageClass parameter nvmeAddress={v:?} must be an IP address (host names are not resolved by the kernel's NVMe/TCP initiator)"))
            })?;
            if !backend.has_nvme_address(&a) {
                return Err(not_the_backends(P_NVME_ADDRESS, &a));
            }
            Some(a)
        }
    };
    let Some(v) = params.get(P_NVME_ADDRESSES) else {
        return Ok(match single {
            Some(a) => vec![a],
            None => backend.nvme_addresses.clone(),
        });
    };
    let list = parse_addresses(&format!("StorageClass parameter {P_NVME_ADDRESSES}"), v)?;
    if let Some(a) = list.iter().find(|a| !backend.has_nvme_address(a)) {
        return Err(not_the_backends(P_NVME_ADDRESSES, a));
    }
    if let Some(a) = single
        && a != list[0]
    {
        return Err(invalid(format!(
            "StorageClass parameters nvmeAddress={a} and nvmeAddresses={} disagree: when both are given, nvmeAddress must be the first (preferred) of nvmeAddresses; better give only nvmeAddresses",
            format_addresses(&list)
        )));
    }
    Ok(list)
}

/// The volume_context for a volume: what the node needs to connect, plus PVC identity for events.
pub fn volume_context(
    p: &VolumeParams,
    port: u16,
    nqn: &str,
    file_path: &str,
) -> HashMap<String, String> {
    let mut ctx = HashMap::new();
    ctx.insert(C_BACKEND.into(), p.backend.clone());
    ctx.insert(C_NVME_ADDRESS.into(), p.nvme_addresses[0].to_string());
    ctx.insert(C_NVME_ADDRESSES.into(), format_addresses(&p.nvme_addresses));
    ctx.insert(C_NVME_PORT.into(), port.to_string());
    ctx.insert(C_NQN.into(), nqn.to_string());
    ctx.insert(C_VOLUME_PATH.into(), file_path.to_string());
    ctx.insert(C_CTRL_LOSS_TMO.into(), p.timeouts.ctrl_loss_tmo.to_string());
    ctx.insert(
        C_RECONNECT_DELAY.into(),
        p.timeouts.reconnect_delay.to_string(),
    );
    ctx.insert(
        C_KEEP_ALIVE_TMO.into(),
        p.timeouts.keep_alive_tmo.to_string(),
    );
    if let Some(m) = p.migration_timeout_secs {
        ctx.insert(C_MIGRATION_TIMEOUT.into(), m.to_string());
    }
    if p.allow_exec {
        ctx.insert(C_ALLOW_EXEC.into(), "true".into());
    }
    if p.host_fencing {
        ctx.insert(C_HOST_FENCING.into(), "true".into());
    }
    if let Some(n) = &p.pvc_name {
        ctx.insert(PVC_NAME.into(), n.clone());
    }
    if let Some(n) = &p.pvc_namespace {
        ctx.insert(PVC_NAMESPACE.into(), n.clone());
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_round_trip_and_refuse_what_the_kernel_cannot_use() {
        let v = parse_addresses("x", " 10.0.1.2, fd00::2 ").unwrap();
        assert_eq!(format_addresses(&v), "10.0.1.2,fd00::2");
        assert_eq!(parse_addresses("x", &format_addresses(&v)).unwrap(), v);
        for (bad, why) in [
            ("", "empty entry"),
            ("10.0.1.2,", "empty entry"),
            ("rds.local", "not an IP address"),
            ("10.0.1.2,10.0.1.2", "listed twice"),
            (
                "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7,10.0.0.8,10.0.0.9",
                "at most 8",
            ),
        ] {
            let e = parse_addresses("StorageClass parameter nvmeAddresses", bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
            assert!(e.to_string().contains("nvmeAddresses"), "{bad:?}: {e}");
        }
        let long = "1".repeat(10_000);
        assert!(
            parse_addresses("x", &long)
                .unwrap_err()
                .to_string()
                .contains("bytes long")
        );
    }

    fn backends(addresses: &[&str]) -> Backends {
        let exec = std::sync::Arc::new(rds::testing::ScriptedExec::new());
        let dir = FilePath::new("/storage-pool/metal-csi").unwrap();
        let b = Backend {
            name: "rds1".into(),
            client: std::sync::Arc::new(rds::RdsClient::new(exec, rds::ClientConfig::default())),
            nvme_addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            nvme_port: Port::new(4420).unwrap(),
            volume_path: dir.clone(),
            allowed_paths: vec![dir],
            insecure: false,
            target: "t".into(),
        };
        Backends::new("rds1", vec![b]).unwrap()
    }

    fn addresses_for(b: &Backends, kv: &[(&str, &str)]) -> Result<String> {
        let map = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&map, b).map(|(p, _)| format_addresses(&p.nvme_addresses))
    }

    #[test]
    fn a_class_chooses_among_the_backends_storage_addresses() {
        let b = backends(&["10.0.1.2", "10.0.2.2", "10.0.3.2"]);
        // Default: every path, the backend's order.
        assert_eq!(
            addresses_for(&b, &[]).unwrap(),
            "10.0.1.2,10.0.2.2,10.0.3.2"
        );
        // A subset, in the class's order.
        let sub = [(P_NVME_ADDRESSES, "10.0.3.2, 10.0.1.2")];
        assert_eq!(addresses_for(&b, &sub).unwrap(), "10.0.3.2,10.0.1.2");
        // The single key: one path, as before multipath.
        let one = [(P_NVME_ADDRESS, "10.0.2.2")];
        assert_eq!(addresses_for(&b, &one).unwrap(), "10.0.2.2");
        // Both, agreeing: the single one is the list's first.
        let both = [
            (P_NVME_ADDRESS, "10.0.2.2"),
            (P_NVME_ADDRESSES, "10.0.2.2,10.0.1.2"),
        ];
        assert_eq!(addresses_for(&b, &both).unwrap(), "10.0.2.2,10.0.1.2");
    }

    #[test]
    fn a_class_cannot_name_an_address_the_backend_does_not_have() {
        let b = backends(&["10.0.1.2", "10.0.2.2"]);
        for (kv, why) in [
            (
                vec![(P_NVME_ADDRESSES, "10.0.1.2,10.0.9.9")],
                "10.0.9.9 is not a storage address of backend \"rds1\", which has 10.0.1.2,10.0.2.2",
            ),
            (
                vec![(P_NVME_ADDRESS, "10.0.9.9")],
                "nvmeAddress: 10.0.9.9 is not a storage address",
            ),
            (
                vec![(P_NVME_ADDRESSES, "10.0.1.2,rds.local")],
                "not an IP address",
            ),
            (
                vec![(P_NVME_ADDRESSES, "10.0.1.2,10.0.1.2")],
                "listed twice",
            ),
            (vec![(P_NVME_ADDRESSES, "")], "empty entry"),
            (
                vec![
                    (P_NVME_ADDRESS, "10.0.1.2"),
                    (P_NVME_ADDRESSES, "10.0.2.2,10.0.1.2"),
                ],
                "disagree",
            ),
        ] {
            let e = addresses_for(&b, &kv).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{kv:?}");
            assert!(e.to_string().contains(why), "{kv:?}: {e}");
        }
    }

    #[test]
    fn the_volume_context_carries_every_path_and_the_first_alone() {
        let b = backends(&["10.0.1.2", "fd00::2"]);
        let (p, _) = parse(&HashMap::new(), &b).unwrap();
        let ctx = volume_context(&p, 4420, "nqn.2000-02.com.mikrotik:pvc-1", "/x.img");
        assert_eq!(ctx[C_NVME_ADDRESSES], "10.0.1.2,fd00::2");
        assert_eq!(ctx[C_NVME_ADDRESS], "10.0.1.2");
        assert_eq!(ctx[C_NVME_PORT], "4420");
        assert_eq!(
            parse_addresses("x", &ctx[C_NVME_ADDRESSES]).unwrap(),
            p.nvme_addresses
        );
    }

    #[test]
    fn allow_exec_is_strictly_true_or_false() {
        assert!(parse_bool(P_ALLOW_EXEC, "true").unwrap());
        assert!(!parse_bool(P_ALLOW_EXEC, "false").unwrap());
        for bad in ["yes", "1", "True", ""] {
            let e = parse_bool(P_ALLOW_EXEC, bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn allow_exec_reaches_the_volume_context_only_when_set() {
        let mut p = VolumeParams {
            backend: "default".into(),
            volume_dir: FilePath::new("/storage-pool/metal-csi").unwrap(),
            nvme_addresses: vec!["10.0.0.1".parse().unwrap()],
            nvme_port: Port::parse("4420").unwrap(),
            timeouts: Timeouts::default(),
            migration_timeout_secs: None,
            allow_exec: false,
            host_fencing: false,
            pvc_name: None,
            pvc_namespace: None,
        };
        let ctx = volume_context(&p, 4420, "nqn.2000-02.com.mikrotik:pvc-1", "/x.img");
        assert!(!ctx.contains_key(C_ALLOW_EXEC));
        p.allow_exec = true;
        let ctx = volume_context(&p, 4420, "nqn.2000-02.com.mikrotik:pvc-1", "/x.img");
        assert_eq!(ctx.get(C_ALLOW_EXEC).map(String::as_str), Some("true"));
    }
}
