//! Errors: invalid values (caller's fault), unparseable output, and RouterOS's own failures.

/// A value was refused before it could reach a command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct ValueError {
    pub what: &'static str,
    pub value: String,
    pub reason: String,
}

/// RouterOS printed something the parser cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse RouterOS output: {0}")]
pub struct ParseError(pub String);

/// What kind of failure RouterOS reported; drives retry decisions and gRPC codes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// `no such item`, `failure: no such item`.
    NotFound,
    /// `not enough space`.
    NoSpace,
    /// `already exists` (disk, slot or file).
    AlreadyExists,
    /// `disk is in use`.
    InUse,
    /// The command or a value was rejected: `bad command name`, `syntax error`,
    /// `expected end of command`, `invalid value`, `invalid parameter`, missing parameters.
    Rejected,
    /// Any other `failure: …` text or non-zero exit.
    Other,
}

/// A failure RouterOS reported for a command, with the text from both streams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RouterOS failure ({kind:?}): {message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}
