//! [`Deadlines`]: things due at times, ordered by time, with the earliest time at hand.

use std::collections::BTreeSet;

use super::Time;

/// A set of `(time, item)` in order, that keeps its earliest time beside it:
/// [`Core::next_timeout`](super::Core::next_timeout) runs after every event, and on a large
/// mesh reading the first entry of a B-tree was a cache miss per event.
#[derive(Debug, Clone)]
pub(super) struct Deadlines<T> {
    set: BTreeSet<(Time, T)>,
    /// The time of `set`'s first entry.
    first: Option<Time>,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines {
            set: BTreeSet::new(),
            first: None,
        }
    }
}

impl<T: Ord + Copy> Deadlines<T> {
    /// The earliest time, without touching the set.
    pub(super) fn first_time(&self) -> Option<Time> {
        self.first
    }

    /// The earliest entry.
    pub(super) fn first(&self) -> Option<&(Time, T)> {
        self.set.first()
    }

    pub(super) fn insert(&mut self, at: Time, item: T) {
        self.set.insert((at, item));
        if self.first.is_none_or(|first| at < first) {
            self.first = Some(at);
        }
    }

    pub(super) fn remove(&mut self, at: Time, item: T) {
        if self.set.remove(&(at, item)) && self.first == Some(at) {
            self.first = self.set.first().map(|(at, _)| *at);
        }
    }

    pub(super) fn pop_first(&mut self) -> Option<(Time, T)> {
        let popped = self.set.pop_first();
        self.first = self.set.first().map(|(at, _)| *at);
        popped
    }
}

#[cfg(test)]
mod tests {
    use super::Deadlines;
    use crate::core::Time;

    #[test]
    fn the_earliest_time_follows_inserts_and_removals() {
        let t = Time::from_micros;
        let mut d = Deadlines::default();
        assert_eq!(d.first_time(), None);
        d.insert(t(5), 1u32);
        d.insert(t(3), 2);
        d.insert(t(3), 1);
        d.insert(t(9), 3);
        assert_eq!(d.first_time(), Some(t(3)));
        d.remove(t(3), 2);
        assert_eq!(d.first_time(), Some(t(3)));
        d.remove(t(3), 1);
        assert_eq!(d.first_time(), Some(t(5)));
        d.remove(t(4), 7);
        assert_eq!(d.first_time(), Some(t(5)));
        assert_eq!(d.pop_first(), Some((t(5), 1)));
        assert_eq!(d.first_time(), Some(t(9)));
        assert_eq!(d.first(), Some(&(t(9), 3)));
        assert_eq!(d.pop_first(), Some((t(9), 3)));
        assert_eq!(d.first_time(), None);
        assert_eq!(d.pop_first(), None);
    }
}
