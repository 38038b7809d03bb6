//! A bound on the number of children, with eviction of the least-recently-active idle child.

use std::hash::Hash;

use super::ActivityTable;

/// What to do to admit one more child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission<K> {
    /// There is a free slot.
    Free,
    /// Full: stop this idle child (the least recently active one) to make room.
    Evict(K),
}

/// Admission refused: every child is busy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// All slots are taken by busy children; nothing may be evicted.
    #[error("at capacity: all {max} slots are taken by busy children; try again when one is idle")]
    AllBusy {
        /// The configured maximum.
        max: usize,
    },
    /// The limit is zero: nothing can ever be admitted.
    #[error("capacity is zero: no child can be admitted")]
    Zero,
}

/// At most `max` children; when full, evict the least-recently-active idle child, never a busy
/// one, and refuse when every child is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Maximum number of children.
    pub max: usize,
}

impl Capacity {
    /// A limit of `max` children.
    pub const fn new(max: usize) -> Self {
        Self { max }
    }

    /// Decides how one more child can be admitted given the current children's activity.
    pub fn admit<K: Clone + Eq + Hash>(
        &self,
        children: &ActivityTable<K>,
    ) -> Result<Admission<K>, CapacityError> {
        if self.max == 0 {
            return Err(CapacityError::Zero);
        }
        if children.len() < self.max {
            return Ok(Admission::Free);
        }
        children
            .least_recently_active_idle()
            .cloned()
            .map(Admission::Evict)
            .ok_or(CapacityError::AllBusy { max: self.max })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, advance};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_while_below_the_limit() {
        let mut table = ActivityTable::new();
        table.insert("a", Instant::now());
        assert_eq!(Capacity::new(2).admit(&table), Ok(Admission::Free));
    }

    #[tokio::test(start_paused = true)]
    async fn evicts_the_least_recently_active_idle_child() {
        let mut table = ActivityTable::new();
        table.insert("oldest-busy", Instant::now());
        advance(Duration::from_secs(1)).await;
        table.insert("older-idle", Instant::now());
        advance(Duration::from_secs(1)).await;
        table.insert("newer-idle", Instant::now());
        table.set_busy(
            &"oldest-busy",
            true,
            Instant::now() - Duration::from_secs(2),
        );
        // touching a child makes it recent again
        advance(Duration::from_secs(1)).await;
        table.touch(&"older-idle", Instant::now());

        assert_eq!(
            Capacity::new(3).admit(&table),
            Ok(Admission::Evict("newer-idle")),
            "the busy child is oldest but never evicted; older-idle was touched last"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_when_every_child_is_busy() {
        let mut table = ActivityTable::new();
        for k in ["a", "b"] {
            table.insert(k, Instant::now());
            table.set_busy(&k, true, Instant::now());
        }
        let err = Capacity::new(2).admit(&table).unwrap_err();
        assert_eq!(err, CapacityError::AllBusy { max: 2 });
        assert!(
            err.to_string()
                .contains("all 2 slots are taken by busy children")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_that_becomes_idle_is_evictable_again() {
        let mut table = ActivityTable::new();
        table.insert("a", Instant::now());
        table.set_busy(&"a", true, Instant::now());
        assert!(Capacity::new(1).admit(&table).is_err());
        table.set_busy(&"a", false, Instant::now());
        assert_eq!(Capacity::new(1).admit(&table), Ok(Admission::Evict("a")));
    }

    #[test]
    fn zero_capacity_is_a_clear_error() {
        let table: ActivityTable<&str> = ActivityTable::new();
        assert_eq!(Capacity::new(0).admit(&table), Err(CapacityError::Zero));
    }
}
