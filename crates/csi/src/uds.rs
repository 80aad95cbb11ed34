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

/// Who may connect to a CSI socket besides its owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketAccess {
    /// `None`: mode 0600, only the owner (root on a node) may connect. `Some(gid)`: mode 0660
    /// and owned by that group, for sidecars that run under another user.
    pub group: Option<u32>,
}

impl SocketAccess {
    pub fn mode(&self) -> u32 {
        if self.group.is_some() { 0o660 } else { 0o600 }
    }
}

/// Binds a listening socket at `path` (mode 0600) for
/// `tonic::transport::Server::serve_with_incoming`. See [`bind_with`].
pub fn bind(path: &Path) -> Result<UnixListenerStream, Error> {
    bind_with(path, SocketAccess::default())
}

/// Binds a listening socket at `path` whose mode and group never depend on the process umask:
/// anyone who can connect can call every RPC, so the socket must not be reachable, not even
/// for a moment, before its mode is set. It is bound and listening inside a fresh 0700
/// directory next to `path`, given its final mode there, and only then renamed into place.
///
/// A socket file left behind by a previous (crashed) process is removed
/// first, otherwise bind fails with "address in use" forever. Anything
/// else at that path (regular file, directory) is a configuration mistake
/// and is refused rather than deleted.
pub fn bind_with(path: &Path, access: SocketAccess) -> Result<UnixListenerStream, Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                action: "creating socket directory",
                path: parent.to_path_buf(),
                source,
            })?;
            parent.to_path_buf()
        }
        None => PathBuf::from("."),
    };
    remove_stale_socket(path)?;
    let name = path
        .file_name()
        .map_or_else(|| "csi.sock".into(), |n| n.to_string_lossy().into_owned());
    let private = parent.join(format!(".{name}.binding"));
    remove_stale_private_dir(&private)?;
    // The umask can only take bits away from 0700.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|source| Error::Io {
            action: "creating private socket directory",
            path: private.clone(),
            source,
        })?;
    let staged = private.join("s");
    let result = (|| {
        let io = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io {
                action,
                path: p,
                source,
            }
        };
        let listener = std::os::unix::net::UnixListener::bind(&staged)
            .map_err(io("binding unix socket", &staged))?;
        listener
            .set_nonblocking(true)
            .map_err(io("binding unix socket", &staged))?;
        if let Some(gid) = access.group {
            std::os::unix::fs::chown(&staged, None, Some(gid))
                .map_err(io("setting the group of unix socket", &staged))?;
        }
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(access.mode()))
            .map_err(io("setting the mode of unix socket", &staged))?;
        std::fs::rename(&staged, path).map_err(io("moving unix socket into place", path))?;
        UnixListener::from_std(listener).map_err(io("binding unix socket", path))
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    Ok(UnixListenerStream::new(result?))
}

/// The private directory of a bind that crashed half-way: only ever our own socket inside.
fn remove_stale_private_dir(private: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(private) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "inspecting private socket directory",
            path: private.to_path_buf(),
            source,
        }),
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_file(private.join("s"));
            std::fs::remove_dir(private).map_err(|source| Error::Io {
                action: "removing stale private socket directory",
                path: private.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(Error::NotASocket {
            path: private.to_path_buf(),
            kind: "not a directory where the driver binds its socket",
        }),
    }
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
