//! Property tests for mountinfo parsing: the mount table is read on every node RPC, so a line the
//! parser chokes on (a panic, or one foreign mount hiding the others) would stop every stage and
//! unpublish on that node. Escaped paths must come back byte for byte, or a volume mounted under
//! an unusual path would look unmounted and be mounted again on top of itself.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use mount::mountinfo::read_mount_table;
use mount::{DevNum, MountTable};
use proptest::prelude::*;

/// The kernel's `mangle()` for mountinfo: space, tab, newline and backslash become `\ooo`;
/// every other byte (including non-UTF-8 ones) is written as is.
fn kernel_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// An absolute path of arbitrary non-NUL, non-`/` bytes per component: what a user or another
/// plugin can create on a node.
fn raw_path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::collection::vec(
            any::<u8>().prop_filter("no NUL or /", |b| *b != 0 && *b != b'/'),
            1..12,
        ),
        1..5,
    )
    .prop_map(|parts| {
        let mut p = Vec::new();
        for part in parts {
            p.push(b'/');
            p.extend(part);
        }
        p
    })
}

/// Same, restricted to valid UTF-8 (what `MountTable::parse`, which takes `&str`, can be given).
fn utf8_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[^/\u{0}]{1,10}", 1..5).prop_map(|parts| format!("/{}", parts.join("/")))
}

fn line(id: u32, dev: DevNum, mount_point: &[u8], source: &[u8]) -> Vec<u8> {
    let mut l = format!("{id} 1 {dev} / ").into_bytes();
    l.extend(kernel_escape(mount_point));
    l.extend_from_slice(b" rw,relatime shared:1 - ext4 ");
    l.extend(kernel_escape(source));
    l.extend_from_slice(b" rw\n");
    l
}

proptest! {
    // Failures are turned into named regression tests below, not persisted seed files.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "(?s).{0,400}") {
        let t = MountTable::parse(&text);
        // Every non-blank line is either an entry or a reported skip: nothing vanishes silently.
        let non_blank = text.lines().filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(t.entries().len() + t.skipped_lines().len(), non_blank);
    }

    #[test]
    fn parse_never_panics_on_mountinfo_shaped_noise(
        fields in prop::collection::vec(
            prop_oneof![
                Just("-".to_string()),
                "[0-9]{1,12}",
                "[0-9]{1,11}:[0-9]{1,11}",
                "[/a-z\\\\0-9]{0,12}",
                "[a-z,=:]{0,12}",
            ],
            0..16,
        ),
    ) {
        let text = fields.join(" ");
        let t = MountTable::parse(&text);
        let expected = usize::from(!text.trim().is_empty());
        prop_assert_eq!(t.entries().len() + t.skipped_lines().len(), expected);
    }

    #[test]
    fn escaped_utf8_paths_round_trip(mp in utf8_path(), src in "[^\u{0}]{1,20}") {
        let text = String::from_utf8(line(42, DevNum { major: 259, minor: 7 }, mp.as_bytes(), src.as_bytes())).unwrap();
        let t = MountTable::parse(&text);
        prop_assert_eq!(t.entries().len(), 1, "{:?}", text);
        let e = &t.entries()[0];
        prop_assert_eq!(e.mount_point.as_os_str().as_bytes(), mp.as_bytes());
        prop_assert_eq!(&e.source, &src);
        prop_assert_eq!(e.dev, DevNum { major: 259, minor: 7 });
        prop_assert!(t.is_mount_point(Path::new(&mp)));
    }

    #[test]
    fn any_foreign_mount_point_bytes_leave_the_table_readable(
        foreign in raw_path(),
        ours in utf8_path(),
    ) {
        // A mount the driver does not own, with bytes that need not be UTF-8, sits before ours.
        let mut text = line(30, DevNum { major: 0, minor: 50 }, &foreign, b"none");
        text.extend(line(31, DevNum { major: 259, minor: 9 }, ours.as_bytes(), b"/dev/nvme1n1"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mountinfo");
        std::fs::write(&file, &text).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let t = rt.block_on(read_mount_table(&file, Duration::from_secs(10))).unwrap();
        prop_assert_eq!(t.entries().len(), 2);
        prop_assert_eq!(t.entries()[0].mount_point.as_os_str(), OsStr::from_bytes(&foreign));
        let e = t.top_mount_at(Path::new(&ours)).unwrap();
        prop_assert_eq!(e.dev, DevNum { major: 259, minor: 9 });
        prop_assert_eq!(e.source.as_str(), "/dev/nvme1n1");
    }
}

/// Regression for what `any_foreign_mount_point_bytes_leave_the_table_readable` found: one mount
/// point with a non-UTF-8 name made the whole read fail, so every node RPC failed with it.
#[tokio::test]
async fn a_latin1_mount_point_does_not_hide_the_other_mounts() {
    let mut text = line(
        30,
        DevNum {
            major: 0,
            minor: 50,
        },
        b"/mnt/caf\xe9",
        b"none",
    );
    text.extend(line(
        31,
        DevNum {
            major: 259,
            minor: 9,
        },
        b"/var/lib/kubelet/x/globalmount",
        b"/dev/nvme1n1",
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mountinfo");
    std::fs::write(&file, &text).unwrap();
    let t = read_mount_table(&file, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        t.entries()[0].mount_point.as_os_str().as_bytes(),
        b"/mnt/caf\xe9"
    );
    assert!(t.is_mount_point(Path::new("/var/lib/kubelet/x/globalmount")));
}
