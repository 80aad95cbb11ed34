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
pub const C_NQN: &str = "nqn";
pub const C_VOLUME_PATH: &str = "volumePath";
pub const C_CTRL_LOSS_TMO: &str = "ctrlLossTmo";
pub const C_RECONNECT_DELAY: &str = "reconnectDelay";
pub const C_KEEP_ALIVE_TMO: &str = "keepAliveTmo";
pub const C_MIGRATION_TIMEOUT: &str = "migrationTimeoutSeconds";
pub const C_ALLOW_EXEC: &str = "allowExec";
pub const C_HOST_FENCING: &str = "hostFencing";

/// publish_context keys (snake_case, as the earlier driver wrote them): written by the
/// controller's ControllerPublishVolume, read by the node plugin.
pub const PC_NVME_ADDRESS: &str = "nvme_address";
pub const PC_NVME_PORT: &str = "nvme_port";
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
    pub nvme_address: IpAddr,
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
    let nvme_address = match params.get(P_NVME_ADDRESS) {
        None => backend.nvme_address,
        Some(v) => v.trim().parse::<IpAddr>().map_err(|_| {
            invalid(format!("StorageClass parameter nvmeAddress={v:?} must be an IP address (host names are not resolved by the kernel's NVMe/TCP initiator)"))
        })?,
    };
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
            nvme_address,
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

/// The volume_context for a volume: what the node needs to connect, plus PVC identity for events.
pub fn volume_context(
    p: &VolumeParams,
    port: u16,
    nqn: &str,
    file_path: &str,
) -> HashMap<String, String> {
    let mut ctx = HashMap::new();
    ctx.insert(C_BACKEND.into(), p.backend.clone());
    ctx.insert(C_NVME_ADDRESS.into(), p.nvme_address.to_string());
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
            nvme_address: "10.0.0.1".parse().unwrap(),
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
