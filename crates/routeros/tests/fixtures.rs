//! Parsers against this crate's own fixtures, written in the shapes RouterOS prints.
#![allow(clippy::unwrap_used)]

use routeros::capacity::parse_capacity;
use routeros::command::detect_failure;
use routeros::disk::parse_disks;
use routeros::file::parse_files;
use routeros::monitor::parse_system_resource;
use routeros::{FailureKind, parse_records};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("fixtures/", $name))
    };
}

const GIB: u64 = 1 << 30;

#[test]
fn fixtures_keep_their_line_endings() {
    // Guards against a checkout silently converting CRLF, which would hollow out the tests.
    assert!(fixture!("disk-print-detail.flags-wraps.crlf.txt").contains("\r\n"));
    assert!(!fixture!("disk-print-detail-where-slot.single.lf.txt").contains('\r'));
}

#[test]
fn multi_record_detail_with_legend_flags_and_wraps() {
    let out = fixture!("disk-print-detail.flags-wraps.crlf.txt");
    let records = parse_records(out);
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].index, Some(0));
    assert_eq!(records[1].flags, "X");
    assert_eq!(records[2].index, Some(2));

    let disks = parse_disks(out).unwrap();
    let a = &disks[0];
    assert_eq!(a.slot, "pvc-11111111-2222-3333-4444-555555555555");
    assert_eq!(
        a.file_path.as_deref(),
        Some("/storage-pool/metal-csi/pvc-11111111-2222-3333-4444-555555555555.img")
    );
    assert_eq!(a.size_bytes, Some(53_687_091_200));
    assert_eq!(a.file_size_bytes, Some(50 * GIB));
    assert_eq!(a.nvme_port, Some(4420));
    assert_eq!(
        a.nvme_nqn.as_deref(),
        Some("nqn.2000-02.com.mikrotik:pvc-11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(a.effective_status(), "ready");

    let b = &disks[1];
    assert_eq!(b.record.get("comment"), Some("disabled by operator"));
    assert_eq!(b.size_bytes, Some(10_737_418_240));
    assert!(!b.nvme_export);
    assert_eq!(b.effective_status(), "unknown");
    assert_eq!(b.creation_time.as_deref(), Some("2025-11-12 00:36:13"));

    let pool = &disks[2];
    assert_eq!(pool.kind.as_deref(), Some("partition"));
    assert_eq!(pool.size_bytes, Some(7_681_574_174_720));
}

#[test]
fn single_item_without_index() {
    let disks = parse_disks(fixture!("disk-print-detail-where-slot.single.lf.txt")).unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].slot, "pvc-test-123");
    assert_eq!(disks[0].record.index, None);
    assert_eq!(
        disks[0].nvme_nqn.as_deref(),
        Some("nqn.2000-02.com.mikrotik:pvc-test-123")
    );
    assert_eq!(disks[0].capacity_bytes(), Some(53_687_091_200));
}

#[test]
fn legend_alone_means_nothing_found() {
    let out = fixture!("disk-print-detail.nothing.crlf.txt");
    assert!(parse_disks(out).unwrap().is_empty());
    assert!(parse_files(out).unwrap().is_empty());
    assert_eq!(detect_failure(out, "", Some(0)), None);
}

#[test]
fn file_listing_with_wraps() {
    let out = fixture!("file-print-detail-where-name-match.listing.crlf.txt");
    let files = parse_files(out).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "/storage-pool/metal-csi",
            "/storage-pool/metal-csi/pvc-11111111-2222-3333-4444-555555555555.img",
            "/storage-pool/metal-csi/pvc-66666666-7777-8888-9999-000000000000.img",
            "/storage-pool/metal-csi/failure.img",
        ]
    );
    assert_eq!(files[0].kind.as_deref(), Some("directory"));
    assert_eq!(files[0].size_bytes, None);
    assert_eq!(files[1].size_bytes, Some(10 * GIB));
    assert_eq!(files[2].kind.as_deref(), Some(".img file"));
    assert_eq!(files[2].size_bytes, Some(1536 << 20));
    assert_eq!(
        files[2].creation_time.as_deref(),
        Some("nov/15/2025 14:32:41")
    );
    assert_eq!(files[3].kind.as_deref(), Some(".img file"));
    assert_eq!(files[3].size_bytes, Some(53_687_091_200));
    assert_eq!(
        files[3].last_modified.as_deref(),
        Some("2025-11-12 00:36:13")
    );
    // A listing that mentions "failure" in its data is still a success.
    assert_eq!(detect_failure(out, "", Some(0)), None);
}

#[test]
fn capacity_line() {
    let c = parse_capacity(fixture!(
        "disk-print-detail-where-mount-point.capacity.crlf.txt"
    ))
    .unwrap();
    assert_eq!(c.total_bytes, 7_681_574_174_720);
    assert_eq!(c.free_bytes, 7_301_927_047_168);
}

#[test]
fn system_resource() {
    let r = parse_system_resource(fixture!("system-resource-print.crlf.txt")).unwrap();
    assert_eq!(r.version.as_deref(), Some("7.16 (stable)"));
    assert_eq!(r.board_name.as_deref(), Some("RDS2216"));
    assert_eq!(r.uptime.as_deref(), Some("3w2d4h11m9s"));
    assert_eq!(r.total_memory_bytes, Some(16 * GIB));
    assert_eq!(r.free_memory_bytes, Some(12 * GIB + GIB / 2));
    assert!(r.free_hdd_bytes.is_some_and(|b| b > 7 << 40));
}

#[test]
fn failures_on_stdout_and_stderr() {
    let cases = [
        (
            fixture!("failure.no-such-item.stdout.txt"),
            false,
            FailureKind::NotFound,
        ),
        (
            fixture!("failure.not-enough-space.stderr.txt"),
            true,
            FailureKind::NoSpace,
        ),
        (
            fixture!("failure.bad-command-name.stdout.txt"),
            false,
            FailureKind::Rejected,
        ),
        (
            fixture!("failure.expected-end-of-command.stderr.txt"),
            true,
            FailureKind::Rejected,
        ),
        (
            fixture!("failure.input-does-not-match.stdout.txt"),
            false,
            FailureKind::Rejected,
        ),
        (
            fixture!("failure.already-exists.stdout.txt"),
            false,
            FailureKind::AlreadyExists,
        ),
    ];
    for (text, on_stderr, kind) in cases {
        let (out, err) = if on_stderr { ("", text) } else { (text, "") };
        // Exit status unknown, and also the (possible) zero exit: text alone must suffice.
        for exit in [None, Some(0)] {
            let f = detect_failure(out, err, exit).unwrap_or_else(|| panic!("{text:?} missed"));
            assert_eq!(f.kind, kind, "{text:?}");
            assert_eq!(f.message, text.trim());
        }
        // Typed parsers refuse error text instead of reading it as "nothing found".
        assert!(parse_disks(text).is_err(), "{text:?}");
        assert!(parse_files(text).is_err(), "{text:?}");
        assert!(parse_capacity(text).is_err(), "{text:?}");
    }
}
