//! The binary's one error type: what a subcommand or an argument parser failed at, worded for the
//! operator who runs `rds-csi`. `main` prints it after `error: ` and exits with
//! [`CliError::exit_status`].

use std::path::PathBuf;
use std::process::ExitCode;

use driver::error::DriverError;

use crate::csi_cmd::CsiCmdError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A duration argument without a number in front.
    #[error("{input:?} is not a duration like 500ms, 10s, 5m or 1h")]
    DurationNumber { input: String },
    #[error("{input:?}: unknown unit {unit:?}; use ms, s, m or h")]
    DurationUnit { input: String, unit: String },
    /// `--capacity` that RouterOS could not read as a size.
    #[error(
        "{input:?} is not a size; use a number with an optional binary unit: 1Ti, 500G, 512GiB, 1073741824"
    )]
    Capacity { input: String },
    #[error("must be more than 0 bytes")]
    ZeroCapacity,
    /// A Kubernetes-quantity size for `rds-csi csi`.
    #[error("invalid size {input:?}: {problem}")]
    Size { input: String, problem: SizeProblem },
    #[error("expected key=value, got {input:?}")]
    KeyValue { input: String },
    /// A flag whose value would make the command useless; the message names the flag and why.
    #[error("{flag} must be more than 0{why}")]
    ZeroFlag {
        flag: &'static str,
        why: &'static str,
    },

    #[error(transparent)]
    Csi(#[from] CsiCmdError),
    /// A driver component (audit trail, Kubernetes client, sandbox) refused to start.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The hotplug guard's serving certificate or TLS setup.
    #[error(transparent)]
    Guard(#[from] driver::hotplug_guard::GuardError),
    #[error("reading authorized keys {}: {source}", path.display())]
    AuthorizedKeys {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no public keys: nobody could log in", path.display())]
    NoAuthorizedKeys { path: PathBuf },
    #[error("--nvmet: {0}")]
    Nvmet(rds_sim::SimError),
    #[error("starting the simulator: {0}")]
    SimStart(rds_sim::SimError),
    /// A listening socket could not be opened; `what` says for which endpoint.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot read the /metrics listener address: {0}")]
    LocalAddr(std::io::Error),
    /// `rds-csi orphans` and its HTTP GET.
    #[error("{base:?}: only http:// URLs are supported")]
    NotHttp { base: String },
    #[error("no answer from {base} within {limit:?}")]
    HttpTimeout {
        base: String,
        limit: std::time::Duration,
    },
    /// One step of an HTTP exchange failed; `step` reads "connecting to <host>" or similar.
    #[error("{step}: {source}")]
    Http {
        step: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{url}: HTTP {status}: {body}")]
    HttpStatus {
        url: String,
        status: u16,
        body: String,
    },
    /// A demo step whose answer the rest of the script needs failed.
    #[error("{step} failed; cannot continue the demo")]
    DemoStopped { step: &'static str },
    /// Steps that answered other than expected, one line each.
    #[error("demo found unexpected answers:\n  {}", .0.join("\n  "))]
    DemoAnswers(Vec<String>),
    /// The serving modes (`controller`, `node`, `all`) and `selftest` still report a finished
    /// sentence; it is passed through as is.
    #[error("{0}")]
    Serve(String),
}

/// Why a `rds-csi csi` size was refused.
#[derive(Debug, thiserror::Error)]
pub enum SizeProblem {
    #[error("expected a number like 10Gi")]
    NoNumber,
    #[error("number too large")]
    NumberTooLarge,
    #[error("unknown unit {0:?} (use Ki, Mi, Gi, Ti, Pi, k, M, G, T, P or none)")]
    UnknownUnit(String),
    #[error("too large")]
    TooLarge,
    #[error("must be greater than zero")]
    Zero,
}

impl CliError {
    /// `rds-csi csi` exits with 100 + the gRPC code so scripts can branch; every other failure
    /// exits 1.
    pub fn exit_status(&self) -> ExitCode {
        match self {
            Self::Csi(e) => ExitCode::from(e.exit_status()),
            _ => ExitCode::FAILURE,
        }
    }
}
