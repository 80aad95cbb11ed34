//! Step results: the line printed per step, the summary, and the `--report` file.
//!
//! The report carries every raw RouterOS answer so a failing parse can become a test fixture,
//! and is meant to be attached to a public bug: the SSH and NVMe addresses, the user name,
//! host keys, fingerprints, host NQNs and any IPv4 literal are replaced before it is written.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::recorder::Exchange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not run because an earlier step failed or the run was interrupted.
    Skip,
    /// Something worth knowing that does not affect the driver (the exit status ignores it).
    Warn,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub name: &'static str,
    pub status: Status,
    /// Why it failed, or what was seen when it passed.
    pub detail: String,
    pub duration: Duration,
    pub exchanges: Vec<Exchange>,
}

impl StepResult {
    /// `PASS disk-add  12 ms  /disk add … ; /disk print …  — detail`
    pub fn line(&self) -> String {
        let commands: Vec<&str> = self.exchanges.iter().map(|e| e.line.as_str()).collect();
        let commands = if commands.is_empty() {
            "(no RouterOS command)".to_string()
        } else {
            commands.join(" ; ")
        };
        format!(
            "{} {:<17} {:>6} ms  {commands}  — {}",
            self.status.as_str(),
            self.name,
            self.duration.as_millis(),
            self.detail
        )
    }
}

/// Counts by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub warned: usize,
}

impl Summary {
    pub fn of(steps: &[StepResult]) -> Summary {
        let mut s = Summary::default();
        for step in steps {
            match step.status {
                Status::Pass => s.passed += 1,
                Status::Fail => s.failed += 1,
                Status::Skip => s.skipped += 1,
                Status::Warn => s.warned += 1,
            }
        }
        s
    }

    pub fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped, {} warnings",
            self.passed, self.failed, self.skipped, self.warned
        )
    }
}

/// Replaces identifying values in text meant for a bug report.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    literals: Vec<(String, String)>,
}

impl Redactor {
    /// `literals`: exact strings to hide (addresses, host names, `user@`) and what replaces them.
    pub fn new(literals: Vec<(String, String)>) -> Redactor {
        let mut literals: Vec<_> = literals.into_iter().filter(|(s, _)| s.len() >= 2).collect();
        // Longest first, so `10.0.0.1` never eats part of `10.0.0.10`.
        literals.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Redactor { literals }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (lit, with) in &self.literals {
            out = replace_word(&out, lit, with);
        }
        let out = replace_tokens(&out);
        redact_ipv4(&out)
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Replaces `lit` only where it stands alone, so a host called `rds` leaves `rds-csi` alone.
fn replace_word(text: &str, lit: &str, with: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(lit) {
        if i < last {
            continue;
        }
        let end = i + lit.len();
        let before_ok = i == 0 || !is_word_byte(bytes[i - 1]);
        let after_ok = end >= bytes.len()
            || !is_word_byte(bytes[end])
            || !lit.as_bytes().last().copied().is_some_and(is_word_byte);
        if before_ok && after_ok {
            out.push_str(&text[last..i]);
            out.push_str(with);
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Fingerprints, public key blobs and host NQNs, word by word (separators kept).
fn replace_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.starts_with("SHA256:") {
            out.push_str("<host-key-fingerprint>");
        } else if word.starts_with("AAAA") && word.len() > 40 {
            out.push_str("<key>");
        } else if let Some(i) = word.find("nqn.2014-08.org.nvmexpress:") {
            out.push_str(&word[..i]);
            out.push_str("<host-nqn>");
            if word.ends_with('"') {
                out.push('"');
            }
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || c == ',' || c == '(' || c == ')' {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Dotted quads (`10.1.2.3`) become `<ip>`; version strings like `7.16` are left alone.
fn redact_ipv4(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.');
        if boundary && bytes[i].is_ascii_digit() {
            let mut j = i;
            let mut dots = 0;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                if bytes[j] == b'.' {
                    dots += 1;
                }
                j += 1;
            }
            let cand = &text[i..j];
            let quad = dots == 3
                && cand.split('.').all(|p| {
                    !p.is_empty() && p.len() <= 3 && p.parse::<u16>().is_ok_and(|n| n < 256)
                });
            if quad {
                out.push_str("<ip>");
            } else {
                out.push_str(cand);
            }
            i = j;
            continue;
        }
        // Byte-wise walk over ASCII only; copy any other char whole.
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

fn exchange_json(e: &Exchange, r: &Redactor) -> Value {
    let mut v = json!({
        "command": r.apply(&e.line),
        "duration_ms": e.duration.as_millis() as u64,
    });
    match &e.result {
        Ok(out) => {
            v["exit_status"] = json!(out.exit_status);
            v["stdout"] = json!(r.apply(&out.stdout));
            v["stderr"] = json!(r.apply(&out.stderr));
        }
        Err(err) => v["transport_error"] = json!(r.apply(err)),
    }
    v
}

pub fn step_json(s: &StepResult, r: &Redactor) -> Value {
    json!({
        "step": s.name,
        "status": s.status.as_str(),
        "detail": r.apply(&s.detail),
        "duration_ms": s.duration.as_millis() as u64,
        "commands": s.exchanges.iter().map(|e| exchange_json(e, r)).collect::<Vec<_>>(),
    })
}

/// Writes the report next to `path` first and renames it, so a half-written report is never
/// mistaken for a whole one.
pub fn write(path: &Path, report: &Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut f, report)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifying_values_are_replaced() {
        let r = Redactor::new(vec![
            ("rds.example.net".into(), "<rds-host>".into()),
            ("metal@".into(), "<user>@".into()),
        ]);
        let text = "RDS metal@rds.example.net:22: host key fingerprint mismatch (expected SHA256:abc/def, got SHA256:xyz) \
                    from 10.0.0.17 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl \
                    nvme-tcp-server-allow-host-name=\"nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e\" \
                    version: 7.16 (stable) size=1 073 741 824 /storage-pool/metal-csi";
        let out = r.apply(text);
        for secret in [
            "rds.example.net",
            "metal@",
            "SHA256:",
            "10.0.0.17",
            "AAAAC3",
            "0f8fad5b",
        ] {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert!(out.contains("<user>@<rds-host>:22"), "{out}");
        assert!(out.contains("allow-host-name=\"<host-nqn>\""), "{out}");
        assert!(out.contains("version: 7.16 (stable)"), "{out}");
        assert!(out.contains("size=1 073 741 824"), "{out}");
        assert!(out.contains("/storage-pool/metal-csi"), "{out}");
        let short = Redactor::new(vec![("rds".into(), "<rds-address>".into())]);
        assert_eq!(
            short.apply("admin@rds:22 rds-csi-selftest rds"),
            "admin@<rds-address>:22 rds-csi-selftest <rds-address>"
        );
    }
}
