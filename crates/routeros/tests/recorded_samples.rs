//! Every recorded RouterOS sample in `tests/samples/` (see its INDEX.md for where each came
//! from and how far it can be trusted) through the parser its file-name prefix calls for. The expectations are derived from the raw
//! text with simple independent scans, not from the parser under test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use routeros::capacity::parse_capacity;
use routeros::command::detect_failure;
use routeros::disk::parse_disks;
use routeros::file::parse_files;
use routeros::monitor::{parse_key_values, parse_system_resource};
use routeros::parse_records;
use routeros::size::parse_size;

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

/// The index says how many samples it describes; a lost or added file must be noticed, so a
/// partial copy can never pass as "every sample checked".
fn indexed_sample_count(dir: &Path) -> usize {
    let index = fs::read_to_string(dir.join("INDEX.md"))
        .unwrap_or_else(|e| panic!("{}/INDEX.md is missing: {e}", dir.display()));
    let line = index
        .lines()
        .find(|l| l.contains(" sample files: "))
        .expect("INDEX.md states the number of sample files");
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("INDEX.md's count line starts with a number")
}

/// Samples that are not real RouterOS `print detail` shapes (documentation guesses in
/// `key: value` form, a brief table, a docker placeholder). The parsers must refuse them
/// rather than read them as "nothing found".
const NOT_DETAIL_SHAPE: &[&str] = &[
    "disk-print-detail-where-slot-match-pvc.key-colon.doc.txt",
    "disk-print-detail-where-slot.found-v1.mock.txt",
    "disk-print-detail-where-slot.file-size-line.doc.txt",
    "disk-print.docker-mock.doc.txt",
    "disk-print-brief.doc.txt",
    "file-print-detail-where-name.capacity.doc.txt",
    "file-print-detail-where-name.capacity-v1.mock.txt",
];

/// Values of `key=` tokens (at a token start) in text order, unquoted naively.
fn raw_values(text: &str, key: &str) -> Vec<String> {
    let pat = format!("{key}=");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(&pat) {
        let at = from + pos;
        from = at + pat.len();
        let starts_token = at == 0 || text[..at].ends_with([' ', '\n', '\t']);
        if !starts_token {
            continue;
        }
        let rest = &text[from..];
        let value = if let Some(q) = rest.strip_prefix('"') {
            q.split('"').next().unwrap_or_default().to_owned()
        } else {
            rest.split([' ', '\r', '\n'])
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        out.push(value);
    }
    out
}

/// Raw byte counts printed for `key=` (digits, possibly space-grouped, on one line).
fn raw_byte_counts(text: &str, key: &str) -> Vec<u64> {
    let pat = format!("{key}=");
    let mut out = Vec::new();
    for (at, _) in text.match_indices(&pat) {
        if at != 0 && !text[..at].ends_with([' ', '\n', '\t']) {
            continue;
        }
        let rest = &text[at + pat.len()..];
        let taken: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ' ')
            .collect();
        let after = rest[taken.len()..].chars().next();
        let ends_cleanly = after.is_none_or(|c| c == '\r' || c == '\n' || c.is_ascii_lowercase());
        let digits: String = taken.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() && ends_cleanly {
            out.push(digits.parse().unwrap());
        }
    }
    out
}

fn check_disks(name: &str, text: &str) {
    let disks = parse_disks(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let slots: Vec<&str> = disks.iter().map(|d| d.slot.as_str()).collect();
    assert_eq!(slots, raw_values(text, "slot"), "{name}: slots");
    let sizes: Vec<u64> = disks.iter().filter_map(|d| d.size_bytes).collect();
    assert_eq!(sizes, raw_byte_counts(text, "size"), "{name}: size=");
    let raw_file_sizes: Vec<u64> = disks
        .iter()
        .filter(|d| {
            d.record
                .get("file-size")
                .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b' '))
        })
        .filter_map(|d| d.file_size_bytes)
        .collect();
    assert_eq!(
        raw_file_sizes,
        raw_byte_counts(text, "file-size"),
        "{name}: file-size="
    );
    for d in &disks {
        if let Some(p) = &d.file_path {
            assert!(p.starts_with('/') && !p.contains(' '), "{name}: path {p:?}");
        }
    }
}

fn check_files(name: &str, text: &str) {
    let files = parse_files(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected: Vec<String> = raw_values(text, "name")
        .into_iter()
        .map(|n| {
            if n.starts_with('/') {
                n
            } else {
                format!("/{n}")
            }
        })
        .collect();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, expected, "{name}: names");
    // Every raw byte count printed as size= appears among the parsed sizes, in order.
    let parsed: Vec<u64> = files.iter().filter_map(|f| f.size_bytes).collect();
    let printed = raw_byte_counts(text, "size");
    let mut it = parsed.iter();
    for want in &printed {
        assert!(it.any(|got| got == want), "{name}: size {want} not parsed");
    }
    // Human sizes (`10.0GiB`) agree with a float reading of the printed number and unit.
    let human: Vec<u64> = raw_values(text, "size")
        .iter()
        .filter_map(|v| {
            let unit_at = v.find(|c: char| c.is_ascii_alphabetic())?;
            let (num, unit) = v.split_at(unit_at);
            let shift = match unit.chars().next()? {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return None,
            };
            Some((num.parse::<f64>().ok()? * f64::from(1u32 << 10).powi(shift / 10)) as u64)
        })
        .collect();
    let mut it = parsed.iter();
    for want in &human {
        assert!(
            it.any(|got| got == want),
            "{name}: human size {want} not parsed"
        );
    }
    assert!(
        printed.len() + human.len() <= parsed.len(),
        "{name}: {} sizes printed, {} parsed",
        printed.len() + human.len(),
        parsed.len()
    );
}

fn check_failure(name: &str, text: &str) {
    let on_stderr = name.contains("-stderr");
    let (out, err) = if on_stderr { ("", text) } else { (text, "") };
    let variant = name.split('.').nth(1).unwrap_or_default();
    if variant.starts_with("failure") || variant.starts_with("error") {
        let f = detect_failure(out, err, None);
        assert!(
            f.is_some(),
            "{name}: failure not detected without an exit status"
        );
        assert!(detect_failure(out, err, Some(1)).is_some(), "{name}");
    } else if variant.starts_with("success") {
        assert_eq!(detect_failure(out, err, Some(0)), None, "{name}");
    } else {
        let _ = detect_failure(out, err, Some(0));
    }
}

#[test]
fn every_recorded_sample_parses_with_its_parser() {
    let dir = samples_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "recorded RouterOS samples missing at {}: {e}",
            dir.display()
        )
    });
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        indexed_sample_count(&dir),
        "tests/samples holds a different number of samples than its INDEX.md describes"
    );
    let mut checked = 0;
    for name in &names {
        let text = fs::read_to_string(dir.join(name)).unwrap();
        // Nothing may panic, whatever the shape.
        let _ = parse_records(&text);
        let _ = parse_key_values(&text);
        let _ = detect_failure(&text, &text, None);

        if NOT_DETAIL_SHAPE.contains(&name.as_str()) {
            assert!(
                parse_disks(&text).is_err(),
                "{name}: not a detail shape, yet accepted"
            );
            assert!(parse_capacity(&text).is_err(), "{name}");
        } else if name.starts_with("disk-print-detail-where-mount-point")
            || name.starts_with("file-print-detail-where-name.capacity")
        {
            let c = parse_capacity(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                vec![c.total_bytes],
                raw_byte_counts(&text, "size")[..1],
                "{name}"
            );
            assert_eq!(
                vec![c.free_bytes],
                raw_byte_counts(&text, "free")[..1],
                "{name}"
            );
        } else if name == "disk-print-detail.wrapped-file-path.hw.txt" {
            // A schematic fragment without a slot: only the wrapped path is there to check.
            let records = parse_records(&text);
            assert_eq!(
                records[0].get("file-path"),
                Some("/storage-pool/metal-csi/pvc-xxx-yyy.img"),
                "{name}"
            );
        } else if name.starts_with("disk-print") {
            check_disks(name, &text);
        } else if name.starts_with("file-print") {
            check_files(name, &text);
        } else if name.starts_with("disk-add")
            || name.starts_with("disk-set")
            || name.starts_with("disk-remove")
            || name.starts_with("file-remove")
            || name.starts_with("btrfs-subvolume-add")
            || name.starts_with("unknown-command")
        {
            check_failure(name, &text);
        } else if name.starts_with("disk-monitor-traffic") {
            let kv = parse_key_values(&text);
            assert!(!kv.is_empty(), "{name}");
            if let Some((_, v)) = kv.iter().find(|(k, _)| k == "write-bytes") {
                let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                assert_eq!(
                    parse_size(v).unwrap(),
                    digits.parse::<u64>().unwrap(),
                    "{name}"
                );
            }
        } else if name.starts_with("system-resource") {
            let r = parse_system_resource(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                r.version.as_deref().is_some_and(|v| v.starts_with("7.16")),
                "{name}"
            );
        } else {
            // btrfs-era, interface, log, identity and monitor-once docs: shapes the driver
            // does not parse; the no-panic calls above are all that applies.
            let _ = parse_records(&text);
        }
        checked += 1;
    }
    assert_eq!(checked, names.len());
}
