//! SSH transport (russh): one connection, bounded concurrent sessions, per-command
//! deadlines, reconnect on transport failure.
//!
//! RouterOS runs each CLI command on its own SSH session and stalls when many sessions open
//! at once, so sessions are bounded by a semaphore whose wait counts against the command's
//! deadline. The connection sits behind a lock and is only ever replaced under it; a
//! connection that failed is flagged broken (not torn down) so commands still running on it
//! finish while new commands get a fresh one.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::{Instant, timeout, timeout_at};

use crate::error::RdsError;
use crate::exec::{Exec, ExecFuture, ExecOutput, TransportStats};
use crate::hostkey::{HostKeyPolicy, HostKeyRefusal};

/// How long closing an abandoned session may take before we stop caring: the command has
/// already failed with a timeout, this only tidies up.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key text (OpenSSH or PEM; ed25519 or RSA). Never logged.
    pub private_key: String,
    pub host_key: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// RouterOS hangs when many sessions open at once on one connection.
    pub max_sessions: usize,
}

impl SshConfig {
    /// Port 22, a 10 s connect timeout and 4 sessions: what a RouterOS RDS handles well.
    pub fn new(host: &str, user: &str, private_key: String, host_key: HostKeyPolicy) -> Self {
        SshConfig {
            host: host.to_string(),
            port: 22,
            user: user.to_string(),
            private_key,
            host_key,
            connect_timeout: Duration::from_secs(10),
            max_sessions: 4,
        }
    }
}

/// Hand-written so the private key can never reach a log line through `{:?}`.
impl fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("private_key", &"<redacted>")
            .field("host_key", &self.host_key)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

/// The production `Exec`.
pub struct SshTransport {
    config: SshConfig,
    key: Arc<PrivateKey>,
    russh_config: Arc<client::Config>,
    sessions: Semaphore,
    conn: Mutex<Option<Arc<Conn>>>,
    /// The connection in `conn`, readable without the async lock (a scrape must not wait
    /// behind a connect). Weak so it never keeps a replaced connection alive.
    current: std::sync::Mutex<Weak<Conn>>,
    connects: AtomicU64,
    connect_failures: AtomicU64,
}

struct Conn {
    handle: Handle<Verifier>,
    broken: AtomicBool,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && !self.handle.is_closed()
    }
    fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }
}

/// Decides on the server's host key during the handshake.
struct Verifier {
    policy: HostKeyPolicy,
    addr: String,
}

#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey(HostKeyRefusal),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for Verifier {
    type Error = HandlerError;

    // russh calls this once per connection (initial key exchange), so the insecure warning
    // is logged once per connection.
    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                // Never advertised by us; refuse rather than trust a CA we were not given.
                let got = format!("certificate for {}", cert.public_key().algorithm().as_str());
                tracing::error!(
                    security_event = "ssh_host_key_mismatch",
                    severity = "critical",
                    addr = %self.addr,
                    got = %got,
                    "RDS presented a host certificate; refusing"
                );
                return Err(HandlerError::HostKey(HostKeyRefusal {
                    expected: "a plain host key".into(),
                    got,
                }));
            }
        };
        match self.policy.check(key) {
            Ok(()) => {
                if self.policy == HostKeyPolicy::InsecureAcceptAny {
                    tracing::warn!(
                        addr = %self.addr,
                        fingerprint = %crate::hostkey::fingerprint(key),
                        "RDS host key NOT verified (insecure mode); a man-in-the-middle would go unnoticed"
                    );
                } else {
                    tracing::debug!(addr = %self.addr, "RDS host key verified");
                }
                Ok(true)
            }
            Err(refusal) => {
                tracing::error!(
                    security_event = "ssh_host_key_mismatch",
                    severity = "critical",
                    addr = %self.addr,
                    expected = %refusal.expected,
                    got = %refusal.got,
                    "RDS host key does not match the pinned key; connection refused"
                );
                Err(HandlerError::HostKey(refusal))
            }
        }
    }
}

impl SshTransport {
    /// Checks the configuration and parses the key now, so a bad key fails at startup; no
    /// network until the first command or [`SshTransport::connect`].
    pub fn new(config: SshConfig) -> Result<Self, RdsError> {
        if config.host.trim().is_empty() {
            return Err(RdsError::Config("RDS host is empty".into()));
        }
        if config.port == 0 {
            return Err(RdsError::Config("RDS SSH port must be 1–65535".into()));
        }
        if config.user.trim().is_empty() {
            return Err(RdsError::Config("RDS SSH user is empty".into()));
        }
        if config.max_sessions == 0 {
            return Err(RdsError::Config("max_sessions must be at least 1".into()));
        }
        if config.connect_timeout.is_zero() {
            return Err(RdsError::Config("connect_timeout must be positive".into()));
        }
        let key = parse_private_key(&config.private_key)?;
        let mut russh_config = client::Config {
            // RouterOS ignores keepalive requests; liveness is checked by opening sessions.
            keepalive_interval: None,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        };
        russh_config.preferred.key = Cow::Owned(config.host_key.preferred_algorithms());
        Ok(SshTransport {
            sessions: Semaphore::new(config.max_sessions),
            key: Arc::new(key),
            russh_config: Arc::new(russh_config),
            conn: Mutex::new(None),
            current: std::sync::Mutex::new(Weak::new()),
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            config,
        })
    }

    /// Establishes the connection now (startup check); later commands reuse it.
    pub async fn connect(&self) -> Result<(), RdsError> {
        let until = Instant::now() + self.config.connect_timeout;
        self.connection("connect", until, self.config.connect_timeout)
            .await
            .map(|_| ())
    }

    fn addr(&self) -> String {
        if self.config.host.contains(':') {
            format!("[{}]:{}", self.config.host, self.config.port)
        } else {
            format!("{}:{}", self.config.host, self.config.port)
        }
    }

    /// The current connection, or a new one made under the lock so concurrent callers never
    /// race to replace it.
    async fn connection(
        &self,
        verb: &'static str,
        deadline_at: Instant,
        deadline: Duration,
    ) -> Result<Arc<Conn>, RdsError> {
        let mut slot = timeout_at(deadline_at, self.conn.lock())
            .await
            .map_err(|_| RdsError::Timeout {
                verb,
                after: deadline,
            })?;
        if let Some(conn) = slot.as_ref().filter(|c| c.usable()) {
            return Ok(Arc::clone(conn));
        }
        // Dropping the old handle lets its session task end once in-flight commands finish.
        *slot = None;
        self.set_current(Weak::new());
        let connect_until = (Instant::now() + self.config.connect_timeout).min(deadline_at);
        let established = self.establish(connect_until).await;
        let counter = match established {
            Ok(_) => &self.connects,
            Err(_) => &self.connect_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match established {
            Ok(handle) => {
                let conn = Arc::new(Conn {
                    handle,
                    broken: AtomicBool::new(false),
                });
                *slot = Some(Arc::clone(&conn));
                self.set_current(Arc::downgrade(&conn));
                tracing::info!(target_addr = %self.addr(), user = %self.config.user, "connected to RDS");
                Ok(conn)
            }
            Err(Established::TimedOut(_)) if Instant::now() >= deadline_at && verb != "connect" => {
                Err(RdsError::Timeout {
                    verb,
                    after: deadline,
                })
            }
            Err(Established::TimedOut(stage)) => Err(RdsError::Connect {
                addr: self.addr(),
                reason: format!(
                    "timed out during {stage} (connect timeout {:?})",
                    self.config.connect_timeout
                ),
            }),
            Err(Established::Failed(e)) => Err(e),
        }
    }

    fn set_current(&self, conn: Weak<Conn>) {
        // A poisoned lock only means a panic elsewhere mid-assignment; the Weak is still valid.
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    /// TCP, handshake (host-key check inside) and authentication, all before `until`.
    async fn establish(&self, until: Instant) -> Result<Handle<Verifier>, Established> {
        let addr = self.addr();
        let connect_err = |reason: String| {
            Established::Failed(RdsError::Connect {
                addr: addr.clone(),
                reason,
            })
        };
        let tcp = timeout_at(
            until,
            tokio::net::TcpStream::connect((self.config.host.as_str(), self.config.port)),
        )
        .await
        .map_err(|_| Established::TimedOut("TCP connect"))?
        .map_err(|e| connect_err(format!("TCP connect: {e}")))?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let verifier = Verifier {
            policy: self.config.host_key.clone(),
            addr: addr.clone(),
        };
        let mut handle = match timeout_at(
            until,
            client::connect_stream(Arc::clone(&self.russh_config), tcp, verifier),
        )
        .await
        {
            Err(_) => return Err(Established::TimedOut("SSH handshake")),
            Ok(Err(HandlerError::HostKey(r))) => {
                return Err(Established::Failed(RdsError::HostKeyMismatch {
                    addr,
                    expected: r.expected,
                    got: r.got,
                }));
            }
            Ok(Err(HandlerError::Ssh(e))) => {
                return Err(connect_err(format!("SSH handshake: {e}")));
            }
            Ok(Ok(h)) => h,
        };

        let hashes: Vec<Option<HashAlg>> = if self.key.algorithm().is_rsa() {
            match timeout_at(until, handle.best_supported_rsa_hash()).await {
                Err(_) => return Err(Established::TimedOut("SSH handshake (server-sig-algs)")),
                Ok(Err(e)) => return Err(connect_err(format!("SSH handshake: {e}"))),
                Ok(Ok(Some(best))) => vec![best],
                // The server did not list its signature algorithms: try SHA-256 first and
                // fall back to legacy SHA-1 `ssh-rsa` only if that is refused.
                Ok(Ok(None)) => vec![Some(HashAlg::Sha256), None],
            }
        } else {
            vec![None]
        };
        for hash in hashes {
            let key = PrivateKeyWithHashAlg::new(Arc::clone(&self.key), hash);
            let result = timeout_at(until, handle.authenticate_publickey(&self.config.user, key))
                .await
                .map_err(|_| Established::TimedOut("authentication"))?
                .map_err(|e| connect_err(format!("authentication: {e}")))?;
            if result.success() {
                return Ok(handle);
            }
        }
        Err(Established::Failed(RdsError::Auth {
            addr,
            user: self.config.user.clone(),
        }))
    }

    async fn run(
        &self,
        verb: &'static str,
        line: &str,
        deadline: Duration,
    ) -> Result<ExecOutput, RdsError> {
        let deadline_at = Instant::now() + deadline;
        let timed_out = || RdsError::Timeout {
            verb,
            after: deadline,
        };
        let _permit = timeout_at(deadline_at, self.sessions.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| RdsError::Transport {
                verb,
                reason: "session limiter closed".into(),
            })?;
        let conn = self.connection(verb, deadline_at, deadline).await?;
        let mut channel = match timeout_at(deadline_at, conn.handle.channel_open_session()).await {
            Err(_) => {
                conn.mark_broken();
                return Err(timed_out());
            }
            Ok(Err(e)) => {
                conn.mark_broken();
                return Err(RdsError::Transport {
                    verb,
                    reason: format!("opening session: {e}"),
                });
            }
            Ok(Ok(ch)) => ch,
        };
        let outcome = timeout_at(deadline_at, async {
            channel
                .exec(true, line)
                .await
                .map_err(|e| RdsError::Transport {
                    verb,
                    reason: format!("sending command: {e}"),
                })?;
            collect(&mut channel, verb).await
        })
        .await;
        match outcome {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => {
                conn.mark_broken();
                Err(e)
            }
            Err(_) => {
                // Abandon the session; the connection may be black-holed, so new commands
                // get a fresh one while anything still running here is left to finish.
                if timeout(CLOSE_GRACE, channel.close()).await.is_err() {
                    tracing::debug!(verb, "closing abandoned session timed out");
                }
                conn.mark_broken();
                Err(timed_out())
            }
        }
    }

    async fn ping_inner(&self, deadline: Duration) -> Result<(), RdsError> {
        const VERB: &str = "ping";
        let deadline_at = Instant::now() + deadline;
        let _permit = timeout_at(deadline_at, self.sessions.acquire())
            .await
            .map_err(|_| RdsError::Timeout {
                verb: VERB,
                after: deadline,
            })?
            .map_err(|_| RdsError::Transport {
                verb: VERB,
                reason: "session limiter closed".into(),
            })?;
        let conn = self.connection(VERB, deadline_at, deadline).await?;
        let channel = match timeout_at(deadline_at, conn.handle.channel_open_session()).await {
            Err(_) => {
                conn.mark_broken();
                return Err(RdsError::Timeout {
                    verb: VERB,
                    after: deadline,
                });
            }
            Ok(Err(e)) => {
                conn.mark_broken();
                return Err(RdsError::Transport {
                    verb: VERB,
                    reason: format!("opening session: {e}"),
                });
            }
            Ok(Ok(ch)) => ch,
        };
        if timeout(CLOSE_GRACE, channel.close()).await.is_err() {
            tracing::debug!("closing ping session timed out");
        }
        Ok(())
    }
}

enum Established {
    TimedOut(&'static str),
    Failed(RdsError),
}

/// The most a command's standard output may hold. A `/disk print detail` record is well under
/// 1 KiB, so this is room for ~60,000 disks: far more than an RDS holds, while a broken or
/// hostile server can no longer grow the controller's memory without bound.
const MAX_STDOUT: usize = 64 << 20;
/// RouterOS writes at most an error line or two to stderr.
const MAX_STDERR: usize = 1 << 20;

/// Appends a chunk of a command's output unless that would pass `limit`; the command is then
/// abandoned (the caller drops the session) with the cause in the error.
fn append_capped(
    buf: &mut Vec<u8>,
    chunk: &[u8],
    limit: usize,
    verb: &'static str,
) -> Result<(), RdsError> {
    if buf.len().saturating_add(chunk.len()) > limit {
        return Err(RdsError::Transport {
            verb,
            reason: format!("output exceeded {limit} bytes; command abandoned"),
        });
    }
    buf.extend_from_slice(chunk);
    Ok(())
}

/// Reads a session to its end: stdout, stderr (extended data 1) and the exit status, each
/// capped in size.
async fn collect(
    channel: &mut russh::Channel<client::Msg>,
    verb: &'static str,
) -> Result<ExecOutput, RdsError> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut exit_status = None;
    let mut closed = false;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => append_capped(&mut stdout, &data, MAX_STDOUT, verb)?,
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                append_capped(&mut stderr, &data, MAX_STDERR, verb)?
            }
            ChannelMsg::ExitStatus { exit_status: s } => exit_status = Some(s),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                return Err(RdsError::Transport {
                    verb,
                    reason: format!("remote command ended by signal {signal_name:?}"),
                });
            }
            ChannelMsg::Failure => {
                return Err(RdsError::Transport {
                    verb,
                    reason: "server refused the exec request".into(),
                });
            }
            ChannelMsg::Close => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    // Without a close or an exit status the output may be cut short: the connection died.
    if !closed && exit_status.is_none() {
        return Err(RdsError::Transport {
            verb,
            reason: "connection lost before the command finished".into(),
        });
    }
    Ok(ExecOutput {
        stdout: text(stdout),
        stderr: text(stderr),
        exit_status,
    })
}

/// The bytes as text without copying them when they are UTF-8 (a listing of thousands of
/// disks is megabytes); anything else is converted lossily.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn parse_private_key(text: &str) -> Result<PrivateKey, RdsError> {
    if text.trim().is_empty() {
        return Err(RdsError::Config("SSH private key is empty".into()));
    }
    match russh::keys::decode_secret_key(text, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(RdsError::Config(
            "SSH private key is passphrase-protected; provide an unencrypted key \
             (e.g. `ssh-keygen -p -N '' -f <key>`)"
                .into(),
        )),
        Err(e) => Err(RdsError::Config(format!(
            "cannot read SSH private key (expected OpenSSH or PEM, ed25519 or RSA): {e}"
        ))),
    }
}

impl Exec for SshTransport {
    fn exec<'a>(&'a self, verb: &'static str, line: &'a str, deadline: Duration) -> ExecFuture<'a> {
        Box::pin(self.run(verb, line, deadline))
    }

    fn ping(
        &self,
        deadline: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), RdsError>> + Send + '_>> {
        Box::pin(self.ping_inner(deadline))
    }

    fn target(&self) -> String {
        format!("{}@{}", self.config.user, self.addr())
    }

    fn stats(&self) -> Option<TransportStats> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        Some(TransportStats {
            connected: current.is_some_and(|c| c.usable()),
            connects: self.connects.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(key: &str) -> SshConfig {
        SshConfig::new(
            "127.0.0.1",
            "admin",
            key.to_string(),
            HostKeyPolicy::InsecureAcceptAny,
        )
    }

    #[test]
    fn output_past_its_cap_is_refused_with_the_cause_and_nothing_is_appended() {
        let mut buf = Vec::new();
        append_capped(&mut buf, b"0123456789", 16, "/disk print").expect("under the cap");
        append_capped(&mut buf, b"abcdef", 16, "/disk print").expect("exactly the cap");
        assert_eq!(buf.len(), 16);
        let err = append_capped(&mut buf, b"x", 16, "/disk print").expect_err("over the cap");
        assert_eq!(buf.len(), 16, "the refused chunk must not be kept");
        let msg = err.to_string();
        assert!(
            msg.contains("/disk print") && msg.contains("exceeded 16 bytes"),
            "{msg}"
        );
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let cfg = config("-----BEGIN OPENSSH PRIVATE KEY-----\nsecretbits\n");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("secretbits"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn bad_keys_and_config_are_config_errors() {
        for key in [
            "",
            "not a key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        ] {
            let err = SshTransport::new(config(key)).err().unwrap();
            assert!(matches!(err, RdsError::Config(_)), "{key:?}: {err}");
        }
        let mut zero = config("x");
        zero.max_sessions = 0;
        assert!(matches!(SshTransport::new(zero), Err(RdsError::Config(_))));
    }
}
