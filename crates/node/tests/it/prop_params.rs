//! Property tests for StorageClass parameter parsing and the volume_context it produces.
//!
//! StorageClass parameters are user input that reaches the controller on every CreateVolume, and
//! the volume_context built from them is all a node has when it connects. So: parsing must never
//! panic, and whatever the controller accepts must mean the same thing after the trip through
//! volume_context — a value the node then refuses would leave a provisioned volume that can never
//! be mounted.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use node::config::DEFAULT_MANAGED_PREFIX;
use node::context::stage_context;
use nvme::{CtrlLossTmo, ManagedPrefix};
use proptest::prelude::*;
use rds::testing::ScriptedExec;
use rds::{ClientConfig, RdsClient};
use routeros::{FilePath, Port};
use vocab::params::{self, volume_context};
use vocab::{Backend, Backends};

const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-11111111-1111-4111-8111-111111111111";
const FILE: &str = "/storage-pool/metal-csi/pvc-11111111-1111-4111-8111-111111111111.img";

fn backend(name: &str, dir: &str) -> Backend {
    backend_at(name, dir, vec!["10.42.68.1".parse().unwrap()])
}

/// A backend whose storage addresses are `addresses`.
fn backend_at(name: &str, dir: &str, addresses: Vec<IpAddr>) -> Backend {
    let dir = FilePath::new(dir).unwrap();
    Backend {
        name: name.into(),
        client: Arc::new(RdsClient::new(
            Arc::new(ScriptedExec::new()),
            ClientConfig::default(),
        )),
        nvme_addresses: addresses,
        nvme_port: Port::new(4420).unwrap(),
        volume_path: dir.clone(),
        allowed_paths: vec![dir],
        insecure: false,
        target: "admin@10.42.68.1:22".into(),
    }
}

fn backends() -> Backends {
    Backends::new(
        "default",
        vec![
            backend("default", "/storage-pool/metal-csi"),
            backend("fast", "/nvme-pool/csi"),
        ],
    )
    .unwrap()
}

fn prefix() -> ManagedPrefix {
    ManagedPrefix::new(DEFAULT_MANAGED_PREFIX).unwrap()
}

const KEYS: &[&str] = &[
    params::P_BACKEND,
    params::P_VOLUME_PATH,
    params::P_NVME_ADDRESS,
    params::P_NVME_ADDRESSES,
    params::P_NVME_PORT,
    params::P_CTRL_LOSS_TMO,
    params::P_RECONNECT_DELAY,
    params::P_KEEP_ALIVE_TMO,
    params::P_FS_TYPE,
    params::P_MIGRATION_TIMEOUT,
    params::P_ALLOW_EXEC,
    params::PVC_NAME,
    params::PVC_NAMESPACE,
];

/// Keys mostly from the known set (so values get parsed, not just the key rejected), some not.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "\\PC{0,24}",
        1 => "csi\\.storage\\.k8s\\.io/[a-z/]{0,12}",
    ]
}

/// Values near the edges of what each key accepts, plus arbitrary text.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "(?s).{0,20}",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (-3i64..70_000).prop_map(|n| n.to_string()),
        " *-?[0-9]{1,22} *",
        any::<IpAddr>().prop_map(|a| a.to_string()),
        "/[a-z-]{1,12}(/[a-z0-9._-]{0,12}){0,3}",
        prop::sample::select(vec![
            "true",
            "false",
            "True",
            "",
            " true ",
            "ext4",
            "xfs",
            "btrfs",
            "default",
            "fast",
            "-1",
            "0",
            "4294967295",
            "4294967296",
            "9223372036854775807",
        ])
        .prop_map(str::to_string),
    ]
}

/// A trimmed-or-padded rendering, because the parser trims and the node must see the same value.
fn padded(s: String) -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", " ", "\t"])
        .prop_flat_map(move |pad| Just(format!("{pad}{s}{pad}")))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn parse_never_panics_and_rejects_only_with_invalid_argument(
        map in prop::collection::hash_map(any_key(), any_value(), 0..8),
    ) {
        let b = backends();
        if let Err(e) = params::parse(&map, &b) {
            prop_assert_eq!(e.code(), tonic::Code::InvalidArgument, "{:?}: {}", map, e);
        }
    }

    #[test]
    fn every_accepted_value_round_trips_through_volume_context_to_the_node(
        ctrl_loss in prop_oneof![Just(-1i64), Just(0i64), any::<i64>(), 1i64..100_000],
        reconnect in prop_oneof![any::<i64>(), 1i64..600],
        keep_alive in prop_oneof![any::<i64>(), 0i64..600],
        migration in prop_oneof![any::<i64>(), 0i64..4000],
        address in any::<IpAddr>(),
        port in 1u16..=65535,
        allow_exec in any::<bool>(),
        pad in prop::sample::select(vec!["", " ", "\t"]),
        pvc in "[a-z0-9-]{1,20}",
    ) {
        // The class may only name one of the backend's storage addresses.
        let mut configured = vec!["10.42.68.1".parse::<IpAddr>().unwrap(), address];
        configured.dedup();
        let b = Backends::new(
            "default",
            vec![backend_at("default", "/storage-pool/metal-csi", configured)],
        )
        .unwrap();
        let mut map = HashMap::new();
        map.insert(params::P_CTRL_LOSS_TMO.to_string(), format!("{pad}{ctrl_loss}"));
        map.insert(params::P_RECONNECT_DELAY.to_string(), format!("{reconnect}{pad}"));
        map.insert(params::P_KEEP_ALIVE_TMO.to_string(), keep_alive.to_string());
        map.insert(params::P_MIGRATION_TIMEOUT.to_string(), migration.to_string());
        map.insert(params::P_NVME_ADDRESS.to_string(), format!("{pad}{address}{pad}"));
        map.insert(params::P_NVME_PORT.to_string(), port.to_string());
        map.insert(params::P_ALLOW_EXEC.to_string(), format!("{allow_exec}{pad}"));
        map.insert(params::PVC_NAME.to_string(), pvc.clone());
        let Ok((p, _)) = params::parse(&map, &b) else {
            // Rejected: then one of the numbers was out of its documented range.
            let in_range = ctrl_loss >= -1
                && ctrl_loss <= i64::from(u32::MAX)
                && (1..=i64::from(u32::MAX)).contains(&reconnect)
                && (0..=i64::from(u32::MAX)).contains(&keep_alive)
                && (30..=3600).contains(&migration);
            prop_assert!(!in_range, "in-range parameters were refused: {:?}", map);
            return Ok(());
        };
        prop_assert_eq!(p.timeouts.ctrl_loss_tmo, ctrl_loss);
        prop_assert_eq!(i64::from(p.timeouts.reconnect_delay), reconnect);
        prop_assert_eq!(i64::from(p.timeouts.keep_alive_tmo), keep_alive);
        prop_assert_eq!(p.migration_timeout_secs.map(i64::from), Some(migration));
        prop_assert_eq!(&p.nvme_addresses, &vec![address]);
        prop_assert_eq!(p.allow_exec, allow_exec);

        let ctx = volume_context(&p, p.nvme_port.get(), NQN, FILE);
        prop_assert_eq!(ctx.get(params::C_MIGRATION_TIMEOUT), Some(&migration.to_string()));
        prop_assert_eq!(ctx.get(params::PVC_NAME), Some(&pvc));
        prop_assert_eq!(ctx.get(params::C_VOLUME_PATH).map(String::as_str), Some(FILE));

        // What the controller accepted, the node accepts, with the same meaning.
        let node = stage_context(&ctx, &prefix());
        prop_assert!(node.is_ok(), "node refused what the controller accepted: {:?} -> {:?}", ctx, node);
        let node = node.unwrap();
        prop_assert_eq!(node.params.target.ip(), address);
        prop_assert_eq!(node.params.target.port(), port);
        prop_assert_eq!(node.params.nqn.as_str(), NQN);
        prop_assert_eq!(node.params.ctrl_loss_tmo, CtrlLossTmo::from_i64(ctrl_loss).unwrap());
        prop_assert_eq!(i64::from(node.params.reconnect_delay.get()), reconnect);
        prop_assert_eq!(
            node.params.keep_alive_tmo.map(NonZeroU32::get).map(i64::from).unwrap_or(0),
            keep_alive
        );
        prop_assert_eq!(node.allow_exec, allow_exec);
    }

    #[test]
    fn volume_path_is_accepted_exactly_under_the_backends_allowed_directories(
        backend_name in prop::sample::select(vec!["default", "fast"]),
        dir in prop::sample::select(vec!["/storage-pool/metal-csi", "/nvme-pool/csi", "/storage-pool/metal-csi-evil", "/storage-pool"]),
        sub in prop::collection::vec("[a-z0-9_][a-z0-9_-]{0,9}", 0..3),
    ) {
        let b = backends();
        let path = std::iter::once(dir.to_string()).chain(sub.iter().cloned()).collect::<Vec<_>>().join("/");
        let map = HashMap::from([
            (params::P_BACKEND.to_string(), backend_name.to_string()),
            (params::P_VOLUME_PATH.to_string(), path.clone()),
        ]);
        let allowed = match backend_name {
            "default" => "/storage-pool/metal-csi",
            _ => "/nvme-pool/csi",
        };
        let should_accept = dir == allowed;
        match params::parse(&map, &b) {
            Ok((p, backend)) => {
                prop_assert!(should_accept, "{} accepted on backend {}", path, backend_name);
                prop_assert_eq!(p.volume_dir.as_str(), path.as_str());
                prop_assert_eq!(backend.name.as_str(), backend_name);
                prop_assert_eq!(p.backend.as_str(), backend_name);
            }
            Err(e) => {
                prop_assert!(!should_accept, "{} refused on backend {}: {}", path, backend_name, e);
                prop_assert_eq!(e.code(), tonic::Code::InvalidArgument);
            }
        }
    }

    #[test]
    fn strict_booleans_accept_only_true_and_false(v in any_value().prop_flat_map(padded)) {
        let map = HashMap::from([(params::P_ALLOW_EXEC.to_string(), v.clone())]);
        let b = backends();
        let r = params::parse(&map, &b);
        match v.trim() {
            "true" => prop_assert!(r.unwrap().0.allow_exec),
            "false" => prop_assert!(!r.unwrap().0.allow_exec),
            _ => prop_assert!(r.is_err(), "{:?} accepted as a boolean", v),
        }
    }
}

/// Regression for what the round-trip property found: `ctrlLossTmo` above u32::MAX seconds was
/// accepted by CreateVolume but refused by every NodeStageVolume, so the volume was provisioned
/// and could never be mounted. The StorageClass must fail the first PVC instead.
#[test]
fn a_ctrl_loss_tmo_the_node_cannot_use_is_refused_at_create() {
    let map = HashMap::from([(
        params::P_CTRL_LOSS_TMO.to_string(),
        (i64::from(u32::MAX) + 1).to_string(),
    )]);
    let Err(e) = params::parse(&map, &backends()) else {
        panic!("ctrlLossTmo above u32::MAX was accepted");
    };
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("ctrlLossTmo"), "{e}");
    let max = HashMap::from([(params::P_CTRL_LOSS_TMO.to_string(), u32::MAX.to_string())]);
    let (p, _) = params::parse(&max, &backends()).unwrap();
    assert_eq!(p.timeouts.ctrl_loss_tmo, i64::from(u32::MAX));
}
