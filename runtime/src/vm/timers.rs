//! Timers set → timers due, earliest first and, among timers due together, the one set first.
//!
//! Most timers of a journey are set a fixed delay after the current moment (`wait 1d`, a
//! timeout, an `unless … within 1h` window): `Due::After`. The current moment only moves
//! forward, so the timers of one delay are due in the order they are set. Each such delay (the
//! program has few) gets a lane, a FIFO queue that needs no sorting; timers due at a computed
//! moment (`Due::At`: times of day, the end of quiet hours, scheduled entries) go to a binary
//! heap. The next timer is the earliest among the lane heads and the heap's top: a scan over a
//! handful of lanes instead of a heap of every timer, done only when a timer is taken (a new
//! timer is compared with the earliest as it is set).
//!
//! **Invariant:** within a lane, `(at, sequence)` increases from front to back.
//! **Invariant:** `earliest` is the earliest of the lane fronts and the heap's top.

use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// At most this many lanes; delays beyond them share the heap.
const MAX_LANES: usize = 64;

/// When a timer is due.
#[derive(Debug, Clone, Copy)]
pub enum Due {
    /// At this moment.
    At(i64),
    /// This long after the current moment (a delay the program states).
    After(i64),
}

/// A timer with its due time and the order it was set in.
#[derive(Debug)]
struct Scheduled<T> {
    at: i64,
    sequence: u64,
    timer: T,
}

impl<T> Scheduled<T> {
    fn key(&self) -> (i64, u64) {
        (self.at, self.sequence)
    }
}

impl<T> PartialEq for Scheduled<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<T> Eq for Scheduled<T> {}

impl<T> PartialOrd for Scheduled<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Scheduled<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key().cmp(&self.key())
    }
}

/// Where the next timer is.
#[derive(Debug, Clone, Copy)]
enum Source {
    Lane(usize),
    Heap,
}

#[derive(Debug)]
pub(crate) struct TimerQueue<T> {
    lanes: Vec<VecDeque<Scheduled<T>>>,
    lane_of_delay: FxHashMap<i64, usize>,
    heap: BinaryHeap<Scheduled<T>>,
    /// Where the earliest timer is, and its key: the engine asks before every input, most
    /// often to learn that nothing is due, so the lanes are scanned only when it changes.
    earliest: Option<(Source, (i64, u64))>,
    sequence: Sequence,
    len: usize,
}

/// The order timers are set in: the queue's own count, or a count shared by the engines of a
/// service, so that timers due at the same instant fire in the order they were set whichever
/// engine set them (LANGUAGE.md §7.1).
#[derive(Debug)]
enum Sequence {
    Own(u64),
    Shared(Arc<AtomicU64>),
}

impl Sequence {
    fn next(&mut self) -> u64 {
        match self {
            Sequence::Own(n) => {
                *n += 1;
                *n
            }
            // (One thread sets timers at a time: the order is the service's command order.)
            Sequence::Shared(n) => n.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            lanes: Vec::new(),
            lane_of_delay: FxHashMap::default(),
            heap: BinaryHeap::new(),
            earliest: None,
            sequence: Sequence::Own(0),
            len: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    /// Sets `timer` due as `due` says; `now` is the current moment, which never goes back.
    /// Answers the timer's key: (due time, place in the order timers were set).
    pub fn push(&mut self, now: i64, due: Due, timer: T) -> (i64, u64) {
        let sequence = self.sequence.next();
        self.len += 1;
        let (at, delay) = match due {
            Due::At(at) => (at, None),
            Due::After(delay) => (now.saturating_add(delay), Some(delay)),
        };
        let scheduled = Scheduled {
            at,
            sequence,
            timer,
        };
        let lane = match delay.map(|d| (d, self.lane_of_delay.get(&d).copied())) {
            Some((_, Some(lane))) => Some(lane),
            Some((delay, None)) if self.lanes.len() < MAX_LANES => {
                self.lanes.push(VecDeque::new());
                self.lane_of_delay.insert(delay, self.lanes.len() - 1);
                Some(self.lanes.len() - 1)
            }
            _ => None,
        };
        let key = scheduled.key();
        let source = match lane.and_then(|l| Some((l, self.lanes.get_mut(l)?))) {
            // A lane takes the timer only in order (always, while `now` does not go back).
            Some((l, queue)) if queue.back().is_none_or(|last| last.key() < key) => {
                queue.push_back(scheduled);
                Source::Lane(l)
            }
            _ => {
                self.heap.push(scheduled);
                Source::Heap
            }
        };
        // A timer earlier than every other is at the front of its lane (a lane's front is never
        // later than its back) or the heap's top.
        if self.earliest.is_none_or(|(_, earliest)| key < earliest) {
            self.earliest = Some((source, key));
        }
        key
    }

    /// The earliest timer, found by looking at every lane's front and the heap's top.
    fn scan(&self) -> Option<(Source, (i64, u64))> {
        let mut best: Option<(Source, (i64, u64))> =
            self.heap.peek().map(|s| (Source::Heap, s.key()));
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(front) = lane.front() {
                if best.is_none_or(|(_, key)| front.key() < key) {
                    best = Some((Source::Lane(i), front.key()));
                }
            }
        }
        best
    }

    fn next(&self) -> Option<(Source, i64)> {
        self.earliest.map(|(source, (at, _))| (source, at))
    }

    /// When the next timer is due.
    pub fn next_at(&self) -> Option<i64> {
        self.next().map(|(_, at)| at)
    }

    /// The next timer's (due time, place in the order timers were set).
    pub fn next_key(&self) -> Option<(i64, u64)> {
        self.earliest.map(|(_, key)| key)
    }

    /// Numbers the timers set from now on from `order`, shared with other queues. (Timers
    /// already set keep their numbers; a lane that would then be out of order passes a timer
    /// to the heap.)
    pub fn share_order(&mut self, order: Arc<AtomicU64>) {
        self.sequence = Sequence::Shared(order);
    }

    /// Takes the next timer if it is due at or before `until`.
    pub fn pop_due(&mut self, until: i64) -> Option<(i64, T)> {
        let (source, at) = self.next().filter(|(_, at)| *at <= until)?;
        let scheduled = match source {
            Source::Lane(i) => self.lanes.get_mut(i).and_then(VecDeque::pop_front),
            Source::Heap => self.heap.pop(),
        }?;
        self.len -= 1;
        self.earliest = self.scan();
        Some((at, scheduled.timer))
    }

    /// Sets a timer again with the key it had (a user's timers coming back from its record,
    /// `vm::state`): it fires where it would have, among the others.
    pub fn restore(&mut self, at: i64, sequence: u64, timer: T) {
        self.len += 1;
        let key = (at, sequence);
        self.heap.push(Scheduled {
            at,
            sequence,
            timer,
        });
        if self.earliest.is_none_or(|(_, earliest)| key < earliest) {
            self.earliest = Some((Source::Heap, key));
        }
    }

    /// Takes out every timer `take` says, in the order they would fire: ((due time, place in
    /// the order timers were set), timer). One pass over every timer: `vm::state` takes the
    /// timers of many users at once.
    pub fn extract(&mut self, mut take: impl FnMut(&T) -> bool) -> Vec<((i64, u64), T)> {
        let mut taken = Vec::new();
        for lane in &mut self.lanes {
            let mut kept = VecDeque::with_capacity(lane.len());
            for scheduled in lane.drain(..) {
                if take(&scheduled.timer) {
                    taken.push((scheduled.key(), scheduled.timer));
                } else {
                    kept.push_back(scheduled);
                }
            }
            *lane = kept;
        }
        let mut kept = Vec::with_capacity(self.heap.len());
        for scheduled in std::mem::take(&mut self.heap).into_vec() {
            if take(&scheduled.timer) {
                taken.push((scheduled.key(), scheduled.timer));
            } else {
                kept.push(scheduled);
            }
        }
        self.heap = BinaryHeap::from(kept);
        self.len -= taken.len();
        self.earliest = self.scan();
        taken.sort_by_key(|(key, _)| *key);
        taken
    }

    /// Timers waiting.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::{Due, TimerQueue};

    /// Lanes and the heap together give the order a single sorted list would.
    #[test]
    fn due_in_time_then_setting_order() {
        let mut queue = TimerQueue::default();
        let mut expected = Vec::new();
        let mut state = 0x2545_F491_u64;
        let mut now = 0i64;
        for n in 0..5_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            now += (state % 3) as i64;
            // Few delays (lanes), some arbitrary times (the heap), and some in the past.
            let due = match state % 7 {
                0 => Due::At(now + (state % 1000) as i64),
                1 => Due::At(now - 5),
                2 => Due::After((state % 100) as i64),
                _ => Due::After([10, 60, 3_600][(state % 3) as usize]),
            };
            let at = match due {
                Due::At(at) => at,
                Due::After(delay) => now + delay,
            };
            queue.push(now, due, n);
            expected.push((at, n));
            // Drain what is due now, as the engine does before each input.
            while let Some((at, n)) = queue.pop_due(now) {
                let position = expected
                    .iter()
                    .position(|e| *e == (at, n))
                    .expect("was set");
                let earliest = expected.iter().min().copied().expect("not empty");
                assert_eq!((at, n), earliest);
                expected.remove(position);
            }
        }
        let mut rest = Vec::new();
        while let Some(due) = queue.pop_due(i64::MAX) {
            rest.push(due);
        }
        expected.sort();
        assert_eq!(rest, expected);
        assert_eq!(queue.len(), 0);
    }
}
