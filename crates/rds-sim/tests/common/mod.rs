//! A minimal real SSH client (russh) for driving the simulator in tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rds_sim::{Sim, SimConfig};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, client};

/// Generous bound so a broken simulator fails the test instead of hanging it.
pub const STEP: Duration = Duration::from_secs(20);

pub struct Client {
    pub seen_fingerprint: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = key {
            *self.seen_fingerprint.lock().unwrap() =
                Some(key.fingerprint(HashAlg::Sha256).to_string());
        }
        Ok(true)
    }
}

#[derive(Debug, Default)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub exit: Option<u32>,
}

pub struct Conn {
    pub handle: client::Handle<Client>,
    pub fingerprint: Option<String>,
}

/// Connects and authenticates; `Err` carries why (refused, network).
pub async fn try_connect(sim: &Sim, private_key: &str) -> Result<Conn, String> {
    let key = PrivateKey::from_openssh(private_key).map_err(|e| e.to_string())?;
    let seen = Arc::new(Mutex::new(None));
    let config = Arc::new(client::Config::default());
    let handler = Client {
        seen_fingerprint: seen.clone(),
    };
    let mut handle = tokio::time::timeout(STEP, client::connect(config, sim.addr(), handler))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| e.to_string())?
        .flatten();
    let auth = tokio::time::timeout(
        STEP,
        handle.authenticate_publickey("admin", PrivateKeyWithHashAlg::new(Arc::new(key), hash)),
    )
    .await
    .map_err(|_| "auth timed out".to_string())?
    .map_err(|e| e.to_string())?;
    if !auth.success() {
        return Err("authentication refused".into());
    }
    let fingerprint = seen.lock().unwrap().clone();
    Ok(Conn {
        handle,
        fingerprint,
    })
}

pub async fn connect(sim: &Sim, private_key: &str) -> Conn {
    try_connect(sim, private_key).await.unwrap()
}

/// Runs one command; `Err` when the channel could not be used or the client gave up after
/// `limit` (the string says which).
pub async fn try_exec(conn: &Conn, cmd: &str, limit: Duration) -> Result<Out, String> {
    let run = async {
        let mut ch = conn
            .handle
            .channel_open_session()
            .await
            .map_err(|e| format!("open: {e}"))?;
        ch.exec(true, cmd).await.map_err(|e| format!("exec: {e}"))?;
        let mut out = Out::default();
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.push_str(&String::from_utf8_lossy(&data)),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    out.stderr.push_str(&String::from_utf8_lossy(&data))
                }
                ChannelMsg::ExitStatus { exit_status } => out.exit = Some(exit_status),
                _ => {}
            }
        }
        Ok(out)
    };
    tokio::time::timeout(limit, run)
        .await
        .map_err(|_| "client gave up (timeout)".to_string())?
}

pub async fn exec(conn: &Conn, cmd: &str) -> Out {
    try_exec(conn, cmd, STEP).await.unwrap()
}

/// A simulator with one authorized ed25519 client key.
pub async fn sim_with(cfg: SimConfig) -> (Sim, String) {
    let (private, public) = rds_sim::generate_client_key().unwrap();
    let mut cfg = cfg;
    cfg.authorized_keys.push(public);
    (Sim::start(cfg).await.unwrap(), private)
}

pub async fn sim() -> (Sim, String) {
    sim_with(SimConfig::for_tests()).await
}

pub const VOL: &str = "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890";

pub fn vol_path(slot: &str) -> String {
    format!("/storage-pool/metal-csi/{slot}.img")
}

pub fn add_cmd(slot: &str, size: &str) -> String {
    format!(
        "/disk add type=file file-path={} file-size={size} slot={slot} nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:{slot}",
        vol_path(slot)
    )
}
