//! Who was active when, and who is busy: the shared input of [`Capacity`](super::Capacity) and
//! [`IdleTimeout`](super::IdleTimeout).

use std::collections::HashMap;
use std::hash::Hash;

use tokio::time::Instant;

/// What a supervisor knows about one child's activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    /// When the child last reported activity (or was admitted).
    pub last_active: Instant,
    /// A busy child is never evicted, however long ago it was last active.
    pub busy: bool,
    /// Admission order, used to break ties between equally old entries deterministically.
    seq: u64,
}

/// Activity of every child, keyed by child id.
#[derive(Clone, Debug)]
pub struct ActivityTable<K> {
    entries: HashMap<K, Activity>,
    next_seq: u64,
}

impl<K> Default for ActivityTable<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            next_seq: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> ActivityTable<K> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a child as idle and active `now`; an existing entry is replaced.
    pub fn insert(&mut self, key: K, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            key,
            Activity {
                last_active: now,
                busy: false,
                seq,
            },
        );
    }

    /// Marks the child active `now`. Unknown keys are ignored.
    pub fn touch(&mut self, key: &K, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.last_active = now;
        }
    }

    /// Records whether the child is busy; either way it was active `now`.
    pub fn set_busy(&mut self, key: &K, busy: bool, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.busy = busy;
            entry.last_active = now;
        }
    }

    /// Forgets a child.
    pub fn remove(&mut self, key: &K) -> Option<Activity> {
        self.entries.remove(key)
    }

    /// The activity recorded for `key`.
    pub fn get(&self, key: &K) -> Option<&Activity> {
        self.entries.get(key)
    }

    /// How many children are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no child is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many children report themselves busy.
    pub fn busy_count(&self) -> usize {
        self.entries.values().filter(|a| a.busy).count()
    }

    /// The idle child that has been inactive longest, if any.
    pub fn least_recently_active_idle(&self) -> Option<&K> {
        self.entries
            .iter()
            .filter(|(_, a)| !a.busy)
            .min_by_key(|(_, a)| (a.last_active, a.seq))
            .map(|(k, _)| k)
    }

    /// Idle children inactive for at least `timeout` at `now`, oldest first.
    pub fn idle_for_at_least(&self, timeout: std::time::Duration, now: Instant) -> Vec<K> {
        let mut expired: Vec<(&K, &Activity)> = self
            .entries
            .iter()
            .filter(|(_, a)| !a.busy && now.saturating_duration_since(a.last_active) >= timeout)
            .collect();
        expired.sort_by_key(|(_, a)| (a.last_active, a.seq));
        expired.into_iter().map(|(k, _)| k.clone()).collect()
    }
}
