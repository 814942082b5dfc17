//! Measurements of one received stream, from the probes in its frames: loss after
//! retransmission (sequence gaps of what arrives complete; a frame that completes
//! after its successors was recovered, not lost), forwarding delay (send to the
//! kernel's arrival stamp, one clock) apart from recovery delay (the same, for frames
//! completed by a retransmission: the network's loss, not the node's forwarding),
//! audio jitter (RFC 3550's transit-time difference between consecutive packets),
//! video freezes (gaps over 500 ms) and the layers received.

use std::collections::HashMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::media::Probe;

pub const FREEZE_GAP_US: u64 = 500_000;

/// What one participant measured: every stream it received, by sender and kind, and
/// its join time (from when it set out to its first media; a rejoin keeps the first).
pub struct Measure {
    pub streams: HashMap<(u32, StreamKind), StreamStats>,
    pub started: Instant,
    pub join_ms: Option<f64>,
}

impl Measure {
    pub fn new(started: Instant) -> Self {
        Measure {
            streams: HashMap::new(),
            started,
            join_ms: None,
        }
    }

    /// A frame with `probe` completed at `now`, its last datagram stamped `now_us`
    /// by the kernel (on the probes' clock); `recovered` when a retransmission
    /// completed it.
    pub fn on_frame(
        &mut self,
        kind: StreamKind,
        probe: &Probe,
        recovered: bool,
        now: Instant,
        now_us: u64,
    ) {
        if self.join_ms.is_none() {
            let since = now.saturating_duration_since(self.started);
            self.join_ms = Some(since.as_secs_f64() * 1000.0);
        }
        self.streams
            .entry((probe.sender, kind))
            .or_insert_with(|| StreamStats::new(kind, probe.sender))
            .on_frame(probe, recovered, now_us);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Audio,
    Video,
}

#[derive(Debug)]
pub struct StreamStats {
    pub kind: StreamKind,
    pub sender: u32,
    expected: u64,
    received: u64,
    /// The layer of the current run and its last sequence number: a layer switch
    /// starts a new run (frames of other layers are not loss).
    run: Option<(u8, u32)>,
    /// Frames of the run not (yet) arrived: bit i is the frame `last - 1 - i`. One
    /// that comes after its successors is taken back from the loss.
    missing: u128,
    recovered: u64,
    /// Frames that came on their own (forwarding delay) and frames completed by a
    /// retransmission (recovery delay).
    delay_us: Histogram<u64>,
    recovery_us: Histogram<u64>,
    jitter_us: Histogram<u64>,
    first_us: Option<u64>,
    last_us: Option<u64>,
    /// Send time of the frame that arrived at `last_us`.
    last_sent_us: u64,
    frozen_us: u64,
    max_gap_us: u64,
    /// When the longest gap began, on the probes' clock.
    max_gap_from_us: u64,
    pub layer_frames: [u64; 3],
}

/// The result of one stream over the measured window.
#[derive(Clone, Debug, Serialize)]
pub struct StreamResult {
    pub kind: StreamKind,
    pub sender: u32,
    pub frames: u64,
    pub loss_pct: f64,
    /// Forwarding delay: frames that came without a retransmission.
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    /// Frames completed by a retransmission, and their delay (0 without any).
    pub recovered_frames: u64,
    pub recovery_p99_ms: f64,
    pub jitter_p99_ms: f64,
    pub freeze_pct: f64,
    pub max_gap_ms: f64,
    /// When the longest gap began, in seconds after the stream's first frame: a gap
    /// at the start (a layer switch, the first estimate) reads differently from one
    /// in the middle.
    pub max_gap_at_s: f64,
    pub layer_frames: [u64; 3],
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

impl StreamStats {
    pub fn new(kind: StreamKind, sender: u32) -> Self {
        StreamStats {
            kind,
            sender,
            expected: 0,
            received: 0,
            run: None,
            missing: 0,
            recovered: 0,
            delay_us: histogram(),
            recovery_us: histogram(),
            jitter_us: histogram(),
            first_us: None,
            last_us: None,
            last_sent_us: 0,
            frozen_us: 0,
            max_gap_us: 0,
            max_gap_from_us: 0,
            layer_frames: [0; 3],
        }
    }

    /// One frame received at `now_us` (same clock as the probe's send time);
    /// `recovered` when a retransmission completed it.
    pub fn on_frame(&mut self, probe: &Probe, recovered: bool, now_us: u64) {
        match self.run {
            Some((layer, last)) if layer == probe.layer => {
                if probe.seq > last {
                    let ahead = probe.seq - last;
                    self.expected += ahead as u64;
                    self.received += 1;
                    self.missing = advance(self.missing, ahead);
                    self.run = Some((layer, probe.seq));
                } else if take(&mut self.missing, last - probe.seq) {
                    self.received += 1;
                } else {
                    // A duplicate, or older than remembered: neither loss nor progress.
                    return;
                }
            }
            _ => {
                self.expected += 1;
                self.received += 1;
                self.missing = 0;
                self.run = Some((probe.layer, probe.seq));
            }
        }
        let delay = now_us.saturating_sub(probe.sent_us).max(1);
        if recovered {
            self.recovered += 1;
            let _ = self.recovery_us.record(delay);
        } else {
            let _ = self.delay_us.record(delay);
        }
        if recovered && self.kind == StreamKind::Audio {
            // An audio frame from a RED packet's redundancy comes with a newer frame:
            // a jitter buffer plays it in its place, so it moves no timing figure.
            self.layer_frames[(probe.layer as usize).min(2)] += 1;
            return;
        }
        if let Some(last) = self.last_us {
            let gap = now_us.saturating_sub(last);
            if gap > self.max_gap_us {
                self.max_gap_us = gap;
                self.max_gap_from_us = last;
            }
            if self.kind == StreamKind::Video && gap > FREEZE_GAP_US {
                self.frozen_us += gap;
            }
            if self.kind == StreamKind::Audio {
                // RFC 3550's D(i-1, i): how much more (or less) this packet took than
                // the one before. The sender's own irregularity and lost packets
                // change the send spacing as much as the arrival spacing, so only
                // what happened in between counts.
                let sent_gap = probe.sent_us as i64 - self.last_sent_us as i64;
                let d = (gap as i64 - sent_gap).unsigned_abs();
                let _ = self.jitter_us.record(d.max(1));
            }
        }
        self.first_us.get_or_insert(now_us);
        self.last_us = Some(now_us);
        self.last_sent_us = probe.sent_us;
        self.layer_frames[(probe.layer as usize).min(2)] += 1;
    }

    /// The next frame starts a new run of sequence numbers: a stream whose frames
    /// come from another sender from now on (a SIP leg's picture, switched to the
    /// next speaker) has not lost the numbers in between.
    pub fn restart_run(&mut self) {
        self.run = None;
        self.missing = 0;
    }

    /// Close the window at `end_us`: a stream that went silent before the end was
    /// frozen (or lost) for that time too.
    pub fn finish(&self, end_us: u64) -> StreamResult {
        let ms = |us: u64| us as f64 / 1000.0;
        let (frozen, span) = match (self.first_us, self.last_us) {
            (Some(first), Some(last)) => {
                let tail = end_us.saturating_sub(last);
                let tail_frozen = if tail > FREEZE_GAP_US { tail } else { 0 };
                (self.frozen_us + tail_frozen, end_us.max(last) - first)
            }
            _ => (0, 0),
        };
        // A stream silent at the end of the window was in a gap until then.
        let tail_us = end_us.saturating_sub(self.last_us.unwrap_or(end_us));
        let (gap_us, gap_from_us) = if tail_us > self.max_gap_us {
            (tail_us, self.last_us.unwrap_or(end_us))
        } else {
            (self.max_gap_us, self.max_gap_from_us)
        };
        let frames = self.received;
        let loss_pct = if self.expected == 0 {
            0.0
        } else {
            100.0 * (self.expected - self.received) as f64 / self.expected as f64
        };
        let q = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        StreamResult {
            kind: self.kind,
            sender: self.sender,
            frames,
            loss_pct,
            delay_p50_ms: q(&self.delay_us, 0.5),
            delay_p99_ms: q(&self.delay_us, 0.99),
            recovered_frames: self.recovered,
            recovery_p99_ms: q(&self.recovery_us, 0.99),
            jitter_p99_ms: q(&self.jitter_us, 0.99),
            freeze_pct: if span == 0 {
                100.0
            } else {
                100.0 * frozen as f64 / span as f64
            },
            max_gap_ms: ms(gap_us),
            max_gap_at_s: gap_from_us.saturating_sub(self.first_us.unwrap_or(gap_from_us)) as f64
                / 1e6,
            layer_frames: self.layer_frames,
        }
    }
}

/// The missing-frames map after the run moved `ahead` frames on: the frames skipped
/// over are missing now too.
fn advance(missing: u128, ahead: u32) -> u128 {
    let kept = if ahead >= 128 { 0 } else { missing << ahead };
    let skipped = ahead - 1;
    let new = if skipped >= 128 {
        u128::MAX
    } else {
        (1u128 << skipped) - 1
    };
    kept | new
}

/// Whether the frame `behind` frames before the run's last was missing; it is not
/// any more.
fn take(missing: &mut u128, behind: u32) -> bool {
    let Some(bit) = behind.checked_sub(1).filter(|b| *b < 128) else {
        return false;
    };
    let was = *missing & (1 << bit) != 0;
    *missing &= !(1 << bit);
    was
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(layer: u8, seq: u32, sent_us: u64) -> Probe {
        Probe {
            sender: 1,
            layer,
            seq,
            sent_us,
        }
    }

    #[test]
    fn audio_loss_delay_and_jitter() {
        let mut s = StreamStats::new(StreamKind::Audio, 1);
        // 100 frames every 20 ms, 2 ms delay; frames 10 and 11 never arrive.
        for i in 0..100u32 {
            if i == 10 || i == 11 {
                continue;
            }
            let sent = i as u64 * 20_000;
            s.on_frame(&probe(0, i, sent), false, sent + 2_000);
        }
        let r = s.finish(99 * 20_000 + 2_000);
        assert!((r.loss_pct - 2.0).abs() < 1e-9, "{}", r.loss_pct);
        assert!((r.delay_p99_ms - 2.0).abs() < 0.05);
        // The 60 ms gap is the loss, not jitter: sent 60 ms apart too.
        assert!(r.jitter_p99_ms < 0.05, "{}", r.jitter_p99_ms);
        assert_eq!(r.frames, 98);
    }

    #[test]
    fn audio_jitter_is_the_path_not_the_sender() {
        let mut s = StreamStats::new(StreamKind::Audio, 1);
        // A sender late by up to 15 ms at times, a constant 2 ms on the way: no jitter.
        for i in 0..100u32 {
            let sent = i as u64 * 20_000 + (i as u64 % 4) * 5_000;
            s.on_frame(&probe(0, i, sent), false, sent + 2_000);
        }
        assert!(s.finish(2_100_000).jitter_p99_ms < 0.05);
        // A steady sender and one packet held 30 ms on the way: it arrives 30 ms late
        // and the next one 30 ms early against it, the two largest of 99 differences.
        let mut s = StreamStats::new(StreamKind::Audio, 1);
        for i in 0..100u32 {
            let sent = i as u64 * 20_000;
            let held = if i == 50 { 30_000 } else { 0 };
            s.on_frame(&probe(0, i, sent), false, sent + 2_000 + held);
        }
        let r = s.finish(2_100_000);
        assert!((r.jitter_p99_ms - 30.0).abs() < 0.5, "{}", r.jitter_p99_ms);
    }

    #[test]
    fn video_freezes_and_layer_switches() {
        let mut s = StreamStats::new(StreamKind::Video, 2);
        let mut t = 0u64;
        // 1 s of layer 0 at 30 fps, then a 700 ms gap, then layer 2 with its own
        // sequence numbers: the switch is not loss, the gap is a freeze.
        for i in 0..30u32 {
            s.on_frame(&probe(0, i, t), false, t + 1_000);
            t += 33_333;
        }
        t += 700_000;
        for i in 500..530u32 {
            s.on_frame(&probe(2, i, t), false, t + 1_000);
            t += 33_333;
        }
        let r = s.finish(t);
        assert_eq!(r.loss_pct, 0.0);
        assert_eq!(r.layer_frames, [30, 0, 30]);
        assert!(r.max_gap_ms > 700.0);
        // The gap began after the 30th frame: 29 intervals after the first.
        assert!(
            (r.max_gap_at_s - 29.0 * 0.033_333).abs() < 0.001,
            "{}",
            r.max_gap_at_s
        );
        // ~733 ms frozen of ~2.7 s.
        assert!(
            (r.freeze_pct - 100.0 * 0.733 / 2.73).abs() < 1.0,
            "{}",
            r.freeze_pct
        );
    }

    #[test]
    fn a_frame_recovered_after_its_successors_is_not_lost() {
        let mut s = StreamStats::new(StreamKind::Video, 2);
        // 100 frames every 33 ms, 1 ms on the way; frames 10 and 40 complete only
        // after a retransmission 120 ms later, when frames after them already came;
        // frame 70 never comes; frame 90 is recovered before its successor.
        for i in 0..100u32 {
            let sent = i as u64 * 33_000;
            match i {
                70 => continue,
                10 | 40 => continue,
                _ => s.on_frame(
                    &probe(0, i, sent),
                    i == 90,
                    sent + 1_000 + 9_000 * u64::from(i == 90),
                ),
            }
            if i == 13 || i == 43 {
                let lost = i - 3;
                let sent = lost as u64 * 33_000;
                s.on_frame(&probe(0, lost, sent), true, sent + 120_000);
            }
        }
        // A duplicate, and a frame older than the map remembers, change nothing.
        s.on_frame(&probe(0, 13, 13 * 33_000), true, 4_000_000);
        let r = s.finish(99 * 33_000 + 1_000);
        assert!(
            (r.loss_pct - 1.0).abs() < 1e-9,
            "only frame 70: {}",
            r.loss_pct
        );
        assert_eq!(r.frames, 99);
        assert_eq!(r.recovered_frames, 3);
        assert!((r.delay_p99_ms - 1.0).abs() < 0.05, "{}", r.delay_p99_ms);
        assert!(r.recovery_p99_ms > 100.0, "{}", r.recovery_p99_ms);
        // Beyond 128 frames back a frame is lost for good.
        let mut m = 0u128;
        m = advance(m, 2);
        assert_eq!(m, 1, "the one frame skipped");
        m = advance(m, 200);
        assert!(!take(&mut m, 202), "too old");
        assert!(take(&mut m, 1) && !take(&mut m, 1), "taken once");
    }

    #[test]
    fn silence_until_the_end_counts_as_frozen() {
        let mut s = StreamStats::new(StreamKind::Video, 3);
        s.on_frame(&probe(0, 0, 0), false, 1_000);
        s.on_frame(&probe(0, 1, 33_000), false, 34_000);
        let r = s.finish(2_034_000);
        assert!(r.freeze_pct > 95.0);
        let never = StreamStats::new(StreamKind::Video, 4).finish(1_000_000);
        assert_eq!(never.freeze_pct, 100.0);
    }
}
