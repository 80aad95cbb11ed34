//! The hotplug guard's HTTPS endpoint in process, over real TLS on loopback: routing, the body
//! limit, error answers, a certificate renewed on disk being served on the next handshake
//! without a restart, and idle connections that cannot lock out a review.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hotplug_guard::objects::{AttachmentPod, Vmi};
use hotplug_guard::rules::Observed;
use hotplug_guard::tls::ReloadingCert;
use hotplug_guard::{Guard, GuardCluster, GuardError, GuardMetrics, GuardSettings, server};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

struct NoCluster;

#[async_trait::async_trait]
impl GuardCluster for NoCluster {
    async fn observe(&self, _pod: &AttachmentPod) -> Result<Observed, GuardError> {
        Ok(Observed::default())
    }
    async fn warn_vmi(&self, _vmi: &Vmi, _reason: &str, _message: &str) {}
}

/// Writes a fresh self-signed pair for `localhost` and returns its DER certificate.
fn write_pair(dir: &Path) -> CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("tls.key"), c.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), c.cert.pem()).unwrap();
    c.cert.der().clone()
}

/// One HTTPS request trusting only `trust`; returns (status, body).
async fn request(
    port: u16,
    trust: &CertificateDer<'static>,
    head: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{head}\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    // A peer refusing a big body may close before reading it all.
    let _ = tls.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no HTTP status in {text:?}"))?;
    Ok((
        status,
        text.split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string(),
    ))
}

#[tokio::test]
async fn the_endpoint_routes_limits_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_pair(dir.path());
    let metrics = GuardMetrics::default();
    let cert = Arc::new(
        ReloadingCert::new(
            &dir.path().join("tls.crt"),
            &dir.path().join("tls.key"),
            metrics.clone(),
        )
        .unwrap(),
    );
    let tls = Arc::new(cert.server_config().unwrap());
    let guard = Arc::new(Guard::new(
        Arc::new(NoCluster),
        metrics,
        GuardSettings {
            handoff_timeout: Duration::from_secs(60),
            lookup_deadline: Duration::from_secs(1),
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server::serve(listener, tls, guard, stop_rx));

    let review = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "abc", "operation": "DELETE", "kind": {"kind": "Pod"},
                    "oldObject": {"metadata": {"name": "web-1"}}}
    }))
    .unwrap();
    let (status, body) = request(port, &first, "POST /validate HTTP/1.1", &review)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"], json!({"uid": "abc", "allowed": true}));

    let (status, body) = request(port, &first, "POST /validate HTTP/1.1", b"{nope")
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["status"]["code"], 400);

    let (status, _) = request(port, &first, "GET /validate HTTP/1.1", b"")
        .await
        .unwrap();
    assert_eq!(status, 405);
    let (status, _) = request(port, &first, "POST /other HTTP/1.1", &review)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let big = vec![b' '; server::MAX_BODY + 1];
    let (status, _) = request(port, &first, "POST /validate HTTP/1.1", &big)
        .await
        .unwrap();
    assert_eq!(status, 413);

    // Renewal on disk: the next handshake presents the new certificate; a client that trusts
    // only the old one is refused, one trusting the new one is served.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = write_pair(dir.path());
    let err = request(port, &first, "POST /validate HTTP/1.1", &review)
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let (status, _) = request(port, &second, "POST /validate HTTP/1.1", &review)
        .await
        .unwrap();
    assert_eq!(status, 200);

    // A kept-alive connection (as the API server holds them) is closed by shutdown, and the
    // server finishes without waiting for the client.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(second.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut kept = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        review.len()
    );
    kept.write_all(head.as_bytes()).await.unwrap();
    kept.write_all(&review).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let started = std::time::Instant::now();
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the kept-alive connection was closed");
}

/// An attacker holding 300 idle connections (200 that never start TLS, 100 that finish the
/// handshake and send nothing) does not keep a review out: each newer connection displaces the
/// oldest idle one, so the reviewer's connection gets a slot and is answered.
#[tokio::test]
async fn idle_connections_from_one_peer_do_not_lock_out_a_review() {
    let dir = tempfile::tempdir().unwrap();
    let cert_der = write_pair(dir.path());
    let metrics = GuardMetrics::default();
    let cert = Arc::new(
        ReloadingCert::new(
            &dir.path().join("tls.crt"),
            &dir.path().join("tls.key"),
            metrics.clone(),
        )
        .unwrap(),
    );
    let tls = Arc::new(cert.server_config().unwrap());
    let guard = Arc::new(Guard::new(
        Arc::new(NoCluster),
        metrics,
        GuardSettings {
            handoff_timeout: Duration::from_secs(60),
            lookup_deadline: Duration::from_secs(1),
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server::serve(listener, tls, guard, stop_rx));

    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.clone()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let mut idle_tls = Vec::new();
    for _ in 0..100 {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A displaced connection fails its handshake; the attacker just keeps going.
        if let Ok(s) = TlsConnector::from(Arc::clone(&config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
        {
            idle_tls.push(s);
        }
    }

    let review = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "legit", "operation": "DELETE", "kind": {"kind": "Pod"},
                    "oldObject": {"metadata": {"name": "web-1"}}}
    }))
    .unwrap();
    let (status, body) = request(port, &cert_der, "POST /validate HTTP/1.1", &review)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["uid"], "legit");

    drop((idle, idle_tls));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
