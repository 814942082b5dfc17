//! Frame slots: when a sender's next frame of one stream is due, and what of its
//! schedule it could not keep. A sender that comes round late sends the frame it is
//! late for and skips the slots it missed entirely (it does not burst to catch up);
//! both are counted, so that an overloaded load generator is seen as such (a run is
//! then inconclusive, see `validity`) instead of offering less load unnoticed.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::env::Counters;
use crate::media::LayerProfile;

/// A frame sent this much after its slot is late.
pub const LATE: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug)]
pub struct Slots {
    next: Instant,
    period: Duration,
}

/// A slot taken: whether its frame goes out late, and how many slots after it were
/// missed altogether.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub late: bool,
    pub skipped: u64,
}

impl Slots {
    pub fn new(first: Instant, period: Duration) -> Self {
        Slots {
            next: first,
            period: period.max(Duration::from_micros(1)),
        }
    }

    /// A stream that is not sent (a simulcast layer beyond `--layers`): never due, so
    /// it neither wakes its sender nor counts.
    pub fn unused(now: Instant) -> Self {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        Slots {
            next: now + YEAR,
            period: YEAR,
        }
    }

    /// The schedule of layer `i` of `layers`, first frame at `first`.
    pub fn for_layer(layers: &[LayerProfile], i: usize, first: Instant) -> Self {
        match layers.get(i) {
            Some(l) => Slots::new(first, Duration::from_secs_f64(1.0 / l.fps)),
            None => Slots::unused(first),
        }
    }

    /// Nothing is due before `now`: a sender that could not send (not connected yet,
    /// or connection lost) plans no frames for that time, as a browser sends none.
    /// Otherwise the slots it waited through would count as skipped, against the
    /// load generator.
    pub fn resume(&mut self, now: Instant) {
        self.next = self.next.max(now);
    }

    /// When the next frame is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// The slot due at `now`, if any, taken.
    pub fn take(&mut self, now: Instant) -> Option<Taken> {
        if now < self.next {
            return None;
        }
        let slot = self.next;
        let late = now.duration_since(slot) > LATE;
        self.next = slot + self.period;
        let mut skipped = 0;
        if self.next <= now {
            // Every slot from `next` up to now is gone; the schedule resumes a period
            // after now.
            let behind = now.duration_since(self.next).as_nanos() / self.period.as_nanos();
            skipped = behind as u64 + 1;
            self.next = now + self.period;
        }
        Some(Taken { late, skipped })
    }
}

/// Take the slot due at `now`, if any, and count it: whether to send a frame now.
/// `skip_every` > 0 drops every such frame slot on purpose (counted as skipped): the
/// test of the inconclusive rule, which must not depend on starving a machine.
pub fn take_counted(slots: &mut Slots, now: Instant, c: &Counters, skip_every: u64) -> bool {
    let Some(t) = slots.take(now) else {
        return false;
    };
    let n = c.frames_planned.fetch_add(1 + t.skipped, Ordering::Relaxed) + 1;
    let injected = skip_every > 0 && n.is_multiple_of(skip_every);
    c.frames_skipped
        .fetch_add(t.skipped + u64::from(injected), Ordering::Relaxed);
    if t.late && !injected {
        c.frames_late.fetch_add(1, Ordering::Relaxed);
    }
    !injected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_late_and_skipped() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Slots::new(t0, ms(20));
        assert_eq!(s.take(t0 - ms(1)), None);
        assert_eq!(
            s.take(t0 + ms(1)),
            Some(Taken {
                late: false,
                skipped: 0
            })
        );
        assert_eq!(s.next(), t0 + ms(20));
        // 7 ms after its slot: late, nothing skipped.
        assert_eq!(
            s.take(t0 + ms(27)),
            Some(Taken {
                late: true,
                skipped: 0
            })
        );
        assert_eq!(s.next(), t0 + ms(40));
        // 65 ms after the 40 ms slot: the slots at 60, 80 and 100 ms are gone.
        assert_eq!(
            s.take(t0 + ms(105)),
            Some(Taken {
                late: true,
                skipped: 3
            })
        );
        assert_eq!(s.next(), t0 + ms(125));
        assert_eq!(
            s.take(t0 + ms(125)),
            Some(Taken {
                late: false,
                skipped: 0
            })
        );
        // A sender offline for a second resumes at once, having missed nothing.
        s.resume(t0 + ms(1125));
        assert_eq!(
            s.take(t0 + ms(1125)),
            Some(Taken {
                late: false,
                skipped: 0
            })
        );
        // Resuming never moves a slot earlier.
        s.resume(t0);
        assert_eq!(s.next(), t0 + ms(1145));
    }
}
