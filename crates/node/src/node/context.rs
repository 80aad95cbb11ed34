//! What a node RPC is asked to do, parsed out of the CSI request: the connect parameters from
//! volume_context, and block-or-filesystem plus mount flags from the volume capability.
//!
//! Parsing is strict (the controller writes these keys itself, so a malformed value means a
//! hand-written PV or a bug, and guessing a default would connect with settings nobody chose).

use std::collections::HashMap;
use std::num::NonZeroU32;

use csi::v1::VolumeCapability;
use csi::v1::volume_capability::AccessType;
use csi::v1::volume_capability::access_mode::Mode;
use mount::FsType;
use nvme::{ConnectParams, CtrlLossTmo, ManagedPrefix, Nqn, TargetAddress};

use vocab::error::{DriverError, Result};
use vocab::params;
use vocab::volume_id::VolumeId;

/// Connect parameters and per-volume policy from volume_context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageContext {
    /// Connect parameters of the preferred (first) path.
    pub params: ConnectParams,
    /// Every NVMe/TCP path of the volume, preferred first (multipath); `params.target` is the
    /// first. One entry for a single-address volume.
    pub targets: Vec<TargetAddress>,
    pub allow_exec: bool,
    /// (namespace, name) of the PVC when the provisioner passed it, for events.
    pub pvc: Option<(String, String)>,
}

impl StageContext {
    /// The connect parameters of each path, in order: the same NQN, host identity and
    /// timeouts, one target address each.
    pub fn path_params(&self) -> Vec<ConnectParams> {
        paths_of(&self.params, &self.targets)
    }
}

/// `base` once per target address (see [`StageContext::path_params`]).
pub fn paths_of(base: &ConnectParams, targets: &[TargetAddress]) -> Vec<ConnectParams> {
    targets
        .iter()
        .map(|t| ConnectParams {
            target: *t,
            ..base.clone()
        })
        .collect()
}

fn invalid(msg: impl Into<String>) -> DriverError {
    DriverError::InvalidArgument(msg.into())
}

/// The publish_context key standing in for each volume_context connect key: ControllerPublish
/// reads the export's current address, port and NQN from the RDS, so they win over what
/// CreateVolume wrote long ago (a storage address changed since then reaches existing volumes).
const FROM_PUBLISH: [(&str, &str); 3] = [
    (params::C_NQN, vocab::params::PC_NVME_NQN),
    (params::C_NVME_ADDRESS, vocab::params::PC_NVME_ADDRESS),
    (params::C_NVME_PORT, vocab::params::PC_NVME_PORT),
];

/// One connect value and where it came from, for messages that say which field to fix.
fn connect_value<'a>(
    key: &'static str,
    ctx: &'a HashMap<String, String>,
    publish: &'a HashMap<String, String>,
) -> Option<(&'a str, String)> {
    let present = |m: &'a HashMap<String, String>, k: &str| {
        m.get(k).map(|v| v.trim()).filter(|v| !v.is_empty())
    };
    FROM_PUBLISH
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, pk)| present(publish, pk).map(|v| (v, format!("publish_context {pk}"))))
        .or_else(|| present(ctx, key).map(|v| (v, format!("volume_context {key}"))))
}

/// The addresses of every path and where they came from: publish_context `nvme_addresses`,
/// else publish_context `nvme_address`, else volume_context `nvmeAddresses`, else volume_context
/// `nvmeAddress` (a volume created before multipath, or by an old controller). The lists are
/// validated by the one parser the controller writes them with.
fn addresses_of(
    ctx: &HashMap<String, String>,
    publish: &HashMap<String, String>,
) -> Option<Result<(Vec<std::net::IpAddr>, String)>> {
    let present = |m: &HashMap<String, String>, k: &str| {
        m.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let list =
        |v: String, from: String| Some(params::parse_addresses(&from, &v).map(|a| (a, from)));
    let single = |v: String, from: String| {
        Some(
            v.parse::<std::net::IpAddr>()
                .map(|ip| (vec![ip], from.clone()))
                .map_err(|_| {
                    invalid(format!(
                        "{from}: invalid IP address {v:?}: not an IPv4/IPv6 literal"
                    ))
                }),
        )
    };
    let pc = vocab::params::PC_NVME_ADDRESSES;
    if let Some(v) = present(publish, pc) {
        return list(v, format!("publish_context {pc}"));
    }
    let pc = vocab::params::PC_NVME_ADDRESS;
    if let Some(v) = present(publish, pc) {
        return single(v, format!("publish_context {pc}"));
    }
    let vc = params::C_NVME_ADDRESSES;
    if let Some(v) = present(ctx, vc) {
        return list(v, format!("volume_context {vc}"));
    }
    let vc = params::C_NVME_ADDRESS;
    present(ctx, vc).and_then(|v| single(v, format!("volume_context {vc}")))
}

/// [`stage_context_with`] without a publish_context.
pub fn stage_context(
    ctx: &HashMap<String, String>,
    prefix: &ManagedPrefix,
) -> Result<StageContext> {
    stage_context_with(ctx, &HashMap::new(), prefix)
}

/// Parses the keys NodeStageVolume needs, preferring publish_context's address, port and NQN
/// and validating them exactly like volume_context's. NQNs outside the managed prefix are
/// refused: the node would connect something it is never allowed to disconnect again.
pub fn stage_context_with(
    ctx: &HashMap<String, String>,
    publish: &HashMap<String, String>,
    prefix: &ManagedPrefix,
) -> Result<StageContext> {
    let addresses = addresses_of(ctx, publish);
    let missing: Vec<&str> = [params::C_NQN, params::C_NVME_ADDRESS, params::C_NVME_PORT]
        .into_iter()
        .filter(|k| {
            if *k == params::C_NVME_ADDRESS {
                addresses.is_none()
            } else {
                connect_value(k, ctx, publish).is_none()
            }
        })
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "volume_context is missing required key(s): {} (and publish_context has no replacement)",
            missing.join(", ")
        )));
    }
    let get = |k: &'static str| connect_value(k, ctx, publish).unwrap_or_default();
    let (nqn_text, nqn_from) = get(params::C_NQN);
    let nqn = Nqn::new(nqn_text).map_err(|e| invalid(format!("{nqn_from}: {e}")))?;
    if !prefix.matches(nqn.as_str()) {
        return Err(invalid(format!(
            "{nqn_from} {nqn} is not under the managed prefix {prefix}; this node only attaches volumes it may also detach"
        )));
    }
    let (ips, addr_from) = addresses.unwrap_or_else(|| Err(invalid("no address")))?;
    let (port, port_from) = get(params::C_NVME_PORT);
    let targets = ips
        .iter()
        .map(|ip| TargetAddress::parse(&ip.to_string(), port))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{addr_from}/{port_from}: {e}")))?;
    let Some(target) = targets.first().copied() else {
        return Err(invalid(format!("{addr_from} lists no address")));
    };
    let mut p = ConnectParams::new(nqn, target);
    if let Some(v) = ctx.get(params::C_CTRL_LOSS_TMO) {
        let n = int(params::C_CTRL_LOSS_TMO, v)?;
        p.ctrl_loss_tmo = CtrlLossTmo::from_i64(n)
            .map_err(|e| invalid(format!("volume_context {}: {e}", params::C_CTRL_LOSS_TMO)))?;
    }
    if let Some(v) = ctx.get(params::C_RECONNECT_DELAY) {
        let n = int(params::C_RECONNECT_DELAY, v)?;
        p.reconnect_delay = u32::try_from(n)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                invalid(format!(
                    "volume_context {}={v:?} must be a positive number of seconds",
                    params::C_RECONNECT_DELAY
                ))
            })?;
    }
    if let Some(v) = ctx.get(params::C_KEEP_ALIVE_TMO) {
        let n = int(params::C_KEEP_ALIVE_TMO, v)?;
        let n = u32::try_from(n).map_err(|_| {
            invalid(format!(
                "volume_context {}={v:?} must be 0 (kernel default) or a positive number of seconds",
                params::C_KEEP_ALIVE_TMO
            ))
        })?;
        // 0 means "kernel default"; writing keep_alive_tmo=0 would disable keep-alives.
        p.keep_alive_tmo = NonZeroU32::new(n);
    }
    let allow_exec = match ctx.get(params::C_ALLOW_EXEC) {
        None => false,
        Some(v) => params::parse_bool(params::C_ALLOW_EXEC, v)?,
    };
    let pvc = match (ctx.get(params::PVC_NAMESPACE), ctx.get(params::PVC_NAME)) {
        (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => {
            Some((ns.clone(), name.clone()))
        }
        _ => None,
    };
    Ok(StageContext {
        params: p,
        targets,
        allow_exec,
        pvc,
    })
}

fn int(key: &str, v: &str) -> Result<i64> {
    v.trim()
        .parse()
        .map_err(|_| invalid(format!("volume_context {key}={v:?} is not a whole number")))
}

/// How the volume is consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Block,
    Filesystem {
        fs: FsType,
        mount_flags: Vec<String>,
    },
}

/// Access type plus whether the access mode only allows reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityView {
    pub access: Access,
    pub read_only_mode: bool,
}

/// Reads a required capability.
pub fn capability(cap: Option<&VolumeCapability>) -> Result<CapabilityView> {
    let cap = cap.ok_or_else(|| invalid("volume_capability is required"))?;
    let access = match &cap.access_type {
        Some(AccessType::Block(_)) => Access::Block,
        Some(AccessType::Mount(m)) => {
            let fs: FsType = m.fs_type.parse().map_err(|_| {
                invalid(format!(
                    "filesystem {:?} is not supported; use one of {:?} (empty means ext4)",
                    m.fs_type,
                    vocab::capability::FS_TYPES
                ))
            })?;
            Access::Filesystem {
                fs,
                mount_flags: m.mount_flags.clone(),
            }
        }
        None => {
            return Err(invalid(
                "volume_capability must specify either block or mount",
            ));
        }
    };
    let mode = cap
        .access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .unwrap_or(Mode::Unknown);
    Ok(CapabilityView {
        access,
        read_only_mode: matches!(mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly),
    })
}

/// The NQN a volume id stands for (the same derivation the controller uses, lower-cased), so
/// unstage/stats/expand agree with stage even without volume_context.
pub fn nqn_of_volume(volume_id: &str) -> Result<Nqn> {
    // The backend part does not take part in the NQN; any default works for parsing.
    let id =
        VolumeId::parse(volume_id, "default").map_err(|e| DriverError::NotFound(format!("{e}")))?;
    let text = id
        .nqn()
        .map_err(|e| DriverError::NotFound(format!("volume id {volume_id:?}: {e}")))?;
    Nqn::new(text.as_str()).map_err(|e| {
        DriverError::NotFound(format!("volume id {volume_id:?} gives no valid NQN: {e}"))
    })
}

/// Non-empty string field check with the CSI field name in the message.
pub fn required<'a>(field: &str, v: &'a str) -> Result<&'a str> {
    if v.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix() -> ManagedPrefix {
        ManagedPrefix::new(crate::node::config::DEFAULT_MANAGED_PREFIX).unwrap()
    }

    fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-11111111-1111-4111-8111-111111111111";

    #[test]
    fn missing_keys_are_named() {
        let e = stage_context(&ctx(&[("nqn", NQN)]), &prefix()).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            msg.contains("nvmeAddress") && msg.contains("nvmePort"),
            "{msg}"
        );
        assert!(!msg.contains("nqn,"), "{msg}");
    }

    #[test]
    fn timeouts_are_applied() {
        let c = stage_context(
            &ctx(&[
                ("nqn", NQN),
                ("nvmeAddress", "10.0.0.1"),
                ("nvmePort", "4420"),
                ("ctrlLossTmo", "600"),
                ("reconnectDelay", "2"),
                ("keepAliveTmo", "15"),
                ("allowExec", "true"),
            ]),
            &prefix(),
        )
        .unwrap();
        assert_eq!(c.params.ctrl_loss_tmo, CtrlLossTmo::Seconds(600));
        assert_eq!(c.params.reconnect_delay.get(), 2);
        assert_eq!(c.params.keep_alive_tmo.map(NonZeroU32::get), Some(15));
        assert!(c.allow_exec);
    }

    #[test]
    fn defaults_reconnect_forever_and_noexec() {
        let c = stage_context(
            &ctx(&[
                ("nqn", NQN),
                ("nvmeAddress", "10.0.0.1"),
                ("nvmePort", "4420"),
            ]),
            &prefix(),
        )
        .unwrap();
        assert_eq!(c.params.ctrl_loss_tmo, CtrlLossTmo::Unlimited);
        assert_eq!(c.params.keep_alive_tmo, None);
        assert!(!c.allow_exec);
    }

    #[test]
    fn bad_values_and_foreign_nqns_are_invalid() {
        for bad in [
            vec![
                ("nqn", NQN),
                ("nvmeAddress", "rds.local"),
                ("nvmePort", "4420"),
            ],
            vec![("nqn", NQN), ("nvmeAddress", "10.0.0.1"), ("nvmePort", "x")],
            vec![
                ("nqn", "nqn.2014-08.org.nvmexpress:uuid:abc"),
                ("nvmeAddress", "10.0.0.1"),
                ("nvmePort", "4420"),
            ],
            vec![
                ("nqn", NQN),
                ("nvmeAddress", "10.0.0.1"),
                ("nvmePort", "4420"),
                ("reconnectDelay", "0"),
            ],
            vec![
                ("nqn", NQN),
                ("nvmeAddress", "10.0.0.1"),
                ("nvmePort", "4420"),
                ("allowExec", "yes"),
            ],
        ] {
            let e = stage_context(&ctx(&bad), &prefix()).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}: {e}");
        }
    }

    #[test]
    fn publish_context_wins_over_volume_context_and_is_validated_the_same_way() {
        const NQN2: &str = "nqn.2000-02.com.mikrotik:pvc-22222222-2222-4222-8222-222222222222";
        let vc = ctx(&[
            ("nqn", NQN),
            ("nvmeAddress", "10.0.0.1"),
            ("nvmePort", "4420"),
        ]);
        let moved = ctx(&[
            ("nvme_address", "10.0.9.9"),
            ("nvme_port", "4421"),
            ("nvme_nqn", NQN2),
            ("fs_type", "ext4"),
        ]);
        let c = stage_context_with(&vc, &moved, &prefix()).unwrap();
        assert_eq!(c.params.target.ip().to_string(), "10.0.9.9");
        assert_eq!(c.params.target.port(), 4421);
        assert_eq!(c.params.nqn.as_str(), NQN2);

        // Absent or empty publish_context keys fall back to volume_context, key by key.
        let partial = ctx(&[("nvme_address", "10.0.9.9"), ("nvme_port", "")]);
        let c = stage_context_with(&vc, &partial, &prefix()).unwrap();
        assert_eq!(c.params.target.ip().to_string(), "10.0.9.9");
        assert_eq!(c.params.target.port(), 4420);
        assert_eq!(c.params.nqn.as_str(), NQN);

        // Only publish_context carries the connect keys: enough.
        let c = stage_context_with(&HashMap::new(), &moved, &prefix()).unwrap();
        assert_eq!(c.params.nqn.as_str(), NQN2);

        for (key, bad) in [
            ("nvme_address", "rds.local"),
            ("nvme_port", "70000"),
            ("nvme_nqn", "nqn.2014-08.org.nvmexpress:uuid:abc"),
        ] {
            let e = stage_context_with(&vc, &ctx(&[(key, bad)]), &prefix()).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{key}={bad}");
            assert!(e.to_string().contains("publish_context"), "{e}");
        }
    }

    #[test]
    fn every_path_is_read_with_publish_context_first_and_single_keys_as_fallback() {
        let ips = |c: &StageContext| -> Vec<String> {
            c.targets.iter().map(|t| t.ip().to_string()).collect()
        };
        let vc = ctx(&[
            ("nqn", NQN),
            ("nvmeAddress", "10.0.0.1"),
            ("nvmeAddresses", "10.0.0.1,10.0.1.1"),
            ("nvmePort", "4420"),
            ("csi.storage.k8s.io/pvc/namespace", "apps"),
            ("csi.storage.k8s.io/pvc/name", "data"),
        ]);
        let c = stage_context(&vc, &prefix()).unwrap();
        assert_eq!(ips(&c), ["10.0.0.1", "10.0.1.1"]);
        assert_eq!(c.params.target, c.targets[0]);
        assert!(c.targets.iter().all(|t| t.port() == 4420));
        assert_eq!(c.pvc, Some(("apps".into(), "data".into())));
        assert_eq!(c.path_params().len(), 2);
        assert_eq!(c.path_params()[1].target.ip().to_string(), "10.0.1.1");
        assert_eq!(c.path_params()[1].nqn, c.params.nqn);

        // publish_context's single address (an old controller) wins over volume_context's list.
        let c = stage_context_with(&vc, &ctx(&[("nvme_address", "10.0.9.9")]), &prefix()).unwrap();
        assert_eq!(ips(&c), ["10.0.9.9"]);
        // publish_context's list wins over everything.
        let pc = ctx(&[
            ("nvme_address", "10.0.9.9"),
            ("nvme_addresses", "10.0.9.9,10.0.8.8"),
            ("nvme_port", "4421"),
        ]);
        let c = stage_context_with(&vc, &pc, &prefix()).unwrap();
        assert_eq!(ips(&c), ["10.0.9.9", "10.0.8.8"]);
        assert!(c.targets.iter().all(|t| t.port() == 4421));

        // A single address keeps working unchanged, and its volume has no PVC identity.
        let old = ctx(&[
            ("nqn", NQN),
            ("nvmeAddress", "10.0.0.1"),
            ("nvmePort", "4420"),
        ]);
        let c = stage_context(&old, &prefix()).unwrap();
        assert_eq!(ips(&c), ["10.0.0.1"]);
        assert_eq!(c.pvc, None);
        // Only the list: enough.
        let only = ctx(&[
            ("nqn", NQN),
            ("nvmeAddresses", "10.0.0.1,10.0.0.2"),
            ("nvmePort", "4420"),
        ]);
        assert_eq!(ips(&stage_context(&only, &prefix()).unwrap()).len(), 2);

        for (key, bad) in [
            ("nvmeAddresses", "10.0.0.1,10.0.0.1"),
            ("nvmeAddresses", "10.0.0.1,,10.0.0.2"),
            ("nvmeAddresses", "10.0.0.1,rds.local"),
        ] {
            let mut c = old.clone();
            c.insert(key.into(), bad.into());
            let e = stage_context(&c, &prefix()).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.to_string().contains("nvmeAddresses"), "{e}");
        }
        let e = stage_context_with(&old, &ctx(&[("nvme_addresses", "10.0.0.1,x")]), &prefix())
            .unwrap_err();
        assert!(
            e.to_string().contains("publish_context nvme_addresses"),
            "{e}"
        );
    }

    #[test]
    fn volume_ids_map_to_lower_case_nqns() {
        let n = nqn_of_volume("default:pvc-11111111-1111-4111-8111-111111111111").unwrap();
        assert_eq!(n.as_str(), NQN);
        assert_eq!(
            nqn_of_volume("not-ours").unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
}
