//! Sequence number and timestamp rewriting for one subscription.
//!
//! A subscriber sees one continuous RTP stream while the SFU switches between the
//! publisher's simulcast layers (each its own SSRC, sequence space and timestamp base)
//! or follows a publisher whose encoder restarted. At each switch the new source is
//! re-based so that the output sequence continues at `last + 1` (no gap a receiver
//! would NACK or count as loss) and the output timestamp advances by the wall-clock
//! time since the last forwarded packet (never backwards). VP8 picture numbers are
//! re-based at the same points ([`Renumber`]).

use std::time::Instant;

use super::picture::{Picture, Renumber};

#[derive(Debug)]
pub struct Rewriter {
    clock_rate: u32,
    started: bool,
    /// Output = input + offset (wrapping), for the current source.
    seq_offset: u64,
    ts_offset: u32,
    /// Packets of the current source older than the switch point belong to a frame the
    /// subscriber never got the start of.
    first_in_seq: u64,
    highest_out_seq: u64,
    highest_out_ts: u32,
    highest_out_at: Option<Instant>,
    pictures: Renumber,
}

/// What one forwarded packet carries in place of the source's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out {
    pub seq: u64,
    pub ts: u32,
    pub picture: Option<Picture>,
}

/// The first output sequence number; small so the receiver's rollover counter is 0.
const FIRST_SEQ: u64 = 1;

impl Rewriter {
    pub fn new(clock_rate: u32) -> Self {
        Rewriter {
            clock_rate: clock_rate.max(1),
            started: false,
            seq_offset: 0,
            ts_offset: 0,
            first_in_seq: 0,
            highest_out_seq: 0,
            highest_out_ts: 0,
            highest_out_at: None,
            pictures: Renumber::default(),
        }
    }

    /// Start forwarding from a new source at this packet (a keyframe start for video).
    /// With `gap`, one sequence number is left out before it: the frame the previous
    /// source was in the middle of then visibly lacks a packet, and receivers drop it
    /// instead of taking its first packets for a whole frame. `picture` is the
    /// packet's VP8 numbering, if it has one.
    pub fn switch(&mut self, now: Instant, seq: u64, ts: u32, gap: bool, picture: Option<Picture>) {
        let (out_seq, out_ts) = if self.started {
            let elapsed = self
                .highest_out_at
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or_default();
            let ticks = (elapsed.as_micros() as u64 * self.clock_rate as u64 / 1_000_000)
                .clamp(1, u32::MAX as u64 / 2) as u32;
            (
                self.highest_out_seq + 1 + gap as u64,
                self.highest_out_ts.wrapping_add(ticks),
            )
        } else {
            (FIRST_SEQ, ts)
        };
        self.started = true;
        self.seq_offset = out_seq.wrapping_sub(seq);
        self.ts_offset = out_ts.wrapping_sub(ts);
        self.first_in_seq = seq;
        self.pictures.switch(picture);
    }

    /// Continue an output stream that another rewriter wrote until now (a slot that
    /// carried another track): the next switch follows on from `seq`, `ts` and
    /// `picture`.
    pub fn resume(&mut self, seq: u64, ts: u32, at: Instant, picture: Option<Picture>) {
        self.started = true;
        self.highest_out_seq = seq;
        self.highest_out_ts = ts;
        self.highest_out_at = Some(at);
        self.first_in_seq = u64::MAX;
        self.pictures.resume(picture);
    }

    /// Rewrite a packet of the current source; `None` for packets from before the
    /// switch point.
    pub fn rewrite(
        &mut self,
        now: Instant,
        seq: u64,
        ts: u32,
        picture: Option<Picture>,
    ) -> Option<Out> {
        if !self.started || seq < self.first_in_seq {
            return None;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let newest = out_seq > self.highest_out_seq || self.highest_out_at.is_none();
        if newest {
            self.highest_out_seq = out_seq;
            self.highest_out_ts = out_ts;
            self.highest_out_at = Some(now);
        }
        Some(Out {
            seq: out_seq,
            ts: out_ts,
            picture: self.pictures.rewrite(picture, newest),
        })
    }

    pub fn highest_out_seq(&self) -> u64 {
        self.highest_out_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rw(r: &mut Rewriter, now: Instant, seq: u64, ts: u32) -> Option<(u64, u32)> {
        r.rewrite(now, seq, ts, None).map(|o| (o.seq, o.ts))
    }

    #[test]
    fn continuous_across_switch() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch(t0, 5000, 1_000_000, false, None);
        assert_eq!(rw(&mut r, t0, 5000, 1_000_000), Some((1, 1_000_000)));
        assert_eq!(rw(&mut r, t0, 5001, 1_000_000), Some((2, 1_000_000)));
        // Switch 100 ms later to a source with an unrelated sequence and timestamp base.
        let t1 = t0 + Duration::from_millis(100);
        r.switch(t1, 17, 42, false, None);
        assert_eq!(rw(&mut r, t1, 17, 42), Some((3, 1_009_000)));
        // Older packets of the new source (before the keyframe) are dropped.
        assert_eq!(rw(&mut r, t1, 16, 40), None);
        // Later packets keep their relative timing.
        assert_eq!(rw(&mut r, t1, 18, 42 + 3000), Some((4, 1_012_000)));
    }

    #[test]
    fn resume_continues_another_stream() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.resume(700, 5_000, t0, None);
        assert_eq!(
            rw(&mut r, t0, 3, 3),
            None,
            "nothing before the first switch"
        );
        let t1 = t0 + Duration::from_millis(10);
        r.switch(t1, 3, 3, false, None);
        assert_eq!(rw(&mut r, t1, 3, 3), Some((701, 5_900)));
    }

    #[test]
    fn timestamp_wraps_forward() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch(t0, 1, u32::MAX - 10, false, None);
        rw(&mut r, t0, 1, u32::MAX - 10);
        let t1 = t0 + Duration::from_millis(1);
        r.switch(t1, 100, 7, false, None);
        let (seq, ts) = rw(&mut r, t1, 100, 7).unwrap();
        assert_eq!(seq, 2);
        assert_eq!(ts, (u32::MAX - 10).wrapping_add(90));
    }

    #[test]
    fn switch_at_same_instant_still_advances_timestamp() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.switch(t0, 10, 500, false, None);
        rw(&mut r, t0, 10, 500);
        r.switch(t0, 90, 7, false, None);
        assert_eq!(rw(&mut r, t0, 90, 7), Some((2, 501)));
    }
}
