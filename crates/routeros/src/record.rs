//! Generic `print detail` record parsing: Flags header, index lines, wrapped continuation
//! lines (including mid-token wraps), quoted and unquoted values, CRLF.
//!
//! # Wrap rule
//!
//! RouterOS hard-wraps long entries onto indented continuation lines. A continuation line
//! whose first token is `key=` simply carries more fields. Any other continuation line
//! extends the value of the last field, and the question is whether the wrap ate a space:
//!
//! * If the previous line ended in whitespace, the wrap was at a word boundary: join with
//!   one space.
//! * Otherwise join with a space only when the two halves have the shape of one of the
//!   space-containing values RouterOS prints unquoted:
//!   - space-grouped digits: the value so far is `\d{1,3}( \d{3})*` and the continuation
//!     starts with a group of exactly three digits (`size=53 687` + `091 200`);
//!   - date then time: the value so far is `YYYY-MM-DD` or `mon/dd/yyyy` and the
//!     continuation starts with a `HH:MM…` time (`last-modified=2025-11-11` + `14:32:41`);
//!   - file types: the key is `type` and the continuation starts with a letter
//!     (`type=.img` + `file size=…`).
//! * Everything else was cut mid-token and is joined with no space
//!   (`file-path=…/pvc-xxx` + `-yyy.img`). Paths, NQNs and slots never contain spaces, so
//!   this is the safe default: a wrongly inserted space corrupts a path.
//!
//! A wrap inside a quoted value is joined with no space (spaces kept at the end of the line
//! stay part of the value).
//!
//! A line starts a new record only when it begins left of where the current record's index
//! digits end (RouterOS right-aligns indexes, so the next index ends in the same column), or,
//! for a record printed without an index, when it is not indented past the first key.
//! Continuation lines are indented to the key column, so a wrapped `091 mount-filesystem=yes`
//! is not mistaken for item 91, and a wide index (`100   type=…`) whose continuation lines sit
//! left of its first key still keeps them.

/// One printed item: optional index and flag letters, then ordered `key=value` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub index: Option<u32>,
    pub flags: String,
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// First value for `key` (exact key match; `size` never matches `file-size`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits output into records. Empty output or a Flags legend alone yields no records.
///
/// Lines that are neither records, legend nor blank (an error message, a `key: value`
/// shape) are ignored here; the typed parsers use [`parse_records_checked`] to refuse them.
pub fn parse_records(output: &str) -> Vec<Record> {
    Parser::default().run(output).0
}

/// Like [`parse_records`], but also returns the lines that were not understood, so typed
/// parsers can refuse output that is not `print detail` (an error text would otherwise
/// read as "no items").
pub fn parse_records_checked(output: &str) -> (Vec<Record>, Vec<String>) {
    Parser::default().run(output)
}

/// Like [`parse_records_checked`], but hands each record to `on_record` as soon as it is
/// complete instead of collecting them, and returns the lines not understood. A caller that
/// turns records into something smaller (a listing of thousands of disks) then never holds
/// every raw record at once.
pub fn for_each_record(output: &str, mut on_record: impl FnMut(Record)) -> Vec<String> {
    Parser::default().run_each(output, &mut on_record)
}

/// How the last field's value may still be extended by the next line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Open {
    /// Nothing to extend (no field yet, or the record just started).
    #[default]
    None,
    /// Unquoted value; `ws` says whether its line ended in whitespace.
    Unquoted { ws: bool },
    /// Inside a quoted value that the line break interrupted; trailing spaces on the line
    /// were already kept as part of the value.
    Quoted,
}

#[derive(Default)]
struct Parser {
    records: Vec<Record>,
    stray: Vec<String>,
    current: Option<Current>,
    in_legend: bool,
}

struct Current {
    record: Record,
    /// Column of the record's first key; continuation lines are indented at least this far.
    key_column: usize,
    /// Column just past the index digits, for indexed records.
    index_end: Option<usize>,
    open: Open,
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

/// Length of a `key=` token at the start of `s` (including `=`), if one is there.
fn key_len(s: &[u8]) -> Option<usize> {
    let first = *s.first()?;
    if !first.is_ascii_lowercase() {
        return None;
    }
    let mut i = 1;
    while i < s.len() && (s[i].is_ascii_lowercase() || s[i].is_ascii_digit() || s[i] == b'-') {
        i += 1;
    }
    (i < s.len() && s[i] == b'=').then_some(i + 1)
}

/// Byte offset of the next ` key=` boundary at or after `from` (a key preceded by
/// whitespace), or the end of `s`.
fn next_key_boundary(s: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < s.len() {
        if i > 0 && is_ws(s[i - 1]) && key_len(&s[i..]).is_some() {
            return i;
        }
        i += 1;
    }
    s.len()
}

fn is_legend_line(trimmed: &str) -> bool {
    // `X - disabled, I - invalid; D - dynamic`: items of a short flag, " - ", a description.
    !trimmed.contains('=')
        && trimmed
            .split([',', ';'])
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .all(|item| {
                item.split_once(" - ").is_some_and(|(flag, desc)| {
                    !flag.is_empty()
                        && flag.len() <= 2
                        && !flag.contains(' ')
                        && !desc.trim().is_empty()
                })
            })
        && !trimmed.is_empty()
}

/// Flag tokens after an index: letters or `*`, short, not a `key=`.
fn is_flag_token(tok: &str) -> bool {
    !tok.is_empty() && tok.len() <= 4 && tok.bytes().all(|b| b.is_ascii_alphabetic() || b == b'*')
}

/// `\d{1,3}( \d{3})*`
fn is_grouped_digits(v: &str) -> bool {
    let mut groups = v.split(' ');
    let first_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    first_ok && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    let iso = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    let old = b.len() == 11
        && b[..3].iter().all(u8::is_ascii_lowercase)
        && b[3] == b'/'
        && b[4..6].iter().all(u8::is_ascii_digit)
        && b[6] == b'/'
        && b[7..].iter().all(u8::is_ascii_digit);
    iso || old
}

fn starts_with_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 4 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b':'
}

/// Whether a wrapped unquoted value continues after a swallowed space (see module docs).
fn joins_with_space(key: &str, value: &str, continuation: &str, line_ended_ws: bool) -> bool {
    if value.is_empty() {
        return false;
    }
    if line_ended_ws {
        return true;
    }
    let first_token = continuation.split(' ').next().unwrap_or_default();
    if is_grouped_digits(value)
        && first_token.len() == 3
        && first_token.bytes().all(|b| b.is_ascii_digit())
    {
        return true;
    }
    if is_date(value) && starts_with_time(first_token) {
        return true;
    }
    key == "type"
        && first_token
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
}

/// `  0 X  key=…` → (index, flags, offset of the content after them).
fn index_line(line: &str, indent: usize) -> Option<(u32, String, usize)> {
    let b = line.as_bytes();
    let mut i = indent;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == indent || (i < b.len() && !is_ws(b[i])) {
        return None;
    }
    let index: u32 = line[indent..i].parse().ok()?;
    let mut flags = String::new();
    loop {
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        if i >= b.len() || key_len(&b[i..]).is_some() || b[i..].starts_with(b";;;") {
            return Some((index, flags, i));
        }
        let end = b[i..]
            .iter()
            .position(|c| is_ws(*c))
            .map_or(b.len(), |p| i + p);
        let tok = &line[i..end];
        if !is_flag_token(tok) {
            return None;
        }
        flags.push_str(tok);
        i = end;
    }
}

/// Reads a quoted value starting just after the opening quote. Returns the position after
/// the closing quote, or `None` when the line ended first.
fn read_quoted(s: &[u8], mut i: usize, out: &mut Vec<u8>) -> Option<usize> {
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' if i + 1 < s.len() => {
                let next = s[i + 1];
                let hex = |c: u8| (c as char).to_digit(16);
                match next {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'_' => out.push(b' '),
                    _ => {
                        // RouterOS writes bytes as `\AB`; keep anything else literally.
                        if let (Some(h), Some(l)) = (hex(next), s.get(i + 2).and_then(|c| hex(*c)))
                        {
                            // h, l < 16, so the byte fits.
                            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                            i += 3;
                            continue;
                        }
                        out.push(next);
                    }
                }
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

impl Parser {
    fn run(mut self, output: &str) -> (Vec<Record>, Vec<String>) {
        for raw in output.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            self.line(line);
        }
        self.finish_record();
        (self.records, self.stray)
    }

    fn run_each(mut self, output: &str, on_record: &mut dyn FnMut(Record)) -> Vec<String> {
        for raw in output.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            self.line(line);
            self.records.drain(..).for_each(&mut *on_record);
        }
        self.finish_record();
        self.records.drain(..).for_each(&mut *on_record);
        self.stray
    }

    fn finish_record(&mut self) {
        if let Some(cur) = self.current.take()
            && (cur.record.index.is_some() || !cur.record.fields.is_empty())
        {
            self.records.push(cur.record);
        }
    }

    fn line(&mut self, line: &str) {
        let trimmed = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if trimmed.is_empty() {
            self.in_legend = false;
            self.finish_record();
            return;
        }
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();

        if self.current.is_none() || indent == 0 {
            if trimmed.starts_with("Flags:") {
                self.finish_record();
                self.in_legend = true;
                return;
            }
            if trimmed.starts_with("Columns:") {
                self.finish_record();
                return;
            }
        }
        if self.in_legend {
            if self.current.is_none() && is_legend_line(trimmed) {
                return;
            }
            self.in_legend = false;
        }

        let starts_new = self.current.as_ref().is_none_or(|cur| match cur.index_end {
            Some(end) => indent < end,
            None => indent <= cur.key_column,
        });
        if !starts_new {
            self.content(line, indent);
            return;
        }
        self.finish_record();
        if let Some((index, flags, rest_at)) = index_line(line, indent) {
            let rest = &line[rest_at..];
            let key_column = rest_at + (rest.len() - rest.trim_start().len());
            let digits = line.as_bytes()[indent..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            self.current = Some(Current {
                record: Record {
                    index: Some(index),
                    flags,
                    fields: Vec::new(),
                },
                key_column,
                index_end: Some(indent + digits),
                open: Open::None,
            });
            self.content(line, rest_at);
            return;
        }
        let body = &line.as_bytes()[indent..];
        if key_len(body).is_none() && !body.starts_with(b";;;") {
            self.stray.push(trimmed.to_owned());
            return;
        }
        self.current = Some(Current {
            record: Record::default(),
            key_column: indent,
            index_end: None,
            open: Open::None,
        });
        self.content(line, indent);
    }

    /// Parses the fields on one line starting at byte `start`.
    fn content(&mut self, line: &str, start: usize) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let s = line.as_bytes();
        let ends_ws = s.last().is_some_and(|b| is_ws(*b));
        let mut i = start;
        while i < s.len() && is_ws(s[i]) {
            i += 1;
        }

        // Continuation of the previous value.
        match cur.open {
            Open::Quoted => {
                let mut buf = Vec::new();
                let closed = read_quoted(s, i, &mut buf);
                if let Some((_, v)) = cur.record.fields.last_mut() {
                    v.push_str(&String::from_utf8_lossy(&buf));
                }
                match closed {
                    Some(next) => {
                        cur.open = Open::None;
                        i = next;
                    }
                    None => {
                        cur.open = Open::Quoted;
                        return;
                    }
                }
            }
            Open::Unquoted { ws } if i < s.len() && key_len(&s[i..]).is_none() => {
                let is_empty = cur.record.fields.last().is_some_and(|(_, v)| v.is_empty());
                if is_empty && s[i] == b'"' {
                    let mut buf = Vec::new();
                    let closed = read_quoted(s, i + 1, &mut buf);
                    if let Some((_, v)) = cur.record.fields.last_mut() {
                        v.push_str(&String::from_utf8_lossy(&buf));
                    }
                    match closed {
                        Some(next) => {
                            cur.open = Open::None;
                            i = next;
                        }
                        None => {
                            cur.open = Open::Quoted;
                            return;
                        }
                    }
                } else {
                    let end = next_key_boundary(s, i);
                    let piece = line[i..end].trim_end();
                    if let Some((k, v)) = cur.record.fields.last_mut() {
                        if joins_with_space(k, v, piece, ws) {
                            v.push(' ');
                        }
                        v.push_str(piece);
                    }
                    cur.open = Open::Unquoted { ws: ends_ws };
                    i = end;
                }
            }
            _ => {}
        }

        while i < s.len() {
            while i < s.len() && is_ws(s[i]) {
                i += 1;
            }
            if i >= s.len() {
                break;
            }
            if s[i..].starts_with(b";;;") {
                // `;;; comment` runs to the end of the line.
                let text = line[i + 3..].trim().to_owned();
                cur.record.fields.push(("comment".to_owned(), text));
                cur.open = Open::None;
                return;
            }
            let Some(klen) = key_len(&s[i..]) else {
                // Junk where a key should be (e.g. after a closing quote): skip to the next key.
                i = next_key_boundary(s, i + 1);
                cur.open = Open::None;
                continue;
            };
            let key = line[i..i + klen - 1].to_owned();
            i += klen;
            if i < s.len() && s[i] == b'"' {
                let mut buf = Vec::new();
                let closed = read_quoted(s, i + 1, &mut buf);
                cur.record
                    .fields
                    .push((key, String::from_utf8_lossy(&buf).into_owned()));
                match closed {
                    Some(next) => {
                        cur.open = Open::None;
                        i = next;
                    }
                    None => {
                        cur.open = Open::Quoted;
                        return;
                    }
                }
            } else {
                let end = next_key_boundary(s, i);
                let value = line[i..end].trim_matches([' ', '\t', '\r']).to_owned();
                cur.record.fields.push((key, value));
                cur.open = Open::Unquoted { ws: ends_ws };
                i = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(output: &str) -> Record {
        let records = parse_records(output);
        assert_eq!(records.len(), 1, "{records:?}");
        records.into_iter().next().unwrap()
    }

    #[test]
    fn empty_and_legend_only_yield_nothing() {
        assert!(parse_records("").is_empty());
        assert!(parse_records("\r\n\r\n").is_empty());
        assert!(parse_records("Flags: X - disabled, I - inactive\r\n").is_empty());
        assert!(
            parse_records(
                "Flags: X - disabled; B - blocked, I - invalid; \r\nR - running; t - tcp\r\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn legend_is_dropped_but_data_mentioning_disabled_is_kept() {
        let out = "Flags: X - disabled\ntype=file slot=disabled comment=disabled\n";
        let r = one(out);
        assert_eq!(r.get("slot"), Some("disabled"));
        assert_eq!(r.get("comment"), Some("disabled"));
    }

    #[test]
    fn index_and_flags_are_read() {
        let out = " 0   slot=a\n 1 X slot=b\n 2 XB slot=c\n";
        let rs = parse_records(out);
        assert_eq!(rs.len(), 3);
        assert_eq!(rs[0].index, Some(0));
        assert_eq!(rs[0].flags, "");
        assert_eq!(rs[1].index, Some(1));
        assert_eq!(rs[1].flags, "X");
        assert_eq!(rs[2].flags, "XB");
        assert_eq!(rs[2].get("slot"), Some("c"));
    }

    #[test]
    fn index_line_alone_then_indented_fields() {
        let out = " 0 X\n     slot=a type=file\n 1\n     slot=b\n";
        let rs = parse_records(out);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].flags, "X");
        assert_eq!(rs[0].get("type"), Some("file"));
        assert_eq!(rs[1].get("slot"), Some("b"));
    }

    #[test]
    fn quoted_values_unescape() {
        let r = one(r#"slot="a\"b" model="c\\d" empty="" parent="" x=1"#);
        assert_eq!(r.get("slot"), Some("a\"b"));
        assert_eq!(r.get("model"), Some("c\\d"));
        assert_eq!(r.get("empty"), Some(""));
        assert_eq!(r.get("x"), Some("1"));
    }

    #[test]
    fn unquoted_values_run_to_the_next_key() {
        let r = one("type=.img file size=53 687 091 200 last-modified=2025-11-12 00:36:13 fs=-");
        assert_eq!(r.get("type"), Some(".img file"));
        assert_eq!(r.get("size"), Some("53 687 091 200"));
        assert_eq!(r.get("last-modified"), Some("2025-11-12 00:36:13"));
        assert_eq!(r.get("fs"), Some("-"));
    }

    #[test]
    fn empty_unquoted_value_before_next_key() {
        let r = one("parent= fs=-");
        assert_eq!(r.get("parent"), Some(""));
        assert_eq!(r.get("fs"), Some("-"));
    }

    #[test]
    fn get_matches_whole_keys() {
        let r = one("file-size=50.0GiB size=1");
        assert_eq!(r.get("size"), Some("1"));
        assert_eq!(r.get("file-size"), Some("50.0GiB"));
    }

    #[test]
    fn mid_token_wrap_joins_without_space() {
        let r = one("  file-path=/storage-pool/metal-csi/pvc-xxx\r\n            -yyy.img\r\n");
        assert_eq!(
            r.get("file-path"),
            Some("/storage-pool/metal-csi/pvc-xxx-yyy.img")
        );
        let r = one("file-path=/storage-pool/metal-csi/pvc-x\n    xx-yyy.img nvme-tcp-export=yes");
        assert_eq!(
            r.get("file-path"),
            Some("/storage-pool/metal-csi/pvc-xxx-yyy.img")
        );
        assert_eq!(r.get("nvme-tcp-export"), Some("yes"));
    }

    #[test]
    fn grouped_digits_wrap_joins_with_space() {
        let r = one("type=file size=53 687\n     091 200 mount-filesystem=yes\n");
        assert_eq!(r.get("size"), Some("53 687 091 200"));
        assert_eq!(r.get("mount-filesystem"), Some("yes"));
        // Cut inside a digit group: no space.
        let r = one("size=53 687 09\n     1 200 x=1\n");
        assert_eq!(r.get("size"), Some("53 687 091 200"));
    }

    #[test]
    fn wrapped_digit_group_is_not_an_index_line() {
        let r = one(" 0  type=file size=53 687\n     091 mount-filesystem=yes\n");
        assert_eq!(r.get("size"), Some("53 687 091"));
        assert_eq!(r.get("mount-filesystem"), Some("yes"));
    }

    #[test]
    fn type_and_timestamp_wraps_join_with_space() {
        let r = one(
            "name=a.img type=.img\n          file size=10.0GiB last-modified=2025-11-11\n          14:32:41",
        );
        assert_eq!(r.get("type"), Some(".img file"));
        assert_eq!(r.get("size"), Some("10.0GiB"));
        assert_eq!(r.get("last-modified"), Some("2025-11-11 14:32:41"));
        let r = one("creation-time=nov/15/2025\n   14:32:41");
        assert_eq!(r.get("creation-time"), Some("nov/15/2025 14:32:41"));
    }

    #[test]
    fn trailing_whitespace_marks_a_word_wrap() {
        let r = one("comment=hello \n    world x=1");
        assert_eq!(r.get("comment"), Some("hello world"));
    }

    #[test]
    fn wrap_inside_quotes_and_before_quote() {
        let r = one("nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc\n     -1\" slot=a");
        assert_eq!(
            r.get("nvme-tcp-server-nqn"),
            Some("nqn.2000-02.com.mikrotik:pvc-1")
        );
        assert_eq!(r.get("slot"), Some("a"));
        let r = one("slot=\n     \"abc\" type=file");
        assert_eq!(r.get("slot"), Some("abc"));
        assert_eq!(r.get("type"), Some("file"));
    }

    #[test]
    fn records_split_on_blank_lines_and_index_lines() {
        let out = " 0  slot=a\n     type=file\n\n 1  slot=b\n 2  slot=c\n";
        let slots: Vec<_> = parse_records(out)
            .iter()
            .map(|r| r.get("slot").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(slots, ["a", "b", "c"]);
        let out = "slot=a type=file\n\nslot=b type=file\n";
        assert_eq!(parse_records(out).len(), 2);
    }

    #[test]
    fn comment_lines_become_a_comment_field() {
        let r = one(" 0 X ;;; made by hand\n      slot=a\n");
        assert_eq!(r.get("comment"), Some("made by hand"));
        assert_eq!(r.get("slot"), Some("a"));
        assert_eq!(r.flags, "X");
    }

    #[test]
    fn stray_text_is_reported_not_parsed() {
        let (rs, stray) = parse_records_checked("failure: no such item\n");
        assert!(rs.is_empty());
        assert_eq!(stray, ["failure: no such item"]);
        let (rs, stray) = parse_records_checked("Flags: X - disabled\n");
        assert!(rs.is_empty());
        assert!(stray.is_empty());
    }

    #[test]
    fn hex_escapes_decode() {
        let r = one(r#"comment="caf\C3\A9""#);
        assert_eq!(r.get("comment"), Some("café"));
    }

    /// Found by the 1,000-volume benchmark: a three-digit index pushes the first key right of
    /// the continuation lines' column; the record must keep them.
    #[test]
    fn wide_index_keeps_continuation_lines_left_of_its_first_key() {
        let out = " 99   type=file slot=\"a\"\r\n     parent=\"\" fs=-\r\n\r\n100   type=file slot=\"b\"\r\n     parent=\"\" size=1 073 741 824\r\n     091 mount-filesystem=yes\r\n101   type=file slot=\"c\"\r\n";
        let recs = parse_records(out);
        let slots: Vec<_> = recs.iter().map(|r| r.get("slot").unwrap_or("")).collect();
        assert_eq!(slots, ["a", "b", "c"]);
        assert_eq!(recs[1].index, Some(100));
        assert_eq!(recs[1].get("parent"), Some(""));
        assert_eq!(recs[1].get("size"), Some("1 073 741 824 091"));
    }
}
