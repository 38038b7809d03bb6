//! A circuit breaker for a backend: closed → open → half-open → closed.
//!
//! Semantics of Turnstone 0.4.1's breaker (threshold 5, cooldown 60 s), applied to every real
//! request result and not only to health probes:
//!
//! - **Closed**: requests pass. Each failure counts; at `threshold` consecutive failures the
//!   breaker opens. A success resets the count.
//! - **Open**: requests fail fast with [`BreakerOpen`]. The first request after `cooldown` moves
//!   the breaker to half-open and is admitted as the probe.
//! - **Half-open**: exactly one probe is in flight; everyone else fails fast until its result
//!   arrives. Success closes the breaker; failure opens it again for another cooldown.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// The breaker's state, as reported to dashboards and the `turnstone_circuit_state` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests fail fast until the cooldown has passed.
    Open,
    /// One probe request is admitted; its result decides.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `turnstone_circuit_state` gauge: closed 0, open 1, half-open 2.
    pub fn gauge_value(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// The snake_case name used on the wire (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A change of state, returned so the owner can record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerTransition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
}

/// A request refused because the circuit is not closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BreakerOpen {
    /// Open: the backend failed repeatedly; retry after the cooldown.
    #[error("circuit open after repeated backend failures; retry in {:.1} s", retry_in.as_secs_f64())]
    Cooling {
        /// Time left until a probe is admitted.
        retry_in: Duration,
    },
    /// Half-open: a probe request is in flight; its result decides.
    #[error("circuit half-open: a probe request is in flight")]
    ProbeInFlight,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { since: Instant },
    HalfOpen,
}

/// The circuit breaker state machine. Pure: the caller passes the time.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    inner: Inner,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures (at least 1) and
    /// admits a probe `cooldown` after opening.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            inner: Inner::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn failures(&self) -> u32 {
        match self.inner {
            Inner::Closed { failures } => failures,
            Inner::Open { .. } | Inner::HalfOpen => self.threshold,
        }
    }

    /// Asks to send one request at `now`. `Ok` admits it (with the transition to half-open when
    /// this request is the probe); `Err` means fail fast.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Option<BreakerTransition>, BreakerOpen> {
        match self.inner {
            Inner::Closed { .. } => Ok(None),
            Inner::Open { since } => {
                let elapsed = now.saturating_duration_since(since);
                if elapsed >= self.cooldown {
                    Ok(self.go(Inner::HalfOpen))
                } else {
                    Err(BreakerOpen::Cooling {
                        retry_in: self.cooldown - elapsed,
                    })
                }
            }
            Inner::HalfOpen => Err(BreakerOpen::ProbeInFlight),
        }
    }

    /// Records a successful request: the breaker closes and the failure count resets.
    pub fn on_success(&mut self) -> Option<BreakerTransition> {
        self.go(Inner::Closed { failures: 0 })
    }

    /// Records a failed request at `now`.
    pub fn on_failure(&mut self, now: Instant) -> Option<BreakerTransition> {
        match self.inner {
            Inner::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    self.go(Inner::Open { since: now })
                } else {
                    self.inner = Inner::Closed { failures };
                    None
                }
            }
            Inner::HalfOpen => self.go(Inner::Open { since: now }),
            // A late result of a request admitted before the breaker opened: stay open, but
            // do not extend the cooldown.
            Inner::Open { .. } => None,
        }
    }

    fn go(&mut self, next: Inner) -> Option<BreakerTransition> {
        let from = self.state();
        self.inner = next;
        let to = self.state();
        (from != to).then_some(BreakerTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(from: BreakerState, to: BreakerState) -> Option<BreakerTransition> {
        Some(BreakerTransition { from, to })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures() {
        let mut b = CircuitBreaker::new(3, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(b.on_failure(now), None);
        assert_eq!(b.on_failure(now), None);
        assert_eq!(b.failures(), 2);
        assert_eq!(b.try_acquire(now), Ok(None), "still closed below threshold");
        assert_eq!(
            b.on_failure(now),
            t(BreakerState::Closed, BreakerState::Open)
        );
        assert_eq!(
            b.try_acquire(now),
            Err(BreakerOpen::Cooling {
                retry_in: Duration::from_secs(60)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count() {
        let mut b = CircuitBreaker::new(2, Duration::from_secs(60));
        let now = Instant::now();
        b.on_failure(now);
        assert_eq!(b.on_success(), None, "closed stays closed");
        assert_eq!(b.on_failure(now), None, "count restarted from zero");
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_admits_exactly_one_probe_then_success_closes() {
        let mut b = CircuitBreaker::new(1, Duration::from_secs(60));
        b.on_failure(Instant::now());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(
            b.try_acquire(Instant::now()),
            Err(BreakerOpen::Cooling {
                retry_in: Duration::from_secs(1)
            })
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            b.try_acquire(Instant::now()),
            Ok(t(BreakerState::Open, BreakerState::HalfOpen)),
            "the first caller after the cooldown is the probe"
        );
        assert_eq!(
            b.try_acquire(Instant::now()),
            Err(BreakerOpen::ProbeInFlight)
        );
        assert_eq!(
            b.on_success(),
            t(BreakerState::HalfOpen, BreakerState::Closed)
        );
        assert_eq!(b.try_acquire(Instant::now()), Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_a_full_cooldown() {
        let mut b = CircuitBreaker::new(1, Duration::from_secs(10));
        b.on_failure(Instant::now());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_acquire(Instant::now()).is_ok());
        assert_eq!(
            b.on_failure(Instant::now()),
            t(BreakerState::HalfOpen, BreakerState::Open)
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(b.try_acquire(Instant::now()).is_err(), "cooldown restarted");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.try_acquire(Instant::now()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn late_failures_while_open_do_not_extend_the_cooldown() {
        let mut b = CircuitBreaker::new(1, Duration::from_secs(10));
        b.on_failure(Instant::now());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.on_failure(Instant::now()), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.try_acquire(Instant::now()).is_ok());
    }

    #[test]
    fn gauge_values_match_turnstone() {
        assert_eq!(BreakerState::Closed.gauge_value(), 0);
        assert_eq!(BreakerState::Open.gauge_value(), 1);
        assert_eq!(BreakerState::HalfOpen.gauge_value(), 2);
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }
}
