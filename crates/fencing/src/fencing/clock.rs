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
    let ts = jiff::Timestamp::try_from(t.max(UNIX_EPOCH)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.6}")
}

/// Parses what [`format_rfc3339`] writes, and also whole seconds, 1–9 fraction digits, and a
/// `+00:00` offset (a hand-edited annotation). Anything else (another offset, a space for the
/// `T`, a time before 1970) is `None`: callers fall back to "now" rather than trusting a
/// malformed time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let utc = s.ends_with('Z') || s.ends_with("+00:00");
    if !utc || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let t = SystemTime::from(s.parse::<jiff::Timestamp>().ok()?);
    (t >= UNIX_EPOCH).then_some(t)
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
