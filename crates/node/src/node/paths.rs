//! The node's boundary on the host filesystem. The plugin runs as root in the host's mount
//! namespace, so a path in a request is a capability: whoever can reach the CSI socket could
//! otherwise have it create, mount over or delete anything on the host. Staging and target
//! paths must therefore lie below the kubelet directory, are walked component by component
//! without following a symlink (`openat` with `O_NOFOLLOW` from the kubelet directory down, so
//! a link swapped in under the kubelet tree cannot redirect a mkdir or a removal), and only
//! what the driver itself creates there is ever removed.
//!
//! The kubelet directory itself comes from the plugin's configuration and is trusted as given
//! (it may be a symlink on some distributions).

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use vocab::error::{DriverError, Result};

/// Default `--kubelet-dir`.
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";
/// Longest path accepted (Linux PATH_MAX).
const MAX_PATH: usize = 4096;

fn invalid(msg: String) -> DriverError {
    DriverError::InvalidArgument(msg)
}

/// Checks `raw` (request field `field`) lexically: absolute, no `..`, at most PATH_MAX bytes,
/// strictly below `root`. Returns it normalised (repeated and trailing slashes dropped).
pub fn confine(field: &str, raw: &str, root: &Path) -> Result<PathBuf> {
    let rule = format!(
        "{field} must be an absolute path below the kubelet directory {} without `..` or symlinks",
        root.display()
    );
    if raw.len() > MAX_PATH {
        return Err(invalid(format!(
            "{field} is {} bytes long, more than {MAX_PATH}; {rule}",
            raw.len()
        )));
    }
    let p = Path::new(raw);
    if !p.is_absolute() || raw.contains('\0') {
        return Err(invalid(format!("{field} {raw:?} is refused: {rule}")));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!("{field} {raw:?} contains `..`; {rule}")));
    }
    let clean: PathBuf = p.components().collect();
    match clean.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(clean),
        _ => Err(invalid(format!(
            "{field} {raw:?} is outside the kubelet directory; {rule}"
        ))),
    }
}

/// What a walk found at the end of a confined path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Missing,
    Directory,
    File { len: u64 },
    Other,
}

/// Why a walk refused a path.
#[derive(Debug)]
pub enum WalkError {
    /// A component is a symlink (or an intermediate one is not a directory).
    Refused(String),
    Io(io::Error),
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

impl From<rustix::io::Errno> for WalkError {
    fn from(e: rustix::io::Errno) -> Self {
        WalkError::Io(e.into())
    }
}

fn open_root(root: &Path) -> std::result::Result<OwnedFd, WalkError> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        WalkError::Io(io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "kubelet directory {} cannot be opened ({e}); is --kubelet-dir right?",
                root.display()
            ),
        ))
    })
}

fn open_nofollow(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn components(root: &Path, path: &Path) -> std::result::Result<Vec<PathBuf>, WalkError> {
    let rel = path.strip_prefix(root).map_err(|_| {
        WalkError::Refused(format!(
            "{} is not below {}",
            path.display(),
            root.display()
        ))
    })?;
    Ok(rel
        .components()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect())
}

/// Walks `path` (already [`confine`]d below `root`) without following symlinks. A missing
/// component ends the walk with [`Found::Missing`]. Blocking: run it through the executor.
pub fn walk(root: &Path, path: &Path) -> std::result::Result<Found, WalkError> {
    let parts = components(root, path)?;
    let mut dir = open_root(root)?;
    let mut here = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        here.push(part);
        let fd = match open_nofollow(&dir, part.as_os_str()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(Found::Missing),
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        let last = i + 1 == parts.len();
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => {
                return Err(WalkError::Refused(format!(
                    "{} is a symlink, and paths below the kubelet directory are never resolved through one",
                    here.display()
                )));
            }
            FileType::Directory => dir = fd,
            FileType::RegularFile if last => {
                return Ok(Found::File {
                    len: u64::try_from(st.st_size).unwrap_or(u64::MAX),
                });
            }
            _ if last => return Ok(Found::Other),
            _ => {
                return Err(WalkError::Refused(format!(
                    "{} is not a directory",
                    here.display()
                )));
            }
        }
    }
    Ok(Found::Directory)
}

/// `mkdir -p` of `path` below `root`, one component at a time relative to the directory just
/// opened, never through a symlink. Directories it creates get `mode` (minus the umask).
pub fn mkdir(root: &Path, path: &Path, mode: u32) -> std::result::Result<(), WalkError> {
    let parts = components(root, path)?;
    let mut dir = open_root(root)?;
    let mut here = root.to_path_buf();
    for part in &parts {
        here.push(part);
        let fd = match open_nofollow(&dir, part.as_os_str()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                match rustix::fs::mkdirat(&dir, part.as_os_str(), Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_nofollow(&dir, part.as_os_str())?
            }
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => dir = fd,
            FileType::Symlink => {
                return Err(WalkError::Refused(format!(
                    "{} is a symlink, and paths below the kubelet directory are never resolved through one",
                    here.display()
                )));
            }
            _ => {
                return Err(WalkError::Refused(format!(
                    "{} exists and is not a directory",
                    here.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether `path` is where kubelet asks CSI drivers to publish: a pod's
/// `pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount`, or the block publish path
/// `plugins/kubernetes.io/csi/volumeDevices/publish/<pv>/<pod uid>`. A mount of a volume's
/// device there, left behind after kubelet lost track of it, can only be this driver's own.
pub fn is_publish_target(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let c: Vec<&OsStr> = rel.components().map(|c| c.as_os_str()).collect();
    let is = |s: &OsStr, want: &str| s == OsStr::new(want);
    match c.as_slice() {
        [pods, _, volumes, csi, _, mount] => {
            is(pods, "pods")
                && is(volumes, "volumes")
                && is(csi, "kubernetes.io~csi")
                && is(mount, "mount")
        }
        [plugins, k8s, csi, devices, publish, _, _] => {
            is(plugins, "plugins")
                && is(k8s, "kubernetes.io")
                && is(csi, "csi")
                && is(devices, "volumeDevices")
                && is(publish, "publish")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const K: &str = "/var/lib/kubelet";

    #[test]
    fn only_clean_absolute_paths_strictly_below_the_kubelet_dir_pass() {
        let root = Path::new(K);
        let ok = confine("target_path", "/var/lib/kubelet/pods/a//mount/", root).unwrap();
        assert_eq!(ok, Path::new("/var/lib/kubelet/pods/a/mount"));
        for bad in [
            "/etc",
            "/etc/shadow",
            "/var/lib/kubelet",
            "/var/lib/kubelet/",
            "/var/lib/kubeletX/pods",
            "/var/lib/kubelet/pods/../../../../etc",
            "relative/pods/x",
            "/var/lib/kubelet/pods/a\0b",
        ] {
            let e = confine("target_path", bad, root).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(
                e.to_string()
                    .contains("below the kubelet directory /var/lib/kubelet"),
                "{e}"
            );
        }
        let long = format!("{K}/{}", "a".repeat(MAX_PATH));
        assert!(confine("target_path", &long, root).is_err());
    }

    #[test]
    fn walks_and_mkdirs_refuse_symlinks_in_any_component() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubelet");
        std::fs::create_dir_all(root.join("pods/a")).unwrap();
        let outside = dir.path().join("etc");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("shadow"), "root:x").unwrap();
        symlink(&outside, root.join("pods/evil")).unwrap();
        symlink(outside.join("shadow"), root.join("pods/a/shadow")).unwrap();

        assert!(matches!(
            walk(&root, &root.join("pods/evil/shadow")),
            Err(WalkError::Refused(m)) if m.contains("pods/evil is a symlink")
        ));
        assert!(matches!(
            walk(&root, &root.join("pods/a/shadow")),
            Err(WalkError::Refused(_))
        ));
        assert!(matches!(
            mkdir(&root, &root.join("pods/evil/new"), 0o750),
            Err(WalkError::Refused(_))
        ));
        assert!(!outside.join("new").exists(), "mkdir went through the link");

        mkdir(&root, &root.join("pods/b/volumes/x/mount"), 0o750).unwrap();
        assert_eq!(
            walk(&root, &root.join("pods/b/volumes/x/mount")).unwrap(),
            Found::Directory
        );
        assert_eq!(walk(&root, &root.join("pods/c")).unwrap(), Found::Missing);
        std::fs::write(root.join("pods/a/f"), "").unwrap();
        assert_eq!(
            walk(&root, &root.join("pods/a/f")).unwrap(),
            Found::File { len: 0 }
        );
    }

    #[test]
    fn publish_targets_are_recognised_by_their_kubelet_layout() {
        let root = Path::new(K);
        assert!(is_publish_target(
            root,
            Path::new("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount")
        ));
        assert!(is_publish_target(
            root,
            Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-1/u1")
        ));
        for other in [
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/x/mount",
            "/mnt/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount",
            "/var/lib/kubelet/plugins/kubernetes.io/csi/pv/pvc-1/globalmount",
        ] {
            assert!(!is_publish_target(root, Path::new(other)), "{other}");
        }
    }
}
