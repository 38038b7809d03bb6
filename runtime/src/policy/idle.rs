//! Stop children that have been idle too long.

use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use super::ActivityTable;

/// Children idle (not busy) for at least `timeout` are due to be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleTimeout {
    /// How long a child may stay idle.
    pub timeout: Duration,
}

impl IdleTimeout {
    /// Idle for `timeout` means stop.
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// How often to check: a quarter of the timeout, at most every 5 minutes (as Turnstone),
    /// and at least every 10 ms.
    pub fn check_interval(&self) -> Duration {
        (self.timeout / 4)
            .min(Duration::from_secs(300))
            .max(Duration::from_millis(10))
    }

    /// Children idle for at least the timeout at `now`, longest idle first.
    pub fn expired<K: Clone + Eq + Hash>(
        &self,
        children: &ActivityTable<K>,
        now: Instant,
    ) -> Vec<K> {
        children.idle_for_at_least(self.timeout, now)
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::advance;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_idle_children_but_never_busy_ones() {
        let policy = IdleTimeout::new(Duration::from_secs(7200));
        let mut table = ActivityTable::new();
        table.insert("idle", Instant::now());
        table.insert("busy", Instant::now());
        table.set_busy(&"busy", true, Instant::now());
        advance(Duration::from_secs(3600)).await;
        table.insert("young", Instant::now());

        advance(Duration::from_secs(3599)).await;
        assert!(
            policy.expired(&table, Instant::now()).is_empty(),
            "1 s short"
        );

        advance(Duration::from_secs(1)).await;
        assert_eq!(policy.expired(&table, Instant::now()), vec!["idle"]);

        advance(Duration::from_secs(3600)).await;
        assert_eq!(
            policy.expired(&table, Instant::now()),
            vec!["idle", "young"],
            "oldest first; the busy child is never expired"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn activity_restarts_the_clock() {
        let policy = IdleTimeout::new(Duration::from_secs(60));
        let mut table = ActivityTable::new();
        table.insert("a", Instant::now());
        advance(Duration::from_secs(59)).await;
        table.touch(&"a", Instant::now());
        advance(Duration::from_secs(59)).await;
        assert!(policy.expired(&table, Instant::now()).is_empty());
    }

    #[test]
    fn check_interval_is_a_quarter_capped_at_five_minutes() {
        assert_eq!(
            IdleTimeout::new(Duration::from_secs(7200)).check_interval(),
            Duration::from_secs(300)
        );
        assert_eq!(
            IdleTimeout::new(Duration::from_secs(60)).check_interval(),
            Duration::from_secs(15)
        );
    }
}
