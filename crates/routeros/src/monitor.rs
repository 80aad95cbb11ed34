//! `key: value` outputs (`/system resource print`, `monitor … once`).

use crate::error::ParseError;
use crate::size::parse_size;

/// Strips one level of `"…"` quoting with `\"`/`\\` escapes; anything else is kept as is.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `key: value` lines (values may be quoted; keys right-aligned with spaces).
///
/// The key is everything before the first `:` (so `creation-time: jan/01/2025 00:00:00`
/// keeps its time); lines without a colon or with a key that is not a plain name
/// (letters, digits, `-`, `_`, inner spaces) are skipped.
pub fn parse_key_values(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.trim();
            let plain = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' '));
            plain.then(|| (key.to_owned(), unquote(value.trim())))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemResource {
    pub version: Option<String>,
    pub board_name: Option<String>,
    pub uptime: Option<String>,
    pub free_memory_bytes: Option<u64>,
    pub total_memory_bytes: Option<u64>,
    pub free_hdd_bytes: Option<u64>,
}

/// Reads the fields the driver reports for health; other keys are ignored. Output with no
/// `key: value` line at all is an error, so an error message is not read as "all unknown".
pub fn parse_system_resource(output: &str) -> Result<SystemResource, ParseError> {
    let pairs = parse_key_values(output);
    if pairs.is_empty() {
        return Err(ParseError(
            "system resource output has no `key: value` lines".to_owned(),
        ));
    }
    if let Some((_, why)) = pairs.iter().find(|(k, _)| k == "failure" || k == "error") {
        return Err(ParseError(format!("system resource query failed: {why}")));
    }
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let size = |k: &str| -> Result<Option<u64>, ParseError> {
        get(k)
            .map(|v| {
                parse_size(&v).map_err(|e| ParseError(format!("system resource {k}: {}", e.0)))
            })
            .transpose()
    };
    Ok(SystemResource {
        version: get("version"),
        board_name: get("board-name"),
        uptime: get("uptime"),
        free_memory_bytes: size("free-memory")?,
        total_memory_bytes: size("total-memory")?,
        free_hdd_bytes: size("free-hdd-space")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCE: &str = "                   uptime: 15d2h45m30s\r\n                  version: 7.16 (stable)\r\n               build-time: 2024-09-20 13:00:27\r\n              free-memory: 12.5GiB\r\n             total-memory: 16.0GiB\r\n           free-hdd-space: 7.2TiB\r\n               board-name: RDS2216\r\n";

    #[test]
    fn reads_right_aligned_keys() {
        let kv = parse_key_values(RESOURCE);
        assert_eq!(kv[0], ("uptime".to_owned(), "15d2h45m30s".to_owned()));
        assert_eq!(
            kv[2],
            ("build-time".to_owned(), "2024-09-20 13:00:27".to_owned())
        );
    }

    #[test]
    fn unquotes_values_and_skips_non_pairs() {
        let kv = parse_key_values("board-name: \"ROSE \\\"x\\\"\"\nnot a pair\n: empty key\n");
        assert_eq!(kv, [("board-name".to_owned(), "ROSE \"x\"".to_owned())]);
    }

    #[test]
    fn system_resource_fields() {
        let r = parse_system_resource(RESOURCE).unwrap();
        assert_eq!(r.version.as_deref(), Some("7.16 (stable)"));
        assert_eq!(r.board_name.as_deref(), Some("RDS2216"));
        assert_eq!(r.uptime.as_deref(), Some("15d2h45m30s"));
        assert_eq!(r.free_memory_bytes, Some((25u64 << 30) / 2));
        assert_eq!(r.total_memory_bytes, Some(16 << 30));
        // 7.2 TiB rounded down.
        assert_eq!(r.free_hdd_bytes, Some(7_916_483_719_987));
    }

    #[test]
    fn system_resource_errors() {
        assert!(parse_system_resource("").is_err());
        assert!(parse_system_resource("free-memory: lots").is_err());
        assert!(parse_system_resource("failure: no such item").is_err());
        let r = parse_system_resource("version: \"7.16 (stable)\"").unwrap();
        assert_eq!(r.version.as_deref(), Some("7.16 (stable)"));
        assert_eq!(r.free_hdd_bytes, None);
    }
}
