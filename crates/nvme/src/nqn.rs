//! NVMe Qualified Names and the managed-prefix guard.
//!
//! An NQN ends up inside a comma-separated kernel option string and on an nvme-cli command line,
//! so the validated type (the shared [`nqn::Nqn`]) is the only way to get one into those places:
//! a comma, `=`, space or newline cannot be represented. The prefix guard exists because hosts
//! can boot from NVMe-oF; every automated disconnect must prove the NQN is ours first.

use std::fmt;

use nqn::is_name_char;

use crate::error::{NvmeError, Result};

pub use nqn::{MAX_NQN_LEN, Nqn, NqnError};

/// The NQN prefix that marks subsystems this driver owns.
///
/// Startup cleanup and orphan repair act only on NQNs that start with it, so a host that boots
/// from NVMe-oF never loses its root disk to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPrefix(String);

impl ManagedPrefix {
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let bad = |reason: &str| Err(NvmeError::invalid("managed NQN prefix", &value, reason));
        if !value.starts_with("nqn.") {
            return bad("must start with \"nqn.\"");
        }
        if !value.contains(':') {
            // Without the ':' a prefix like "nqn.2000-02.com" would match other vendors' NQNs.
            return bad("must contain ':' (domain part must be complete)");
        }
        if value.len() > MAX_NQN_LEN {
            return bad(&format!("{} bytes, max {MAX_NQN_LEN}", value.len()));
        }
        if let Some(c) = value.chars().find(|c| !is_name_char(*c)) {
            return bad(&format!("character {c:?} not allowed"));
        }
        Ok(ManagedPrefix(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-sensitive prefix match on the raw NQN text as the kernel reports it.
    pub fn matches(&self, nqn: &str) -> bool {
        nqn.starts_with(&self.0)
    }

    /// Err unless `nqn` is ours; used in front of every destructive operation.
    pub fn ensure(&self, nqn: &Nqn) -> Result<()> {
        if self.matches(nqn.as_str()) {
            Ok(())
        } else {
            Err(NvmeError::NotManaged {
                nqn: nqn.to_string(),
                prefix: self.0.clone(),
            })
        }
    }
}

impl fmt::Display for ManagedPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_volume_and_host_nqns() {
        for ok in [
            "nqn.2000-02.com.mikrotik:pvc-12345678-1234-1234-1234-123456789abc",
            "nqn.2014-08.org.nvmexpress:uuid:7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f",
            "nqn.2024-01.io.example:vol1",
        ] {
            assert_eq!(Nqn::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_separators_and_malformed_nqns() {
        for bad in [
            "",
            "nqn.2000-02.com.mikrotik:pvc-1,hostnqn=evil",
            "nqn.2000-02.com.mikrotik:pvc-1\nx",
            "nqn.2000-02.com.mikrotik:pvc 1",
            "nqn.2000-02.com.mikrotik:pvc=1",
            "nqn.2000-02.com.mikrotik:",
            "nqn.2000-02.com.mikrotik",
            "nqn.20-02.com.mikrotik:x",
            "nqn.2000-02.COM.mikrotik:x",
            "iqn.2000-02.com.mikrotik:x",
            "nqn.2000-02.:x",
        ] {
            assert!(Nqn::new(bad).is_err(), "accepted {bad:?}");
        }
        let long = format!("nqn.2000-02.com.mikrotik:{}", "a".repeat(200));
        let err = Nqn::new(long).unwrap_err();
        assert!(err.to_string().contains("max 223"), "{err}");
    }

    #[test]
    fn prefix_rules() {
        assert!(ManagedPrefix::new("nqn.2000-02.com.mikrotik:pvc-").is_ok());
        assert!(ManagedPrefix::new("nqn.2000-02.com.mikrotik").is_err());
        assert!(ManagedPrefix::new("pvc-:").is_err());
        assert!(ManagedPrefix::new(format!("nqn.x:{}", "a".repeat(223))).is_err());
        assert!(ManagedPrefix::new("nqn.2000-02.com.mikrotik:pvc-,").is_err());
    }

    #[test]
    fn prefix_matching_is_case_sensitive_and_guards() {
        let p = ManagedPrefix::new("nqn.2000-02.com.mikrotik:pvc-").unwrap();
        assert!(p.matches("nqn.2000-02.com.mikrotik:pvc-abc"));
        assert!(!p.matches("nqn.2000-02.com.mikrotik:PVC-abc"));
        assert!(!p.matches("nqn.2000-02.com.mikrotik:nixos-root"));
        let boot = Nqn::new("nqn.2000-02.com.mikrotik:nixos-root").unwrap();
        let err = p.ensure(&boot).unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::NotManaged);
    }
}
