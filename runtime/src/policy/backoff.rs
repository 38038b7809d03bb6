//! Exponential backoff between attempts.

use std::time::Duration;

/// An exponential delay schedule: `free_attempts` immediate attempts, then
/// `base × factorⁿ`, capped at `max`.
///
/// A supervisor uses it between restarts of a crashing child (one crash is restarted at once, a
/// crash loop slows down); a provider uses it between retries of a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay of the first delayed attempt.
    pub base: Duration,
    /// Upper bound on any delay.
    pub max: Duration,
    /// Multiplier between consecutive delayed attempts (≥ 1).
    pub factor: u32,
    /// Attempts made without any delay before backing off.
    pub free_attempts: u32,
}

impl Backoff {
    /// `base`, `2·base`, `4·base`, … up to `max`, starting with the first attempt.
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            factor: 2,
            free_attempts: 0,
        }
    }

    /// No delay ever.
    pub const fn none() -> Self {
        Self {
            base: Duration::ZERO,
            max: Duration::ZERO,
            factor: 1,
            free_attempts: u32::MAX,
        }
    }

    /// The same schedule with `n` immediate attempts first.
    pub const fn with_free_attempts(mut self, n: u32) -> Self {
        self.free_attempts = n;
        self
    }

    /// The delay before attempt `attempt` (0-based: the first retry is attempt 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt < self.free_attempts {
            return Duration::ZERO;
        }
        let exponent = attempt - self.free_attempts;
        let multiplier = self.factor.max(1).checked_pow(exponent).unwrap_or(u32::MAX);
        self.base
            .checked_mul(multiplier)
            .map_or(self.max, |d| d.min(self.max))
    }
}

impl Default for Backoff {
    /// The supervisor default: the first restart is immediate, then 10 ms, 20 ms, … up to 5 s.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(10), Duration::from_secs(5)).with_free_attempts(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exponential_schedule_doubles_until_the_cap() {
        let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(4));
        let delays: Vec<_> = (0..5).map(|n| b.delay(n)).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 4, 4].map(Duration::from_secs).to_vec(),
            "the provider retry schedule of 1, 2, 4 s"
        );
    }

    #[test]
    fn default_restarts_once_immediately_then_backs_off() {
        let b = Backoff::default();
        let delays: Vec<_> = (0..4).map(|n| b.delay(n)).collect();
        assert_eq!(delays, vec![ms(0), ms(10), ms(20), ms(40)]);
        assert_eq!(b.delay(30), Duration::from_secs(5), "capped at max");
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let b = Backoff::exponential(ms(10), ms(1000));
        assert_eq!(b.delay(u32::MAX - 1), ms(1000));
        assert_eq!(Backoff::none().delay(u32::MAX - 1), Duration::ZERO);
    }
}
