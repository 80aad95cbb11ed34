//! Sizes as RouterOS prints and accepts them.

use crate::error::ParseError;

/// Unit suffixes, longest first so `KiB` is not read as `B` after `Ki`. All binary: RouterOS
/// prints `GiB` and accepts `G`, and the original driver's `GB` fixtures meant GiB too.
const UNITS: &[(&str, u32)] = &[
    ("bytes", 0),
    ("KiB", 10),
    ("MiB", 20),
    ("GiB", 30),
    ("TiB", 40),
    ("KB", 10),
    ("MB", 20),
    ("GB", 30),
    ("TB", 40),
    ("K", 10),
    ("M", 20),
    ("G", 30),
    ("T", 40),
    ("B", 0),
];

/// More fraction digits than this cannot change a floor of a TiB-scaled value; refusing
/// them also keeps the arithmetic inside `u128`.
const MAX_FRACTION_DIGITS: usize = 18;

fn bad(s: &str, why: &str) -> ParseError {
    let shown: String = s.chars().take(64).collect();
    ParseError(format!("size {shown:?}: {why}"))
}

/// Digits, optionally space-grouped in threes (`53 687 091 200`).
fn parse_integer(s: &str, whole: &str) -> Result<u64, ParseError> {
    if s.is_empty() {
        return Err(bad(whole, "no digits"));
    }
    let mut groups = s.split(' ');
    let first = groups.next().unwrap_or_default();
    let grouped = s.contains(' ');
    if first.is_empty() || (grouped && first.len() > 3) {
        return Err(bad(
            whole,
            "digit groups must be 1-3 digits then groups of 3",
        ));
    }
    let mut value: u64 = 0;
    let mut push_digits = |digits: &str| -> Result<(), ParseError> {
        for b in digits.bytes() {
            if !b.is_ascii_digit() {
                return Err(bad(whole, "expected only digits"));
            }
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or_else(|| bad(whole, "too large for 64 bits"))?;
        }
        Ok(())
    };
    push_digits(first)?;
    for group in groups {
        if group.len() != 3 {
            return Err(bad(
                whole,
                "digit groups after the first must have 3 digits",
            ));
        }
        push_digits(group)?;
    }
    Ok(value)
}

/// Parses `53 687 091 200`, `10737418240`, `50.0GiB`, `1024.0MiB`, `10G`, `512`.
/// Binary units (K/KiB/KB = 1024). Human forms with a fraction are approximate by nature
/// (RouterOS rounds them for display); the fraction is applied and the result rounded
/// down. Callers that need exact bytes use the raw `size=` field.
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(bad(s, "empty"));
    }
    let (number, shift) = UNITS
        .iter()
        .find_map(|(suffix, shift)| trimmed.strip_suffix(suffix).map(|n| (n.trim_end(), *shift)))
        .unwrap_or((trimmed, 0));
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    let int = parse_integer(int_part, s)?;
    let mult: u128 = 1u128 << shift;
    let mut total = u128::from(int) * mult;
    if let Some(frac) = frac_part {
        if shift == 0 {
            return Err(bad(s, "a byte count cannot have a fraction"));
        }
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(s, "fraction must be digits"));
        }
        if frac.len() > MAX_FRACTION_DIGITS {
            return Err(bad(s, "too many fraction digits"));
        }
        let digits: u128 = frac
            .bytes()
            .fold(0, |acc, b| acc * 10 + u128::from(b - b'0'));
        let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(0));
        total += digits * mult / scale;
    }
    u64::try_from(total).map_err(|_| bad(s, "too large for 64 bits"))
}

/// Formats bytes for `file-size=`: the largest binary unit that divides exactly
/// (1.5 GiB → `1536M`), else plain bytes. Never rounds, so a volume is never created
/// smaller (or larger) than the capacity Kubernetes asked for.
pub fn format_size(bytes: u64) -> String {
    const STEPS: [(char, u32); 4] = [('T', 40), ('G', 30), ('M', 20), ('K', 10)];
    if bytes != 0 {
        for (unit, shift) in STEPS {
            if bytes.trailing_zeros() >= shift {
                return format!("{}{unit}", bytes >> shift);
            }
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn parses_raw_and_grouped_integers() {
        assert_eq!(parse_size("53 687 091 200").unwrap(), 53_687_091_200);
        assert_eq!(parse_size("10737418240").unwrap(), 10_737_418_240);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(
            parse_size(" 7 681 574 174 720 ").unwrap(),
            7_681_574_174_720
        );
    }

    #[test]
    fn parses_binary_units_with_fractions() {
        assert_eq!(parse_size("50.0GiB").unwrap(), 50 * GIB);
        assert_eq!(parse_size("1024.0MiB").unwrap(), GIB);
        assert_eq!(parse_size("10.5KiB").unwrap(), 10_752);
        assert_eq!(parse_size("10G").unwrap(), 10 * GIB);
        assert_eq!(parse_size("50GB").unwrap(), 50 * GIB);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(parse_size("3KB").unwrap(), 3072);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("5.5TiB").unwrap(), (11u64 << 40) / 2);
        assert_eq!(parse_size("100 bytes").unwrap(), 100);
        assert_eq!(parse_size("100B").unwrap(), 100);
        assert_eq!(parse_size("10 GiB").unwrap(), 10 * GIB);
    }

    #[test]
    fn approximate_fractions_round_down() {
        // 7.23 TiB = 7 949 469 068 820.48 bytes.
        assert_eq!(parse_size("7.23TiB").unwrap(), 7_949_469_068_820);
    }

    #[test]
    fn rejects_malformed_sizes() {
        for bad in [
            "", "abc", "10X", "1.5", "-1", "+1", "1 0", "1234 567", "12 3456", "1..0G", "1.G",
            ".5G", "G", "1.5e3G", "１０G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("16777216T").is_err());
        assert_eq!(parse_size("16777215T").unwrap(), 16_777_215u64 << 40);
        assert!(parse_size("99999999999999999999999G").is_err());
    }

    #[test]
    fn format_picks_the_largest_exact_unit() {
        assert_eq!(format_size(GIB + GIB / 2), "1536M");
        assert_eq!(format_size(1 << 40), "1T");
        assert_eq!(format_size(GIB + 1), "1073741825");
        assert_eq!(format_size(10 * GIB), "10G");
        assert_eq!(format_size(1024), "1K");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(u64::MAX), "18446744073709551615");
    }
}
