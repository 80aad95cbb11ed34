//! The two sysfs interactions the `nvme` crate does not offer: reading a block device's size and
//! asking a controller to rescan its namespaces after the target grew one. Both run on the
//! blocking pool under a deadline (sysfs reads of a controller in teardown can block).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{DriverError, Result};

async fn blocking<T, F>(what: String, deadline: Duration, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(DriverError::Internal(format!("{what}: {e}"))),
        Ok(Err(e)) => Err(DriverError::Internal(format!("{what}: {e}"))),
        Err(_) => Err(DriverError::Unavailable(format!(
            "{what} did not finish within {deadline:?}"
        ))),
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

/// Creates a directory (and parents) with mode 0750 under a deadline; kubelet paths can sit on
/// a hung mount.
pub async fn mkdir(path: &Path, deadline: Duration) -> Result<()> {
    let p = path.to_path_buf();
    blocking(
        format!("creating {}", path.display()),
        deadline,
        move || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&p)
        },
    )
    .await
}
