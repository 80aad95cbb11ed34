//! Log setup: text for people, JSON lines for log pipelines; stderr either way.

use observability::audit::{Audit, SecurityEventLayer};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::args::{LogArgs, LogFormat};

pub fn init(args: &LogArgs, audit: Audit) {
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|e| {
        eprintln!(
            "warning: invalid log filter {:?} ({e}); using \"info\"",
            args.log_level
        );
        EnvFilter::new("info")
    });
    // Colour codes only for a person at a terminal; in a file or a log pipeline they are noise
    // that breaks grep.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        // Security events (SSH host-key mismatch) also go to the audit trail.
        LogFormat::Text => builder.finish().with(SecurityEventLayer(audit)).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(SecurityEventLayer(audit))
            .init(),
    }
}
