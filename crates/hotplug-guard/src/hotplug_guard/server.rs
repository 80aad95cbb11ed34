//! The webhook's HTTPS endpoint: `POST /validate` over HTTP/1.1 on rustls.
//!
//! Bounded everywhere, because the port is reachable from the cluster network: the TLS
//! handshake and the request headers each have a short deadline, the body is capped and must
//! arrive within a deadline, and connection slots are handed out by [`Slots`]: idle
//! connections cannot starve the API server (a newer connection displaces the oldest one that
//! has not sent a request, and one peer cannot take the slots other peers need).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::Guard;
use super::slots::{Slot, Slots};
use vocab::accept::accept_until;

pub const PATH: &str = "/validate";
/// AdmissionReviews of a pod are a few KiB; the API server caps objects at 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024 + 64 * 1024;
pub use super::slots::{MAX_CONNECTIONS, MAX_PER_PEER, MAX_UNPROVEN};
/// The API server completes a handshake in milliseconds; an idle one ends well before this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest a connection is kept; then it is closed gracefully and the client reconnects.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Serves `guard` on `listener` with TLS from `tls` until `shutdown` turns true; then stops
/// accepting and gives open connections [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    guard: Arc<Guard>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Slots::new();
    let local = listener.local_addr().ok();
    info!(address = ?local, path = PATH, "hotplug guard serving");
    let stop = shutdown.clone();
    accept_until(listener, shutdown, "webhook", |stream, peer| {
        let Some(slot) = slots.admit(peer.ip()) else {
            warn!(%peer, "every webhook connection slot is serving a request; closing this one");
            return;
        };
        let acceptor = acceptor.clone();
        let guard = Arc::clone(&guard);
        let stop = stop.clone();
        tokio::spawn(async move {
            let slot = Arc::new(slot);
            tokio::select! {
                _ = connection(acceptor, stream, peer, guard, stop, Arc::clone(&slot)) => {}
                _ = slot.displaced() => debug!(%peer, "idle webhook connection displaced by a newer one"),
            }
        });
    })
    .await;
    // Every connection task holds a slot until it ends; no slot held means all are closed.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), async {
        while slots.open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    if drained.await.is_err() {
        warn!("webhook connections still open after the shutdown grace; closing them");
    }
    info!(address = ?local, "hotplug guard stopped");
}

/// One connection: TLS handshake under a deadline, then HTTP/1.1 until the client closes, the
/// connection reaches [`MAX_LIFETIME`] (an idle or slow client cannot hold a slot forever; the
/// API server simply reconnects), or shutdown; the last two close it gracefully, letting an
/// in-flight review finish within [`SHUTDOWN_GRACE`].
async fn connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
    slot: Arc<Slot>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(
            TokioIo::new(tls),
            service_fn(move |req| {
                slot.proven();
                handle(Arc::clone(&guard), peer, req)
            }),
        );
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = tokio::time::sleep(MAX_LIFETIME) => None,
        _ = async { drop(stop.wait_for(|s| *s).await) } => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "webhook connection ended with an error");
    }
}

async fn handle(
    guard: Arc<Guard>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != PATH {
        return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
    }
    if req.method() != Method::POST {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n"));
    }
    let body = Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            debug!(%peer, error = %e, "reading a webhook request body failed");
            return Ok(if too_big {
                text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            } else {
                text(StatusCode::BAD_REQUEST, "could not read the request body\n")
            });
        }
        Err(_) => return Ok(text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n")),
    };
    let answer = guard.review(&bytes).await;
    let status = if answer.valid {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(json(status, answer.body))
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
