//! Typed builders for every command the driver sends. `Command` can only be made here.
//!
//! Every interpolated value is a validated newtype whose alphabet contains no RouterOS
//! metacharacter, so values can go in unquoted where RouterOS accepts that; quotes are
//! used only where the syntax needs them (regex matches and `/file` names).

use crate::error::{Failure, FailureKind};
use crate::size::format_size;
use crate::value::{ByteSize, FilePath, HostNqn, MountPoint, Nqn, Port, Slot};

/// A complete, safe command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    line: String,
    verb: &'static str,
    mutating: bool,
}

impl Command {
    pub fn as_str(&self) -> &str {
        &self.line
    }
    /// Low-cardinality label for metrics and logs, e.g. `disk-add`, `disk-print`.
    pub fn verb(&self) -> &'static str {
        self.verb
    }
    /// Whether the command changes RDS state (drives retry policy and audit).
    pub fn is_mutating(&self) -> bool {
        self.mutating
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

fn query(verb: &'static str, line: String) -> Command {
    Command {
        line,
        verb,
        mutating: false,
    }
}

fn change(verb: &'static str, line: String) -> Command {
    Command {
        line,
        verb,
        mutating: true,
    }
}

/// NVMe/TCP export settings for a new disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeExport {
    pub port: Port,
    pub nqn: Nqn,
}

/// `/disk add type=file …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskAdd {
    pub slot: Slot,
    pub file_path: FilePath,
    /// Required unless `copy_from` is set (a copy takes the source's size). When neither
    /// is set the command is still built and RouterOS refuses it (missing parameter).
    pub file_size: Option<ByteSize>,
    pub nvme: Option<NvmeExport>,
    /// `copy-from=[find slot=…]`: copy-on-write copy of another disk.
    pub copy_from: Option<Slot>,
}

pub fn disk_add(spec: &DiskAdd) -> Command {
    let mut line = String::from("/disk add type=file");
    if let Some(src) = &spec.copy_from {
        line.push_str(&format!(" copy-from=[find slot={src}]"));
    }
    line.push_str(&format!(" file-path={}", spec.file_path));
    if let Some(size) = spec.file_size {
        line.push_str(&format!(" file-size={}", format_size(size.0)));
    }
    line.push_str(&format!(" slot={}", spec.slot));
    if let Some(nvme) = &spec.nvme {
        line.push_str(&format!(
            " nvme-tcp-export=yes nvme-tcp-server-port={} nvme-tcp-server-nqn={}",
            nvme.port, nvme.nqn
        ));
    }
    change("disk-add", line)
}
/// `/disk print detail where slot=<slot>`
pub fn disk_print_slot(slot: &Slot) -> Command {
    query(
        "disk-print",
        format!("/disk print detail where slot={slot}"),
    )
}
/// `/disk print detail where slot~"^<prefix>"` — the driver's disks only.
///
/// A `Slot` has no regex metacharacters, so the prefix matches literally.
pub fn disk_print_slot_prefix(prefix: &Slot) -> Command {
    query(
        "disk-print",
        format!("/disk print detail where slot~\"^{prefix}\""),
    )
}
/// `/disk set [find slot=<slot>] file-size=<size>`
pub fn disk_set_size(slot: &Slot, size: ByteSize) -> Command {
    change(
        "disk-set",
        format!(
            "/disk set [find slot={slot}] file-size={}",
            format_size(size.0)
        ),
    )
}
/// `/disk set [find slot=<slot>] nvme-tcp-server-allow-host-name="<host nqn>"`, or `=""` to
/// allow any host again (`None`).
///
/// Quoted because RouterOS prints the property quoted (a string, empty by default); a
/// `HostNqn` holds no character that is special inside RouterOS quotes.
pub fn disk_set_allowed_host(slot: &Slot, host: Option<&HostNqn>) -> Command {
    change(
        "disk-set",
        format!(
            "/disk set [find slot={slot}] nvme-tcp-server-allow-host-name=\"{}\"",
            host.map_or("", HostNqn::as_str)
        ),
    )
}
/// `/disk remove [find slot=<slot>]`
pub fn disk_remove(slot: &Slot) -> Command {
    change("disk-remove", format!("/disk remove [find slot={slot}]"))
}
/// `/file print detail where name="<path without leading />"`
///
/// `/file` names carry no leading `/`; `=` compares literally, so nothing is escaped.
pub fn file_print(path: &FilePath) -> Command {
    query(
        "file-print",
        format!(
            "/file print detail where name=\"{}\"",
            path.without_leading_slash()
        ),
    )
}
/// Files directly or indirectly under `dir` (no RouterOS regex metacharacters from input).
///
/// `/file print detail where name~"^<dir>/"`: the only metacharacter a `FilePath` can hold
/// is `.`, written as `[.]` so no backslash escaping (which RouterOS strings also interpret)
/// is needed. The trailing `/` keeps `metal-csi-evil` out of `metal-csi`.
pub fn file_print_under(dir: &FilePath) -> Command {
    let pattern = dir.without_leading_slash().replace('.', "[.]");
    query(
        "file-print",
        format!("/file print detail where name~\"^{pattern}/\""),
    )
}
/// Files in any directory whose name contains `/<slot>.`: where a disk in `slot` left its
/// backing file (`<slot>.img`, or with tags before `.img`). The match is a superset
/// (`…/<slot>.img.bak` too), so callers keep the base names they give volumes. No `$` anchor: in a RouterOS string `$` starts a variable. A slot holds only
/// letters, digits and `-`, none of them regex operators; the `.` is written `[.]`.
pub fn file_print_image(slot: &Slot) -> Command {
    query(
        "file-print",
        format!("/file print detail where name~\"/{slot}[.]\""),
    )
}
/// `/file remove [find name="<path without leading />"]`
pub fn file_remove(path: &FilePath) -> Command {
    change(
        "file-remove",
        format!(
            "/file remove [find name=\"{}\"]",
            path.without_leading_slash()
        ),
    )
}
/// `/disk print detail where mount-point="<mp>"`
pub fn capacity(mount_point: &MountPoint) -> Command {
    query(
        "disk-print",
        format!("/disk print detail where mount-point=\"{mount_point}\""),
    )
}
/// `/system resource print`
pub fn system_resource() -> Command {
    query("system-resource", "/system resource print".to_owned())
}

/// Phrases RouterOS (or the RDS) uses for a failed command, lowercase, with the kind they
/// mean. Checked in order, so specific kinds win over `Rejected`.
const SHAPES: &[(&str, FailureKind)] = &[
    ("no such item", FailureKind::NotFound),
    ("not enough space", FailureKind::NoSpace),
    ("already exists", FailureKind::AlreadyExists),
    ("disk is in use", FailureKind::InUse),
    ("disk is busy", FailureKind::InUse),
    ("bad command name", FailureKind::Rejected),
    ("syntax error", FailureKind::Rejected),
    ("expected end of command", FailureKind::Rejected),
    ("invalid value", FailureKind::Rejected),
    ("invalid parameter", FailureKind::Rejected),
    ("missing required parameters", FailureKind::Rejected),
    ("missing value", FailureKind::Rejected),
    ("input does not match any value", FailureKind::Rejected),
];

/// Prefixes that mark a whole line as an error report.
const PREFIXES: &[&str] = &["failure:", "error:"];

/// Longest failure message kept; a failing `print` could otherwise drag its whole output
/// into every log line and gRPC status.
const MESSAGE_MAX: usize = 2000;

/// `key: value` monitor lines (`board-name: …`) are data, not messages.
fn looks_like_key_colon(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(k, _)| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// Whether one trimmed, lowercased line reports a failure.
///
/// A line fails when it starts with `failure:`/`error:`, starts with a known phrase, or is
/// free text (no `=`, not a `key: value` pair) containing a known phrase. Record lines
/// always contain `key=`, so a file named `failure.img` or a comment mentioning
/// "already exists" inside a `print` never counts.
fn is_failure_line(lower: &str) -> bool {
    if PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return true;
    }
    if SHAPES.iter().any(|(s, _)| lower.starts_with(s)) {
        return true;
    }
    !lower.contains('=')
        && !looks_like_key_colon(lower)
        && SHAPES.iter().any(|(s, _)| lower.contains(s))
}

fn classify(text: &str) -> FailureKind {
    let lower = text.to_lowercase();
    SHAPES
        .iter()
        .find(|(s, _)| lower.contains(s))
        .map_or(FailureKind::Other, |(_, k)| *k)
}

/// Reads both streams and the exit status; returns the failure RouterOS reported, if any.
/// A command failed when the exit status is non-zero or any line of either stream has a
/// known failure shape (`failure: …`, `no such item`, `bad command name …`, …).
///
/// Both streams are read because which one RouterOS uses for errors, and with what exit
/// status, was never observed on hardware. The kind is taken from the failure lines when
/// there are any (so record data cannot change it), else from all the text.
pub fn detect_failure(stdout: &str, stderr: &str, exit_status: Option<u32>) -> Option<Failure> {
    let failure_lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| is_failure_line(&l.to_lowercase()))
        .collect();
    let bad_exit = exit_status.filter(|s| *s != 0);
    if failure_lines.is_empty() && bad_exit.is_none() {
        return None;
    }
    let kind = if failure_lines.is_empty() {
        classify(&format!("{stdout}\n{stderr}"))
    } else {
        classify(&failure_lines.join("\n"))
    };
    let parts: Vec<&str> = [stdout.trim(), stderr.trim()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    let mut message = if parts.is_empty() {
        match bad_exit {
            Some(code) => format!("exit status {code} with no output"),
            None => String::new(),
        }
    } else {
        parts.join("\n")
    };
    if message.len() > MESSAGE_MAX {
        let mut cut = MESSAGE_MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    Some(Failure { kind, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(s: &str) -> Slot {
        Slot::new(s).unwrap()
    }
    fn path(s: &str) -> FilePath {
        FilePath::new(s).unwrap()
    }

    const PVC: &str = "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890";

    #[test]
    fn disk_add_with_nvme() {
        let cmd = disk_add(&DiskAdd {
            slot: slot(PVC),
            file_path: path(&format!("/storage-pool/metal-csi/{PVC}.img")),
            file_size: Some(ByteSize(10 << 30)),
            nvme: Some(NvmeExport {
                port: Port::new(4420).unwrap(),
                nqn: Nqn::new(&format!("nqn.2000-02.com.mikrotik:{PVC}")).unwrap(),
            }),
            copy_from: None,
        });
        assert_eq!(
            cmd.as_str(),
            format!(
                "/disk add type=file file-path=/storage-pool/metal-csi/{PVC}.img file-size=10G \
                 slot={PVC} nvme-tcp-export=yes nvme-tcp-server-port=4420 \
                 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:{PVC}"
            )
        );
        assert_eq!(cmd.verb(), "disk-add");
        assert!(cmd.is_mutating());
    }

    #[test]
    fn disk_add_copy_without_nvme_or_size() {
        let cmd = disk_add(&DiskAdd {
            slot: slot("snap-1"),
            file_path: path("/storage-pool/metal-csi/snap-1.img"),
            file_size: None,
            nvme: None,
            copy_from: Some(slot("pvc-1")),
        });
        assert_eq!(
            cmd.as_str(),
            "/disk add type=file copy-from=[find slot=pvc-1] \
             file-path=/storage-pool/metal-csi/snap-1.img slot=snap-1"
        );
        assert!(!cmd.as_str().contains("nvme"));
    }

    #[test]
    fn disk_add_never_rounds_the_size() {
        let cmd = disk_add(&DiskAdd {
            slot: slot("pvc-1"),
            file_path: path("/p/pvc-1.img"),
            file_size: Some(ByteSize((1 << 30) + 1)),
            nvme: None,
            copy_from: None,
        });
        assert!(cmd.as_str().contains(" file-size=1073741825 "), "{cmd}");
    }

    #[test]
    fn read_and_write_commands() {
        let cases = [
            (
                disk_print_slot(&slot("pvc-1")),
                "/disk print detail where slot=pvc-1",
                "disk-print",
                false,
            ),
            (
                disk_print_slot_prefix(&slot("pvc-")),
                "/disk print detail where slot~\"^pvc-\"",
                "disk-print",
                false,
            ),
            (
                disk_set_size(&slot("pvc-1"), ByteSize(3 << 29)),
                "/disk set [find slot=pvc-1] file-size=1536M",
                "disk-set",
                true,
            ),
            (
                disk_set_allowed_host(
                    &slot("pvc-1"),
                    Some(
                        &HostNqn::new(
                            "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
                        )
                        .unwrap(),
                    ),
                ),
                "/disk set [find slot=pvc-1] nvme-tcp-server-allow-host-name=\"nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e\"",
                "disk-set",
                true,
            ),
            (
                disk_set_allowed_host(&slot("pvc-1"), None),
                "/disk set [find slot=pvc-1] nvme-tcp-server-allow-host-name=\"\"",
                "disk-set",
                true,
            ),
            (
                disk_remove(&slot("pvc-1")),
                "/disk remove [find slot=pvc-1]",
                "disk-remove",
                true,
            ),
            (
                file_print(&path("/storage-pool/metal-csi/pvc-1.img")),
                "/file print detail where name=\"storage-pool/metal-csi/pvc-1.img\"",
                "file-print",
                false,
            ),
            (
                file_print_under(&path("/storage-pool/metal.csi")),
                "/file print detail where name~\"^storage-pool/metal[.]csi/\"",
                "file-print",
                false,
            ),
            (
                file_print_image(&slot("pvc-1")),
                "/file print detail where name~\"/pvc-1[.]\"",
                "file-print",
                false,
            ),
            (
                file_remove(&path("/storage-pool/metal-csi/pvc-1.img")),
                "/file remove [find name=\"storage-pool/metal-csi/pvc-1.img\"]",
                "file-remove",
                true,
            ),
            (
                capacity(&MountPoint::new("storage-pool").unwrap()),
                "/disk print detail where mount-point=\"storage-pool\"",
                "disk-print",
                false,
            ),
            (
                system_resource(),
                "/system resource print",
                "system-resource",
                false,
            ),
        ];
        for (cmd, line, verb, mutating) in cases {
            assert_eq!(cmd.as_str(), line);
            assert_eq!(cmd.verb(), verb, "{line}");
            assert_eq!(cmd.is_mutating(), mutating, "{line}");
        }
    }

    #[test]
    fn clean_success_is_not_a_failure() {
        assert_eq!(detect_failure("", "", Some(0)), None);
        assert_eq!(detect_failure("", "", None), None);
        let listing = " 0   name=storage-pool/failure.img type=.img file size=1.0GiB\r\n     comment=\"already exists\"\r\n";
        assert_eq!(detect_failure(listing, "", Some(0)), None);
        assert_eq!(
            detect_failure("board-name: no such item\n", "", Some(0)),
            None
        );
    }

    #[test]
    fn failure_text_on_either_stream() {
        let f = detect_failure("failure: no such item\n", "", Some(0)).unwrap();
        assert_eq!(f.kind, FailureKind::NotFound);
        assert_eq!(f.message, "failure: no such item");
        let f = detect_failure("", "not enough space", None).unwrap();
        assert_eq!(f.kind, FailureKind::NoSpace);
        let f = detect_failure("failure: volume already exists\n", "", Some(1)).unwrap();
        assert_eq!(f.kind, FailureKind::AlreadyExists);
        assert_eq!(f.message, "failure: volume already exists");
        let f = detect_failure("", "disk is in use", Some(0)).unwrap();
        assert_eq!(f.kind, FailureKind::InUse);
        let f = detect_failure("bad command name /system resource print\n", "", None).unwrap();
        assert_eq!(f.kind, FailureKind::Rejected);
        let f = detect_failure("expected end of command (line 1 column 12)", "", None).unwrap();
        assert_eq!(f.kind, FailureKind::Rejected);
        let f = detect_failure("", "input does not match any value of file-size", None).unwrap();
        assert_eq!(f.kind, FailureKind::Rejected);
        let f = detect_failure("failure: execution error\n", "", None).unwrap();
        assert_eq!(f.kind, FailureKind::Other);
        let f = detect_failure("error: invalid parameter 'size'", "", None).unwrap();
        assert_eq!(f.kind, FailureKind::Rejected);
    }

    #[test]
    fn non_zero_exit_alone_fails_and_message_joins_streams() {
        let f = detect_failure("", "", Some(1)).unwrap();
        assert_eq!(f.kind, FailureKind::Other);
        assert!(f.message.contains("exit status 1"));
        let f = detect_failure("out text", "err text", Some(2)).unwrap();
        assert_eq!(f.kind, FailureKind::Other);
        assert_eq!(f.message, "out text\nerr text");
    }

    #[test]
    fn kind_comes_from_failure_lines_not_record_data() {
        let out = "slot=already-exists-not type=file\nfailure: not enough space\n";
        let f = detect_failure(out, "", None).unwrap();
        assert_eq!(f.kind, FailureKind::NoSpace);
    }

    #[test]
    fn huge_messages_are_capped() {
        let out = format!("failure: {}", "é".repeat(5000));
        let f = detect_failure(&out, "", None).unwrap();
        assert!(f.message.len() <= MESSAGE_MAX + '…'.len_utf8());
    }
}
