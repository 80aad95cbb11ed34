//! Retry spacing: exponential with a cap and ±20% jitter, so a fleet of controllers (or many
//! concurrent operations) that failed together do not hammer a recovering RDS in lockstep.

use std::time::Duration;

use rand::Rng as _;

/// Delay before retry number `retry` (1 = the first retry).
pub(crate) fn delay(initial: Duration, max: Duration, retry: u32) -> Duration {
    jitter(
        base(initial, max, retry),
        rand::rng().random_range(0.8..=1.2),
    )
}

/// The un-jittered delay: `initial · 2^(retry-1)`, capped at `max`.
pub(crate) fn base(initial: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    initial.saturating_mul(factor).min(max)
}

fn jitter(d: Duration, factor: f64) -> Duration {
    d.mul_f64(factor)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_then_caps() {
        let (i, m) = (200 * MS, 5000 * MS);
        let seq: Vec<_> = (1..=7).map(|r| base(i, m, r)).collect();
        assert_eq!(
            seq,
            vec![
                200 * MS,
                400 * MS,
                800 * MS,
                1600 * MS,
                3200 * MS,
                5000 * MS,
                5000 * MS
            ]
        );
        assert_eq!(
            base(i, m, 100),
            m,
            "large retry counts saturate instead of overflowing"
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..200 {
            let d = delay(1000 * MS, 5000 * MS, 1);
            assert!(d >= 800 * MS && d <= 1200 * MS, "{d:?}");
        }
    }
}
