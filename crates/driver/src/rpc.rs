//! One wrapper every RPC goes through: logs method, volume and outcome with its duration, and
//! turns `DriverError` into a gRPC status. Request bodies are never logged (they carry secrets).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tonic::{Response, Status};
use tracing::{debug, info, warn};

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

pub async fn traced<T>(
    method: &'static str,
    volume: &str,
    fut: impl Future<Output = Result<T, DriverError>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    debug!(method, volume, "rpc start");
    let result = fut.await;
    let elapsed = start.elapsed();
    let ms = elapsed.as_secs_f64() * 1e3;
    let code = match &result {
        Ok(_) => {
            info!(method, volume, elapsed_ms = ms, "rpc ok");
            tonic::Code::Ok
        }
        Err(e) => {
            warn!(method, volume, elapsed_ms = ms, code = ?e.code(), error = %e, "rpc failed");
            e.code()
        }
    };
    if let Some(o) = OBSERVER.get() {
        o.on_rpc(method, code, elapsed);
    }
    result.map(Response::new).map_err(Status::from)
}
