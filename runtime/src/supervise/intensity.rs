//! Restart intensity: at most N restarts within a period.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The limit: more than `max_restarts` within `period` means the supervisor gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts tolerated within the period.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    /// OTP's default: 3 restarts in 5 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 3,
            period: Duration::from_secs(5),
        }
    }
}

/// The sliding window of recent restarts for one supervisor.
#[derive(Clone, Debug)]
pub struct RestartIntensity {
    limit: Intensity,
    restarts: VecDeque<Instant>,
}

impl RestartIntensity {
    /// An empty window with the given limit.
    pub fn new(limit: Intensity) -> Self {
        Self {
            limit,
            restarts: VecDeque::new(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> Intensity {
        self.limit
    }

    /// Records a restart at `now`. Returns `false` when this restart exceeds the limit and the
    /// supervisor must escalate instead.
    pub fn record(&mut self, now: Instant) -> bool {
        while let Some(first) = self.restarts.front() {
            if now.saturating_duration_since(*first) >= self.limit.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.push_back(now);
        self.restarts.len() <= self.limit.max_restarts as usize
    }

    /// Restarts counted in the current window.
    pub fn recent(&self) -> usize {
        self.restarts.len()
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::advance;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_max_restarts_within_the_period_then_refuses() {
        let mut w = RestartIntensity::new(Intensity {
            max_restarts: 3,
            period: Duration::from_secs(5),
        });
        for _ in 0..3 {
            assert!(w.record(Instant::now()));
            advance(Duration::from_secs(1)).await;
        }
        assert!(
            !w.record(Instant::now()),
            "4th restart within 5 s escalates"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_restarts_slide_out_of_the_window() {
        let mut w = RestartIntensity::new(Intensity {
            max_restarts: 2,
            period: Duration::from_secs(10),
        });
        assert!(w.record(Instant::now()));
        advance(Duration::from_secs(6)).await;
        assert!(w.record(Instant::now()));
        advance(Duration::from_secs(4)).await;
        // the first restart is exactly 10 s old now: out of the window
        assert!(w.record(Instant::now()));
        assert_eq!(w.recent(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_restarts_allowed_escalates_on_the_first() {
        let mut w = RestartIntensity::new(Intensity {
            max_restarts: 0,
            period: Duration::from_secs(1),
        });
        assert!(!w.record(Instant::now()));
    }
}
