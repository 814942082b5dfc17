//! When each frame really left its sender.
//!
//! A probe's send stamp is taken before the frame is packetized, encrypted and handed
//! to the kernel. When the client's thread loses its core in between (with
//! `--yield-cpu` the load generator gives way to the node whenever the node wants
//! to run), the frame leaves late through no fault of the node, and the delay measured
//! would be the load generator's. Senders and receivers share one process, so each
//! sender records here how long after its stamp the frame's batch went to the kernel,
//! and receivers add that to the stamp: the forwarding delay then starts when the frame
//! reached the socket, as the kernel's arrival stamp ends it at the other socket.
//!
//! The lag is read just before the send call, so a stall inside the call still counts
//! against the node: any error is on the side of a longer delay, never a shorter one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A turn's own work takes well under this; a frame that left later after its stamp
/// waited for its thread (counted: `frames_sent_late` in the report).
pub const LATE: Duration = Duration::from_millis(1);

/// Frames remembered per lane: far more than are in flight through the node.
const RING: usize = 128;
/// Lanes per sender: the three video layers, then audio.
const LANES: usize = 4;

/// The lane of a frame: its video layer, or 3 for audio.
pub fn lane(audio: bool, layer: u8) -> usize {
    if audio {
        3
    } else {
        (layer as usize).min(2)
    }
}

/// One sender's recent frames: (sequence number << 32 | lag in µs), by sequence.
pub struct Lanes {
    slots: [[AtomicU64; RING]; LANES],
    /// The sender ended or started again (its sequence numbers restart): receivers
    /// must not match new frames against these.
    retired: AtomicBool,
}

impl Lanes {
    fn new() -> Self {
        Lanes {
            slots: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(u64::MAX))),
            retired: AtomicBool::new(false),
        }
    }

    /// Frame `seq` of `lane` reached the kernel `lag_us` after its stamp.
    pub fn record(&self, lane: usize, seq: u32, lag_us: u64) {
        let v = (seq as u64) << 32 | lag_us.min(u32::MAX as u64);
        self.slots[lane.min(LANES - 1)][seq as usize % RING].store(v, Ordering::Relaxed);
    }

    /// The recorded lag of frame `seq`, or 0 when it is not (or no longer) known.
    pub fn lag_us(&self, lane: usize, seq: u32) -> u64 {
        let v = self.slots[lane.min(LANES - 1)][seq as usize % RING].load(Ordering::Relaxed);
        if v != u64::MAX && (v >> 32) as u32 == seq {
            v & u32::MAX as u64
        } else {
            0
        }
    }
}

/// A sender's side: the frames written since its last send call, recorded with their
/// lag when the batch goes to the kernel.
pub struct Outbox {
    lanes: Arc<Lanes>,
    written: [(usize, u32); LANES],
    n: usize,
}

impl Outbox {
    pub fn new(log: &SendLog, sender: u32) -> Self {
        Outbox {
            lanes: log.register(sender),
            written: [(0, 0); LANES],
            n: 0,
        }
    }

    /// Frame `seq` of `lane` was written (at most one per lane between two sends).
    pub fn wrote(&mut self, lane: usize, seq: u32) {
        if self.n < self.written.len() {
            self.written[self.n] = (lane, seq);
            self.n += 1;
        }
    }

    /// The frames written at `stamped` go to the kernel now: record how late, and
    /// count them in `late` if that is over [`LATE`].
    pub fn sending(&mut self, stamped: Instant, late: &AtomicU64) {
        if self.n == 0 {
            return;
        }
        let lag = stamped.elapsed();
        for &(lane, seq) in &self.written[..self.n] {
            self.lanes.record(lane, seq, lag.as_micros() as u64);
        }
        if lag > LATE {
            late.fetch_add(self.n as u64, Ordering::Relaxed);
        }
        self.n = 0;
    }
}

/// Every sender of the run, by probe sender id. Locked only when a sender starts or
/// ends, and when a receiver meets a sender for the first time.
#[derive(Default)]
pub struct SendLog {
    senders: RwLock<HashMap<u32, Arc<Lanes>>>,
}

impl SendLog {
    /// A sender starts (or starts again, after a rejoin: its sequence numbers restart,
    /// so it gets fresh lanes).
    pub fn register(&self, sender: u32) -> Arc<Lanes> {
        let lanes = Arc::new(Lanes::new());
        if let Ok(mut m) = self.senders.write() {
            if let Some(old) = m.insert(sender, lanes.clone()) {
                old.retired.store(true, Ordering::Relaxed);
            }
        }
        lanes
    }

    /// The sender ended.
    pub fn forget(&self, sender: u32) {
        if let Ok(mut m) = self.senders.write() {
            if let Some(old) = m.remove(&sender) {
                old.retired.store(true, Ordering::Relaxed);
            }
        }
    }

    pub fn lanes(&self, sender: u32) -> Option<Arc<Lanes>> {
        self.senders.read().ok()?.get(&sender).cloned()
    }
}

/// A receiver's view: the lanes of the senders it has met, so that the shared map is
/// read once per sender, not once per frame.
#[derive(Default)]
pub struct Senders(HashMap<u32, Arc<Lanes>>);

impl Senders {
    /// How long after its stamp frame `seq` of `sender`'s `lane` left (0 if unknown).
    pub fn lag_us(&mut self, log: &SendLog, sender: u32, lane: usize, seq: u32) -> u64 {
        let lanes = match self.0.get(&sender) {
            Some(l) if !l.retired.load(Ordering::Relaxed) => l,
            Some(_) => match log.lanes(sender) {
                Some(l) => self.0.entry(sender).insert_entry(l).into_mut(),
                None => {
                    self.0.remove(&sender);
                    return 0;
                }
            },
            None => match log.lanes(sender) {
                Some(l) => self.0.entry(sender).or_insert(l),
                None => return 0,
            },
        };
        lanes.lag_us(lane, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_sees_the_lag_its_sender_recorded() {
        let log = SendLog::default();
        let lanes = log.register(7);
        lanes.record(lane(false, 2), 1000, 23_000);
        lanes.record(lane(true, 0), 1000, 150);
        let mut seen = Senders::default();
        assert_eq!(seen.lag_us(&log, 7, lane(false, 2), 1000), 23_000);
        assert_eq!(seen.lag_us(&log, 7, lane(true, 0), 1000), 150);
        // Another layer's frame 1000, a frame not yet recorded, an unknown sender: 0.
        assert_eq!(seen.lag_us(&log, 7, lane(false, 1), 1000), 0);
        assert_eq!(seen.lag_us(&log, 7, lane(false, 2), 1001), 0);
        assert_eq!(seen.lag_us(&log, 8, 0, 1000), 0);
    }

    #[test]
    fn an_overwritten_slot_is_not_mistaken_for_an_older_frame() {
        let log = SendLog::default();
        let lanes = log.register(1);
        lanes.record(0, 5, 9_000);
        lanes.record(0, 5 + RING as u32, 40);
        assert_eq!(lanes.lag_us(0, 5), 0);
        assert_eq!(lanes.lag_us(0, 5 + RING as u32), 40);
    }

    #[test]
    fn a_rejoined_sender_is_not_matched_against_its_old_frames() {
        let log = SendLog::default();
        let mut seen = Senders::default();
        log.register(3).record(0, 0, 5_000);
        assert_eq!(seen.lag_us(&log, 3, 0, 0), 5_000);
        // It starts again: sequence numbers restart, the receiver's view follows.
        let again = log.register(3);
        assert_eq!(seen.lag_us(&log, 3, 0, 0), 0);
        again.record(0, 0, 70);
        assert_eq!(seen.lag_us(&log, 3, 0, 0), 70);
        log.forget(3);
        assert!(log.lanes(3).is_none());
        assert_eq!(seen.lag_us(&log, 3, 0, 0), 0);
    }
}
