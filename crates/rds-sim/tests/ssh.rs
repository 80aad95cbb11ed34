//! SSH behaviour: public-key auth, host key persistence, exec-only channels.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rds_sim::{Sim, SimConfig};
use russh::ChannelMsg;

#[tokio::test]
async fn unknown_key_is_refused_and_known_rsa_key_accepted() {
    let (rsa_private, rsa_public) = rds_sim::generate_client_key_rsa().unwrap();
    let mut cfg = SimConfig::for_tests();
    cfg.authorized_keys.push("# comment".to_string());
    cfg.authorized_keys.push(rsa_public);
    let (sim, ed_private) = sim_with(cfg).await;
    let (stranger, _) = rds_sim::generate_client_key().unwrap();
    assert_eq!(
        try_connect(&sim, &stranger).await.err().as_deref(),
        Some("authentication refused")
    );
    assert!(sim.commands().is_empty());

    let rsa = connect(&sim, &rsa_private).await;
    assert_eq!(exec(&rsa, "/system identity print").await.exit, Some(0));
    let ed = connect(&sim, &ed_private).await;
    assert_eq!(
        ed.fingerprint.as_deref(),
        Some(sim.host_key_fingerprint().as_str())
    );
}

#[tokio::test]
async fn empty_authorized_keys_refuses_everyone() {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    let (key, _) = rds_sim::generate_client_key().unwrap();
    assert!(try_connect(&sim, &key).await.is_err());
}

#[tokio::test]
async fn host_key_file_is_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SimConfig::for_tests();
    cfg.host_key_file = Some(dir.path().join("keys/host_ed25519"));
    let first = Sim::start(cfg.clone()).await.unwrap();
    let fp = first.host_key_fingerprint();
    let line = first.host_key_openssh();
    first.shutdown().await;
    let second = Sim::start(cfg).await.unwrap();
    assert_eq!(second.host_key_fingerprint(), fp);
    assert!(fp.starts_with("SHA256:") && !fp.ends_with('='), "{fp}");
    assert!(
        line.starts_with("ssh-ed25519 AAAA") && line.ends_with(" rds-sim"),
        "{line}"
    );

    let fresh = Sim::start(SimConfig::for_tests()).await.unwrap();
    assert_ne!(
        fresh.host_key_fingerprint(),
        fp,
        "no file: a fresh key each start"
    );
}

#[tokio::test]
async fn shell_requests_get_an_error_and_close() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    let mut ch = c.handle.channel_open_session().await.unwrap();
    ch.request_shell(true).await.unwrap();
    let (mut text, mut status) = (String::new(), None);
    while let Some(msg) = tokio::time::timeout(STEP, ch.wait()).await.unwrap() {
        match msg {
            ChannelMsg::Data { data } => text.push_str(&String::from_utf8_lossy(&data)),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    assert_eq!(status, Some(1));
    assert!(text.contains("not supported"), "{text}");
}

#[tokio::test]
async fn commands_are_logged_in_order_and_clearable() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    exec(&c, "/system identity print").await;
    exec(&c, "/bogus").await;
    assert_eq!(sim.commands(), vec!["/system identity print", "/bogus"]);
    sim.clear_commands();
    assert!(sim.commands().is_empty());
}
