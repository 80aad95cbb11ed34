//! Typed RDS operations built from `routeros` commands.
//!
//! Every command goes through [`RdsClient::run`], the one place that applies deadlines,
//! reads failures from both streams, reports to the observer and retries. Retries are only
//! for transport trouble and only for commands that are safe to repeat: a `/disk add` whose
//! outcome is unknown is resolved by printing, never by sending it again blind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use routeros::command::{self, Command, DiskAdd};
use routeros::{
    ByteSize, Capacity, Disk, FailureKind, FileEntry, FilePath, HostNqn, MountPoint, Slot,
    SystemResource,
};

use crate::backoff;
use crate::error::{ErrorClass, RdsError};
use crate::exec::{Exec, ExecOutput, TransportStats};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Deadline for read-only commands (`print`).
    pub read_timeout: Duration,
    /// Deadline for mutating commands (`add`, `set`, `remove`).
    pub write_timeout: Duration,
    /// Attempts for retryable (transport) errors, including the first.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for ClientConfig {
    /// Prints are quick on RouterOS; `/disk add` allocates a file and can take a while on a
    /// busy pool, hence the longer write deadline.
    fn default() -> Self {
        ClientConfig {
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(60),
            max_attempts: 4,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// One command as it ran: for metrics, audit and the demo's transcript.
#[derive(Debug, Clone)]
pub struct CommandEvent {
    pub verb: &'static str,
    pub line: String,
    pub duration: Duration,
    /// `ok`, `failure`, `transport`, `timeout`.
    pub outcome: &'static str,
}

pub trait CommandObserver: Send + Sync {
    fn on_command(&self, event: &CommandEvent);
}

/// Result of `create_disk`: the verified disk, and whether this call created it.
#[derive(Debug, Clone)]
pub struct CreateOutcome {
    pub disk: routeros::Disk,
    pub created: bool,
}

/// Result of `delete_disk`. A leftover backing file is reported rather than failing the
/// delete: the disk (what Kubernetes cares about) is gone, and the file can be swept later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The disk existed before this call.
    pub existed: bool,
    /// Backing file that could not be removed.
    pub leftover_file: Option<String>,
}

pub struct RdsClient {
    exec: Arc<dyn Exec>,
    config: ClientConfig,
    observer: Option<Arc<dyn CommandObserver>>,
    round_trips: AtomicU64,
}

/// Sizes printed as `50.0GiB` are rounded to one decimal of their unit; when that is all the
/// RDS prints, a size within this fraction below the request is taken as matching.
const APPROX_SIZE_TOLERANCE: f64 = 0.05;

impl RdsClient {
    pub fn new(exec: Arc<dyn Exec>, config: ClientConfig) -> Self {
        RdsClient {
            exec,
            config,
            observer: None,
            round_trips: AtomicU64::new(0),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn CommandObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Commands sent so far (every attempt counts), for round-trip benchmarks.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// `user@host:port`, for logs.
    pub fn target(&self) -> String {
        self.exec.target()
    }

    /// The transport's connection state, for metrics collected at scrape time.
    pub fn transport_stats(&self) -> Option<TransportStats> {
        self.exec.stats()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The disk with exactly this slot. `None` only when RouterOS answered and printed no
    /// such record; a transport problem is an error.
    pub async fn get_disk(&self, slot: &Slot) -> Result<Option<Disk>, RdsError> {
        let cmd = command::disk_print_slot(slot);
        let out = self.run(&cmd).await?;
        let disks = parse_disks(&cmd, &out)?;
        Ok(disks.into_iter().find(|d| d.slot == slot.as_str()))
    }

    /// The driver's disks: slots starting with `prefix`.
    pub async fn list_disks(&self, prefix: &Slot) -> Result<Vec<Disk>, RdsError> {
        let cmd = command::disk_print_slot_prefix(prefix);
        let out = self.run(&cmd).await?;
        // Thousands of disks: their typed fields only, not every raw record.
        let disks =
            routeros::disk::parse_disk_listing(&out.stdout).map_err(|source| RdsError::Parse {
                verb: cmd.verb(),
                source,
            })?;
        drop(out);
        Ok(disks
            .into_iter()
            .filter(|d| d.slot.starts_with(prefix.as_str()))
            .collect())
    }

    /// Creates and verifies a disk in two round trips when all goes well. See the module
    /// docs for why an ambiguous add is resolved by a print rather than repeated.
    pub async fn create_disk(&self, spec: &DiskAdd) -> Result<CreateOutcome, RdsError> {
        let add = command::disk_add(spec);
        let attempts = self.config.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.run(&add).await {
                Ok(_) => return self.verify_created(spec).await,
                Err(e @ RdsError::Failure { .. }) => {
                    // Refused: maybe because it already exists (a retried CreateVolume).
                    return match self.get_disk(&spec.slot).await? {
                        Some(disk) => {
                            tracing::info!(slot = %spec.slot.as_str(), refusal = %e, "disk add refused; slot already exists");
                            Ok(CreateOutcome {
                                disk,
                                created: false,
                            })
                        }
                        None => Err(e),
                    };
                }
                Err(e) if e.is_retryable() => {
                    // Ambiguous: the add may have been applied before the transport failed.
                    let wait = self.backoff(attempt);
                    tracing::warn!(
                        slot = %spec.slot.as_str(), attempt, error = %e, retry_in = ?wait,
                        "disk add outcome unknown; checking with a print"
                    );
                    tokio::time::sleep(wait).await;
                    if let Some(disk) = self.get_disk(&spec.slot).await? {
                        return Ok(CreateOutcome {
                            disk,
                            created: false,
                        });
                    }
                    if attempt >= attempts {
                        return Err(e);
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn verify_created(&self, spec: &DiskAdd) -> Result<CreateOutcome, RdsError> {
        // A transport error here leaves the disk alone: a retried CreateVolume finds it.
        let problem = match self.get_disk(&spec.slot).await? {
            None => "it is missing".to_string(),
            Some(disk) => match mismatch(spec, &disk) {
                Some(problem) => problem,
                None => {
                    return Ok(CreateOutcome {
                        disk,
                        created: true,
                    });
                }
            },
        };
        tracing::error!(
            slot = %spec.slot.as_str(), problem = %problem,
            "disk add reported success but verification failed; removing it"
        );
        self.undo_create(spec).await;
        Err(RdsError::Verify(format!(
            "disk {} was added but {problem}; removed it",
            spec.slot.as_str()
        )))
    }

    /// Best effort: the caller already has an error to return.
    async fn undo_create(&self, spec: &DiskAdd) {
        match self.run(&command::disk_remove(&spec.slot)).await {
            Ok(_) => {}
            Err(e) if e.class() == ErrorClass::NotFound => {}
            Err(e) => {
                tracing::warn!(slot = %spec.slot.as_str(), error = %e, "cleanup: disk remove failed")
            }
        }
        if let Err(e) = self.run(&command::file_remove(&spec.file_path)).await
            && e.class() != ErrorClass::NotFound
        {
            tracing::warn!(file = %spec.file_path.as_str(), error = %e, "cleanup: file remove failed");
        }
    }

    /// Grows a disk; never shrinks (that would destroy data at the end of the volume).
    pub async fn resize_disk(&self, slot: &Slot, size: ByteSize) -> Result<Disk, RdsError> {
        let disk = self.get_disk(slot).await?.ok_or_else(|| {
            RdsError::NotFound(format!("disk {} not found on the RDS", slot.as_str()))
        })?;
        self.resize_found_disk(slot, disk, size).await
    }

    /// [`RdsClient::resize_disk`] for a disk the caller has just printed (and checked), so the
    /// check costs no extra round trip.
    pub async fn resize_found_disk(
        &self,
        slot: &Slot,
        disk: Disk,
        size: ByteSize,
    ) -> Result<Disk, RdsError> {
        if let Some(current) = disk.capacity_bytes() {
            if size.0 < current {
                return Err(RdsError::WouldShrink {
                    current,
                    requested: size.0,
                    disk: Box::new(disk),
                });
            }
            if size.0 == current {
                return Ok(disk);
            }
        }
        self.run(&command::disk_set_size(slot, size)).await?;
        let after = self.get_disk(slot).await?.ok_or_else(|| {
            RdsError::Verify(format!("disk {} disappeared after resize", slot.as_str()))
        })?;
        match size_shortfall(&after, size.0) {
            Some(problem) => Err(RdsError::Verify(format!(
                "disk {} after resize: {problem}",
                slot.as_str()
            ))),
            None => Ok(after),
        }
    }

    /// Sets which host may connect to the disk's NVMe/TCP export (`None`: any host), then
    /// prints the disk to prove it took. Host fencing must never believe an ACL is in place
    /// that is not: `/disk set` on a vanished slot is a silent no-op on RouterOS, and firmware
    /// may ignore a property it does not know. Safe to repeat (an absolute `set`).
    pub async fn set_allowed_host(
        &self,
        slot: &Slot,
        host: Option<&HostNqn>,
    ) -> Result<Disk, RdsError> {
        self.run(&command::disk_set_allowed_host(slot, host))
            .await?;
        let disk = self.get_disk(slot).await?.ok_or_else(|| {
            RdsError::NotFound(format!("disk {} not found on the RDS", slot.as_str()))
        })?;
        let want = host.map_or("", HostNqn::as_str);
        match disk.allow_host.as_deref() {
            Some(got) if got == want => Ok(disk),
            got => Err(RdsError::Verify(format!(
                "disk {} prints nvme-tcp-server-allow-host-name={:?} after it was set to {want:?}",
                slot.as_str(),
                got.unwrap_or("<not printed>")
            ))),
        }
    }

    /// Idempotent: a missing disk is success. The `.img` is removed too because RouterOS
    /// leaves it behind.
    pub async fn delete_disk(&self, slot: &Slot) -> Result<DeleteOutcome, RdsError> {
        let Some(disk) = self.get_disk(slot).await? else {
            return Ok(DeleteOutcome {
                existed: false,
                leftover_file: None,
            });
        };
        self.delete_found_disk(&disk).await
    }

    /// Removes a disk the caller has just printed (and judged safe to delete), then its
    /// backing file; saves the second print `delete_disk` would make.
    pub async fn delete_found_disk(&self, disk: &Disk) -> Result<DeleteOutcome, RdsError> {
        let slot = &Slot::new(&disk.slot)?;
        match self.run(&command::disk_remove(slot)).await {
            Ok(_) => {}
            Err(e) if e.class() == ErrorClass::NotFound => {}
            Err(e) => return Err(e),
        }
        let leftover_file = match disk.file_path.as_deref() {
            None => None,
            Some(path) => match FilePath::new(path) {
                Err(e) => {
                    tracing::warn!(slot = %slot.as_str(), file = %path, error = %e, "disk file path is not removable; leaving it");
                    Some(path.to_string())
                }
                Ok(fp) => match self.remove_file(&fp).await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::warn!(slot = %slot.as_str(), file = %path, error = %e, "disk removed but its file was not");
                        Some(path.to_string())
                    }
                },
            },
        };
        Ok(DeleteOutcome {
            existed: true,
            leftover_file,
        })
    }

    /// Removes a file; a file that is already gone is success.
    pub async fn remove_file(&self, path: &FilePath) -> Result<(), RdsError> {
        match self.run(&command::file_remove(path)).await {
            Ok(_) => Ok(()),
            Err(RdsError::Failure { failure, .. }) if failure.kind == FailureKind::NotFound => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Files under `dir` (by whole path components).
    pub async fn list_files(&self, dir: &FilePath) -> Result<Vec<FileEntry>, RdsError> {
        let cmd = command::file_print_under(dir);
        let out = self.run(&cmd).await?;
        let files = routeros::file::parse_files(&out.stdout).map_err(|source| RdsError::Parse {
            verb: cmd.verb(),
            source,
        })?;
        let base = dir.as_str().trim_end_matches('/');
        Ok(files
            .into_iter()
            .filter(|f| {
                f.name
                    .strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .collect())
    }

    /// Files (not directories) named exactly `<slot>.img`, in any directory: the backing file
    /// a disk in `slot` leaves when its delete stopped after `/disk remove`. The caller decides
    /// which directories it may touch.
    pub async fn image_files(&self, slot: &Slot) -> Result<Vec<FileEntry>, RdsError> {
        let cmd = command::file_print_image(slot);
        let out = self.run(&cmd).await?;
        let files = routeros::file::parse_files(&out.stdout).map_err(|source| RdsError::Parse {
            verb: cmd.verb(),
            source,
        })?;
        let stem = format!("{}.", slot.as_str());
        Ok(files
            .into_iter()
            .filter(|f| {
                f.name.rsplit_once('/').is_some_and(|(_, base)| {
                    base.starts_with(&stem)
                        && base.ends_with(".img")
                        && base.len() >= stem.len() + 3
                }) && !f.kind.as_deref().is_some_and(|k| k.contains("directory"))
            })
            .collect())
    }

    pub async fn capacity(&self, mount_point: &MountPoint) -> Result<Capacity, RdsError> {
        let cmd = command::capacity(mount_point);
        let out = self.run(&cmd).await?;
        routeros::capacity::parse_capacity(&out.stdout).map_err(|source| RdsError::Parse {
            verb: cmd.verb(),
            source,
        })
    }

    pub async fn system_resource(&self) -> Result<SystemResource, RdsError> {
        let cmd = command::system_resource();
        let out = self.run(&cmd).await?;
        routeros::monitor::parse_system_resource(&out.stdout).map_err(|source| RdsError::Parse {
            verb: cmd.verb(),
            source,
        })
    }

    /// Liveness without running a RouterOS command.
    pub async fn ping(&self) -> Result<(), RdsError> {
        self.exec.ping(self.config.read_timeout).await
    }

    /// The single path every command takes.
    async fn run(&self, cmd: &Command) -> Result<ExecOutput, RdsError> {
        let deadline = if cmd.is_mutating() {
            self.config.write_timeout
        } else {
            self.config.read_timeout
        };
        let attempts = if retry_safe(cmd) {
            self.config.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            match self.run_once(cmd, deadline).await {
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let wait = self.backoff(attempt);
                    tracing::warn!(verb = cmd.verb(), attempt, error = %e, retry_in = ?wait, "RDS command failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn run_once(&self, cmd: &Command, deadline: Duration) -> Result<ExecOutput, RdsError> {
        let verb = cmd.verb();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let result = self
            .exec
            .exec(verb, cmd.as_str(), deadline)
            .await
            .and_then(|out| {
                match command::detect_failure(&out.stdout, &out.stderr, out.exit_status) {
                    Some(failure) => Err(RdsError::Failure { verb, failure }),
                    None => Ok(out),
                }
            });
        let outcome = match &result {
            Ok(_) => "ok",
            Err(RdsError::Timeout { .. }) => "timeout",
            Err(e) if e.class() == ErrorClass::Transport => "transport",
            Err(_) => "failure",
        };
        let duration = started.elapsed();
        tracing::debug!(verb, line = %cmd.as_str(), ?duration, outcome, "RDS command");
        if let Some(observer) = &self.observer {
            observer.on_command(&CommandEvent {
                verb,
                line: cmd.as_str().to_string(),
                duration,
                outcome,
            });
        }
        result
    }

    fn backoff(&self, retry: u32) -> Duration {
        backoff::delay(self.config.backoff_initial, self.config.backoff_max, retry)
    }
}

/// Prints, absolute `set`s and removes can be repeated; an `add` cannot (a second one either
/// fails with "already exists" or, worse, creates a second item).
fn retry_safe(cmd: &Command) -> bool {
    if !cmd.is_mutating() {
        return true;
    }
    !cmd.as_str()
        .split_whitespace()
        .take(2)
        .any(|t| t == "add" || t.ends_with("/add"))
}

fn parse_disks(cmd: &Command, out: &ExecOutput) -> Result<Vec<Disk>, RdsError> {
    routeros::disk::parse_disks(&out.stdout).map_err(|source| RdsError::Parse {
        verb: cmd.verb(),
        source,
    })
}

/// What differs between the requested and the printed disk, if anything.
fn mismatch(spec: &DiskAdd, disk: &Disk) -> Option<String> {
    if disk.file_path.as_deref() != Some(spec.file_path.as_str()) {
        return Some(format!(
            "its file path is {:?}, expected {:?}",
            disk.file_path,
            spec.file_path.as_str()
        ));
    }
    match &spec.nvme {
        Some(nvme) => {
            if !disk.nvme_export {
                return Some("it is not exported over NVMe/TCP".into());
            }
            if disk.nvme_port != Some(nvme.port.get()) {
                return Some(format!(
                    "its NVMe/TCP port is {:?}, expected {}",
                    disk.nvme_port,
                    nvme.port.get()
                ));
            }
            if disk.nvme_nqn.as_deref() != Some(nvme.nqn.as_str()) {
                return Some(format!(
                    "its NQN is {:?}, expected {:?}",
                    disk.nvme_nqn,
                    nvme.nqn.as_str()
                ));
            }
        }
        None => {
            if disk.nvme_export {
                return Some("it is exported over NVMe/TCP but no export was requested".into());
            }
        }
    }
    spec.file_size.and_then(|want| size_shortfall(disk, want.0))
}

/// `Some(reason)` when the printed size is below `want`. Exact bytes (`size=` or a raw
/// `file-size=`) must be ≥ `want`; a rounded `50.0GiB` gets [`APPROX_SIZE_TOLERANCE`]. A
/// disk that prints no size at all cannot be checked and is accepted with a warning rather
/// than deleted on a guess.
fn size_shortfall(disk: &Disk, want: u64) -> Option<String> {
    if let Some(exact) = disk.capacity_bytes() {
        return (exact < want).then(|| format!("its size is {exact} bytes, requested {want}"));
    }
    if let Some(approx) = disk.file_size_bytes {
        let floor = want as f64 * (1.0 - APPROX_SIZE_TOLERANCE);
        return ((approx as f64) < floor)
            .then(|| format!("its size is about {approx} bytes, requested {want}"));
    }
    tracing::warn!(slot = %disk.slot, "RDS printed no size for the disk; size not verified");
    None
}

#[cfg(test)]
mod tests;
