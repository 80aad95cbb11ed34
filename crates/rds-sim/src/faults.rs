//! Fault injection: switches a test flips while the server runs.
//!
//! Every decision is taken once per received command line, in one place
//! ([`Faults::decide`]), so a test can reason about "the next command" without races between
//! connections.

use std::sync::Mutex;
use std::time::Duration;

use crate::style::OutputStyle;

/// When a dropped or hung command takes effect relative to applying it.
///
/// Both are needed: "before" proves the client retries safely, "after" proves it can resolve
/// the ambiguity of a mutation that happened although no reply arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// The command is not applied.
    BeforeApply,
    /// The command is applied, then the reply is lost.
    AfterApply,
}

/// What the server does with one command, decided by [`Faults::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub latency: Duration,
    /// Print this text and exit 1 instead of running the command.
    pub fail: Option<String>,
    /// Close the connection without a reply.
    pub drop: Option<Timing>,
    /// Never reply (until the connection goes away).
    pub hang: Option<Timing>,
    pub disk_full: bool,
    pub errors_on_stderr: bool,
    /// Apply the command with this text replaced (`from`, `to`), but answer as if it ran as sent.
    pub rewrite: Option<(String, String)>,
    pub style: OutputStyle,
}

#[derive(Debug, Default)]
struct State {
    latency: Duration,
    /// Commands still to pass before the injected failure (1 = the next one).
    fail_countdown: Option<(u64, String)>,
    disk_full: bool,
    drops: Vec<(String, Timing)>,
    hangs: Vec<(String, Timing)>,
    errors_on_stderr: bool,
    rewrites: Vec<(String, String, String)>,
    style: OutputStyle,
}

/// Fault injection switches, shared with the running server. All methods take `&self` so a test
/// can hold an `Arc<Faults>` while commands run.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
}

/// `"/disk add!"` means "after apply"; anything else "before apply".
fn split_timing(prefix: &str) -> (String, Timing) {
    match prefix.strip_suffix('!') {
        Some(p) => (p.to_string(), Timing::AfterApply),
        None => (prefix.to_string(), Timing::BeforeApply),
    }
}

impl Faults {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A poisoned lock only means a test thread panicked mid-update; the switches are still
        // plain data, so keep serving rather than cascading the panic into the server.
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Delay added before every command is applied and answered.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// The `n`-th command from now (1 = the next one) prints `text` and exits 1 without being
    /// applied.
    pub fn fail_nth(&self, n: u64, text: &str) {
        self.with(|s| s.fail_countdown = Some((n.max(1), text.to_string())));
    }

    /// `/disk add` and growing `/disk set` answer `failure: not enough space`.
    pub fn disk_full(&self, on: bool) {
        self.with(|s| s.disk_full = on);
    }

    /// The next command starting with `verb_prefix` gets its connection closed with no reply.
    /// A trailing `!` (`"/disk add!"`) applies the command first; without it the command is
    /// dropped before it changes anything.
    pub fn drop_next(&self, verb_prefix: &str) {
        let entry = split_timing(verb_prefix);
        self.with(|s| s.drops.push(entry));
    }

    /// Explicit form of [`Faults::drop_next`].
    pub fn drop_next_at(&self, verb_prefix: &str, timing: Timing) {
        self.with(|s| s.drops.push((verb_prefix.to_string(), timing)));
    }

    /// The next command starting with `verb_prefix` never replies; the connection stays open
    /// until the client gives up. A trailing `!` applies the command before hanging.
    pub fn hang_next(&self, verb_prefix: &str) {
        let entry = split_timing(verb_prefix);
        self.with(|s| s.hangs.push(entry));
    }

    /// Write `failure: …` texts to stderr instead of stdout, so a client is proven to read both.
    pub fn errors_on_stderr(&self, on: bool) {
        self.with(|s| s.errors_on_stderr = on);
    }

    /// Lay listings out in `style` from now on (not a fault: a different terminal or firmware).
    pub fn output_style(&self, style: OutputStyle) {
        self.with(|s| s.style = style);
    }

    /// The next command starting with `verb_prefix` is applied with `from` replaced by `to`
    /// and answered as success: firmware that silently ignores or alters a parameter, so
    /// the client's verification (and cleanup of what it made) can be tested for real.
    pub fn rewrite_next(&self, verb_prefix: &str, from: &str, to: &str) {
        self.with(|s| {
            s.rewrites
                .push((verb_prefix.to_string(), from.to_string(), to.to_string()))
        });
    }

    /// Back to a well-behaved RDS.
    pub fn clear(&self) {
        self.with(|s| *s = State::default());
    }

    /// Consumes one-shot faults that match `line`.
    pub(crate) fn decide(&self, line: &str) -> Decision {
        let line = line.trim_start();
        self.with(|s| {
            let fail = match s.fail_countdown.take() {
                Some((1, text)) => Some(text),
                Some((n, text)) => {
                    s.fail_countdown = Some((n - 1, text));
                    None
                }
                None => None,
            };
            let drop = take_match(&mut s.drops, line);
            let hang = take_match(&mut s.hangs, line);
            let rewrite = s
                .rewrites
                .iter()
                .position(|(p, _, _)| line.starts_with(p.as_str()))
                .map(|i| {
                    let (_, from, to) = s.rewrites.remove(i);
                    (from, to)
                });
            Decision {
                rewrite,
                latency: s.latency,
                fail,
                drop,
                hang,
                disk_full: s.disk_full,
                errors_on_stderr: s.errors_on_stderr,
                style: s.style,
            }
        })
    }
}

fn take_match(list: &mut Vec<(String, Timing)>, line: &str) -> Option<Timing> {
    let pos = list
        .iter()
        .position(|(p, _)| line.starts_with(p.as_str()))?;
    Some(list.remove(pos).1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fail_nth_counts_from_now() {
        let f = Faults::default();
        f.fail_nth(2, "failure: x");
        assert_eq!(f.decide("/a").fail, None);
        assert_eq!(f.decide("/b").fail.as_deref(), Some("failure: x"));
        assert_eq!(f.decide("/c").fail, None);
    }

    #[test]
    fn drop_is_one_shot_and_prefix_matched_with_timing() {
        let f = Faults::default();
        f.drop_next("/disk add!");
        f.drop_next("/disk remove");
        assert_eq!(f.decide("/disk print").drop, None);
        assert_eq!(f.decide("/disk add x").drop, Some(Timing::AfterApply));
        assert_eq!(f.decide("/disk add x").drop, None);
        assert_eq!(f.decide("/disk remove y").drop, Some(Timing::BeforeApply));
    }

    #[test]
    fn clear_resets_everything() {
        let f = Faults::default();
        f.set_latency(Duration::from_secs(3));
        f.disk_full(true);
        f.hang_next("/");
        f.clear();
        let d = f.decide("/disk add");
        assert_eq!(d.latency, Duration::ZERO);
        assert!(!d.disk_full);
        assert_eq!(d.hang, None);
    }
}
