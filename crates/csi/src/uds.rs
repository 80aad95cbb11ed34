//! Unix-domain-socket transport for CSI: kubelet and the sidecars only
//! ever speak gRPC over a socket file, never TCP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Error;

/// Turns a CSI endpoint string into a socket path.
///
/// Accepts `unix:///abs/path`, `unix:/abs/path`, `unix://abs/path` is
/// rejected (ambiguous host part), and a bare absolute or relative path.
/// Anything with another scheme (`tcp://`, `http://`) is refused: this
/// driver is only ever reached through a socket file.
pub fn parse_endpoint(endpoint: &str) -> Result<PathBuf, Error> {
    let invalid = |reason| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        if !rest.starts_with('/') {
            return Err(invalid(
                "unix:// must be followed by an absolute path (unix:///path)",
            ));
        }
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        return Err(Error::UnsupportedScheme {
            endpoint: endpoint.to_string(),
        });
    } else {
        endpoint
    };
    if path.is_empty() {
        return Err(invalid("empty socket path"));
    }
    Ok(PathBuf::from(path))
}

/// Binds a listening socket at `path` for `tonic::transport::Server::serve_with_incoming`.
///
/// A socket file left behind by a previous (crashed) process is removed
/// first, otherwise bind fails with "address in use" forever. Anything
/// else at that path (regular file, directory) is a configuration mistake
/// and is refused rather than deleted.
pub fn bind(path: &Path) -> Result<UnixListenerStream, Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            action: "creating socket directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path).map_err(|source| Error::Io {
        action: "binding unix socket",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(UnixListenerStream::new(listener))
}

fn remove_stale_socket(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::FileTypeExt;

    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                action: "inspecting socket path",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "regular file"
        } else {
            "special file"
        };
        return Err(Error::NotASocket {
            path: path.to_path_buf(),
            kind,
        });
    }
    std::fs::remove_file(path).map_err(|source| Error::Io {
        action: "removing stale socket",
        path: path.to_path_buf(),
        source,
    })
}

/// Opens a gRPC channel to the socket at `path`.
///
/// The connection is made eagerly so a missing or dead socket is reported
/// here, with the path, instead of on the first RPC. `timeout` bounds both
/// the connect and every later request on the channel.
pub async fn connect(path: &Path, timeout: Duration) -> Result<Channel, Error> {
    // The URI is a placeholder required by tonic; the connector below
    // ignores it and always dials the socket.
    let endpoint = Endpoint::from_static("http://[::1]:50051")
        .connect_timeout(timeout)
        .timeout(timeout);
    let socket = path.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move {
            let stream = UnixStream::connect(&socket).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    match tokio::time::timeout(timeout, endpoint.connect_with_connector(connector)).await {
        Err(_) => Err(Error::ConnectTimeout {
            path: path.to_path_buf(),
            timeout,
        }),
        Ok(Err(e)) => Err(Error::Connect {
            path: path.to_path_buf(),
            detail: cause_chain(&e),
        }),
        Ok(Ok(channel)) => Ok(channel),
    }
}

fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // Wrappers often repeat their inner error's text verbatim.
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_endpoint_forms() {
        assert_eq!(
            parse_endpoint("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            parse_endpoint("unix:/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            parse_endpoint("/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            parse_endpoint("csi.sock").unwrap(),
            PathBuf::from("csi.sock")
        );
    }

    #[test]
    fn rejects_tcp_and_malformed_endpoints() {
        let err = parse_endpoint("tcp://127.0.0.1:10000").unwrap_err();
        assert!(matches!(err, Error::UnsupportedScheme { .. }), "{err}");
        assert!(err.to_string().contains("only unix sockets"), "{err}");
        assert!(matches!(
            parse_endpoint("unix://relative/x.sock"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            parse_endpoint("unix:"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            parse_endpoint(""),
            Err(Error::InvalidEndpoint { .. })
        ));
    }
}
