//! One wrapper every RPC goes through: logs method, volume and outcome with its duration,
//! feeds the metrics observer, audits calls that change state, and turns `DriverError` into a
//! gRPC status. Request bodies are never logged or audited (they carry secrets).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tonic::{Response, Status};
use tracing::{debug, info, warn};

use crate::audit;
use crate::error::DriverError;

/// Told about every finished RPC (metrics hook).
pub trait RpcObserver: Send + Sync {
    fn on_rpc(&self, method: &'static str, code: tonic::Code, elapsed: Duration);
}

static OBSERVER: OnceLock<Arc<dyn RpcObserver>> = OnceLock::new();

/// Installs the process-wide RPC observer (first call wins).
pub fn set_observer(o: Arc<dyn RpcObserver>) {
    let _ = OBSERVER.set(o);
}

/// [`traced_on_node`] for calls that name no node.
pub async fn traced<T>(
    method: &'static str,
    volume: &str,
    fut: impl Future<Output = Result<T, DriverError>>,
) -> Result<Response<T>, Status> {
    traced_on_node(method, volume, None, fut).await
}

/// Runs one RPC handler: logs it, tells the observer (metrics) and, for calls that change
/// state, writes the audit record. Takes only the ids worth recording, never the request.
pub async fn traced_on_node<T>(
    method: &'static str,
    volume: &str,
    node: Option<&str>,
    fut: impl Future<Output = Result<T, DriverError>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    let node_id = node.unwrap_or_default();
    debug!(method, volume, node = node_id, "rpc start");
    let result = fut.await;
    let elapsed = start.elapsed();
    let ms = elapsed.as_secs_f64() * 1e3;
    let (code, message) = match &result {
        Ok(_) => {
            info!(method, volume, node = node_id, elapsed_ms = ms, "rpc ok");
            (tonic::Code::Ok, String::new())
        }
        Err(e) => {
            warn!(method, volume, node = node_id, elapsed_ms = ms, code = ?e.code(), error = %e, "rpc failed");
            (e.code(), e.to_string())
        }
    };
    if let Some(o) = OBSERVER.get() {
        o.on_rpc(method, code, elapsed);
    }
    if audit::is_mutating(method) {
        audit::operation(&audit::Operation {
            name: method,
            volume,
            node,
            code,
            message: &message,
            elapsed: Some(elapsed),
        });
    }
    result.map(Response::new).map_err(Status::from)
}
