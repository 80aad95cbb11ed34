//! nvme-cli fallback, for kernels or containers where writing `/dev/nvme-fabrics` directly is not
//! wanted. The process is killed when its deadline passes (kill_on_drop), so no nvme process
//! outlives the call that started it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::error::{NvmeError, Result};

/// Collected result of one finished nvme-cli run.
#[derive(Debug, Clone)]
pub(crate) struct CliRun {
    pub command: String,
    pub success: bool,
    pub code: Option<i32>,
    pub output: String,
}

impl CliRun {
    /// nvme-cli reports a duplicate controller by text or by passing EALREADY through as exit code.
    pub fn already_connected(&self) -> bool {
        let out = self.output.to_ascii_lowercase();
        self.code == Some(crate::fabrics::EALREADY)
            || out.contains("already connected")
            || out.contains("operation already in progress")
    }

    pub fn into_error(self) -> NvmeError {
        NvmeError::Command {
            status: match self.code {
                Some(c) => format!("exit code {c}"),
                None => "killed by signal".into(),
            },
            command: self.command,
            output: self.output.trim().to_string(),
        }
    }
}

pub(crate) async fn run(program: &Path, args: &[String], after: Duration) -> Result<CliRun> {
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NvmeError::Spawn {
            command: command.clone(),
            source,
        })?;
    // On timeout the wait future is dropped, which drops the child and kills it.
    let out = match tokio::time::timeout(after, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(NvmeError::Spawn { command, source });
        }
        Err(_) => {
            tracing::warn!(command = %command, ?after, "nvme-cli exceeded its deadline, killed");
            return Err(NvmeError::Timeout {
                op: "nvme-cli",
                target: command,
                after,
            });
        }
    };
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(CliRun {
        command,
        success: out.status.success(),
        code: out.status.code(),
        output,
    })
}
