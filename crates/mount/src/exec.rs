//! External commands (blkid, mkfs, fsck, resize) behind [`CommandRunner`], so format decisions are
//! unit-testable with a scripted runner and every real run has a deadline.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use crate::error::{Error, Result};

/// A boxed future, so [`CommandRunner`] stays object-safe (`Arc<dyn CommandRunner>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An argument vector plus deadline. Never a shell string: device paths are arguments, not code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    pub deadline: Duration,
}

impl CommandSpec {
    pub fn new<I, S>(program: &str, args: I, deadline: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandSpec {
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
            deadline,
        }
    }

    /// The command as one line for error messages and logs.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together, trimmed, for error messages (tools split their complaints
    /// between the two inconsistently).
    pub fn combined(&self) -> String {
        let out = self.stdout.trim();
        let err = self.stderr.trim();
        match (out.is_empty(), err.is_empty()) {
            (true, true) => String::new(),
            (false, true) => out.to_string(),
            (true, false) => err.to_string(),
            (false, false) => format!("{out}\n{err}"),
        }
    }

    pub fn status_text(&self) -> String {
        match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by signal".to_string(),
        }
    }

    /// Turns a non-zero exit into [`Error::CommandFailed`].
    pub fn check(self, spec: &CommandSpec) -> Result<CommandOutput> {
        if self.success() {
            Ok(self)
        } else {
            Err(Error::CommandFailed {
                command: spec.display(),
                status: self.status_text(),
                output: self.combined(),
            })
        }
    }
}

/// Runs commands. Implementations return `Ok` for any exit status (callers interpret codes) and
/// `Err` only when the command could not run or hit its deadline.
pub trait CommandRunner: Send + Sync {
    fn run<'a>(&'a self, spec: &'a CommandSpec) -> BoxFuture<'a, Result<CommandOutput>>;
}

/// The real runner: `tokio::process::Command` in its own process group, killed (whole group) when
/// the deadline passes, stdin closed so no tool can wait for a confirmation prompt.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioRunner;

impl CommandRunner for TokioRunner {
    fn run<'a>(&'a self, spec: &'a CommandSpec) -> BoxFuture<'a, Result<CommandOutput>> {
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new(&spec.program);
            cmd.args(&spec.args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .process_group(0);
            let child = cmd.spawn().map_err(|source| Error::Spawn {
                command: spec.display(),
                source,
            })?;
            let pid = child.id();
            // Kept alive past the timeout so the child stays unreaped (its pid, and so its
            // process group id, cannot be reused) until the group has been killed.
            let wait = child.wait_with_output();
            tokio::pin!(wait);
            match tokio::time::timeout(spec.deadline, &mut wait).await {
                Ok(Ok(out)) => Ok(CommandOutput {
                    code: out.status.code(),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                }),
                Ok(Err(source)) => Err(Error::Spawn {
                    command: spec.display(),
                    source,
                }),
                Err(_) => {
                    // Helpers the tool forked (fsck → fsck.ext4, …) share its process group.
                    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok())
                        && let Some(pid) = rustix::process::Pid::from_raw(pid)
                    {
                        let _ =
                            rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                    }
                    Err(Error::CommandTimeout {
                        command: spec.display(),
                        deadline: spec.deadline,
                    })
                }
            }
        })
    }
}
