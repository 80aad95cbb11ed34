//! The real gRPC path over a unix socket: server via `uds::bind`, client
//! via `uds::connect`, both through tonic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use csi::v1::identity_client::IdentityClient;
use csi::v1::identity_server::{Identity, IdentityServer};
use csi::v1::*;
use tonic::{Request, Response, Status};

struct TinyIdentity;

#[tonic::async_trait]
impl Identity for TinyIdentity {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: "rds.csi.example.com".into(),
            vendor_version: "test".into(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

#[tokio::test]
async fn identity_round_trip_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    // Nested path: bind must create the parent directory itself.
    let sock = dir.path().join("plugins/rds/csi.sock");
    let incoming = csi::uds::bind(&sock).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServer::new(TinyIdentity))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );

    let channel = csi::uds::connect(&sock, Duration::from_secs(5))
        .await
        .unwrap();
    let mut client = IdentityClient::new(channel);
    let info = client
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "rds.csi.example.com");
    let probe = client.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));
    let err = client
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn bind_replaces_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    // A socket file left by a process that is gone.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let _listener = csi::uds::bind(&sock).unwrap();
    // The new listener is live: a client can connect to it.
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
}

#[tokio::test]
async fn bind_refuses_to_delete_a_regular_file_or_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("csi.sock");
    std::fs::write(&file, b"important").unwrap();
    let err = csi::uds::bind(&file).unwrap_err();
    assert!(
        matches!(
            err,
            csi::Error::NotASocket {
                kind: "regular file",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"important");

    let sub = dir.path().join("dir.sock");
    std::fs::create_dir(&sub).unwrap();
    let err = csi::uds::bind(&sub).unwrap_err();
    assert!(
        matches!(
            err,
            csi::Error::NotASocket {
                kind: "directory",
                ..
            }
        ),
        "{err}"
    );
    assert!(sub.is_dir());
}

#[tokio::test]
async fn connect_to_missing_socket_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("absent.sock");
    let err = csi::uds::connect(&sock, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("absent.sock"), "{err}");
    assert!(
        err.to_string().contains("No such file"),
        "cause must be shown: {err}"
    );
}
