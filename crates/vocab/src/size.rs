//! Capacity-range arithmetic: how many bytes to allocate for a request.
//!
//! Sizes are rounded *up* (to whole MiB when the limit allows, else to 4 KiB) so the NVMe namespace
//! built from the backing file is never smaller than asked for, and never rounded down.

use csi::v1::CapacityRange;

use crate::error::{DriverError, Result};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// Smaller volumes are raised to this: below it the filesystem metadata dominates.
pub const MIN_VOLUME: u64 = GIB;
/// The RDS file-disk ceiling the earlier driver enforced (16 TiB).
pub const MAX_VOLUME: u64 = 16 << 40;
const BLOCK: u64 = 4096;

fn round_up(n: u64, to: u64) -> Option<u64> {
    n.checked_add(to - 1).map(|v| v / to * to)
}

/// Bytes to allocate for `range` (absent or zero means the minimum).
pub fn allocation(range: Option<&CapacityRange>) -> Result<u64> {
    let (required, limit) = range
        .map(|r| (r.required_bytes, r.limit_bytes))
        .unwrap_or((0, 0));
    if required < 0 || limit < 0 {
        return Err(DriverError::InvalidArgument(format!(
            "capacity_range must not be negative (required_bytes={required}, limit_bytes={limit})"
        )));
    }
    let (required, limit) = (required as u64, limit as u64);
    if limit > 0 && required > limit {
        return Err(DriverError::OutOfRange(format!(
            "required_bytes {required} exceeds limit_bytes {limit}"
        )));
    }
    if limit > 0 && limit < MIN_VOLUME {
        return Err(DriverError::OutOfRange(format!(
            "limit_bytes {limit} is below the minimum volume size of {MIN_VOLUME} bytes (1 GiB)"
        )));
    }
    let want = required.max(MIN_VOLUME);
    let mut size = round_up(want, MIB).unwrap_or(u64::MAX);
    if limit > 0 && size > limit {
        size = round_up(want, BLOCK).unwrap_or(u64::MAX);
    }
    if limit > 0 && size > limit {
        return Err(DriverError::OutOfRange(format!(
            "no size between required_bytes {required} and limit_bytes {limit} is a whole number of 4 KiB blocks"
        )));
    }
    if size > MAX_VOLUME {
        return Err(DriverError::OutOfRange(format!(
            "requested {required} bytes exceeds the maximum volume size of {MAX_VOLUME} bytes (16 TiB)"
        )));
    }
    Ok(size)
}

/// Whether an existing volume of `existing` bytes satisfies a request that would allocate
/// `wanted` bytes: exactly that size, or within `[required, limit]` when a limit was given.
pub fn compatible(existing: u64, wanted: u64, range: Option<&CapacityRange>) -> bool {
    let limit = range.map(|r| r.limit_bytes).unwrap_or(0);
    let required = range.map(|r| r.required_bytes).unwrap_or(0).max(0) as u64;
    if limit > 0 {
        existing >= required.max(MIN_VOLUME) && existing <= limit as u64
    } else {
        existing == wanted
    }
}

/// How far the true size of a disk can be from what RouterOS printed as `50.0GiB`: half a unit
/// of the last printed digit. `None` for a raw byte count (exact) or an unreadable value.
pub fn display_tolerance(printed: &str) -> Option<u64> {
    let unit_at = printed.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = printed.split_at(unit_at);
    let unit: u64 = match unit {
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
    let step = unit / 10u64.checked_pow(u32::try_from(decimals).ok()?)?;
    Some(step / 2 + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn display_tolerance_is_half_the_last_digit() {
        assert_eq!(display_tolerance("50.0GiB"), Some((GIB / 10) / 2 + 1));
        assert_eq!(display_tolerance("1024.0MiB"), Some((MIB / 10) / 2 + 1));
        assert_eq!(display_tolerance("2GiB"), Some(GIB / 2 + 1));
        assert_eq!(display_tolerance("10737418240"), None);
        assert_eq!(display_tolerance("5.0XB"), None);
    }

    use super::*;

    fn r(required: i64, limit: i64) -> Option<CapacityRange> {
        Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        })
    }

    #[test]
    fn floor_and_rounding_up() {
        assert_eq!(allocation(None).unwrap(), GIB);
        assert_eq!(allocation(r(1, 0).as_ref()).unwrap(), GIB);
        assert_eq!(
            allocation(r(3 * GIB as i64 / 2, 0).as_ref()).unwrap(),
            1536 * MIB
        );
        assert_eq!(
            allocation(r(GIB as i64 + 1, 0).as_ref()).unwrap(),
            GIB + MIB
        );
        // A tight limit falls back to 4 KiB granularity rather than failing.
        let lim = GIB as i64 + 8192;
        assert_eq!(
            allocation(r(GIB as i64 + 1, lim).as_ref()).unwrap(),
            GIB + 4096
        );
    }

    #[test]
    fn out_of_range_cases() {
        assert!(matches!(
            allocation(r(2 * GIB as i64, GIB as i64).as_ref()),
            Err(DriverError::OutOfRange(_))
        ));
        assert!(matches!(
            allocation(r(0, 1024).as_ref()),
            Err(DriverError::OutOfRange(_))
        ));
        assert!(matches!(
            allocation(r(MAX_VOLUME as i64 + 1, 0).as_ref()),
            Err(DriverError::OutOfRange(_))
        ));
        assert!(matches!(
            allocation(r(-1, 0).as_ref()),
            Err(DriverError::InvalidArgument(_))
        ));
        assert_eq!(
            allocation(r(MAX_VOLUME as i64, 0).as_ref()).unwrap(),
            MAX_VOLUME
        );
    }

    #[test]
    fn compatibility_is_exact_without_limit_and_ranged_with_one() {
        assert!(compatible(GIB, GIB, None));
        assert!(!compatible(2 * GIB, GIB, None));
        assert!(compatible(
            2 * GIB,
            2 * GIB,
            r(GIB as i64, 3 * GIB as i64).as_ref()
        ));
        assert!(!compatible(
            4 * GIB,
            2 * GIB,
            r(GIB as i64, 3 * GIB as i64).as_ref()
        ));
    }
}
