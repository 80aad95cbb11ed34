//! An [`Exec`] in front of the production SSH transport that keeps every exchange verbatim.
//!
//! The selftest drives the production `RdsClient`, which turns answers into typed values and
//! errors; the report needs what RouterOS really printed (both streams, exit status) so a
//! failing parse can become a fixture. Recording below the client keeps the client unchanged.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rds::{Exec, ExecFuture, ExecOutput, RdsError};

/// Most bytes of one stream kept per command; a runaway print cannot fill memory or the report.
const KEEP_MAX: usize = 256 * 1024;
/// Most exchanges kept; a run sends a few dozen commands.
const EXCHANGES_MAX: usize = 1000;

/// One command as it went over the wire.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub line: String,
    pub duration: Duration,
    /// What came back, or the transport error (connect, drop, deadline) that stopped it.
    pub result: Result<ExecOutput, String>,
}

pub struct Recorder {
    inner: Arc<dyn Exec>,
    log: Mutex<Vec<Exchange>>,
}

impl Recorder {
    pub fn new(inner: Arc<dyn Exec>) -> Recorder {
        Recorder {
            inner,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Number of exchanges so far: a step notes it before it starts.
    pub fn mark(&self) -> usize {
        self.lock().len()
    }

    /// Exchanges since `mark`.
    pub fn since(&self, mark: usize) -> Vec<Exchange> {
        self.lock()
            .get(mark..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Exchange>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, e: Exchange) {
        let mut log = self.lock();
        if log.len() < EXCHANGES_MAX {
            log.push(e);
        }
    }
}

fn capped(mut s: String) -> String {
    if s.len() > KEEP_MAX {
        let mut cut = KEEP_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[… cut by the selftest]");
    }
    s
}

impl Exec for Recorder {
    fn exec<'a>(&'a self, verb: &'static str, line: &'a str, deadline: Duration) -> ExecFuture<'a> {
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = self.inner.exec(verb, line, deadline).await;
            self.push(Exchange {
                line: line.to_string(),
                duration: started.elapsed(),
                result: match &result {
                    Ok(out) => Ok(ExecOutput {
                        stdout: capped(out.stdout.clone()),
                        stderr: capped(out.stderr.clone()),
                        exit_status: out.exit_status,
                    }),
                    Err(e) => Err(e.to_string()),
                },
            });
            result
        })
    }

    fn ping(
        &self,
        deadline: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), RdsError>> + Send + '_>>
    {
        self.inner.ping(deadline)
    }

    fn target(&self) -> String {
        self.inner.target()
    }
}
