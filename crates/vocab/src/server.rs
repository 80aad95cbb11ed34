//! Puts the CSI services on a unix socket and takes them down gracefully.

use std::future::Future;
use std::path::Path;

use csi::v1::controller_server::ControllerServer;
use csi::v1::identity_server::IdentityServer;
use csi::v1::node_server::NodeServer;
use tracing::info;

use crate::IdentityService;
use crate::bounds::Bounded;
use crate::error::{DriverError, Result};
use crate::rpc::Observers;
use csi::v1::controller_server::Controller;
use csi::v1::node_server::Node;

/// CSI messages are small, but ListVolumes pages can grow; 16 MiB leaves them room.
const MAX_MESSAGE: usize = 16 << 20;

/// `C` and `N` are the Controller and Node services (the `controller` and `node` crates').
pub struct Services<C, N> {
    pub identity: IdentityService,
    pub controller: Option<C>,
    pub node: Option<N>,
    /// Told about every call (metrics, the audit trail).
    pub observers: Observers,
}

/// Serves until `shutdown` completes (every request checked against [`crate::bounds`] first),
/// then drains in-flight RPCs and removes the socket file. The socket is mode 0600: only its
/// owner may call.
pub async fn serve<C: Controller, N: Node>(
    socket: &Path,
    services: Services<C, N>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_with(
        socket,
        csi::uds::SocketAccess::default(),
        services,
        shutdown,
    )
    .await
}

/// [`serve`] with the socket's group access chosen by the operator.
pub async fn serve_with<C: Controller, N: Node>(
    socket: &Path,
    access: csi::uds::SocketAccess,
    services: Services<C, N>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let incoming = csi::uds::bind_with(socket, access)
        .map_err(|e| DriverError::Config(format!("cannot listen on {}: {e}", socket.display())))?;
    info!(socket = %socket.display(), controller = services.controller.is_some(), node = services.node.is_some(), "serving CSI");
    let identity = IdentityServer::new(Bounded(services.identity, services.observers.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let controller = services.controller.map(|c| {
        ControllerServer::new(Bounded(c, services.observers.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    });
    let node = services.node.map(|n| {
        NodeServer::new(Bounded(n, services.observers.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    });
    let result = tonic::transport::Server::builder()
        .add_service(identity)
        .add_optional_service(controller)
        .add_optional_service(node)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    result.map_err(|e| DriverError::Internal(format!("gRPC server on {}: {e}", socket.display())))
}
