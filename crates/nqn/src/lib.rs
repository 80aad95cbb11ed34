//! NVMe Qualified Names: one type for every NQN the driver reads or writes.
//!
//! A leaf crate because two crates that must not depend on each other need the same rules: the
//! RouterOS command builders (`routeros`, which writes NQNs into commands) and the NVMe initiator
//! (`nvme`, which writes them into a kernel option string). `routeros` adds its stricter rule for
//! the target NQNs it names itself on top of this type.
//!
//! The accepted shape is the NVMe base specification's `nqn.yyyy-mm.reverse-domain:identifier`
//! (which covers the `nqn.2014-08.org.nvmexpress:uuid:<uuid>` host form), at most 223 bytes, with
//! the identifier narrowed to `[A-Za-z0-9._:-]`: wide enough for every host and target NQN seen in
//! practice, narrow enough that nothing in it can split a kernel option string, a shell word or a
//! quoted RouterOS value (no comma, `=`, space, quote, `$`, `\`, newline).

use std::fmt;
use std::str::FromStr;

/// Longest NQN the NVMe base specification allows (bytes).
pub const MAX_NQN_LEN: usize = 223;

/// A syntactically valid NQN, `nqn.YYYY-MM.<reverse-domain>:<identifier>`.
///
/// The domain is lower-case (`[a-z0-9.-]`), the identifier `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nqn(String);

/// Why a text is not an NQN. `Display` reads `invalid NQN "<text>": <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid NQN {value:?}: {problem}")]
pub struct NqnError {
    /// The refused text, cut to [`MAX_ECHO`] bytes (marked with `…`): errors reach logs, events
    /// and gRPC messages, and a caller must not be able to make those as large as its input.
    pub value: String,
    pub problem: Problem,
}

/// How much of a refused text an error repeats; longer than any valid NQN, so a typo in a real
/// one is always shown whole.
pub const MAX_ECHO: usize = MAX_NQN_LEN + 1;

fn excerpt(mut value: String) -> String {
    if value.len() > MAX_ECHO {
        let mut cut = MAX_ECHO;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    value
}

/// The first rule a refused NQN breaks, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("empty")]
    Empty,
    #[error("{0} bytes, max {MAX_NQN_LEN}")]
    TooLong(usize),
    #[error("must start with \"nqn.\"")]
    NoPrefix,
    #[error("expected nqn.YYYY-MM.<domain>:<identifier>")]
    BadDate,
    #[error("missing ':' between domain and identifier")]
    NoColon,
    #[error("domain must be non-empty lower-case [a-z0-9.-]")]
    EmptyDomain,
    #[error("domain must be non-empty lower-case [a-z0-9.-]")]
    DomainChar(char),
    #[error("empty identifier")]
    EmptyName,
    #[error("character {0:?} not allowed in identifier")]
    NameChar(char),
}

impl Nqn {
    pub fn new(value: impl Into<String>) -> Result<Self, NqnError> {
        let value = value.into();
        match check(&value) {
            Ok(()) => Ok(Nqn(value)),
            Err(problem) => Err(NqnError {
                value: excerpt(value),
                problem,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier: everything after the first `:`.
    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, name)| name)
    }
}

/// A character the identifier may hold.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// A character the reverse domain may hold.
pub fn is_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
}

fn check(v: &str) -> Result<(), Problem> {
    if v.is_empty() {
        return Err(Problem::Empty);
    }
    if v.len() > MAX_NQN_LEN {
        return Err(Problem::TooLong(v.len()));
    }
    let rest = v.strip_prefix("nqn.").ok_or(Problem::NoPrefix)?;
    let date = rest.as_bytes();
    let date_ok = date.len() > 8
        && date[..4].iter().all(u8::is_ascii_digit)
        && date[4] == b'-'
        && date[5..7].iter().all(u8::is_ascii_digit)
        && date[7] == b'.';
    if !date_ok {
        return Err(Problem::BadDate);
    }
    // `rest` is ASCII up to index 8 (checked above), so slicing there is on a boundary.
    let (domain, name) = rest[8..].split_once(':').ok_or(Problem::NoColon)?;
    if domain.is_empty() {
        return Err(Problem::EmptyDomain);
    }
    if let Some(c) = domain.chars().find(|c| !is_domain_char(*c)) {
        return Err(Problem::DomainChar(c));
    }
    if name.is_empty() {
        return Err(Problem::EmptyName);
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(Problem::NameChar(c));
    }
    Ok(())
}

impl fmt::Display for Nqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Nqn {
    type Err = NqnError;
    fn from_str(s: &str) -> Result<Self, NqnError> {
        Nqn::new(s)
    }
}

impl AsRef<str> for Nqn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_text_is_echoed_whole_when_short_and_cut_when_long() {
        let typo = format!("nqn.2000-01.com.example:{}", "a b");
        assert_eq!(Nqn::new(typo.clone()).unwrap_err().value, typo);
        let huge = format!("nqn.2000-01.com.example:{}", "é".repeat(1_000_000));
        let e = Nqn::new(huge).unwrap_err();
        assert_eq!(e.problem, Problem::TooLong(24 + 2_000_000));
        assert!(e.value.ends_with('…'), "{}", e.value);
        assert!(
            e.value.len() <= MAX_ECHO + '…'.len_utf8(),
            "{}",
            e.value.len()
        );
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
    }

    #[test]
    fn accepts_target_and_uuid_host_nqns() {
        for ok in [
            "nqn.2000-02.com.mikrotik:pvc-12345678-1234-1234-1234-123456789abc",
            "nqn.2014-08.org.nvmexpress:uuid:7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f",
            "nqn.2014-08.com.example:Host_1.a",
        ] {
            let n = Nqn::new(ok).unwrap();
            assert_eq!(n.as_str(), ok);
        }
        let host = Nqn::new("nqn.2014-08.org.nvmexpress:uuid:ab").unwrap();
        assert_eq!(host.name(), "uuid:ab");
    }

    #[test]
    fn names_the_first_broken_rule() {
        for (bad, problem) in [
            ("", Problem::Empty),
            ("iqn.2000-02.com.mikrotik:x", Problem::NoPrefix),
            ("nqn.20-02.com.mikrotik:x", Problem::BadDate),
            ("nqn.2000-02.com.mikrotik", Problem::NoColon),
            ("nqn.2000-02.:x", Problem::EmptyDomain),
            ("nqn.2000-02.COM.mikrotik:x", Problem::DomainChar('C')),
            ("nqn.2000-02.com.mikrotik:", Problem::EmptyName),
            (
                "nqn.2000-02.com.mikrotik:pvc-1,hostnqn=evil",
                Problem::NameChar(','),
            ),
            ("nqn.2000-02.com.mikrotik:a\"b", Problem::NameChar('"')),
            ("nqn.2000-02.com.mikrotik:$x", Problem::NameChar('$')),
        ] {
            assert_eq!(Nqn::new(bad).unwrap_err().problem, problem, "{bad:?}");
        }
    }

    #[test]
    fn length_limit_is_223_bytes() {
        let prefix = "nqn.2000-02.com.mikrotik:";
        let ok = format!("{prefix}{}", "a".repeat(MAX_NQN_LEN - prefix.len()));
        assert!(Nqn::new(ok.as_str()).is_ok());
        let err = Nqn::new(format!("{ok}a")).unwrap_err();
        assert_eq!(err.problem, Problem::TooLong(224));
        assert!(err.to_string().contains("max 223"), "{err}");
    }
}
