//! The checks, in the order the driver's own life cycle of a volume uses the commands.
//!
//! Every step calls the production `RdsClient` (so the production builders and parsers run),
//! then compares what was parsed with what was asked. The first failure stops the sequence:
//! later steps would only fail for the same reason and the cleanup that follows is what
//! matters then.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rds::{ErrorClass, RdsClient, RdsError};
use routeros::command::DiskAdd;
use routeros::{ByteSize, Disk, FilePath, HostNqn, Nqn, NvmeExport, Port, Slot};

use super::names::{self, Role, RunId};
use super::node::NodeHalf;
use super::recorder::Recorder;
use super::report::{Status, StepResult};
use super::sweep;

const GIB: u64 = 1 << 30;
/// Size of the selftest volume: the driver's smallest volume.
pub const VOL_SIZE: u64 = GIB;
/// What the grow step asks for: not a whole GiB, so the size argument and the printed size
/// both leave the round-number path.
pub const GROWN_SIZE: u64 = GIB + (64 << 20);
/// Room the three disks need in the pool.
const SPACE_NEEDED: u64 = 3 * GROWN_SIZE;
/// Printed `50.0GiB`-style sizes are rounded; the same tolerance the client applies.
const APPROX: f64 = 0.05;
/// A made-up initiator for the ACL steps: never a real host's NQN.
const ACL_HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000c5f7";

/// Everything the steps need.
pub struct Ctx {
    /// Every command once: transport trouble shows as a failure instead of being retried away.
    pub client: RdsClient,
    /// The production retry policy, for cleanup, which must get through a flaky link.
    pub cleanup_client: RdsClient,
    pub recorder: Arc<Recorder>,
    pub run: RunId,
    pub volume_path: FilePath,
    pub scratch: FilePath,
    pub nvme_port: Port,
    pub read_only: bool,
    /// Leftovers of runs younger than this may belong to a run still going elsewhere.
    pub leftover_grace: Duration,
    pub node: Option<NodeHalf>,
    /// Step lines go to stderr when stdout carries the report (`--report -`).
    pub lines_to_stderr: bool,
}

impl Ctx {
    /// Prints one line of the run's transcript.
    pub fn say(&self, line: &str) {
        if self.lines_to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// Collects results and prints each step's line as it finishes.
pub struct Runner<'a> {
    ctx: &'a Ctx,
    pub results: Vec<StepResult>,
    stopped: Option<String>,
}

type StepOutcome = Result<String, String>;

impl<'a> Runner<'a> {
    pub fn new(ctx: &'a Ctx) -> Runner<'a> {
        Runner {
            ctx,
            results: Vec::new(),
            stopped: None,
        }
    }

    async fn step(&mut self, name: &'static str, fut: impl Future<Output = StepOutcome>) -> bool {
        self.step_as(name, Status::Fail, fut).await
    }

    /// Runs one step; `on_error` is the status a failure gets (WARN for informational ones).
    async fn step_as(
        &mut self,
        name: &'static str,
        on_error: Status,
        fut: impl Future<Output = StepOutcome>,
    ) -> bool {
        if let Some(why) = &self.stopped {
            let r = StepResult {
                name,
                status: Status::Skip,
                detail: format!("not run: {why}"),
                duration: Duration::ZERO,
                exchanges: Vec::new(),
            };
            self.ctx.say(&r.line());
            self.results.push(r);
            return false;
        }
        let mark = self.ctx.recorder.mark();
        let started = Instant::now();
        let outcome = fut.await;
        let (status, detail) = match outcome {
            Ok(d) => (Status::Pass, d),
            Err(d) => (on_error, d),
        };
        let r = StepResult {
            name,
            status,
            detail,
            duration: started.elapsed(),
            exchanges: self.ctx.recorder.since(mark),
        };
        self.ctx.say(&r.line());
        if status == Status::Fail {
            self.stopped = Some(format!("{name} failed"));
        }
        self.results.push(r);
        status != Status::Fail
    }

    /// The whole sequence (or the print-only one with `--read-only`).
    pub async fn run(&mut self) {
        let ctx = self.ctx;
        let c = &ctx.client;
        self.step("connect", async {
            c.ping()
                .await
                .map(|()| format!("SSH to {} with the configured trust rules", c.target()))
                .map_err(|e| explain(&e))
        })
        .await;
        self.step_as("system-resource", Status::Warn, system_resource(c))
            .await;
        self.step("capacity", capacity(ctx)).await;
        self.step("leftovers", leftovers(ctx)).await;
        if ctx.read_only {
            self.read_only_prints().await;
            return;
        }
        let vol = match ctx.run.slot(Role::Vol) {
            Ok(s) => s,
            Err(e) => {
                self.stopped = Some(format!("selftest slot name: {e}"));
                return;
            }
        };
        let mut state = State::default();
        self.step("disk-add", disk_add(ctx, &vol, &mut state)).await;
        self.step("print-slot", print_slot(ctx, &vol, &state)).await;
        self.step("print-pattern", print_pattern(ctx, &state)).await;
        self.step("disk-set-grow", grow(ctx, &vol, &mut state))
            .await;
        // Host ACLs only matter to StorageClasses with hostFencing (opt-in): a firmware without
        // them is worth a warning, not a stop before the snapshot shapes are tried.
        self.step_as("acl-set", Status::Warn, acl(ctx, &vol, Some(ACL_HOST)))
            .await;
        self.step_as("acl-clear", Status::Warn, acl(ctx, &vol, None))
            .await;
        if let Some(node) = &ctx.node {
            let stop = self.stopped.clone();
            let expect = state.size;
            let results = match (stop, names::nqn(&vol)) {
                (None, Ok(nqn)) => node.run(&nqn, expect).await,
                (None, Err(e)) => vec![super::node::failed("node-connect", e.to_string())],
                (Some(why), _) => super::node::skipped(&why),
            };
            for r in results {
                ctx.say(&r.line());
                if r.status == Status::Fail && self.stopped.is_none() {
                    self.stopped = Some(format!("{} failed", r.name));
                }
                self.results.push(r);
            }
        }
        self.step("snapshot", copy(ctx, Role::Snap, &mut state))
            .await;
        self.step("clone", copy(ctx, Role::Clone, &mut state)).await;
        self.step("file-print", file_print(ctx, &state)).await;
        self.step("file-print-image", file_print_image(ctx, &vol))
            .await;
        self.step("disk-remove", disk_remove(ctx, &mut state)).await;
        self.step("file-remove", file_remove(ctx)).await;
    }

    async fn read_only_prints(&mut self) {
        let ctx = self.ctx;
        let c = &ctx.client;
        let probe = ctx.run.slot(Role::Vol);
        self.step("print-slot", async {
            let slot = probe.map_err(|e| e.to_string())?;
            match c.get_disk(&slot).await.map_err(|e| explain(&e))? {
                None => Ok(format!("no disk {} (as expected)", slot.as_str())),
                Some(d) => Err(format!("a disk {} exists already", d.slot)),
            }
        })
        .await;
        self.step("print-pattern", async {
            let prefix = Slot::new(names::PREFIX).map_err(|e| e.to_string())?;
            let disks = c.list_disks(&prefix).await.map_err(|e| explain(&e))?;
            Ok(format!("{} selftest disk(s) on the RDS", disks.len()))
        })
        .await;
        self.step("file-print", async {
            let files = c.list_files(&ctx.scratch).await.map_err(|e| explain(&e))?;
            Ok(format!(
                "{} file(s) in {}",
                files.len(),
                ctx.scratch.as_str()
            ))
        })
        .await;
    }
}

/// What earlier steps made, for the later ones.
#[derive(Debug, Default)]
struct State {
    /// Disks this run saw created, by role.
    disks: Vec<(Role, Disk)>,
    /// The volume's size as last asked.
    size: u64,
}

impl State {
    fn put(&mut self, role: Role, d: Disk) {
        self.disks.retain(|(r, _)| *r != role);
        self.disks.push((role, d));
    }
    fn get(&self, role: Role) -> Option<&Disk> {
        self.disks.iter().find(|(r, _)| *r == role).map(|(_, d)| d)
    }
}

/// The error text plus what it means for an operator.
pub fn explain(e: &RdsError) -> String {
    let hint = match (e, e.class()) {
        (RdsError::HostKeyMismatch { .. }, _) => {
            "the RDS host key is not the pinned one (wrong key pinned, or not the RDS)"
        }
        (RdsError::Auth { .. }, _) => "the RDS refused the SSH key for this user",
        (RdsError::Parse { .. }, _) => {
            "the answer did not parse: this RouterOS prints something the driver does not expect (raw output in the report)"
        }
        (RdsError::Verify(_), _) => "the RDS did not do what was asked",
        (_, ErrorClass::Transport) => "connection trouble between here and the RDS",
        (_, ErrorClass::Exhausted) => "the pool is out of space",
        (_, ErrorClass::Rejected) => {
            "RouterOS refused the command as written: this version speaks a different dialect"
        }
        (_, ErrorClass::NotFound) => "RouterOS says the item does not exist",
        (_, ErrorClass::AlreadyExists) => "RouterOS says the item exists already",
        (_, ErrorClass::Internal) => "RouterOS refused the command",
    };
    format!("{e} [{hint}]")
}

async fn system_resource(c: &RdsClient) -> StepOutcome {
    let r = c.system_resource().await.map_err(|e| explain(&e))?;
    Ok(format!(
        "RouterOS {}, board {}",
        r.version.as_deref().unwrap_or("unknown"),
        r.board_name.as_deref().unwrap_or("unknown")
    ))
}

async fn capacity(ctx: &Ctx) -> StepOutcome {
    let cap = ctx
        .client
        .capacity(&ctx.volume_path.mount_point())
        .await
        .map_err(|e| explain(&e))?;
    let seen = format!(
        "pool {}: {} bytes total, {} free",
        ctx.volume_path.mount_point().as_str(),
        cap.total_bytes,
        cap.free_bytes
    );
    if !ctx.read_only && cap.free_bytes < SPACE_NEEDED {
        return Err(format!(
            "{seen}; the selftest needs {SPACE_NEEDED} bytes free for its three disks"
        ));
    }
    Ok(seen)
}

async fn leftovers(ctx: &Ctx) -> StepOutcome {
    let inv = sweep::inventory(&ctx.client, &ctx.scratch)
        .await
        .map_err(|e| explain(&e))?;
    if inv.is_empty() {
        return Ok("no selftest disks or files on the RDS".into());
    }
    if ctx.read_only {
        return Ok(format!(
            "on the RDS: {}; a run without --read-only removes an earlier run's leftovers and refuses to start next to anything else",
            inv.describe()
        ));
    }
    if !inv.foreign.is_empty() {
        return Err(format!(
            "refusing to start: {} carry the selftest's names but were not made by it; remove or rename them",
            inv.foreign.join(", ")
        ));
    }
    let young = inv.young_runs(ctx.run.started, ctx.leftover_grace);
    if !young.is_empty() {
        return Err(format!(
            "refusing to start: run(s) {} started less than {:?} ago and may still be going ({}); wait, or pass --leftover-grace 0s if none is",
            young.join(", "),
            ctx.leftover_grace,
            inv.describe()
        ));
    }
    let found = inv.describe();
    let removal = sweep::remove(&ctx.client, &ctx.scratch, &inv).await;
    if removal.left.is_empty() {
        Ok(format!("removed what an earlier run left: {found}"))
    } else {
        Err(format!(
            "could not remove what an earlier run left: {}",
            removal.left.join(", ")
        ))
    }
}

/// `created: false` from the client: the add's answer was lost and a print found the disk, or
/// the slot existed already. Either way the add was not seen to succeed.
fn not_created(slot: &Slot) -> String {
    format!(
        "{} was found by the print after the add, but the add itself was not answered (connection lost, or the slot existed already) [connection trouble between here and the RDS]",
        slot.as_str()
    )
}

/// What one disk should look like.
struct Want<'a> {
    slot: &'a Slot,
    path: &'a FilePath,
    size: u64,
    export: Option<(Port, &'a Nqn)>,
}

/// Compares a parsed disk with the request; the detail lists what was checked.
fn check(d: &Disk, w: &Want<'_>) -> StepOutcome {
    let mut bad = Vec::new();
    if d.slot != w.slot.as_str() {
        bad.push(format!("slot {:?}, asked {:?}", d.slot, w.slot.as_str()));
    }
    if d.kind.as_deref().is_some_and(|k| k != "file") {
        bad.push(format!("type {:?}, asked file", d.kind));
    }
    if d.file_path.as_deref() != Some(w.path.as_str()) {
        bad.push(format!(
            "file-path {:?}, asked {:?}",
            d.file_path,
            w.path.as_str()
        ));
    }
    let size = match (d.size_bytes, d.file_size_bytes) {
        (Some(exact), _) if exact >= w.size => format!("{exact} bytes (size=)"),
        (Some(exact), _) => {
            bad.push(format!("size {exact} bytes, asked {}", w.size));
            String::new()
        }
        (None, Some(approx)) if d.capacity_is_exact() && approx >= w.size => {
            format!("{approx} bytes (file-size=)")
        }
        (None, Some(approx)) if (approx as f64) >= w.size as f64 * (1.0 - APPROX) => {
            format!("about {approx} bytes (rounded file-size=)")
        }
        (None, Some(approx)) => {
            bad.push(format!("file-size about {approx} bytes, asked {}", w.size));
            String::new()
        }
        (None, None) => {
            bad.push("no size= or file-size= printed".into());
            String::new()
        }
    };
    let export = match w.export {
        Some((port, nqn)) => {
            if !d.nvme_export {
                bad.push("nvme-tcp-export is not yes".into());
            }
            if d.nvme_port != Some(port.get()) {
                bad.push(format!(
                    "nvme-tcp-server-port {:?}, asked {}",
                    d.nvme_port,
                    port.get()
                ));
            }
            if d.nvme_nqn.as_deref() != Some(nqn.as_str()) {
                bad.push(format!(
                    "nvme-tcp-server-nqn {:?}, asked {:?}",
                    d.nvme_nqn,
                    nqn.as_str()
                ));
            }
            if d.allow_host.as_deref().is_some_and(|h| !h.is_empty()) {
                bad.push(format!(
                    "nvme-tcp-server-allow-host-name {:?} on a new disk",
                    d.allow_host
                ));
            }
            format!("exported on port {} as {}", port.get(), nqn.as_str())
        }
        None => {
            if d.nvme_export {
                bad.push("exported over NVMe/TCP, asked no export".into());
            }
            "not exported".into()
        }
    };
    if bad.is_empty() {
        Ok(format!(
            "{}: {} at {}, {export}",
            d.slot,
            size,
            w.path.as_str()
        ))
    } else {
        Err(format!(
            "{} parsed as asked except: {}",
            d.slot,
            bad.join("; ")
        ))
    }
}

fn slot_and_path(ctx: &Ctx, role: Role) -> Result<(Slot, FilePath), String> {
    let slot = ctx.run.slot(role).map_err(|e| e.to_string())?;
    let path = names::image_path(&ctx.scratch, &slot).map_err(|e| e.to_string())?;
    Ok((slot, path))
}

async fn disk_add(ctx: &Ctx, vol: &Slot, state: &mut State) -> StepOutcome {
    let (_, path) = slot_and_path(ctx, Role::Vol)?;
    let nqn = names::nqn(vol).map_err(|e| e.to_string())?;
    let spec = DiskAdd {
        slot: vol.clone(),
        file_path: path.clone(),
        file_size: Some(ByteSize(VOL_SIZE)),
        nvme: Some(NvmeExport {
            port: ctx.nvme_port,
            nqn: nqn.clone(),
        }),
        copy_from: None,
    };
    let out = ctx
        .client
        .create_disk(&spec)
        .await
        .map_err(|e| explain(&e))?;
    if !out.created {
        return Err(not_created(vol));
    }
    state.size = VOL_SIZE;
    let detail = check(
        &out.disk,
        &Want {
            slot: vol,
            path: &path,
            size: VOL_SIZE,
            export: Some((ctx.nvme_port, &nqn)),
        },
    );
    state.put(Role::Vol, out.disk);
    detail
}

async fn print_slot(ctx: &Ctx, vol: &Slot, state: &State) -> StepOutcome {
    let (_, path) = slot_and_path(ctx, Role::Vol)?;
    let nqn = names::nqn(vol).map_err(|e| e.to_string())?;
    let d = ctx
        .client
        .get_disk(vol)
        .await
        .map_err(|e| explain(&e))?
        .ok_or_else(|| format!("{} not printed although it was just added", vol.as_str()))?;
    check(
        &d,
        &Want {
            slot: vol,
            path: &path,
            size: state.size,
            export: Some((ctx.nvme_port, &nqn)),
        },
    )
}

async fn print_pattern(ctx: &Ctx, state: &State) -> StepOutcome {
    let prefix = Slot::new(&ctx.run.prefix()).map_err(|e| e.to_string())?;
    let disks = ctx
        .client
        .list_disks(&prefix)
        .await
        .map_err(|e| explain(&e))?;
    let want: Vec<&str> = state.disks.iter().map(|(_, d)| d.slot.as_str()).collect();
    let got: Vec<&str> = disks.iter().map(|d| d.slot.as_str()).collect();
    if got != want {
        return Err(format!("listed {got:?}, expected exactly {want:?}"));
    }
    Ok(format!("listed exactly {got:?}"))
}

async fn grow(ctx: &Ctx, vol: &Slot, state: &mut State) -> StepOutcome {
    let (_, path) = slot_and_path(ctx, Role::Vol)?;
    let nqn = names::nqn(vol).map_err(|e| e.to_string())?;
    let d = ctx
        .client
        .resize_disk(vol, ByteSize(GROWN_SIZE))
        .await
        .map_err(|e| explain(&e))?;
    state.size = GROWN_SIZE;
    let detail = check(
        &d,
        &Want {
            slot: vol,
            path: &path,
            size: GROWN_SIZE,
            export: Some((ctx.nvme_port, &nqn)),
        },
    )?;
    state.put(Role::Vol, d);
    Ok(format!("grown to {GROWN_SIZE} bytes: {detail}"))
}

async fn acl(ctx: &Ctx, vol: &Slot, host: Option<&str>) -> StepOutcome {
    let host = host
        .map(HostNqn::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    // The client prints the disk after the set and refuses unless the property reads back.
    let d = ctx
        .client
        .set_allowed_host(vol, host.as_ref())
        .await
        .map_err(|e| {
            format!(
                "{} (StorageClasses with hostFencing would fail to publish; leave it off)",
                explain(&e)
            )
        })?;
    let got = d.allow_host.as_deref().unwrap_or("<not printed>");
    let meaning = if host.is_some() {
        "one host"
    } else {
        "any host"
    };
    Ok(format!(
        "nvme-tcp-server-allow-host-name set and read back as {got:?} ({meaning})"
    ))
}

async fn copy(ctx: &Ctx, role: Role, state: &mut State) -> StepOutcome {
    let (slot, path) = slot_and_path(ctx, role)?;
    let (source, nvme, file_size) = match role {
        // A snapshot: what CreateSnapshot sends (no size, no export).
        Role::Snap => (ctx.run.slot(Role::Vol), None, None),
        // A clone from the snapshot: what CreateVolume from a snapshot sends.
        _ => (
            ctx.run.slot(Role::Snap),
            Some(NvmeExport {
                port: ctx.nvme_port,
                nqn: names::nqn(&slot).map_err(|e| e.to_string())?,
            }),
            Some(ByteSize(state.size)),
        ),
    };
    let source = source.map_err(|e| e.to_string())?;
    let spec = DiskAdd {
        slot: slot.clone(),
        file_path: path.clone(),
        file_size,
        nvme: nvme.clone(),
        copy_from: Some(source.clone()),
    };
    let out = ctx
        .client
        .create_disk(&spec)
        .await
        .map_err(|e| explain(&e))?;
    if !out.created {
        return Err(not_created(&slot));
    }
    let detail = check(
        &out.disk,
        &Want {
            slot: &slot,
            path: &path,
            size: state.size,
            export: nvme.as_ref().map(|n| (n.port, &n.nqn)),
        },
    );
    state.put(role, out.disk);
    detail.map(|d| format!("copy of {}: {d}", source.as_str()))
}

async fn file_print(ctx: &Ctx, state: &State) -> StepOutcome {
    let files = ctx
        .client
        .list_files(&ctx.scratch)
        .await
        .map_err(|e| explain(&e))?;
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (role, _) in &state.disks {
        let (_, path) = slot_and_path(ctx, *role)?;
        match files.iter().find(|f| f.name == path.as_str()) {
            None => problems.push(format!("{} not listed", path.as_str())),
            Some(f) => match f.size_bytes {
                Some(n) if (n as f64) < state.size as f64 * (1.0 - APPROX) => problems.push(
                    format!("{} listed with size {n}, expected {}", f.name, state.size),
                ),
                _ => seen.push(format!(
                    "{} ({})",
                    f.name,
                    f.size_bytes
                        .map_or("no size".into(), |n| format!("{n} bytes"))
                )),
            },
        }
    }
    if files.len() != state.disks.len() {
        problems.push(format!(
            "{} entries listed, expected {}",
            files.len(),
            state.disks.len()
        ));
    }
    if problems.is_empty() {
        Ok(seen.join(", "))
    } else {
        Err(problems.join("; "))
    }
}

async fn file_print_image(ctx: &Ctx, vol: &Slot) -> StepOutcome {
    let (_, path) = slot_and_path(ctx, Role::Vol)?;
    let files = ctx.client.image_files(vol).await.map_err(|e| explain(&e))?;
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    if names != [path.as_str()] {
        return Err(format!(
            "found {names:?}, expected exactly [{:?}]",
            path.as_str()
        ));
    }
    Ok(format!("found exactly {}", path.as_str()))
}

async fn disk_remove(ctx: &Ctx, state: &mut State) -> StepOutcome {
    let mut done = Vec::new();
    // Copies first: a source in use by a copy could be refused.
    for role in [Role::Clone, Role::Snap, Role::Vol] {
        let Some(disk) = state.get(role).cloned() else {
            continue;
        };
        let out = ctx
            .client
            .delete_found_disk(&disk)
            .await
            .map_err(|e| explain(&e))?;
        if let Some(file) = out.leftover_file {
            return Err(format!("{} removed but its file {file} was not", disk.slot));
        }
        let slot = Slot::new(&disk.slot).map_err(|e| e.to_string())?;
        if let Some(still) = ctx.client.get_disk(&slot).await.map_err(|e| explain(&e))? {
            return Err(format!("{} still printed after /disk remove", still.slot));
        }
        state.disks.retain(|(r, _)| *r != role);
        done.push(disk.slot);
    }
    Ok(format!(
        "removed {} with their files; none printed afterwards",
        done.join(", ")
    ))
}

async fn file_remove(ctx: &Ctx) -> StepOutcome {
    let left = ctx
        .client
        .list_files(&ctx.scratch)
        .await
        .map_err(|e| explain(&e))?;
    if !left.is_empty() {
        let names: Vec<&str> = left.iter().map(|f| f.name.as_str()).collect();
        return Err(format!("still listed after the removals: {names:?}"));
    }
    match ctx.client.remove_file(&ctx.scratch).await {
        Ok(()) => Ok(format!("no files left; removed {}", ctx.scratch.as_str())),
        Err(e) => Err(explain(&e)),
    }
}
