//! Property tests: size round trips, injection-proof values, safe command lines, parsers that
//! never panic, and wrapped `print detail` output that parses back to what was printed.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use routeros::capacity::parse_capacity;
use routeros::command::{self, DiskAdd, NvmeExport, detect_failure};
use routeros::disk::parse_disks;
use routeros::file::parse_files;
use routeros::monitor::{parse_key_values, parse_system_resource};
use routeros::size::{format_size, parse_size};
use routeros::{ByteSize, FilePath, MountPoint, Nqn, Port, Record, Slot, parse_records};

/// Characters that must never reach a command line: RouterOS metacharacters, whitespace,
/// quotes, and unicode look-alikes or letters that would pass a careless `is_alphanumeric`.
const FORBIDDEN: &[char] = &[
    ';', '[', ']', '"', '$', '\n', '\r', '\t', '\\', ' ', '{', '}', '\'', '`', '\0', '；', '＂',
    '［', '／', '－', 'é', 'а', 'ı', 'ß', '\u{200b}', '\u{a0}', '٣',
];

fn slot_str() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9-]{1,64}"
}
fn nqn_str() -> impl Strategy<Value = String> {
    "nqn\\.[0-9]{4}-[0-9]{2}\\.[a-z0-9.-]{1,30}:[a-z0-9._-]{1,60}"
}
fn path_str() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", 1..5)
        .prop_map(|parts| format!("/{}", parts.join("/")))
}
fn mount_str() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9._-]{0,30}"
}
fn port_str() -> impl Strategy<Value = String> {
    (1u16..=65535).prop_map(|p| p.to_string())
}

/// Inserts `c` at a char position of an ASCII string.
fn insert(s: &str, at: usize, c: char) -> String {
    let at = at % (s.len() + 1);
    format!("{}{c}{}", &s[..at], &s[at..])
}

fn balanced(line: &str) -> bool {
    let mut depth = 0i32;
    let mut in_quote = false;
    for c in line.chars() {
        match c {
            '"' => in_quote = !in_quote,
            '[' if !in_quote => depth += 1,
            ']' if !in_quote => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0 && !in_quote
}

fn assert_safe(cmd: &command::Command) {
    let line = cmd.as_str();
    assert!(!line.contains(';'), "{line}");
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    assert!(!line.contains('\\') && !line.contains('$'), "{line}");
    assert!(line.is_ascii(), "{line}");
    assert!(balanced(line), "{line}");
}

proptest! {
    #[test]
    fn size_round_trips(n in any::<u64>()) {
        prop_assert_eq!(parse_size(&format_size(n)).unwrap(), n);
    }

    #[test]
    fn size_round_trips_on_unit_multiples(k in 1u64..(1 << 24), shift in prop::sample::select(vec![10u32, 20, 30, 40])) {
        let n = k << shift;
        prop_assert_eq!(parse_size(&format_size(n)).unwrap(), n);
    }

    #[test]
    fn valid_values_are_accepted(
        slot in slot_str(), nqn in nqn_str(), path in path_str(), mp in mount_str(), port in port_str(),
    ) {
        prop_assert!(Slot::new(&slot).is_ok());
        prop_assert!(Nqn::new(&nqn).is_ok());
        prop_assert!(FilePath::new(&path).is_ok());
        prop_assert!(MountPoint::new(&mp).is_ok());
        prop_assert!(Port::parse(&port).is_ok());
    }

    #[test]
    fn forbidden_characters_are_refused_everywhere(
        slot in slot_str(), nqn in nqn_str(), path in path_str(), mp in mount_str(), port in port_str(),
        at in any::<usize>(), c in prop::sample::select(FORBIDDEN),
    ) {
        prop_assert!(Slot::new(&insert(&slot, at, c)).is_err());
        prop_assert!(Nqn::new(&insert(&nqn, at, c)).is_err());
        prop_assert!(FilePath::new(&insert(&path, at, c)).is_err());
        prop_assert!(MountPoint::new(&insert(&mp, at, c)).is_err());
        prop_assert!(Port::parse(&insert(&port, at, c)).is_err());
        let base = FilePath::new(&path).unwrap();
        prop_assert!(base.join(&insert("child.img", at, c)).is_err());
    }

    #[test]
    fn built_commands_are_safe(
        slot in slot_str(), src in slot_str(), nqn in nqn_str(), path in path_str(), mp in mount_str(),
        port in 1u16..=65535, size in proptest::option::of(any::<u64>()),
        nvme in any::<bool>(), copy in any::<bool>(),
    ) {
        let slot = Slot::new(&slot).unwrap();
        let path = FilePath::new(&path).unwrap();
        let add = command::disk_add(&DiskAdd {
            slot: slot.clone(),
            file_path: path.clone(),
            file_size: size.map(ByteSize),
            nvme: nvme.then(|| NvmeExport { port: Port::new(port).unwrap(), nqn: Nqn::new(&nqn).unwrap() }),
            copy_from: copy.then(|| Slot::new(&src).unwrap()),
        });
        let slot_token = format!(" slot={slot}");
        prop_assert!(add.as_str().contains(&slot_token));
        let cmds = [
            add,
            command::disk_print_slot(&slot),
            command::disk_print_slot_prefix(&slot),
            command::disk_set_size(&slot, ByteSize(size.unwrap_or(1))),
            command::disk_remove(&slot),
            command::file_print(&path),
            command::file_print_under(&path),
            command::file_remove(&path),
            command::capacity(&MountPoint::new(&mp).unwrap()),
            command::system_resource(),
        ];
        for cmd in &cmds {
            assert_safe(cmd);
        }
        // The regex form escapes every '.' as "[.]", so no bare '.' remains in the pattern.
        let under = command::file_print_under(&path);
        let pattern = under.as_str().split('"').nth(1).unwrap();
        prop_assert!(!pattern.replace("[.]", "").contains('.'));
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_text(s in any::<String>()) {
        exercise(&s);
    }

    #[test]
    fn parsers_never_panic_on_routeros_like_text(s in routeros_like()) {
        exercise(&s);
    }

    #[test]
    fn wrapped_records_parse_back(output in printed_records()) {
        let (text, expected) = output;
        prop_assert_eq!(parse_records(&text), expected, "text:\n{}", text);
    }

    #[test]
    fn grouped_numbers_survive_word_wraps(n in any::<u64>(), cut in any::<usize>(), indent in 1usize..20) {
        let grouped = group_digits(n);
        let spaces: Vec<usize> = grouped.match_indices(' ').map(|(i, _)| i).collect();
        let text = if spaces.is_empty() {
            format!("size={grouped} use=5%")
        } else {
            let at = spaces[cut % spaces.len()];
            format!("size={}\n{}{} use=5%", &grouped[..at], " ".repeat(indent), &grouped[at + 1..])
        };
        let r = &parse_records(&text)[0];
        prop_assert_eq!(parse_size(r.get("size").unwrap()).unwrap(), n, "text: {}", text);
        prop_assert_eq!(r.get("use"), Some("5%"));
    }
}

fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn exercise(s: &str) {
    let _ = parse_records(s);
    let _ = parse_disks(s);
    let _ = parse_files(s);
    let _ = parse_capacity(s);
    let _ = parse_key_values(s);
    let _ = parse_system_resource(s);
    let _ = parse_size(s);
    let _ = detect_failure(s, s, None);
    let _ = detect_failure(s, "", Some(1));
}

fn routeros_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("slot=".to_owned()),
        Just("file-path=".to_owned()),
        Just("size=".to_owned()),
        Just("free=".to_owned()),
        Just("name=".to_owned()),
        Just("type=".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\\\"".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("      ".to_owned()),
        Just("Flags: X - disabled".to_owned()),
        Just(" 0 X ".to_owned()),
        Just("4294967296 ".to_owned()),
        Just(";;; ".to_owned()),
        Just("53 687".to_owned()),
        Just("091 200".to_owned()),
        Just(".img".to_owned()),
        Just("failure: ".to_owned()),
        Just("version: ".to_owned()),
        Just("é".to_owned()),
        Just("\\C3".to_owned()),
        "[a-z0-9/.-]{1,8}",
        "[0-9]{1,25}(\\.[0-9]{1,20})?[KMGT]?(iB)?",
    ];
    prop::collection::vec(piece, 0..80).prop_map(|v| v.concat())
}

/// A value as printed: unquoted single token, or quoted with escapes.
#[derive(Debug, Clone)]
enum Printed {
    Bare(String),
    Quoted(String),
}

fn printed_value() -> impl Strategy<Value = Printed> {
    prop_oneof![
        // Starts with a letter and has no ':' so no wrap can look like a digit group or a
        // date followed by a time (those are joined with a space by design).
        "[a-z/][a-z0-9/._-]{0,40}".prop_map(Printed::Bare),
        Just(Printed::Bare(String::new())),
        "[a-zA-Z0-9 ._:/\"\\\\-]{0,40}".prop_map(Printed::Quoted),
    ]
}

fn key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,12}".prop_filter("type has its own wrap rule", |k| k != "type")
}

/// Renders records as RouterOS would and hard-wraps them at random places: at field
/// separators (the space is eaten) or in the middle of a token (nothing is eaten).
fn printed_records() -> impl Strategy<Value = (String, Vec<Record>)> {
    let record = (
        prop::collection::vec((key(), printed_value()), 1..6),
        "[A-Z]{0,2}",
        prop::collection::vec(any::<u16>(), 0..8),
        0usize..6,
        any::<bool>(),
    );
    (prop::collection::vec(record, 1..4), any::<bool>()).prop_map(|(records, indexed)| {
        let indexed = indexed || records.len() > 1;
        let mut text = String::new();
        let mut expected = Vec::new();
        for (i, (fields, flags, cuts, extra, blank)) in records.into_iter().enumerate() {
            let head = if indexed {
                format!(" {i} {flags} ")
            } else {
                String::new()
            };
            let mut line = String::new();
            // Byte positions in `line` where a break may go, and whether it eats a space.
            let mut breaks: Vec<(usize, bool)> = Vec::new();
            for (n, (k, v)) in fields.iter().enumerate() {
                if n > 0 {
                    breaks.push((line.len(), true));
                    line.push(' ');
                }
                line.push_str(k);
                line.push('=');
                match v {
                    Printed::Bare(t) => {
                        for c in t.chars() {
                            breaks.push((line.len(), false));
                            line.push(c);
                        }
                    }
                    Printed::Quoted(t) => {
                        line.push('"');
                        let mut prev_space = true;
                        for c in t.chars() {
                            if !prev_space && c != ' ' {
                                breaks.push((line.len(), false));
                            }
                            if c == '"' || c == '\\' {
                                line.push('\\');
                            }
                            line.push(c);
                            prev_space = c == ' ';
                        }
                        line.push('"');
                    }
                }
            }
            let mut chosen: Vec<(usize, bool)> = cuts
                .iter()
                .filter(|_| !breaks.is_empty())
                .map(|c| breaks[usize::from(*c) % breaks.len()])
                .collect();
            chosen.sort_unstable();
            chosen.dedup_by_key(|b| b.0);
            let indent = " ".repeat(head.len().max(1) + extra);
            text.push_str(&head);
            let mut last = 0;
            for (at, eats) in chosen {
                text.push_str(&line[last..at]);
                text.push_str("\r\n");
                text.push_str(&indent);
                last = if eats { at + 1 } else { at };
            }
            text.push_str(&line[last..]);
            text.push_str("\r\n");
            if blank {
                text.push_str("\r\n");
            }
            expected.push(Record {
                index: indexed.then_some(u32::try_from(i).unwrap()),
                flags: if indexed { flags } else { String::new() },
                fields: fields
                    .into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Printed::Bare(t) | Printed::Quoted(t) => t,
                        };
                        (k, v)
                    })
                    .collect(),
            });
        }
        (text, expected)
    })
}
