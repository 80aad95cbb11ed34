//! A scripted [`Exec`] for tests here and in crates built on `rds`: answers are queued in
//! order and every command line is recorded, so a test can state exactly what reached the
//! RDS without a network.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::RdsError;
use crate::exec::{Exec, ExecFuture, ExecOutput};

#[derive(Default)]
pub struct ScriptedExec {
    replies: Mutex<VecDeque<Result<ExecOutput, RdsError>>>,
    lines: Mutex<Vec<String>>,
    deadlines: Mutex<Vec<Duration>>,
}

impl ScriptedExec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a successful command that printed `stdout` and exited 0.
    pub fn ok(&self, stdout: &str) -> &Self {
        self.output(ExecOutput {
            stdout: stdout.into(),
            stderr: String::new(),
            exit_status: Some(0),
        })
    }

    pub fn output(&self, output: ExecOutput) -> &Self {
        self.push(Ok(output))
    }

    pub fn err(&self, error: RdsError) -> &Self {
        self.push(Err(error))
    }

    fn push(&self, reply: Result<ExecOutput, RdsError>) -> &Self {
        if let Ok(mut q) = self.replies.lock() {
            q.push_back(reply);
        }
        self
    }

    /// Every command line received, in order.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The deadline passed with each command, in order.
    pub fn deadlines(&self) -> Vec<Duration> {
        self.deadlines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Replies queued but not consumed.
    pub fn remaining(&self) -> usize {
        self.replies.lock().map(|q| q.len()).unwrap_or_default()
    }
}

impl Exec for ScriptedExec {
    fn exec<'a>(
        &'a self,
        _verb: &'static str,
        line: &'a str,
        deadline: Duration,
    ) -> ExecFuture<'a> {
        if let Ok(mut l) = self.lines.lock() {
            l.push(line.to_string());
        }
        if let Ok(mut d) = self.deadlines.lock() {
            d.push(deadline);
        }
        let reply = self.replies.lock().ok().and_then(|mut q| q.pop_front());
        let reply = reply.unwrap_or_else(|| {
            // Not retryable, so a test that runs past its script fails loudly, not slowly.
            Err(RdsError::Config(format!(
                "ScriptedExec: no scripted reply for `{line}`"
            )))
        });
        Box::pin(async move { reply })
    }

    fn ping(
        &self,
        _deadline: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), RdsError>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }

    fn target(&self) -> String {
        "scripted".into()
    }
}
