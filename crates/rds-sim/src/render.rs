//! Output text exactly as a RouterOS terminal shows it: CRLF line endings, records wrapped at
//! 80 columns (mid-token for long paths), space-grouped byte counts, one-decimal binary units.
//!
//! The point is to make the driver's parser face the awkward real shapes, not tidy ones.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{SimDisk, file_type};
use crate::style::OutputStyle;

/// Legend printed before every `/disk print`, even when nothing matches (as real RouterOS does).
pub(crate) const DISK_FLAGS: &str =
    "Flags: X - disabled, E - empty, B - block-device, M - mounted, F - formatting";

/// Content columns per line: a terminal wraps at 80, and RouterOS leaves the last one free.
#[cfg(test)]
const WIDTH: usize = 79;
/// Where properties start: index (2), space, flags (1), padding.
const INDENT: usize = 5;

/// `53687091200` → `53 687 091 200`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// `50.0GiB`, `1024.0MiB`: RouterOS moves to the next unit only above 1024 of the current one.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes <= 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v > 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// UTC `YYYY-MM-DD HH:MM:SS`, the `last-modified=` form seen on hardware.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t.max(UNIX_EPOCH)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Lays out one record. Each group starts a new line (RouterOS groups related properties);
/// within a group words flow and wrap at [`WIDTH`]. A word too long for a whole line is cut
/// mid-token and continues at its value column, as the hardware sample in `a28f18e` shows.
pub(crate) fn record(
    index: usize,
    flags: &str,
    groups: &[Vec<(&str, String)>],
    style: OutputStyle,
) -> String {
    let width = style.width();
    let mut lines: Vec<String> = Vec::new();
    let mut line = format!("{index:>2} {flags:<1}");
    while line.len() < INDENT {
        line.push(' ');
    }
    let mut fresh = true; // nothing but indentation on `line` yet
    for group in groups {
        if !fresh && style.group_lines() {
            lines.push(std::mem::take(&mut line));
            line = " ".repeat(INDENT);
            fresh = true;
        }
        for (key, value) in group {
            let text = format!("{key}={value}");
            let value_col = key.len() + 1;
            // Values with spaces (grouped numbers, `.img file`, timestamps) wrap at the spaces.
            for (wi, word) in text.split(' ').enumerate() {
                let col_in_token = if wi == 0 { 0 } else { value_col };
                let sep = usize::from(!fresh);
                if line.len() + sep + word.len() <= width {
                    if !fresh {
                        line.push(' ');
                    }
                    line.push_str(word);
                    fresh = false;
                    continue;
                }
                if !fresh {
                    lines.push(std::mem::take(&mut line));
                    line = " ".repeat(INDENT);
                }
                if INDENT + word.len() <= width {
                    line.push_str(word);
                    fresh = false;
                    continue;
                }
                // Mid-token cut: fill this line, continue under the value.
                let cont_indent = INDENT + col_in_token.max(value_col);
                let mut rest: &str = word;
                let mut indent = INDENT;
                while indent + rest.len() > width {
                    let take = width - indent;
                    let cut = floor_char_boundary(rest, take);
                    line.push_str(&rest[..cut]);
                    lines.push(std::mem::take(&mut line));
                    rest = &rest[cut..];
                    indent = cont_indent.min(width - 10);
                    line = " ".repeat(indent);
                }
                line.push_str(rest);
                // The remainder stands alone on its line (as in the hardware sample), so the
                // next property never shares a line with the tail of a cut token.
                lines.push(std::mem::take(&mut line));
                line = " ".repeat(INDENT);
                fresh = true;
            }
        }
    }
    lines.push(line);
    lines.join("\r\n")
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i.max(1)
}

/// Records separated by blank lines, after an optional legend; every line ends in CRLF.
pub(crate) fn listing(legend: Option<&str>, records: &[String]) -> String {
    let mut out = String::new();
    if let Some(l) = legend {
        out.push_str(l);
        out.push_str("\r\n");
    }
    // RouterOS right-aligns the index in a column as wide as the largest index and shifts the
    // whole listing right to keep keys aligned.
    let width = records.len().saturating_sub(1).to_string().len().max(2);
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        // Records are rendered with index 0; renumber in print order.
        out.push_str(&renumber(r, i, width));
        out.push_str("\r\n");
    }
    out
}

/// Records are rendered as item 0 in a two-column index; the real number and the column width
/// are only known once the listing is built.
fn renumber(record: &str, index: usize, width: usize) -> String {
    let pad = " ".repeat(width - 2);
    let mut out = String::with_capacity(record.len() + 8 * pad.len());
    for (n, line) in record.split("\r\n").enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        if n == 0 {
            out.push_str(&format!(
                "{index:>width$}{}",
                line.get(2..).unwrap_or_default()
            ));
        } else if line.is_empty() {
            out.push_str(line);
        } else {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

pub(crate) fn disk_record(d: &SimDisk, style: OutputStyle) -> String {
    let mut nvme: Vec<(&str, String)> = vec![(
        "nvme-tcp-export",
        if d.nvme_export { "yes" } else { "no" }.to_string(),
    )];
    if d.nvme_export {
        if let Some(p) = d.nvme_port {
            nvme.push(("nvme-tcp-server-port", p.to_string()));
        }
        if let Some(n) = &d.nvme_nqn {
            nvme.push(("nvme-tcp-server-nqn", quoted(n)));
        }
        nvme.push(("nvme-tcp-server-allow-host-name", quoted(&d.allow_host)));
    }
    nvme.extend([
        ("iscsi-export", "no".to_string()),
        ("nfs-sharing", "no".to_string()),
        ("smb-sharing", "no".to_string()),
        ("media-sharing", "no".to_string()),
        ("media-interface", "none".to_string()),
        ("swap", "no".to_string()),
    ]);
    record(
        0,
        "",
        &[
            vec![
                ("type", "file".to_string()),
                ("slot", quoted(&d.slot)),
                ("slot-default", quoted("")),
                ("parent", quoted("")),
                ("fs", "-".to_string()),
            ],
            vec![("model", quoted(&d.file_path))],
            vec![
                ("size", style.count(d.size)),
                ("mount-filesystem", "yes".to_string()),
                ("mount-read-only", "no".to_string()),
                ("compress", "no".to_string()),
                ("sector-size", "512".to_string()),
                ("raid-master", "none".to_string()),
            ],
            nvme,
            vec![("file-path", d.file_path.clone())],
            vec![
                ("file-size", style.size(d.size)),
                ("file-offset", "0".to_string()),
            ],
        ],
        style,
    )
}

/// The pool is itself a `/disk` entry (mounted, hence flag `M`); the driver must filter it out
/// of volume listings and reads capacity from it.
pub(crate) fn pool_record(pool: &str, capacity: u64, used: u64, style: OutputStyle) -> String {
    let used = used.min(capacity);
    let pct = used.saturating_mul(100).checked_div(capacity).unwrap_or(0);
    record(
        0,
        "M",
        &[
            vec![
                ("type", "partition".to_string()),
                ("slot", quoted(pool)),
                ("slot-default", quoted("")),
                ("parent", quoted("raid1")),
                ("fs", "btrfs".to_string()),
            ],
            vec![
                ("mount-point", pool.to_string()),
                ("file-system", "btrfs".to_string()),
            ],
            vec![
                ("size", style.count(capacity)),
                ("free", style.count(capacity - used)),
                ("use", format!("{pct}%")),
            ],
        ],
        style,
    )
}

pub(crate) fn file_record(
    name: &str,
    size: Option<u64>,
    modified: SystemTime,
    style: OutputStyle,
) -> String {
    let mut props = vec![("name", name.to_string())];
    props.push(("type", file_type(name, size)));
    if let Some(s) = size {
        props.push(("size", style.size(s)));
    }
    props.push(("last-modified", timestamp(modified)));
    record(0, "", &[props], style)
}

/// `key: value` lines with keys right-aligned, as RouterOS prints `/system resource`.
pub(crate) fn system_resource(uptime: &str, free_hdd: u64, total_hdd: u64) -> String {
    let rows = [
        ("uptime", uptime.to_string()),
        ("version", "7.16 (stable)".to_string()),
        ("build-time", "2024-09-20 13:00:27".to_string()),
        ("factory-software", "7.15".to_string()),
        ("free-memory", human(14_763_950_080)),
        ("total-memory", human(17_179_869_184)),
        ("cpu", "ARM64".to_string()),
        ("cpu-count", "16".to_string()),
        ("cpu-frequency", "2000MHz".to_string()),
        ("cpu-load", "1%".to_string()),
        ("free-hdd-space", human(free_hdd)),
        ("total-hdd-space", human(total_hdd)),
        ("architecture-name", "arm64".to_string()),
        ("board-name", "RDS2216".to_string()),
        ("platform", "MikroTik".to_string()),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    rows.iter()
        .map(|(k, v)| format!("{k:>width$}: {v}\r\n"))
        .collect()
}

/// RouterOS uptime style: `1w2d3h4m5s`, zero parts omitted.
pub(crate) fn uptime(secs: u64) -> String {
    let parts = [
        (secs / 604_800, "w"),
        (secs % 604_800 / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let s: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if s.is_empty() { "0s".to_string() } else { s }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_units() {
        assert_eq!(grouped(53_687_091_200), "53 687 091 200");
        assert_eq!(grouped(512), "512");
        assert_eq!(grouped(1000), "1 000");
        assert_eq!(human(50 << 30), "50.0GiB");
        assert_eq!(human(1 << 30), "1024.0MiB");
        assert_eq!(human(512 << 10), "512.0KiB");
        assert_eq!(human(3 << 39), "1.5TiB");
    }

    #[test]
    fn timestamps_are_utc_civil() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_762_871_561);
        assert_eq!(timestamp(t), "2025-11-11 14:32:41");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00");
    }

    #[test]
    fn long_path_wraps_mid_token_within_80_columns() {
        let d = SimDisk {
            slot: "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890".into(),
            file_path: "/storage-pool/metal-csi/pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890.img"
                .into(),
            size: 10 << 30,
            nvme_export: true,
            nvme_port: Some(4420),
            nvme_nqn: Some(
                "nqn.2000-02.com.mikrotik:pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890".into(),
            ),
            allow_host: String::new(),
        };
        let text = disk_record(&d, OutputStyle::Terminal);
        assert!(text.split("\r\n").all(|l| l.len() <= WIDTH), "{text}");
        let fp = text
            .split("\r\n")
            .position(|l| l.trim_start().starts_with("file-path="))
            .unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        let joined = format!("{}{}", lines[fp].trim_start(), lines[fp + 1].trim_start());
        assert_eq!(joined, format!("file-path={}", d.file_path));
        assert!(!lines[fp].ends_with(".img"), "path must be cut mid-token");
        assert!(text.contains("size=10 737 418 240"));
        assert!(text.contains("file-size=10.0GiB"));
        assert!(!text.contains("status"));
    }

    #[test]
    fn narrow_and_one_line_styles() {
        let d = SimDisk {
            slot: "rds-csi-selftest-1764870000-abcdef-vol".into(),
            file_path: "/storage-pool/metal-csi/rds-csi-selftest/rds-csi-selftest-1764870000-abcdef-vol.img".into(),
            size: (1 << 30) + (64 << 20),
            nvme_export: true,
            nvme_port: Some(4420),
            nvme_nqn: Some("nqn.2000-02.com.mikrotik:rds-csi-selftest-1764870000-abcdef-vol".into()),
            allow_host: String::new(),
        };
        let narrow = disk_record(&d, OutputStyle::Narrow);
        assert!(narrow.split("\r\n").all(|l| l.len() <= 40), "{narrow}");
        let pool = pool_record("storage-pool", 1 << 40, 3 << 30, OutputStyle::Narrow);
        assert!(pool.split("\r\n").all(|l| l.len() <= 40), "{pool}");
        assert!(
            !pool.contains("free=1 099 508 "),
            "a grouped number wraps across lines: {pool}"
        );
        let one =
            OutputStyle::OneLine.finish(listing(None, &[disk_record(&d, OutputStyle::OneLine)]));
        assert_eq!(one.lines().count(), 1, "{one}");
        assert!(!one.contains('\r'));
        assert!(
            one.contains(" size=1140850688 ") && one.contains(" file-size=1140850688 "),
            "{one}"
        );
    }

    #[test]
    fn uptime_style() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(694_861), "1w1d1h1m1s");
        assert_eq!(uptime(3600), "1h");
    }
}
