//! The binary's one error type: what a subcommand or an argument parser failed at, worded for the
//! operator who runs `rds-csi`. `main` prints it after `error: ` and exits with
//! [`CliError::exit_status`].

use std::path::PathBuf;
use std::process::ExitCode;

use vocab::error::DriverError;

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

    /// The Kubernetes client for `controller`, `node` or `all`.
    #[error(
        "{0} (pass --kubeconfig, run in a pod with a service account, or use --no-kubernetes for a trial without a cluster)"
    )]
    KubeClient(DriverError),
    /// The controller's identity service was built without the RDS health checker it serves.
    #[error("controller without an RDS health checker")]
    NoHealthChecker,
    /// The attachment state could not be rebuilt from Kubernetes at start.
    #[error("cannot start the controller: {0}")]
    ControllerStart(DriverError),
    #[error("--node-id (NODE_ID) must not be empty")]
    EmptyNodeId,
    #[error("node metrics: {0}")]
    NodeMetrics(DriverError),
    #[error("node plugin: {0}")]
    NodePlugin(DriverError),
    /// `--endpoint` that is not a unix socket path.
    #[error(transparent)]
    Endpoint(#[from] csi::Error),
    #[error("backend {name:?} is defined both by --rds-address and in the backends file; keep one")]
    BackendTwice { name: String },
    #[error(
        "no RDS configured: pass --rds-address (RDS_ADDRESS) or define backend {name:?} in --backends-file"
    )]
    NoRds { name: String },

    #[error(transparent)]
    Csi(#[from] CsiCmdError),
    /// A driver component (audit trail, Kubernetes client, sandbox) refused to start.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The hotplug guard's serving certificate or TLS setup.
    #[error(transparent)]
    Guard(#[from] hotplug_guard::GuardError),
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
    /// `selftest` still reports a finished sentence (its steps' outcomes are report text); it
    /// is passed through as is.
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
