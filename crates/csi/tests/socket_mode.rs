//! The CSI socket's mode never follows the process umask: under umask 000 a plain bind gives
//! `srwxrwxrwx`, and any local user could then call every RPC. One test per binary, because
//! the umask is process-wide.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use csi::uds::{SocketAccess, bind, bind_with};

#[tokio::test]
async fn sockets_are_0600_or_0660_with_a_group_even_under_umask_000() {
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    let dir = tempfile::tempdir().unwrap();

    let owner_only = dir.path().join("plugins/csi.sock");
    let _l1 = bind(&owner_only).unwrap();
    let meta = std::fs::symlink_metadata(&owner_only).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{owner_only:?}");

    let gid = rustix::process::getgid().as_raw();
    let grouped = dir.path().join("grouped.sock");
    let _l2 = bind_with(&grouped, SocketAccess { group: Some(gid) }).unwrap();
    let meta = std::fs::symlink_metadata(&grouped).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), gid);

    // Nothing of the private bind directory is left next to the socket, and a rebind over the
    // socket of a "crashed" run works.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["csi.sock".to_string()]);
    drop(_l1);
    let _again = bind(&owner_only).unwrap();
    let stream = tokio::net::UnixStream::connect(&owner_only).await;
    assert!(stream.is_ok(), "the renamed socket accepts connections");
    rustix::process::umask(old);
}
