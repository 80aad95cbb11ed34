//! Validated values: the only things a command builder accepts.
//!
//! Each newtype checks an allow-list on construction and is then safe to place into a
//! command line (quoted where RouterOS syntax needs it). Allow-lists rather than deny-lists
//! because RouterOS has more metacharacters (`;`, `[`, `$`, `"`, `\`, `{`, …) than anyone
//! remembers, and unicode look-alikes must never reach the RDS either.

use std::fmt;
use std::str::FromStr;

use crate::error::ValueError;

/// Longest slot RouterOS is asked to store; keeps command lines and metric labels bounded.
const SLOT_MAX: usize = 64;
/// NVMe base specification limit for an NQN.
const NQN_MAX: usize = nqn::MAX_NQN_LEN;
/// Linux `PATH_MAX`; anything longer cannot be a real file on the RDS.
const PATH_MAX: usize = 4096;
/// Linux `NAME_MAX` for one path component.
const COMPONENT_MAX: usize = 255;
/// How much of a refused value is echoed back in the error, so a huge input cannot flood logs.
const ECHO_MAX: usize = 80;

fn refuse(what: &'static str, value: &str, reason: impl Into<String>) -> ValueError {
    let mut echoed: String = value.chars().take(ECHO_MAX).collect();
    if echoed.len() < value.len() {
        echoed.push('…');
    }
    ValueError {
        what,
        value: echoed,
        reason: reason.into(),
    }
}

/// The first character outside `allowed`, for an error message that names the culprit.
fn first_bad_char(s: &str, allowed: impl Fn(char) -> bool) -> Option<char> {
    s.chars().find(|c| !allowed(*c))
}

fn is_component_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A RouterOS disk slot name: `^[a-zA-Z0-9-]+$`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(String);

/// A target NQN the driver exports, `nqn.yyyy-mm.reverse.domain:name`, at most 223 bytes: the
/// shared [`nqn::Nqn`] narrowed to a lower-case name without `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nqn(nqn::Nqn);

/// A host (initiator) NQN for `nvme-tcp-server-allow-host-name`: the shared [`nqn::Nqn`]
/// unchanged. Wider than [`Nqn`] because host NQNs are usually
/// `nqn.2014-08.org.nvmexpress:uuid:<uuid>`: the name may hold `:` and upper-case letters.
/// Still nothing RouterOS treats specially (no quote, `$`, `\\`, space).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostNqn(nqn::Nqn);

/// An absolute, clean path on the RDS (`/storage-pool/metal-csi/pvc-….img`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(String);

/// The pool mount point used by the capacity query (`storage-pool`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountPoint(String);

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port(u16);

/// An exact byte count. Formatting for a command never rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

#[allow(clippy::missing_errors_doc)]
impl Slot {
    pub fn new(s: &str) -> Result<Self, ValueError> {
        const WHAT: &str = "disk slot";
        if s.is_empty() {
            return Err(refuse(WHAT, s, "must not be empty"));
        }
        if let Some(c) = first_bad_char(s, |c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(refuse(
                WHAT,
                s,
                format!("contains {c:?}; use only ASCII letters, digits and '-'"),
            ));
        }
        if s.len() > SLOT_MAX {
            return Err(refuse(
                WHAT,
                s,
                format!(
                    "is {} characters long; shorten it to at most {SLOT_MAX}",
                    s.len()
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shape hint for target NQNs, which the driver names itself.
const TARGET_SHAPE: &str = "expected nqn.YYYY-MM.reverse.domain:name in lowercase, e.g. \
                            nqn.2000-02.com.mikrotik:pvc-1234";
/// Shape hint for host NQNs, which the node's NVMe host identity names.
const HOST_SHAPE: &str = "expected nqn.YYYY-MM.reverse.domain:name, e.g. \
                          nqn.2014-08.org.nvmexpress:uuid:<uuid>";

/// The reason for a refused NQN, in this crate's wording. Problems with the `nqn.` prefix, date
/// and domain cite the target shape for both kinds (the domain rules are the same); `name_shape`
/// is cited for the ones about the `:` and the name. A bad name character is the caller's to
/// word, as its rule differs.
fn nqn_reason(problem: nqn::Problem, name_shape: &str) -> String {
    use nqn::Problem as P;
    match problem {
        P::Empty => "must not be empty".to_string(),
        P::TooLong(n) => format!("is {n} bytes long; NVMe allows at most {NQN_MAX}"),
        P::NoPrefix => format!("must start with \"nqn.\"; {TARGET_SHAPE}"),
        P::BadDate => {
            format!("needs a YYYY-MM date and '.' after \"nqn.\"; {TARGET_SHAPE}")
        }
        P::NoColon => format!("needs ':' between domain and name; {name_shape}"),
        P::EmptyDomain => format!("domain part is empty; {TARGET_SHAPE}"),
        P::DomainChar(c) => {
            format!("domain contains {c:?}; use lowercase letters, digits, '.' and '-'")
        }
        P::EmptyName => format!("name after ':' is empty; {name_shape}"),
        P::NameChar(c) => format!("name contains {c:?}"),
    }
}

fn is_target_name_char(c: char) -> bool {
    nqn::is_domain_char(c) || c == '_'
}

impl Nqn {
    /// A target NQN: the general NVMe rules of [`nqn::Nqn`], and a name of lower-case letters,
    /// digits, `.`, `_` and `-` only, as every NQN the driver exports is written into RouterOS
    /// commands and must match the slot it was made from.
    pub fn new(s: &str) -> Result<Self, ValueError> {
        const WHAT: &str = "NVMe qualified name";
        let strict_name = |name: &str| {
            first_bad_char(name, is_target_name_char).map(|c| {
                refuse(
                    WHAT,
                    s,
                    format!("name contains {c:?}; use lowercase letters, digits, '.', '_' and '-'"),
                )
            })
        };
        let general = match nqn::Nqn::new(s) {
            Ok(n) => n,
            Err(e) => {
                if let nqn::Problem::NameChar(_) = e.problem {
                    let name = s.split_once(':').map_or("", |(_, name)| name);
                    if let Some(err) = strict_name(name) {
                        return Err(err);
                    }
                }
                return Err(refuse(WHAT, s, nqn_reason(e.problem, TARGET_SHAPE)));
            }
        };
        if let Some(err) = strict_name(general.name()) {
            return Err(err);
        }
        Ok(Self(general))
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    /// The same name as the general NQN type, for the node side.
    pub fn as_nqn(&self) -> &nqn::Nqn {
        &self.0
    }
}

impl From<Nqn> for nqn::Nqn {
    fn from(n: Nqn) -> nqn::Nqn {
        n.0
    }
}

impl HostNqn {
    /// A host NQN: exactly the general NVMe rules of [`nqn::Nqn`].
    pub fn new(s: &str) -> Result<Self, ValueError> {
        const WHAT: &str = "host NQN";
        nqn::Nqn::new(s).map(Self).map_err(|e| {
            let reason = match e.problem {
                nqn::Problem::NameChar(c) => {
                    format!("name contains {c:?}; use letters, digits, '.', '_', '-' and ':'")
                }
                p => nqn_reason(p, HOST_SHAPE),
            };
            refuse(WHAT, s, reason)
        })
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    pub fn as_nqn(&self) -> &nqn::Nqn {
        &self.0
    }
}

/// Every valid NQN is a valid host NQN: the rules are the same, so no second check.
impl From<nqn::Nqn> for HostNqn {
    fn from(n: nqn::Nqn) -> HostNqn {
        HostNqn(n)
    }
}

impl From<HostNqn> for nqn::Nqn {
    fn from(n: HostNqn) -> nqn::Nqn {
        n.0
    }
}

/// Checks one path component; shared by `FilePath::new` and `FilePath::join`.
fn check_component(path: &str, component: &str) -> Result<(), ValueError> {
    const WHAT: &str = "file path";
    if component.is_empty() {
        return Err(refuse(
            WHAT,
            path,
            "has an empty component ('//' or a trailing '/'); write the path in clean form",
        ));
    }
    if component == "." || component == ".." {
        return Err(refuse(
            WHAT,
            path,
            "contains '.' or '..'; write the resolved absolute path instead",
        ));
    }
    if component.starts_with('-') {
        return Err(refuse(
            WHAT,
            path,
            format!("component {component:?} starts with '-'; rename it"),
        ));
    }
    if let Some(c) = first_bad_char(component, is_component_char) {
        return Err(refuse(
            WHAT,
            path,
            format!("contains {c:?}; use only ASCII letters, digits, '.', '_', '-' and '/'"),
        ));
    }
    if component.len() > COMPONENT_MAX {
        return Err(refuse(
            WHAT,
            path,
            format!("has a component longer than {COMPONENT_MAX} characters; shorten it"),
        ));
    }
    Ok(())
}

impl FilePath {
    /// Requires at least one component: `/` alone is never a disk file and has no mount point.
    pub fn new(s: &str) -> Result<Self, ValueError> {
        const WHAT: &str = "file path";
        let Some(rest) = s.strip_prefix('/') else {
            return Err(refuse(WHAT, s, "must be absolute (start with '/')"));
        };
        if rest.is_empty() {
            return Err(refuse(WHAT, s, "must name something below '/'"));
        }
        if s.len() > PATH_MAX {
            return Err(refuse(
                WHAT,
                s,
                format!("is {} bytes long; at most {PATH_MAX} allowed", s.len()),
            ));
        }
        for component in rest.split('/') {
            check_component(s, component)?;
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The form RouterOS `/file` uses for `name=` (no leading `/`).
    pub fn without_leading_slash(&self) -> &str {
        self.0.strip_prefix('/').unwrap_or(&self.0)
    }
    /// True when `self` lies strictly under `base` by whole path components.
    ///
    /// Whole components, because a string prefix test would put
    /// `/storage-pool/metal-csi-evil/x.img` under `/storage-pool/metal-csi` and let the
    /// orphan cleaner touch files it does not own. A path is not under itself.
    pub fn is_under(&self, base: &FilePath) -> bool {
        self.0
            .strip_prefix(base.0.as_str())
            .is_some_and(|tail| tail.len() > 1 && tail.starts_with('/'))
    }
    /// `base/child` (child validated as one component).
    pub fn join(&self, child: &str) -> Result<FilePath, ValueError> {
        let joined = format!("{}/{child}", self.0);
        check_component(&joined, child)?;
        FilePath::new(&joined)
    }
    /// First path component (`/storage-pool/metal-csi` → `storage-pool`): the pool mount point.
    pub fn mount_point(&self) -> MountPoint {
        let rest = self.without_leading_slash();
        let first = rest.split('/').next().unwrap_or(rest);
        // A FilePath component already satisfies the mount point allow-list.
        MountPoint(first.to_owned())
    }
}

impl MountPoint {
    pub fn new(s: &str) -> Result<Self, ValueError> {
        const WHAT: &str = "mount point";
        if s.is_empty() {
            return Err(refuse(WHAT, s, "must not be empty"));
        }
        if let Some(c) = first_bad_char(s, is_component_char) {
            return Err(refuse(
                WHAT,
                s,
                format!("contains {c:?}; give one name of ASCII letters, digits, '.', '_', '-'"),
            ));
        }
        if s == "." || s == ".." {
            return Err(refuse(WHAT, s, "must be a real name, not '.' or '..'"));
        }
        if s.len() > COMPONENT_MAX {
            return Err(refuse(
                WHAT,
                s,
                format!("is longer than {COMPONENT_MAX} characters"),
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Port {
    pub fn new(p: u16) -> Result<Self, ValueError> {
        if p == 0 {
            return Err(refuse("TCP port", "0", "must be between 1 and 65535"));
        }
        Ok(Self(p))
    }
    /// Strict decimal parse; `4420abc`, `+1`, ` 1`, `0`, `04420` and `70000` are errors.
    ///
    /// Strict because `str::parse` accepts `+1`, and a lenient parse of user config
    /// hides typos that later surface as an unreachable export.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        const WHAT: &str = "TCP port";
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(
                WHAT,
                s,
                "write it as plain decimal digits, e.g. 4420",
            ));
        }
        if s.len() > 1 && s.starts_with('0') {
            return Err(refuse(WHAT, s, "remove the leading zeros"));
        }
        let n: u32 = if s.len() > 5 {
            u32::MAX
        } else {
            s.parse().unwrap_or(u32::MAX)
        };
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(Self(p)),
            _ => Err(refuse(WHAT, s, "must be between 1 and 65535")),
        }
    }
    pub fn get(self) -> u16 {
        self.0
    }
}

macro_rules! text_value {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$t>::new(s)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}
text_value!(Slot);
text_value!(Nqn);
text_value!(HostNqn);
text_value!(FilePath);
text_value!(MountPoint);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Port {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Port::parse(s)
    }
}

/// Shows the command-line form (`10G`), so logs match what was sent.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::size::format_size(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_accepts_pvc_names_and_rejects_metacharacters() {
        assert!(Slot::new("pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890").is_ok());
        assert!(Slot::new("A-9").is_ok());
        for bad in ["", "pvc_1", "pvc 1", "pvc;x", "a[b]", "pvc.img", "é"] {
            assert!(Slot::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn slot_length_limit_is_64() {
        assert!(Slot::new(&"a".repeat(64)).is_ok());
        let err = Slot::new(&"a".repeat(65)).unwrap_err();
        assert!(err.reason.contains("at most 64"), "{err}");
    }

    #[test]
    fn host_nqn_accepts_uuid_host_nqns_and_refuses_metacharacters() {
        let uuid = "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(HostNqn::new(uuid).unwrap().as_str(), uuid);
        assert!(HostNqn::new("nqn.2014-08.com.example:Host_1.a").is_ok());
        for bad in [
            "",
            "nqn.2014-08.org.nvmexpress",
            "nqn.2014-08.org.nvmexpress:",
            "NQN.2014-08.org.nvmexpress:uuid:a",
            "nqn.2014-08.Org.nvmexpress:uuid:a",
            "nqn.2014-08.org.nvmexpress:uuid:a\"; /disk remove [find]",
            "nqn.2014-08.org.nvmexpress:uuid:a b",
            "nqn.2014-08.org.nvmexpress:uuid:$x",
            "nqn.2014-08.org.nvmexpress:uuid:a[find]",
            "nqn.2014-08.org.nvmexpress:uuid:é",
        ] {
            assert!(HostNqn::new(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("nqn.2014-08.org.nvmexpress:{}", "a".repeat(200));
        assert!(HostNqn::new(&long).unwrap_err().reason.contains("223"));
    }

    #[test]
    fn nqn_follows_the_nvme_shape() {
        assert!(Nqn::new("nqn.2000-02.com.mikrotik:pvc-a1b2").is_ok());
        assert!(Nqn::new("nqn.2014-08.org.nvmexpress:uuid.x_y-z").is_ok());
        for bad in [
            "",
            "nqn.2000-02.com.mikrotik",
            "nqn.2000-02.com.mikrotik:",
            "nqn.200-02.com.mikrotik:a",
            "nqn.2000-2.com.mikrotik:a",
            "nqn.2000-02:a",
            "NQN.2000-02.com.mikrotik:a",
            "nqn.2000-02.com.MikroTik:a",
            "nqn.2000-02.com.mikrotik:a:b",
            "nqn.2000-02.com.mikrotik:a\"b",
            "nqn.2000-02.com.mikrotik:a b",
        ] {
            assert!(Nqn::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn nqn_length_limit_is_223_bytes() {
        let prefix = "nqn.2000-02.com.mikrotik:";
        let ok = format!("{prefix}{}", "a".repeat(223 - prefix.len()));
        assert!(Nqn::new(&ok).is_ok());
        let long = format!("{ok}a");
        assert!(Nqn::new(&long).is_err());
    }

    #[test]
    fn file_path_must_be_clean_and_absolute() {
        assert!(FilePath::new("/storage-pool/metal-csi/pvc-1.img").is_ok());
        assert!(FilePath::new("/a").is_ok());
        for bad in [
            "",
            "/",
            "storage-pool/x",
            "/storage-pool//x",
            "/storage-pool/x/",
            "/storage-pool/./x",
            "/storage-pool/../x",
            "/storage-pool/-rf",
            "/storage pool/x",
            "/storage-pool/x;y",
            "/storage-pool/ü",
        ] {
            assert!(FilePath::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn is_under_compares_whole_components() {
        let base = FilePath::new("/storage-pool/metal-csi").unwrap();
        let inside = FilePath::new("/storage-pool/metal-csi/x.img").unwrap();
        let deep = FilePath::new("/storage-pool/metal-csi/a/b.img").unwrap();
        let evil = FilePath::new("/storage-pool/metal-csi-evil/x.img").unwrap();
        assert!(inside.is_under(&base));
        assert!(deep.is_under(&base));
        assert!(!evil.is_under(&base));
        assert!(!base.is_under(&base));
        assert!(!base.is_under(&inside));
    }

    #[test]
    fn join_validates_the_child_as_one_component() {
        let base = FilePath::new("/storage-pool/metal-csi").unwrap();
        assert_eq!(
            base.join("pvc-1.img").unwrap().as_str(),
            "/storage-pool/metal-csi/pvc-1.img"
        );
        for bad in ["", "a/b", "..", ".", "-x", "a b", "a\"b"] {
            assert!(base.join(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mount_point_is_the_first_component() {
        let p = FilePath::new("/storage-pool/metal-csi").unwrap();
        assert_eq!(p.mount_point().as_str(), "storage-pool");
        let top = FilePath::new("/pool").unwrap();
        assert_eq!(top.mount_point().as_str(), "pool");
    }

    #[test]
    fn mount_point_is_one_safe_component() {
        assert!(MountPoint::new("storage-pool").is_ok());
        for bad in ["", "a/b", "a b", "..", "a\"", "pool;"] {
            assert!(MountPoint::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn port_parse_is_strict() {
        assert_eq!(Port::parse("4420").unwrap().get(), 4420);
        assert_eq!(Port::parse("1").unwrap().get(), 1);
        assert_eq!(Port::parse("65535").unwrap().get(), 65535);
        for bad in [
            "",
            "0",
            "4420abc",
            "+1",
            " 1",
            "1 ",
            "-1",
            "70000",
            "65536",
            "04420",
            "99999999999",
        ] {
            assert!(Port::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Port::new(0).is_err());
        assert_eq!(Port::new(4420).unwrap().get(), 4420);
    }

    #[test]
    fn errors_tell_what_to_fix_and_stay_short() {
        let err = Slot::new("pvc;rm").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("';'"), "{text}");
        assert!(text.contains("use only"), "{text}");
        let huge = "x;".repeat(10_000);
        let err = Slot::new(&huge).unwrap_err();
        assert!(err.value.chars().count() <= ECHO_MAX + 1);
    }
}
