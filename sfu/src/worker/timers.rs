//! When each peer's `Rtc` next wants `handle_input(Timeout)`.
//!
//! A binary heap of (deadline, peer) with one live deadline per peer: a peer that
//! asks for an earlier time pushes a new entry and the later one is skipped when it
//! surfaces (lazy deletion: no search in the heap, no allocation once warm).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
    /// The live deadline of each peer slot; entries in the heap that differ are stale.
    at: Vec<Option<Instant>>,
}

impl Timers {
    /// Ask to wake `peer` at `t`, unless it already waits for an earlier time.
    pub fn schedule(&mut self, peer: u32, t: Instant) {
        let i = peer as usize;
        if i >= self.at.len() {
            self.at.resize(i + 1, None);
        }
        let slot = &mut self.at[i];
        if slot.is_none_or(|at| t < at) {
            *slot = Some(t);
            self.heap.push(Reverse((t, peer)));
        }
    }

    /// Forget `peer`'s deadline (it left, or its slot is reused).
    pub fn cancel(&mut self, peer: u32) {
        if let Some(slot) = self.at.get_mut(peer as usize) {
            *slot = None;
        }
    }

    /// The next peer whose deadline is at or before `now`, removed from the timers.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        while let Some(&Reverse((at, peer))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            let slot = &mut self.at[peer as usize];
            if *slot == Some(at) {
                *slot = None;
                return Some(peer);
            }
            // Superseded by an earlier deadline that already fired, or cancelled.
        }
        None
    }

    /// The earliest deadline (possibly a stale one: waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_deadline_wins_and_stale_entries_are_skipped() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timers::default();
        t.schedule(1, t0 + ms(50));
        t.schedule(1, t0 + ms(10)); // earlier: replaces
        t.schedule(1, t0 + ms(30)); // later than the live one: ignored
        t.schedule(2, t0 + ms(20));
        assert_eq!(t.next(), Some(t0 + ms(10)));
        assert_eq!(t.pop_due(t0 + ms(5)), None);
        assert_eq!(t.pop_due(t0 + ms(60)), Some(1));
        assert_eq!(t.pop_due(t0 + ms(60)), Some(2));
        // Peer 1's stale 50 ms entry does not fire again.
        assert_eq!(t.pop_due(t0 + ms(60)), None);
    }

    #[test]
    fn cancelled_peer_does_not_fire() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.schedule(3, t0);
        t.cancel(3);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), None);
        // The slot can be reused.
        t.schedule(3, t0);
        assert_eq!(t.pop_due(t0), Some(3));
    }
}
