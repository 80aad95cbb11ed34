//! `rds-csi selftest`: proves, on a real RDS, that it speaks the RouterOS dialect the driver
//! expects, without touching anything the operator owns.
//!
//! Every command shape the controller and snapshot code send runs once, through the production
//! client and parsers, on disks and files the selftest names and places itself (see [`names`]).
//! Whatever happens (a failed step, Ctrl-C, SIGTERM, a lost connection, the overall deadline),
//! the cleanup runs before the process exits; if even that cannot reach the RDS, the next run
//! recognises the leftovers and removes them first.

mod names;
mod node;
mod recorder;
mod report;
mod steps;
mod sweep;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use rds::{ClientConfig, Exec, RdsClient, SshConfig, SshTransport};
use routeros::{FilePath, Port};
use serde_json::json;

use crate::args::{RdsArgs, parse_duration};
use names::{Role, RunId};
use recorder::Recorder;
use report::{Redactor, Status, StepResult, Summary};
use steps::{Ctx, Runner};

#[derive(Debug, Clone, Args)]
pub struct SelftestArgs {
    #[command(flatten)]
    pub rds: RdsArgs,
    /// Backend to test (a name from the backends file); default: the default backend.
    #[arg(long, env = "RDS_CSI_SELFTEST_BACKEND")]
    pub backend: Option<String>,
    /// Directory under which the scratch directory `rds-csi-selftest` is made; must be the
    /// backend's volume path or one of its extra volume paths. Default: the volume path.
    #[arg(long)]
    pub volume_path: Option<String>,
    /// Run only the print commands (capacity, disk and file listings); create nothing, remove
    /// nothing.
    #[arg(long)]
    pub read_only: bool,
    /// Write every step's raw RouterOS output (host names, addresses and keys redacted) to this
    /// file as JSON, for a bug report; `-` writes it to stdout (the step lines go to stderr).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Leftovers of a selftest that started less than this long ago are taken for a run still
    /// going elsewhere: the selftest refuses to start instead of removing them.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub leftover_grace: Duration,
    /// Deadline for the steps as a whole; cleanup follows with its own deadline.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also run the node half on this host: connect the selftest volume over NVMe/TCP with the
    /// node plugin's initiator, write and read back a pattern, check its size, disconnect.
    /// Needs root and the nvme-tcp module.
    #[arg(long, conflicts_with = "read_only")]
    pub node: bool,
    /// The node plugin's state directory (its NVMe host identity is used by `--node`).
    #[arg(long, env = "RDS_CSI_STATE_DIR", default_value = "/var/lib/rds-csi")]
    pub state_dir: PathBuf,
    /// How `--node` connects: `fabrics` (/dev/nvme-fabrics) or `nvme-cli`.
    #[arg(long, env = "RDS_CSI_NVME_CONNECT_METHOD", default_value = "fabrics", value_parser = ["fabrics", "nvme-cli"])]
    pub nvme_connect_method: String,
    /// nvme-cli binary for `--nvme-connect-method nvme-cli`.
    #[arg(long, env = "RDS_CSI_NVME_CLI", default_value = "nvme")]
    pub nvme_cli: PathBuf,
}

/// One transcript line through [`Ctx::say`].
macro_rules! say {
    ($ctx:expr, $($fmt:tt)*) => {
        $ctx.say(&format!($($fmt)*))
    };
}

/// Cleanup gets this long after the steps end, however they ended.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How the steps ended.
enum End {
    Finished,
    Signal,
    Deadline,
}

pub async fn run(a: SelftestArgs) -> Result<(), String> {
    let ctx = context(&a)?;
    let redactor = redactor(&a)?;
    say!(
        ctx,
        "rds-csi selftest {}: run {} on {} under {}{}",
        env!("CARGO_PKG_VERSION"),
        ctx.run.label(),
        ctx.client.target(),
        ctx.scratch.as_str(),
        if ctx.read_only { " (read-only)" } else { "" }
    );
    let started = Instant::now();
    let mut runner = Runner::new(&ctx);
    let end = {
        let steps = runner.run();
        tokio::pin!(steps);
        tokio::select! {
            () = &mut steps => End::Finished,
            () = signal() => End::Signal,
            () = tokio::time::sleep(a.timeout) => End::Deadline,
        }
    };
    let mut results = std::mem::take(&mut runner.results);
    match end {
        End::Finished => {}
        End::Signal => results.push(interrupted("interrupted by a signal")),
        End::Deadline => results.push(interrupted(&format!(
            "the steps did not finish within --timeout {:?}",
            a.timeout
        ))),
    }
    if matches!(end, End::Signal | End::Deadline) {
        say!(
            ctx,
            "{}",
            results.last().map(StepResult::line).unwrap_or_default()
        );
    }
    let cleanup = if ctx.read_only {
        None
    } else if !sent_a_change(&ctx) && ctx.node.is_none() {
        // Nothing that could create anything went out (e.g. the RDS was unreachable): a
        // cleanup would only add a second round of the same connection errors.
        let c = StepResult {
            name: "cleanup",
            status: Status::Pass,
            detail: "nothing to clean: no command that changes the RDS was sent".into(),
            duration: Duration::ZERO,
            exchanges: Vec::new(),
        };
        say!(ctx, "{}", c.line());
        Some(c)
    } else {
        let c = tokio::select! {
            r = tokio::time::timeout(CLEANUP_TIMEOUT, cleanup(&ctx)) => r.unwrap_or_else(|_| cleanup_failed(
                &format!("cleanup did not finish within {CLEANUP_TIMEOUT:?}; the next run removes what is left"))),
            () = signal() => cleanup_failed("cleanup interrupted by a second signal; the next run removes what is left"),
        };
        say!(ctx, "{}", c.line());
        Some(c)
    };
    let mut all = results.clone();
    all.extend(cleanup.clone());
    let summary = Summary::of(&all);
    say!(
        ctx,
        "summary: {} in {} ms (run {})",
        summary.line(),
        started.elapsed().as_millis(),
        ctx.run.label()
    );
    if let Some(path) = &a.report {
        let doc = json!({
            "rds_csi_version": env!("CARGO_PKG_VERSION"),
            "run": ctx.run.label(),
            "read_only": ctx.read_only,
            "target": redactor.apply(&ctx.client.target()),
            "volume_path": ctx.volume_path.as_str(),
            "steps": results.iter().map(|s| report::step_json(s, &redactor)).collect::<Vec<_>>(),
            "cleanup": cleanup.as_ref().map(|s| report::step_json(s, &redactor)),
            "summary": {
                "passed": summary.passed,
                "failed": summary.failed,
                "skipped": summary.skipped,
                "warnings": summary.warned,
            },
        });
        if path.as_os_str() == "-" {
            let text = serde_json::to_string_pretty(&doc)
                .map_err(|e| format!("rendering the report: {e}"))?;
            println!("{text}");
        } else {
            report::write(path, &doc)
                .map_err(|e| format!("writing the report {}: {e}", path.display()))?;
            say!(ctx, "report written to {}", path.display());
        }
    }
    let interrupted = !matches!(end, End::Finished);
    if summary.failed > 0 || interrupted {
        return Err(format!(
            "selftest failed: {}{}",
            summary.line(),
            if interrupted { " (interrupted)" } else { "" }
        ));
    }
    Ok(())
}

/// Whether any `add`, `set` or `remove` was sent, answered or not.
fn sent_a_change(ctx: &Ctx) -> bool {
    ctx.recorder.since(0).iter().any(|e| {
        let mut words = e.line.split_whitespace();
        let _menu = words.next();
        matches!(words.next(), Some("add" | "set" | "remove"))
    })
}

fn interrupted(why: &str) -> StepResult {
    StepResult {
        name: "interrupted",
        status: Status::Fail,
        detail: format!("{why}; cleaning up"),
        duration: Duration::ZERO,
        exchanges: Vec::new(),
    }
}

fn cleanup_failed(why: &str) -> StepResult {
    StepResult {
        name: "cleanup",
        status: Status::Fail,
        detail: why.to_string(),
        duration: Duration::ZERO,
        exchanges: Vec::new(),
    }
}

/// Disconnects this run's NVMe/TCP connections (with `--node`), then removes whatever of this
/// run is still on the RDS, found by listing rather than from memory, so a disk whose `add`
/// answer was lost is found too.
async fn cleanup(ctx: &Ctx) -> StepResult {
    let mark = ctx.recorder.mark();
    let started = Instant::now();
    let mut notes = Vec::new();
    if let Some(node) = &ctx.node {
        for role in Role::ALL {
            if let Ok(nqn) = ctx.run.slot(role).and_then(|s| names::nqn(&s))
                && let Some(note) = node.disconnect_quietly(&nqn).await
            {
                notes.push(note);
            }
        }
    }
    let (status, detail) = match sweep::inventory(&ctx.cleanup_client, &ctx.scratch).await {
        Err(e) => (
            Status::Fail,
            format!(
                "could not list what is left ({}); the next run removes it",
                steps::explain(&e)
            ),
        ),
        Ok(inv) => {
            let inv = inv.only(|r| *r == ctx.run);
            if inv.is_empty() {
                (
                    Status::Pass,
                    "nothing of this run left on the RDS".to_string(),
                )
            } else {
                let found = inv.describe();
                let removal = sweep::remove(&ctx.cleanup_client, &ctx.scratch, &inv).await;
                if removal.left.is_empty() {
                    (Status::Pass, format!("removed {found}"))
                } else {
                    (
                        Status::Fail,
                        format!(
                            "left on the RDS: {}; the next run removes it",
                            removal.left.join(", ")
                        ),
                    )
                }
            }
        }
    };
    notes.push(detail);
    StepResult {
        name: "cleanup",
        status,
        detail: notes.join("; "),
        duration: started.elapsed(),
        exchanges: ctx.recorder.since(mark),
    }
}

/// SIGINT or SIGTERM.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn chosen(a: &SelftestArgs) -> Result<vocab::config::BackendSettings, String> {
    let all = crate::run::settings_from(&a.rds).map_err(|e| e.to_string())?;
    let name = a.backend.as_deref().unwrap_or(&a.rds.backend_name);
    all.into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| format!("backend {name:?} is not configured"))
}

/// The same SSH trust rules as the controller (a pinned host key or the explicit insecure
/// flag), the same transport, with a recorder between it and the client.
fn context(a: &SelftestArgs) -> Result<Ctx, String> {
    let s = chosen(a)?;
    let host_key = vocab::config::host_key_policy(&s).map_err(|e| e.to_string())?;
    let private_key = std::fs::read_to_string(&s.key_file)
        .map_err(|e| format!("reading SSH private key {}: {e}", s.key_file.display()))?;
    let transport = SshTransport::new(SshConfig {
        host: s.address.clone(),
        port: s.port,
        user: s.user.clone(),
        private_key,
        host_key,
        connect_timeout: s.connect_timeout,
        max_sessions: s.max_sessions,
    })
    .map_err(|e| e.to_string())?;
    let inner: Arc<dyn Exec> = Arc::new(transport);
    let recorder = Arc::new(Recorder::new(inner));
    let base = ClientConfig {
        read_timeout: s.read_timeout,
        write_timeout: s.write_timeout,
        ..ClientConfig::default()
    };
    let client = RdsClient::new(
        recorder.clone(),
        ClientConfig {
            max_attempts: 1,
            ..base.clone()
        },
    );
    let cleanup_client = RdsClient::new(recorder.clone(), base);
    let volume_path = volume_path(a, &s)?;
    let scratch = names::scratch_dir(&volume_path).map_err(|e| e.to_string())?;
    let nvme_port = Port::new(s.nvme_port).map_err(|e| format!("nvme port: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("system clock before 1970: {e}"))?
        .as_secs();
    let run = RunId::new(now);
    let node = if a.node {
        // The preferred storage address: the node half proves one path.
        let address = match s.storage_addresses() {
            Ok(a) => a[0],
            Err(e) => {
                return Err(format!(
                    "--node needs the NVMe/TCP address (set --nvme-address or --nvme-addresses): {e}"
                ));
            }
        };
        let method = match a.nvme_connect_method.as_str() {
            "nvme-cli" => nvme::ConnectMethod::NvmeCli {
                program: a.nvme_cli.clone(),
            },
            _ => nvme::ConnectMethod::Fabrics,
        };
        let settings = node::NodeSettings {
            state_dir: a.state_dir.clone(),
            connect_method: method,
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            fabrics_path: PathBuf::from("/dev/nvme-fabrics"),
            connect_timeout: Duration::from_secs(30),
            device_timeout: Duration::from_secs(30),
        };
        Some(node::NodeHalf::new(
            &settings,
            address,
            s.nvme_port,
            run.label(),
        )?)
    } else {
        None
    };
    Ok(Ctx {
        client,
        cleanup_client,
        recorder,
        run,
        volume_path,
        scratch,
        nvme_port,
        read_only: a.read_only,
        leftover_grace: a.leftover_grace,
        node,
        lines_to_stderr: a.report.as_ref().is_some_and(|p| p.as_os_str() == "-"),
    })
}

fn volume_path(a: &SelftestArgs, s: &vocab::config::BackendSettings) -> Result<FilePath, String> {
    let base = FilePath::new(&s.volume_path).map_err(|e| format!("volume path: {e}"))?;
    let Some(want) = &a.volume_path else {
        return Ok(base);
    };
    let want = FilePath::new(want).map_err(|e| format!("--volume-path: {e}"))?;
    let mut allowed = vec![base];
    for p in &s.extra_volume_paths {
        allowed.push(FilePath::new(p).map_err(|e| format!("extra volume path: {e}"))?);
    }
    if allowed.iter().any(|b| *b == want || want.is_under(b)) {
        Ok(want)
    } else {
        Err(format!(
            "--volume-path {} is not the backend's volume path or under one of its extra volume paths",
            want.as_str()
        ))
    }
}

/// What the report hides: the SSH and NVMe addresses, `user@`.
fn redactor(a: &SelftestArgs) -> Result<Redactor, String> {
    let s = chosen(a)?;
    let mut lits = vec![
        (s.address.clone(), "<rds-address>".to_string()),
        (format!("{}@", s.user), "<user>@".to_string()),
    ];
    let listed = s.nvme_addresses.iter().flatten();
    for ip in s.nvme_address.iter().chain(listed) {
        lits.push((ip.to_string(), "<nvme-address>".to_string()));
    }
    Ok(Redactor::new(lits))
}
