//! Property tests for the node's volume_context parsing and the NVMe connect line built from it.
//!
//! volume_context lives in the PV object, which anyone allowed to write PVs can hand-craft. The
//! node turns it into a line written to `/dev/nvme-fabrics` (comma-separated `key=value`) or an
//! nvme-cli argument vector, so a `,`, `=`, whitespace or newline smuggled through any key would
//! add options of the writer's choosing — e.g. a second `traddr` or a foreign `hostnqn`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use node::config::DEFAULT_MANAGED_PREFIX;
use node::context::stage_context;
use nvme::ManagedPrefix;
use nvme::host_identity::HostIdentity;
use proptest::prelude::*;
use vocab::params;

const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-11111111-1111-4111-8111-111111111111";
const FABRICS_KEYS: &[&str] = &[
    "transport",
    "traddr",
    "trsvcid",
    "nqn",
    "hostnqn",
    "hostid",
    "ctrl_loss_tmo",
    "reconnect_delay",
    "keep_alive_tmo",
    "nr_io_queues",
];
const HOSTILE: &[char] = &[
    ',', '=', '\n', '\r', '\t', ' ', '\0', ';', '"', '\\', '$', '，',
];

fn host() -> HostIdentity {
    HostIdentity::from_uuid(uuid::Uuid::parse_str("7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f").unwrap())
        .unwrap()
}

fn prefix() -> ManagedPrefix {
    ManagedPrefix::new(DEFAULT_MANAGED_PREFIX).unwrap()
}

/// Inserts `c` at a char boundary of `s`.
fn insert(s: &str, at: usize, c: char) -> String {
    let idx: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let at = idx[at % idx.len()];
    format!("{}{c}{}", &s[..at], &s[at..])
}

/// A valid value, the same value with one hostile character inserted, or arbitrary text.
fn value(valid: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => valid.clone(),
        3 => (valid, any::<usize>(), prop::sample::select(HOSTILE))
            .prop_map(|(v, at, c)| insert(&v, at, c)),
        1 => "(?s).{0,30}",
    ]
}

fn context() -> impl Strategy<Value = HashMap<String, String>> {
    (
        value(prop_oneof![
            Just(NQN.to_string()),
            "nqn\\.2000-02\\.com\\.mikrotik:pvc-[a-zA-Z0-9._:-]{1,60}",
            "nqn\\.[0-9]{4}-[0-9]{2}\\.[a-z0-9.-]{1,20}:[a-zA-Z0-9._:-]{1,40}",
        ]),
        value(prop_oneof![
            any::<std::net::IpAddr>().prop_map(|a| a.to_string()),
            Just("fd00::1%eth0".to_string()),
        ]),
        value(prop_oneof![
            (0u32..70_000).prop_map(|p| p.to_string()),
            Just("+4420".to_string()),
            Just("04420".to_string()),
        ]),
        prop::option::of(value((-3i64..5_000_000_000).prop_map(|n| n.to_string()))),
        prop::option::of(value((-3i64..700).prop_map(|n| n.to_string()))),
        prop::option::of(value((-3i64..700).prop_map(|n| n.to_string()))),
        prop::option::of(value(
            prop::sample::select(vec!["true", "false"]).prop_map(str::to_string),
        )),
    )
        .prop_map(|(nqn, addr, port, ctrl, delay, ka, exec)| {
            let mut m = HashMap::from([
                (params::C_NQN.to_string(), nqn),
                (params::C_NVME_ADDRESS.to_string(), addr),
                (params::C_NVME_PORT.to_string(), port),
            ]);
            for (k, v) in [
                (params::C_CTRL_LOSS_TMO, ctrl),
                (params::C_RECONNECT_DELAY, delay),
                (params::C_KEEP_ALIVE_TMO, ka),
                (params::C_ALLOW_EXEC, exec),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_maps_never_panic_and_fail_only_as_invalid_argument(
        map in prop::collection::hash_map("(?s).{0,16}", "(?s).{0,40}", 0..6),
    ) {
        if let Err(e) = stage_context(&map, &prefix()) {
            prop_assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn nothing_can_be_injected_into_the_fabrics_line_or_nvme_cli_args(ctx in context()) {
        let Ok(sc) = stage_context(&ctx, &prefix()) else {
            return Ok(());
        };
        let line = sc.params.fabrics_options(&host());
        prop_assert!(!line.contains(['\n', '\r', '\0', ' ', '\t']), "{:?}", line);
        let mut seen = Vec::new();
        for part in line.split(',') {
            let (k, v) = part.split_once('=').unwrap();
            prop_assert!(FABRICS_KEYS.contains(&k), "unexpected option {:?} in {:?}", k, line);
            prop_assert!(!v.is_empty() && !v.contains('='), "{:?} in {:?}", part, line);
            prop_assert!(!seen.contains(&k), "option {:?} twice in {:?}", k, line);
            seen.push(k);
        }
        // The values that came from the context are exactly what the context said.
        let nqn = ctx[params::C_NQN].trim();
        prop_assert!(line.contains(&format!(",nqn={nqn},")), "{:?}", line);
        prop_assert!(line.contains(",hostnqn=nqn.2014-08.org.nvmexpress:uuid:7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f,"));

        let args = sc.params.nvme_cli_args(&host());
        for a in &args {
            prop_assert!(!a.is_empty() && !a.contains(char::is_whitespace) && !a.contains('\0'), "{:?}", args);
        }
        // Values after short flags are never read as flags themselves.
        for pair in args.windows(2) {
            if matches!(pair[0].as_str(), "-t" | "-a" | "-s" | "-n") {
                prop_assert!(!pair[1].starts_with('-'), "{:?}", args);
            }
        }
    }

    #[test]
    fn hostile_characters_and_foreign_nqns_are_refused(ctx in context()) {
        let nqn = ctx[params::C_NQN].trim();
        let must_refuse = nqn.contains(HOSTILE)
            || !nqn.starts_with(DEFAULT_MANAGED_PREFIX)
            || ctx[params::C_NVME_ADDRESS].trim().contains(HOSTILE)
            || ctx[params::C_NVME_PORT].trim().contains(HOSTILE)
            || ctx[params::C_NVME_PORT].trim().parse::<u16>().is_err()
            || ctx[params::C_NVME_PORT].trim().parse::<u16>() == Ok(0);
        let r = stage_context(&ctx, &prefix());
        if must_refuse {
            prop_assert!(r.is_err(), "accepted {:?}", ctx);
        }
        if let Ok(sc) = r {
            prop_assert!(sc.params.nqn.as_str().starts_with(DEFAULT_MANAGED_PREFIX));
            prop_assert_eq!(sc.params.nqn.as_str(), nqn);
        }
    }
}
