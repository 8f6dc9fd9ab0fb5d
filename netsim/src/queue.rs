//! [`EventQueue`]: the discrete-event queue, ordered by (time, insertion order).
//!
//! Two events at the same virtual time come out in the order they were scheduled, so a run
//! depends only on its inputs. The queue is a calendar: events within the next few seconds
//! sit in buckets of about a millisecond (a bucket is sorted only when the clock reaches it),
//! later ones in a binary heap that feeds the buckets as the clock advances. At a thousand
//! nodes the simulator schedules well over a hundred million events, and a single binary heap
//! of a million entries spends most of its time in cache misses.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use weft_node::core::Time;

/// log2 of a bucket's width in microseconds (1.024 ms).
const BUCKET_BITS: u32 = 10;
/// Buckets in the ring: a horizon of about 4.2 s.
const RING: u64 = 4096;

struct Entry<E> {
    at: u64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Events in time order; equal times in the order they were pushed.
pub(crate) struct EventQueue<E> {
    /// The bucket the clock is in.
    bucket: u64,
    /// That bucket's events as it was entered, sorted descending so that the next one is at
    /// the end.
    current: Vec<Entry<E>>,
    /// Events pushed into the current bucket after it was entered. A heap, not a sorted
    /// insert into `current`: a crowded bucket (a thousand gossip deliveries in one
    /// millisecond) made each insert move the whole bucket.
    late: BinaryHeap<Reverse<Entry<E>>>,
    /// Buckets `bucket + 1 ..= bucket + RING - 1`, by `index % RING`, unsorted.
    ring: Vec<Vec<Entry<E>>>,
    /// Events in the ring (not counting `current`).
    in_ring: usize,
    /// Events beyond the ring.
    far: BinaryHeap<Reverse<Entry<E>>>,
    seq: u64,
    len: usize,
}

impl<E> EventQueue<E> {
    /// An empty queue whose clock is at zero.
    pub(crate) fn new() -> EventQueue<E> {
        EventQueue {
            bucket: 0,
            current: Vec::new(),
            late: BinaryHeap::new(),
            ring: (0..RING).map(|_| Vec::new()).collect(),
            in_ring: 0,
            far: BinaryHeap::new(),
            seq: 0,
            len: 0,
        }
    }

    /// Events waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Schedules `event` at `at`. An event in the past is treated as due now: the clock
    /// never goes back.
    pub(crate) fn push(&mut self, at: Time, event: E) {
        let at = at.as_micros();
        self.seq += 1;
        self.len += 1;
        let entry = Entry {
            at,
            seq: self.seq,
            event,
        };
        let bucket = at >> BUCKET_BITS;
        if bucket <= self.bucket {
            self.late.push(Reverse(entry));
        } else if bucket < self.bucket + RING {
            self.ring[(bucket % RING) as usize].push(entry);
            self.in_ring += 1;
        } else {
            self.far.push(Reverse(entry));
        }
    }

    /// The next event and its time.
    pub(crate) fn pop(&mut self) -> Option<(Time, E)> {
        let entry = if self.next_is_late()? {
            self.late.pop().map(|Reverse(e)| e)
        } else {
            self.current.pop()
        }?;
        self.len -= 1;
        Some((Time::from_micros(entry.at), entry.event))
    }

    /// The time of the next event, if any.
    pub(crate) fn peek_time(&mut self) -> Option<Time> {
        let at = if self.next_is_late()? {
            self.late.peek().map(|Reverse(e)| e.at)
        } else {
            self.current.last().map(|e| e.at)
        }?;
        Some(Time::from_micros(at))
    }

    /// The event `k` places after the next one, when both are in the bucket the clock is in
    /// and were there when it was entered (events pushed into it since are not seen). For
    /// hints only: what it returns may come later than it says, or not at all.
    pub(crate) fn peek_ahead(&self, k: usize) -> Option<&E> {
        let i = self.current.len().checked_sub(k + 1)?;
        self.current.get(i).map(|entry| &entry.event)
    }

    /// Whether the next event is in `late` rather than `current`, moving the clock on until
    /// one of them holds something; `None` when the queue is empty.
    fn next_is_late(&mut self) -> Option<bool> {
        loop {
            match (self.current.last(), self.late.peek()) {
                (Some(sorted), Some(Reverse(late))) => return Some(late < sorted),
                (None, Some(_)) => return Some(true),
                (Some(_), None) => return Some(false),
                (None, None) if self.len == 0 => return None,
                (None, None) => self.advance(),
            }
        }
    }

    /// Moves the clock to the next bucket that holds anything.
    fn advance(&mut self) {
        if self.in_ring == 0 {
            // Nothing within the horizon: jump to the first far event's bucket.
            if let Some(Reverse(first)) = self.far.peek() {
                self.bucket = (first.at >> BUCKET_BITS).max(self.bucket + 1);
            }
        } else {
            self.bucket += 1;
        }
        // Far events that are now within the horizon move into the ring.
        while let Some(Reverse(first)) = self.far.peek() {
            let bucket = first.at >> BUCKET_BITS;
            if bucket >= self.bucket + RING {
                break;
            }
            let Some(Reverse(entry)) = self.far.pop() else {
                break;
            };
            self.ring[(bucket % RING) as usize].push(entry);
            self.in_ring += 1;
        }
        let slot = &mut self.ring[(self.bucket % RING) as usize];
        if !slot.is_empty() {
            self.in_ring -= slot.len();
            std::mem::swap(&mut self.current, slot);
            self.current.sort_unstable_by(|a, b| b.cmp(a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EventQueue;
    use crate::rng::Rng;
    use weft_node::core::Time;

    #[test]
    fn events_come_out_in_time_then_push_order() {
        let mut rng = Rng::new(5);
        let mut queue = EventQueue::new();
        let mut expected = Vec::new();
        for i in 0..20_000u64 {
            // A mix of near, same-bucket, and far-future times.
            let at = match i % 4 {
                0 => rng.below(2_000),
                1 => rng.below(5_000_000),
                2 => rng.below(60_000_000),
                _ => 1_000,
            };
            queue.push(Time::from_micros(at), i);
            expected.push((at, i));
        }
        expected.sort();
        let mut got = Vec::new();
        while let Some((at, i)) = queue.pop() {
            got.push((at.as_micros(), i));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn pushes_while_popping_stay_ordered() {
        let mut rng = Rng::new(9);
        let mut queue = EventQueue::new();
        queue.push(Time::ZERO, 0u64);
        let mut last = (0, 0);
        let mut n = 0;
        while let Some((at, seq)) = queue.pop() {
            let now = at.as_micros();
            assert!(now >= last.0, "time went back");
            last = (now, seq);
            n += 1;
            if n < 50_000 {
                for _ in 0..2 {
                    if queue.len() < 1000 {
                        let later = now + rng.below(if n % 7 == 0 { 10_000_000 } else { 3_000 });
                        queue.push(Time::from_micros(later), n);
                    }
                }
            }
        }
        assert!(n >= 50_000);
    }
}
