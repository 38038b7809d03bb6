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

    /// Runs `attempt` until it succeeds: after the n-th failure (1-based) `on_failure` hears
    /// of it with the delay before the next try, which is slept on tokio's clock.
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut attempt: F,
        mut on_failure: impl FnMut(u32, &E, Duration),
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut failures = 0u32;
        loop {
            match attempt().await {
                Ok(value) => return value,
                Err(e) => {
                    let delay = self.delay(failures);
                    failures = failures.saturating_add(1);
                    on_failure(failures, &e, delay);
                    tokio::time::sleep(delay).await;
                }
            }
        }
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

    #[tokio::test(start_paused = true)]
    async fn retry_backs_off_between_failures_until_one_succeeds() {
        let b = Backoff::exponential(ms(100), ms(300));
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        let mut heard = Vec::new();
        let value = b
            .retry(
                || {
                    tries += 1;
                    let n = tries;
                    async move {
                        if n < 4 {
                            Err(format!("down {n}"))
                        } else {
                            Ok(n)
                        }
                    }
                },
                |n, e: &String, delay| heard.push((n, e.clone(), delay)),
            )
            .await;
        assert_eq!(value, 4);
        assert_eq!(
            heard,
            vec![
                (1, "down 1".to_owned(), ms(100)),
                (2, "down 2".to_owned(), ms(200)),
                (3, "down 3".to_owned(), ms(300)),
            ]
        );
        assert_eq!(started.elapsed(), ms(600), "slept 100 + 200 + 300 ms");
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let b = Backoff::exponential(ms(10), ms(1000));
        assert_eq!(b.delay(u32::MAX - 1), ms(1000));
        assert_eq!(Backoff::none().delay(u32::MAX - 1), Duration::ZERO);
    }
}
