//! The SSH side: accept loop, public-key auth, `exec` channels only.
//!
//! Each command runs in its own task and replies through a session handle, so a hung or slow
//! command never blocks the connection's other channels, and a reboot can cut it at any time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::faults::Timing;
use crate::sim::Shared;

/// Longest a client may take to finish the SSH handshake before the socket is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections are closed like RouterOS does eventually; long enough for pooled clients.
const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(3600);

pub(crate) fn spawn_accept(
    listener: tokio::net::TcpListener,
    host_key: PrivateKey,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    let config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-ROSSSH".into()),
        inactivity_timeout: Some(INACTIVITY_TIMEOUT),
        // Constant-time rejection protects real servers from user probing; a local simulator
        // only needs tests to fail fast.
        auth_rejection_time: Duration::from_millis(20),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        nodelay: true,
        ..Default::default()
    });
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "rds-sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // run_stream does not apply `config.nodelay`; without it every reply waits on
            // delayed ACKs (~40 ms per command on loopback).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "rds-sim: set_nodelay failed");
            }
            let control = match stream.into_std().and_then(|s| {
                let control = s.try_clone()?;
                Ok((s, control))
            }) {
                Ok((s, control)) => match tokio::net::TcpStream::from_std(s) {
                    Ok(s) => (s, control),
                    Err(e) => {
                        tracing::warn!(error = %e, "rds-sim: cannot adopt socket");
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "rds-sim: cannot clone socket");
                    continue;
                }
            };
            let (stream, control) = control;
            let (id, killed) = shared.register(control);
            tracing::debug!(conn = id, %peer, "rds-sim: connection");
            let handler = Conn {
                shared: shared.clone(),
                id,
                killed,
            };
            let shared = shared.clone();
            let config = config.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    russh::server::run_stream(config, stream, handler),
                )
                .await
                {
                    Ok(Ok(session)) => {
                        if let Err(e) = session.await {
                            tracing::debug!(conn = id, error = %e, "rds-sim: session ended");
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(conn = id, error = %e, "rds-sim: handshake failed")
                    }
                    Err(_) => tracing::debug!(
                        conn = id,
                        timeout_s = HANDSHAKE_TIMEOUT.as_secs(),
                        "rds-sim: handshake timed out"
                    ),
                }
                shared.unregister(id);
            });
        }
    })
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    killed: watch::Receiver<bool>,
}

/// Counts one command as running for as long as it lives.
struct Running(Arc<Shared>);

impl Running {
    fn start(shared: Arc<Shared>) -> Running {
        let now = shared.commands_running.fetch_add(1, Ordering::Relaxed) + 1;
        shared.commands_peak.fetch_max(now, Ordering::Relaxed);
        Running(shared)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.commands_running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Conn {
    fn is_authorized(&self, key: &russh::keys::PublicKey) -> Auth {
        if self
            .shared
            .authorized
            .iter()
            .any(|k| k.key_data() == key.key_data())
        {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let auth = self.is_authorized(offer.public_key);
        if !matches!(auth, Auth::Accept) {
            tracing::info!(conn = self.id, user, "rds-sim: refused unknown public key");
        }
        Ok(auth)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.is_authorized(key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.session_opened(self.id, channel.id());
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.session_closed(self.id, channel);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(
            channel,
            &b"rds-sim: interactive shells are not supported; run one command per exec request\r\n"
                [..],
        )?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        tokio::spawn(run_command(
            self.shared.clone(),
            self.id,
            self.killed.clone(),
            session.handle(),
            channel,
            line,
        ));
        Ok(())
    }
}

async fn wait_killed(mut killed: watch::Receiver<bool>) {
    // Err means the connection entry is gone, which is just as final.
    let _ = killed.wait_for(|k| *k).await;
}

async fn run_command(
    shared: Arc<Shared>,
    conn: u64,
    killed: watch::Receiver<bool>,
    handle: Handle,
    channel: ChannelId,
    line: String,
) {
    let started = Instant::now();
    let _running = Running::start(shared.clone());
    shared.record(&line);
    let decision = shared.decide(&line);
    if !decision.latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(decision.latency) => {}
            () = wait_killed(killed.clone()) => return,
        }
    }
    let log = |result: &str| {
        tracing::info!(
            conn,
            command = %line,
            result,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rds-sim command"
        );
    };
    if decision.hang == Some(Timing::BeforeApply) {
        log("hang (not applied)");
        wait_killed(killed).await;
        return;
    }
    if decision.drop == Some(Timing::BeforeApply) {
        log("connection dropped (not applied)");
        shared.kill(conn);
        return;
    }
    let outcome = match decision.fail {
        Some(text) => Err(text),
        None => {
            let shared = shared.clone();
            let line = match &decision.rewrite {
                Some((from, to)) => line.replace(from.as_str(), to.as_str()),
                None => line.clone(),
            };
            let (disk_full, style) = (decision.disk_full, decision.style);
            tokio::task::spawn_blocking(move || shared.apply_styled(&line, disk_full, style))
                .await
                .unwrap_or_else(|e| Err(format!("failure: rds-sim internal error: {e}")))
        }
    };
    if decision.hang == Some(Timing::AfterApply) {
        log("hang (applied)");
        wait_killed(killed).await;
        return;
    }
    if decision.drop == Some(Timing::AfterApply) {
        log("connection dropped (applied)");
        shared.kill(conn);
        return;
    }
    let (status, result) = match &outcome {
        Ok(_) => (0, "ok".to_string()),
        Err(text) => (1, text.clone()),
    };
    log(&result);
    let sent = async {
        match outcome {
            Ok(out) if !out.is_empty() => {
                handle.data(channel, out.into_bytes()).await.map_err(drop)?
            }
            Ok(_) => {}
            Err(text) => {
                let bytes = format!("{text}\r\n").into_bytes();
                if decision.errors_on_stderr {
                    handle
                        .extended_data(channel, 1, bytes)
                        .await
                        .map_err(drop)?;
                } else {
                    handle.data(channel, bytes).await.map_err(drop)?;
                }
            }
        }
        handle.exit_status_request(channel, status).await?;
        handle.eof(channel).await?;
        handle.close(channel).await
    };
    if sent.await.is_err() {
        tracing::debug!(conn, "rds-sim: client went away before the reply was sent");
    }
    // The server's close ends the session (russh forgets the channel then, so the client's
    // answering close never reaches `channel_close`).
    shared.session_closed(conn, channel);
}
