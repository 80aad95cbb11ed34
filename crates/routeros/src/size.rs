//! Sizes as RouterOS prints and accepts them.

use crate::error::ParseError;

/// Parses `53 687 091 200`, `10737418240`, `50.0GiB`, `1024.0MiB`, `10G`, `512`.
/// Binary units (K/KiB/KB = 1024). Human forms with a fraction are approximate by nature;
/// callers that need exact bytes use the raw `size=` field.
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let _ = s;
    unimplemented!("routeros skeleton")
}

/// Formats bytes for `file-size=`: the largest binary unit that divides exactly
/// (1.5 GiB → `1536M`), else plain bytes. Never rounds.
pub fn format_size(bytes: u64) -> String {
    let _ = bytes;
    unimplemented!("routeros skeleton")
}
