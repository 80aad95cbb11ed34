//! The process's HTTP side: `/metrics` for Prometheus, `/healthz` and `/readyz` for kubelet,
//! `/orphans` (controller) for operators, and the client `rds-csi orphans` uses to read it.
//!
//! The port is reachable by whatever can reach the pod (the node plugin's is a host port), so
//! by default it tells a remote peer only what a scraper or a kubelet needs: `/metrics`, and
//! health as a status without detail. What names the RDS (addresses, key fingerprints, slots,
//! file paths) is served to loopback peers only (`kubectl port-forward` and `kubectl exec`
//! arrive from loopback) unless `--http-expose-details` opens it to everyone.
//!
//! Plain HTTP/1.1 on hyper, because three fixed paths do not need a framework. Every connection
//! has a header-read deadline (a client that never finishes its request cannot pin a task), and
//! shutdown waits a bounded time for in-flight requests, as the gRPC side does.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use observability::metrics::{CONTENT_TYPE, Metrics};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use vocab::accept::accept_until;
use vocab::health::RdsHealth;

use crate::error::CliError;

/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A readiness check that takes longer than this is itself the answer: not ready.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// How long open connections may finish their request after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub type ReadyFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Answers `/readyz`: `Err` says why the process is not ready.
pub type ReadyCheck = Arc<dyn Fn() -> ReadyFuture + Send + Sync>;

/// What the endpoints serve.
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub ready: ReadyCheck,
    /// The orphan reconciler's report, served on `/orphans` (controller only).
    pub orphans: Option<Arc<controller::orphans::OrphanReconciler>>,
    /// RDS reachability, shown in `/readyz` (controller only); never makes it fail.
    pub rds: Option<Arc<RdsHealth>>,
    /// Serve detail (`/orphans`, reasons in `/readyz`) to every peer, not only loopback.
    pub expose_details: bool,
}

/// A running HTTP endpoint.
pub struct HttpServer {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Waits for the server to finish after its shutdown signal.
    pub async fn join(self) {
        match self.task.await {
            Ok(()) => info!(address = %self.local_addr, "HTTP endpoint stopped"),
            Err(e) => error!(address = %self.local_addr, error = %e, "HTTP endpoint task failed"),
        }
    }
}

/// `:9809` means every address, as in the earlier driver's flag.
fn normalize(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

/// Binds `addr` and serves until `shutdown` turns true. An empty `addr` disables the endpoint
/// (`Ok(None)`).
pub async fn start(
    addr: &str,
    endpoints: Endpoints,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<HttpServer>, CliError> {
    let addr = addr.trim();
    if addr.is_empty() {
        info!("metrics and health endpoint disabled (empty --metrics-address)");
        return Ok(None);
    }
    let bind = normalize(addr);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|source| CliError::Listen {
            what: "/metrics",
            addr: bind.clone(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(CliError::LocalAddr)?;
    info!(address = %local_addr, "serving /metrics, /healthz and /readyz");
    let endpoints = Arc::new(endpoints);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        accept_until(listener, shutdown, "metrics", |stream, peer| {
            let eps = Arc::clone(&endpoints);
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| handle(Arc::clone(&eps), req, peer)),
                );
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            });
        })
        .await;
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(grace = ?SHUTDOWN_GRACE, "HTTP connections still open after the shutdown grace period; closing them");
        }
    });
    Ok(Some(HttpServer { local_addr, task }))
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = body.into();
    body.push('\n');
    reply(status, "text/plain; charset=utf-8", body)
}

async fn handle(
    eps: Arc<Endpoints>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(respond(&eps, req.method(), req.uri().path(), peer).await)
}

/// Whether this peer may see what names the RDS and the volumes.
fn detail_allowed(eps: &Endpoints, peer: SocketAddr) -> bool {
    eps.expose_details || peer.ip().to_canonical().is_loopback()
}

async fn respond(
    eps: &Endpoints,
    method: &Method,
    path: &str,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | "/orphans");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET");
    }
    let detail = detail_allowed(eps, peer);
    match path {
        "/metrics" => match eps.metrics.encode() {
            Ok(body) => reply(StatusCode::OK, CONTENT_TYPE, body),
            Err(e) => {
                error!(error = %e, "encoding metrics failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed")
            }
        },
        "/healthz" => text(StatusCode::OK, "ok"),
        "/orphans" if !detail => text(
            StatusCode::FORBIDDEN,
            "/orphans is served to loopback only (kubectl port-forward or exec); --http-expose-details serves it to every peer",
        ),
        "/orphans" => match &eps.orphans {
            Some(o) => {
                let mut body = o.report_json();
                body.push('\n');
                reply(StatusCode::OK, "application/json", body)
            }
            None => text(
                StatusCode::NOT_FOUND,
                "no orphan reconciler in this process (only controller and all have one)",
            ),
        },
        _ => readiness(eps, detail).await,
    }
}

/// `/readyz`: 503 only when this process cannot serve CSI; RDS reachability is listed below
/// the status (with reasons for peers allowed detail) and never turns it into 503, because
/// what needs no RDS keeps working during an outage.
async fn readiness(eps: &Endpoints, detail: bool) -> Response<Full<Bytes>> {
    let own = match tokio::time::timeout(READY_LIMIT, (eps.ready)()).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the readiness check did not finish within {READY_LIMIT:?}"
        )),
    };
    let mut lines = Vec::new();
    if let Some(rds) = &eps.rds {
        match tokio::time::timeout(READY_LIMIT, rds.check()).await {
            Ok(report) => {
                for b in &report.backends {
                    lines.push(match (&b.error, detail) {
                        (None, _) => format!("backend {}: reachable", b.name),
                        (Some(e), true) => format!("backend {}: unreachable: {e}", b.name),
                        (Some(_), false) => format!("backend {}: unreachable", b.name),
                    });
                }
            }
            Err(_) => lines.push(format!(
                "RDS: the reachability check did not finish within {READY_LIMIT:?}"
            )),
        }
    }
    let (status, head) = match own {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(why) if detail => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_string()),
    };
    lines.insert(0, head);
    text(status, lines.join("\n"))
}

/// `GET <base>/orphans` and prints the body. The whole exchange is bounded by `limit`.
pub async fn print_orphans(base: &str, limit: Duration) -> Result<(), CliError> {
    let body = tokio::time::timeout(limit, fetch(base, "/orphans"))
        .await
        .map_err(|_| CliError::HttpTimeout {
            base: base.to_string(),
            limit,
        })??;
    print!("{body}");
    Ok(())
}

/// Most bytes of an answer `fetch` reads: an orphan report of thousands of volumes fits.
const MAX_ANSWER: usize = 16 << 20;

/// One HTTP/1.1 `GET` on hyper's client (any body framing, chunked included), for the
/// endpoint this file serves; plain `http://` only, as that endpoint is.
async fn fetch(base: &str, path: &str) -> Result<String, CliError> {
    use http_body_util::{BodyExt, Empty, Limited};
    let rest = base
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| CliError::NotHttp {
            base: base.to_string(),
        })?;
    let (authority, prefix) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, String::new()),
    };
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| http_step(format!("connecting to {authority}"), e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_step(format!("connecting to {authority}"), e))?;
    // Drives the connection; it ends when the answer is read and `sender` is dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "HTTP client connection ended with an error");
        }
    });
    let request = Request::get(format!("{prefix}{path}"))
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_step(format!("{base}{path}"), e))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| http_step(format!("sending the request to {authority}"), e))?;
    let status = answer.status();
    let body = Limited::new(answer.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| http_step(format!("reading the answer from {authority}"), e))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status != StatusCode::OK {
        return Err(CliError::HttpStatus {
            url: format!("{base}{path}"),
            status: status.as_u16(),
            body: body.trim().to_string(),
        });
    }
    Ok(body)
}

fn http_step(
    step: String,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> CliError {
    CliError::Http {
        step,
        source: source.into(),
    }
}

/// Node readiness until the node service reports its own: the CSI socket exists, so kubelet
/// can reach the plugin.
pub fn socket_ready(socket: PathBuf) -> ReadyCheck {
    Arc::new(move || {
        let socket = socket.clone();
        Box::pin(async move {
            if socket.exists() {
                Ok(())
            } else {
                Err(format!("CSI socket {} is not there yet", socket.display()))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request on a fresh connection; returns the status code and the body.
    async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    fn toggled(flag: Arc<AtomicBool>) -> ReadyCheck {
        Arc::new(move || {
            let up = flag.load(Ordering::SeqCst);
            Box::pin(async move {
                if up {
                    Ok(())
                } else {
                    Err("backend rds1: connection refused".into())
                }
            })
        })
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_then_stops() {
        let flag = Arc::new(AtomicBool::new(false));
        let (stop, stop_rx) = watch::channel(false);
        let server = start(
            "127.0.0.1:0",
            Endpoints {
                metrics: Metrics::new(),
                ready: toggled(flag.clone()),
                orphans: None,
                rds: None,
                expose_details: false,
            },
            stop_rx,
        )
        .await
        .unwrap()
        .unwrap();
        let addr = server.local_addr;

        let (code, body) = get(addr, "GET", "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            body.contains("# TYPE rds_csi_rpc_requests counter"),
            "{body}"
        );
        assert!(body.trim_end().ends_with("# EOF"), "{body}");

        assert_eq!(get(addr, "GET", "/healthz").await.0, 200);
        let (code, body) = get(addr, "GET", "/readyz").await;
        assert_eq!(code, 503);
        assert!(body.contains("connection refused"), "{body}");
        flag.store(true, Ordering::SeqCst);
        assert_eq!(get(addr, "GET", "/readyz").await.0, 200);

        assert_eq!(get(addr, "GET", "/other").await.0, 404);
        assert_eq!(get(addr, "POST", "/metrics").await.0, 405);

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.join())
            .await
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn empty_address_disables_and_a_taken_port_is_an_error_naming_it() {
        let (_stop, rx) = watch::channel(false);
        let eps = || Endpoints {
            metrics: Metrics::new(),
            ready: Arc::new(|| Box::pin(async { Ok(()) })),
            orphans: None,
            rds: None,
            expose_details: false,
        };
        assert!(start("", eps(), rx.clone()).await.unwrap().is_none());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = start(&addr, eps(), rx).await.err().unwrap().to_string();
        assert!(err.contains(&addr), "{err}");
    }

    #[tokio::test]
    async fn node_readiness_names_the_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("csi.sock");
        let check = socket_ready(sock.clone());
        let err = check().await.unwrap_err();
        assert!(err.contains("csi.sock"), "{err}");
        std::fs::write(&sock, "").unwrap();
        assert_eq!(check().await, Ok(()));
    }

    #[tokio::test]
    async fn the_orphans_client_reports_http_errors_with_the_servers_reason() {
        let (stop, rx) = watch::channel(false);
        let eps = Endpoints {
            metrics: Metrics::new(),
            ready: Arc::new(|| Box::pin(async { Ok(()) })),
            orphans: None,
            rds: None,
            expose_details: false,
        };
        let server = start("127.0.0.1:0", eps, rx).await.unwrap().unwrap();
        let base = format!("http://{}", server.local_addr);
        let err = fetch(&base, "/orphans").await.unwrap_err().to_string();
        assert!(err.contains("HTTP 404"), "{err}");
        assert!(err.contains("no orphan reconciler"), "{err}");
        assert_eq!(fetch(&base, "/healthz").await.unwrap(), "ok\n");
        assert!(fetch("https://x", "/orphans").await.is_err());
        stop.send(true).unwrap();
        server.join().await;
    }

    #[tokio::test]
    async fn the_client_reads_chunked_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let n = s.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  6\r\n[{\"a\":\r\n3\r\n1}]\r\n0\r\n\r\n",
            )
            .await
            .unwrap();
            request
        });
        let body = fetch(&format!("http://{addr}/prefix"), "/orphans")
            .await
            .unwrap();
        assert_eq!(body, r#"[{"a":1}]"#);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /prefix/orphans HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn remote_peers_get_status_without_detail_unless_opened() {
        let mut eps = Endpoints {
            metrics: Metrics::new(),
            ready: toggled(Arc::new(AtomicBool::new(false))),
            orphans: None,
            rds: None,
            expose_details: false,
        };
        let remote: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let body = |r: Response<Full<Bytes>>| async move {
            use http_body_util::BodyExt;
            let status = r.status().as_u16();
            let bytes = r.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        };
        for peer in [remote, mapped] {
            let (code, text) = body(respond(&eps, &Method::GET, "/readyz", peer).await).await;
            assert_eq!((code, text.as_str()), (503, "not ready\n"));
            let (code, text) = body(respond(&eps, &Method::GET, "/orphans", peer).await).await;
            assert_eq!(code, 403, "{text}");
            assert!(text.contains("--http-expose-details"), "{text}");
            assert_eq!(
                body(respond(&eps, &Method::GET, "/metrics", peer).await)
                    .await
                    .0,
                200
            );
        }
        let (code, text) = body(respond(&eps, &Method::GET, "/readyz", local).await).await;
        assert_eq!(code, 503);
        assert!(text.contains("connection refused"), "{text}");
        assert_eq!(
            body(respond(&eps, &Method::GET, "/orphans", local).await)
                .await
                .0,
            404
        );
        eps.expose_details = true;
        let (_, text) = body(respond(&eps, &Method::GET, "/readyz", remote).await).await;
        assert!(text.contains("connection refused"), "{text}");
    }

    #[test]
    fn port_only_addresses_listen_everywhere() {
        assert_eq!(normalize(":9809"), "0.0.0.0:9809");
        assert_eq!(normalize("127.0.0.1:1"), "127.0.0.1:1");
    }
}
