//! The `rds-csi` binary: one executable for the controller, the node plugin, the simulator, the
//! demo and an operator's CSI client.

mod args;
mod csi_cmd;
mod demo;
mod error;
mod guard_cmd;
mod http;
mod logging;
mod run;
mod selftest;
mod shutdown;
mod sim_cmd;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Opened before logging starts, so security events logged from then on reach the trail.
    let audit = match audit_trail(&cli.command) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(&cli.log, audit.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Controller(a) => run::controller(a, audit).await,
            Command::Node(a) => run::node(a, audit).await,
            Command::All(a) => run::all(a, audit).await,
            Command::Sim(a) => sim_cmd::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Csi(a) => Ok(csi_cmd::run(&a.endpoint, a.timeout, a.command).await?),
            Command::Orphans(a) => http::print_orphans(&a.url, a.timeout).await,
            Command::HotplugGuard(a) => guard_cmd::run(a).await,
            Command::Selftest(a) => selftest::run(a).await.map_err(CliError::Serve),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_status()
        }
    }
}

/// The audit trail: the `--audit-log` file or stderr for the serving commands; the log for the
/// others (their security events, such as a host-key mismatch, still show there).
fn audit_trail(command: &Command) -> Result<observability::audit::Audit, CliError> {
    let serve = match command {
        Command::Controller(a) => &a.serve,
        Command::Node(a) => &a.serve,
        Command::All(a) => &a.serve,
        _ => return Ok(observability::audit::Audit::default()),
    };
    let sink = match &serve.audit_log {
        Some(path) => observability::audit::file_sink(path)?,
        None => observability::audit::stderr_sink(),
    };
    Ok(observability::audit::Audit::new(sink))
}
