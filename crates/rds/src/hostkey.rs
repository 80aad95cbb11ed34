//! Host-key pinning: a known_hosts/authorized_keys-style line or a `SHA256:` fingerprint.
//!
//! Pins are compared by SHA-256 fingerprint because that is what operators can read off
//! RouterOS (`/ip ssh print`) and `ssh-keygen -lf`; the algorithm, when the pin names one, is
//! also checked and used to narrow the negotiated host-key algorithms so a server that
//! prefers another key type cannot sidestep the pin.

use base64::Engine as _;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use crate::error::RdsError;

/// How the client decides whether to trust the server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Trust only this key: algorithm name (e.g. `ssh-ed25519`) and `SHA256:<base64>`.
    Pinned {
        algorithm: Option<String>,
        fingerprint: String,
    },
    /// Trust anything. Only with an explicit flag; logged loudly.
    InsecureAcceptAny,
}

/// Why a presented host key was refused, with both fingerprints for the security log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyRefusal {
    pub expected: String,
    pub got: String,
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

impl HostKeyPolicy {
    /// Accepts what operators actually have at hand: a known_hosts line (`ssh-keyscan`
    /// output), an authorized_keys-style line (`/etc/ssh/ssh_host_*.pub`), or a bare
    /// `SHA256:` fingerprint. Blank lines and `#` comments are skipped so a whole file can be
    /// passed; the first key line wins.
    pub fn parse(text: &str) -> Result<Self, RdsError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| RdsError::Config("host key pin is empty".into()))?;

        if let Some(b64) = line.strip_prefix("SHA256:") {
            let b64 = b64.split_whitespace().next().unwrap_or_default();
            return Ok(HostKeyPolicy::Pinned {
                algorithm: None,
                fingerprint: normalize_fingerprint(b64)?,
            });
        }

        let tokens: Vec<&str> = line.split_whitespace().collect();
        let first = tokens.first().copied().unwrap_or_default();
        if first.starts_with('@') {
            return Err(RdsError::Config(format!(
                "known_hosts marker {first} is not supported; pin a plain host key"
            )));
        }
        if first.starts_with("|1|") {
            return Err(RdsError::Config(
                "hashed known_hosts entries (|1|…) cannot be used as a pin; use the \
                 unhashed line from `ssh-keyscan`, the server's .pub line, or a SHA256: \
                 fingerprint"
                    .into(),
            ));
        }
        let (key_type, b64) = if KEY_TYPES.contains(&first) {
            (first, tokens.get(1).copied())
        } else if tokens.get(1).is_some_and(|t| KEY_TYPES.contains(t)) {
            // known_hosts: `host[,host2] type base64 [comment]` or `[host]:port type …`.
            (tokens[1], tokens.get(2).copied())
        } else {
            return Err(RdsError::Config(format!(
                "host key pin is neither a known_hosts line, a public key line nor a \
                 SHA256: fingerprint (supported key types: {})",
                KEY_TYPES.join(", ")
            )));
        };
        let b64 = b64.ok_or_else(|| {
            RdsError::Config(format!("host key pin has type {key_type} but no key data"))
        })?;
        let key = russh::keys::parse_public_key_base64(b64)
            .map_err(|e| RdsError::Config(format!("host key pin: cannot decode key: {e}")))?;
        let actual = key.algorithm();
        if actual.as_str() != key_type {
            return Err(RdsError::Config(format!(
                "host key pin says {key_type} but the key data is {}",
                actual.as_str()
            )));
        }
        Ok(HostKeyPolicy::Pinned {
            algorithm: Some(key_type.to_string()),
            fingerprint: fingerprint(&key),
        })
    }

    /// Decides on a presented key. `Err` carries both fingerprints for the security event.
    pub fn check(&self, key: &PublicKey) -> Result<(), HostKeyRefusal> {
        match self {
            HostKeyPolicy::InsecureAcceptAny => Ok(()),
            HostKeyPolicy::Pinned {
                algorithm,
                fingerprint: expected,
            } => {
                let got = fingerprint(key);
                let algorithm_ok = algorithm
                    .as_deref()
                    .is_none_or(|a| a == key.algorithm().as_str());
                if algorithm_ok && &got == expected {
                    Ok(())
                } else {
                    let describe = |alg: Option<&str>, fp: &str| match alg {
                        Some(a) => format!("{a} {fp}"),
                        None => fp.to_string(),
                    };
                    Err(HostKeyRefusal {
                        expected: describe(algorithm.as_deref(), expected),
                        got: describe(Some(key.algorithm().as_str()), &got),
                    })
                }
            }
        }
    }

    /// Host-key algorithms to offer in key exchange. With a typed pin only that family is
    /// offered, so the server must present the pinned key (or fail negotiation) instead of
    /// another key type the pin cannot vouch for.
    pub(crate) fn preferred_algorithms(&self) -> Vec<Algorithm> {
        let all = russh::Preferred::DEFAULT.key.to_vec();
        match self {
            HostKeyPolicy::Pinned {
                algorithm: Some(a), ..
            } => {
                let family: Vec<Algorithm> = all
                    .iter()
                    .filter(|alg| {
                        if a == "ssh-rsa" {
                            matches!(alg, Algorithm::Rsa { .. })
                        } else {
                            alg.as_str() == a
                        }
                    })
                    .cloned()
                    .collect();
                if family.is_empty() { all } else { family }
            }
            _ => all,
        }
    }
}

/// `SHA256:<unpadded base64>`, the form OpenSSH prints.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn normalize_fingerprint(b64: &str) -> Result<String, RdsError> {
    let trimmed = b64.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|e| RdsError::Config(format!("host key fingerprint is not base64: {e}")))?;
    if bytes.len() != 32 {
        return Err(RdsError::Config(format!(
            "host key fingerprint must be a SHA-256 digest (32 bytes), got {} bytes",
            bytes.len()
        )));
    }
    Ok(format!("SHA256:{trimmed}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    fn ed25519() -> PublicKey {
        let seed: [u8; 32] = rand::random();
        PrivateKey::from(Ed25519Keypair::from_seed(&seed))
            .public_key()
            .clone()
    }

    fn openssh_line(key: &PublicKey) -> String {
        key.to_openssh().unwrap()
    }

    #[test]
    fn authorized_keys_line_pins_type_and_fingerprint() {
        let key = ed25519();
        let policy = HostKeyPolicy::parse(&format!("{} rds host", openssh_line(&key))).unwrap();
        assert_eq!(
            policy,
            HostKeyPolicy::Pinned {
                algorithm: Some("ssh-ed25519".into()),
                fingerprint: fingerprint(&key),
            }
        );
        assert!(policy.check(&key).is_ok());
        assert!(policy.check(&ed25519()).is_err());
    }

    #[test]
    fn known_hosts_forms_are_accepted() {
        let key = ed25519();
        for host in ["10.0.0.1", "rds,10.0.0.1", "[10.0.0.1]:2222"] {
            let policy =
                HostKeyPolicy::parse(&format!("# comment\n\n{host} {}\n", openssh_line(&key)))
                    .unwrap();
            assert!(policy.check(&key).is_ok(), "{host}");
        }
    }

    #[test]
    fn fingerprint_pin_with_or_without_padding() {
        let key = ed25519();
        let fp = fingerprint(&key);
        let policy = HostKeyPolicy::parse(&fp).unwrap();
        assert_eq!(
            policy,
            HostKeyPolicy::Pinned {
                algorithm: None,
                fingerprint: fp.clone()
            }
        );
        assert!(policy.check(&key).is_ok());
        let padded = HostKeyPolicy::parse(&format!("{fp}=")).unwrap();
        assert!(padded.check(&key).is_ok());
    }

    #[test]
    fn mismatch_reports_both_fingerprints() {
        let pinned = ed25519();
        let other = ed25519();
        let policy = HostKeyPolicy::parse(&openssh_line(&pinned)).unwrap();
        let refusal = policy.check(&other).unwrap_err();
        assert!(refusal.expected.contains(&fingerprint(&pinned)));
        assert!(refusal.got.contains(&fingerprint(&other)));
    }

    #[test]
    fn hashed_and_garbage_pins_are_refused_with_a_reason() {
        let err = HostKeyPolicy::parse("|1|abc=|def= ssh-ed25519 AAAA").unwrap_err();
        assert!(err.to_string().contains("hashed"), "{err}");
        assert!(HostKeyPolicy::parse("").is_err());
        assert!(HostKeyPolicy::parse("hello world").is_err());
        assert!(HostKeyPolicy::parse("SHA256:tooshort").is_err());
        assert!(HostKeyPolicy::parse("ssh-ed25519 !!!notbase64").is_err());
    }

    #[test]
    fn declared_type_must_match_key_data() {
        let key = ed25519();
        let b64 = openssh_line(&key)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        let err = HostKeyPolicy::parse(&format!("ssh-rsa {b64}")).unwrap_err();
        assert!(err.to_string().contains("ssh-ed25519"), "{err}");
    }

    #[test]
    fn typed_pin_narrows_negotiated_algorithms() {
        let rsa = HostKeyPolicy::Pinned {
            algorithm: Some("ssh-rsa".into()),
            fingerprint: "x".into(),
        };
        let algs = rsa.preferred_algorithms();
        assert!(!algs.is_empty());
        assert!(algs.iter().all(|a| matches!(a, Algorithm::Rsa { .. })));
        let ed = HostKeyPolicy::Pinned {
            algorithm: Some("ssh-ed25519".into()),
            fingerprint: "x".into(),
        };
        assert_eq!(ed.preferred_algorithms(), vec![Algorithm::Ed25519]);
        let any = HostKeyPolicy::Pinned {
            algorithm: None,
            fingerprint: "x".into(),
        };
        assert!(any.preferred_algorithms().len() > 1);
    }
}
