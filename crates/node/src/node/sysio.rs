//! The two sysfs interactions the `nvme` crate does not offer: reading a block device's size and
//! asking a controller to rescan its namespaces after the target grew one. Both go through the
//! one executor for blocking calls under a deadline (sysfs reads of a controller in teardown
//! can block), keyed by what they touch so a stuck one is never started twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::paths;
use vocab::error::{DriverError, Result};

/// [`kcall::global`] with the driver's errors; `what` names the call and its target.
pub(crate) async fn blocking<T, F>(what: String, deadline: Duration, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    let key = kcall::CallKey::new("node file operation", what.clone());
    match kcall::global().run(key, deadline, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(DriverError::Internal(format!("{what}: {e}"))),
        Err(kcall::CallError::Timeout { .. }) => Err(DriverError::Unavailable(format!(
            "{what} did not finish within {deadline:?}"
        ))),
        Err(kcall::CallError::Panicked(e)) => Err(DriverError::Internal(format!("{what}: {e}"))),
        Err(e) => Err(DriverError::Unavailable(format!("{what}: {e}"))),
    }
}

/// Size in bytes of block device `name` (`class/block/<name>/size` counts 512-byte sectors
/// whatever the logical block size).
pub async fn device_size(sysfs_root: &Path, name: &str, deadline: Duration) -> Result<u64> {
    let path = sysfs_root.join("class/block").join(name).join("size");
    let shown = format!("reading {}", path.display());
    blocking(shown, deadline, move || {
        let text = std::fs::read_to_string(&path)?;
        let sectors: u64 = text
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other(format!("not a sector count: {:?}", text.trim())))?;
        Ok(sectors.saturating_mul(512))
    })
    .await
}

/// Writes `1` to `class/nvme/<ctrl>/rescan_controller`.
pub async fn rescan_controller(sysfs_root: &Path, ctrl: &str, deadline: Duration) -> Result<()> {
    let path: PathBuf = sysfs_root
        .join("class/nvme")
        .join(ctrl)
        .join("rescan_controller");
    let shown = format!("writing 1 to {}", path.display());
    blocking(shown, deadline, move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.write_all(b"1")
    })
    .await
}

/// Runs a [`paths`] walk under the executor: a refused path is INVALID_ARGUMENT naming the
/// rule, anything else keeps the executor's codes.
async fn confined<T, F>(what: String, deadline: Duration, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::result::Result<T, paths::WalkError> + Send + 'static,
{
    let key = kcall::CallKey::new("kubelet path walk", what.clone());
    match kcall::global().run(key, deadline, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(paths::WalkError::Refused(why))) => {
            Err(DriverError::InvalidArgument(format!("{what}: {why}")))
        }
        Ok(Err(paths::WalkError::Io(e))) => Err(DriverError::Internal(format!("{what}: {e}"))),
        Err(kcall::CallError::Timeout { .. }) => Err(DriverError::Unavailable(format!(
            "{what} did not finish within {deadline:?}"
        ))),
        Err(e) => Err(DriverError::Unavailable(format!("{what}: {e}"))),
    }
}

/// What is at `path` (below `root`), found without following symlinks; kubelet paths can sit
/// on a hung mount, hence the deadline.
pub async fn inspect(root: &Path, path: &Path, deadline: Duration) -> Result<paths::Found> {
    let (r, p) = (root.to_path_buf(), path.to_path_buf());
    confined(
        format!("checking {}", path.display()),
        deadline,
        move || paths::walk(&r, &p),
    )
    .await
}

/// Creates `path` and its missing parents below `root` (mode 0750) without following symlinks.
pub async fn mkdir(root: &Path, path: &Path, deadline: Duration) -> Result<()> {
    let (r, p) = (root.to_path_buf(), path.to_path_buf());
    confined(
        format!("creating {}", path.display()),
        deadline,
        move || paths::mkdir(&r, &p, 0o750),
    )
    .await
}
