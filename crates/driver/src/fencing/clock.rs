//! Time for fencing: an injectable clock (so migration timeouts are tested by moving time, never
//! by sleeping) and the RFC 3339 timestamps written to PV annotations.
//!
//! The timestamp format is fixed to UTC with microseconds (`2026-01-31T02:45:00.123456Z`), the
//! shape the earlier driver wrote, so annotations stay comparable across driver versions. It is
//! formatted here rather than with a date crate because this is the only date the driver writes.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests of time-based rules.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    /// Starts at a fixed instant (2026-01-31T02:45:00Z) so tests are reproducible.
    fn default() -> Self {
        ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_769_827_500))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC. Instants before 1970 are written as the epoch (no
/// attachment can predate it).
pub fn format_rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Parses what [`format_rfc3339`] writes, and also whole seconds, 1–9 fraction digits, and a
/// `+00:00` offset (a hand-edited annotation). Anything else is `None`: callers fall back to
/// "now" rather than trusting a malformed time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let body = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once('T')?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let se: i64 = tp.next()?.parse().ok()?;
    if tp.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u32 = f.parse().ok()?;
            n * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + se;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_microseconds() {
        let t = UNIX_EPOCH + Duration::new(1_769_827_500, 123_456_789);
        assert_eq!(format_rfc3339(t), "2026-01-31T02:45:00.123456Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // A leap day, to exercise the calendar arithmetic.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn parses_what_it_writes_and_common_variants() {
        for secs in [0u64, 951_782_400, 1_769_827_500, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::new(secs, 654_321_000);
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "{secs}");
        }
        let whole = UNIX_EPOCH + Duration::from_secs(1_769_827_500);
        assert_eq!(parse_rfc3339("2026-01-31T02:45:00Z"), Some(whole));
        assert_eq!(parse_rfc3339("2026-01-31T02:45:00+00:00"), Some(whole));
        assert_eq!(
            parse_rfc3339("2026-01-31T02:45:00.5Z"),
            Some(whole + Duration::from_millis(500))
        );
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "yesterday",
            "2026-01-31 02:45:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-31T02:45:00",
            "2026-01-31T02:45:00+02:00",
            "2026-01-31T25:00:00Z",
            "2026-01-31T02:45:00.Z",
            "2026-01-31T02:45:00.1234567890Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::default();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(301));
        assert_eq!(
            c.now().duration_since(t0).unwrap(),
            Duration::from_secs(301)
        );
    }
}
