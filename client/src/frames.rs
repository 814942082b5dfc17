//! Which received video frames are complete, from RTP headers alone.
//!
//! The clients receive in RTP mode: instead of depacketizing every frame (str0m's
//! frame mode copies each frame together and keeps a reordering buffer per stream),
//! a frame is judged from its packets' sequence numbers, timestamps and markers: it
//! is complete when every packet from its first to its marker has arrived, in any
//! order (retransmissions come late). Its probe rides in its first packet with
//! payload (`Probe` is written right after the codec's frame header), so only the
//! head of each packet is searched.
//!
//! A frame's first packet is the one after a packet of another timestamp, or one the
//! codec marks as a start (VP8's S bit with partition 0; H.264's STAP-A, a single NAL
//! unit other than an IDR slice, or the first fragment of a non-IDR slice): a stream's
//! first frame, with nothing before it, is then judged too.

use crate::media::{Probe, VideoCodec, MAGIC, PROBE_LEN};

/// Packets remembered per stream: several frames of the top layer, and longer than a
/// retransmission takes to come.
const WINDOW: usize = 512;
/// Frames whose probe is kept until they complete.
const PENDING: usize = 16;
/// The most packets one frame may span (a keyframe of the top layer is about 13).
const MAX_FRAME_PACKETS: u64 = 128;
/// How far into a packet a probe may start: the RTP payload header (VP8 descriptor up
/// to 6 bytes, H.264 FU-A 2 bytes) plus the frame header (up to 21 bytes for an H.264
/// keyframe's first NAL units) and room to spare.
const PROBE_SEARCH: usize = 64;

/// A frame seen lately: its probe once found, and whether it was reported.
#[derive(Clone, Copy)]
struct Pending {
    ts: Option<u32>,
    probe: Option<Probe>,
    reported: bool,
}

#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    ts: u32,
    marker: bool,
    start: bool,
}

const EMPTY: Entry = Entry {
    seq: u64::MAX,
    ts: 0,
    marker: false,
    start: false,
};

/// A frame that completed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Completed {
    pub probe: Option<Probe>,
    /// Its last missing packet came late: the frame was recovered by a retransmission
    /// (its delay is recovery, not forwarding).
    pub recovered: bool,
}

/// One received video stream's recent packets and unfinished frames.
pub struct FrameAssembler {
    codec: VideoCodec,
    packets: Box<[Entry; WINDOW]>,
    /// Recent frames, round robin.
    frames: [Pending; PENDING],
    next_frame: usize,
    highest: u64,
}

impl FrameAssembler {
    pub fn new(codec: VideoCodec) -> Self {
        FrameAssembler {
            codec,
            packets: Box::new([EMPTY; WINDOW]),
            frames: [Pending {
                ts: None,
                probe: None,
                reported: false,
            }; PENDING],
            next_frame: 0,
            highest: 0,
        }
    }

    /// A packet arrived (`seq` extended, as str0m gives it). Returns, once per frame,
    /// that it completed a frame, with the frame's probe if it carries one (frames
    /// from senders other than this crate's carry none).
    pub fn push(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8]) -> Option<Completed> {
        if seq + (WINDOW as u64) <= self.highest {
            return None; // older than anything still remembered
        }
        // A packet older than one already here came late: retransmitted (a NACK
        // needs a later packet to see the gap), or reordered on the way.
        let late = seq < self.highest;
        self.highest = self.highest.max(seq);
        let slot = &mut self.packets[seq as usize % WINDOW];
        if slot.seq == seq {
            return None; // a duplicate
        }
        *slot = Entry {
            seq,
            ts,
            marker,
            start: is_frame_start(self.codec, payload),
        };
        let i = self.frame(ts);
        let f = &mut self.frames[i];
        if f.probe.is_none() {
            f.probe = find_probe(payload);
        }
        if f.reported || !self.complete(seq, ts) {
            return None;
        }
        self.frames[i].reported = true;
        Some(Completed {
            probe: self.frames[i].probe,
            recovered: late,
        })
    }

    /// The pending-frame entry of `ts`, made if new (replacing the oldest).
    fn frame(&mut self, ts: u32) -> usize {
        if let Some(i) = self.frames.iter().position(|f| f.ts == Some(ts)) {
            return i;
        }
        let i = self.next_frame;
        self.next_frame = (i + 1) % PENDING;
        self.frames[i] = Pending {
            ts: Some(ts),
            probe: None,
            reported: false,
        };
        i
    }

    fn get(&self, seq: u64) -> Option<&Entry> {
        let e = &self.packets[seq as usize % WINDOW];
        (e.seq == seq).then_some(e)
    }

    /// Every packet of the frame `seq` belongs to is here: back to its start, forward
    /// to its marker, none missing.
    fn complete(&self, seq: u64, ts: u32) -> bool {
        let mut first = seq;
        loop {
            let e = self.get(first).expect("present");
            if e.start {
                break;
            }
            let Some(prev) = first.checked_sub(1).and_then(|p| self.get(p)) else {
                return false;
            };
            if prev.ts != ts || prev.marker {
                break;
            }
            first -= 1;
            if seq - first > MAX_FRAME_PACKETS {
                return false;
            }
        }
        let mut last = seq;
        loop {
            if self.get(last).expect("present").marker {
                return true;
            }
            match self.get(last + 1) {
                Some(next) if next.ts == ts && !next.start => last += 1,
                _ => return false,
            }
            if last - first > MAX_FRAME_PACKETS {
                return false;
            }
        }
    }
}

/// Whether a payload opens a frame, by the codec's own markings.
fn is_frame_start(codec: VideoCodec, p: &[u8]) -> bool {
    match codec {
        // RFC 7741: S set and partition index 0.
        VideoCodec::Vp8 => p.first().is_some_and(|b| b & 0x10 != 0 && b & 0x07 == 0),
        // RFC 6184: SPS/PPS (STAP-A) open a keyframe; a non-IDR slice opens an inter
        // frame, alone or as its first FU-A fragment.
        VideoCodec::H264 => match p.first().map(|b| b & 0x1f) {
            Some(24) => true,
            Some(28) => p.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1f != 5),
            Some(t) => (1..=23).contains(&t) && t != 5,
            None => false,
        },
    }
}

/// The probe near the head of a packet, if it carries one.
fn find_probe(payload: &[u8]) -> Option<Probe> {
    let head = &payload[..payload.len().min(PROBE_SEARCH + PROBE_LEN)];
    let at = head.windows(MAGIC.len()).position(|w| w == MAGIC)?;
    Probe::find(&payload[at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::vp8_frame;

    fn probe(seq: u32) -> Probe {
        Probe {
            sender: 3,
            layer: 1,
            seq,
            sent_us: 1000 + seq as u64,
        }
    }

    /// A VP8 frame as RTP payloads: a one-byte descriptor (S on the first) and chunks.
    fn packets(seq: u32, n: usize) -> Vec<Vec<u8>> {
        let frame = vp8_frame(seq == 0, 640, 360, &probe(seq), 900 * n);
        frame
            .chunks(900)
            .enumerate()
            .map(|(i, c)| {
                let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    fn on_time(p: Probe) -> Option<Completed> {
        Some(Completed {
            probe: Some(p),
            recovered: false,
        })
    }

    fn recovered(p: Probe) -> Option<Completed> {
        Some(Completed {
            probe: Some(p),
            recovered: true,
        })
    }

    #[test]
    fn a_frame_completes_on_its_last_packet_in_any_order() {
        let mut a = FrameAssembler::new(VideoCodec::Vp8);
        let p = packets(0, 3);
        assert_eq!(a.push(10, 90, false, &p[0]), None);
        assert_eq!(a.push(12, 90, true, &p[2]), None, "11 is missing");
        assert_eq!(a.push(11, 90, false, &p[1]), recovered(probe(0)));
        assert_eq!(a.push(11, 90, false, &p[1]), None, "duplicate");
        // The next frame, its first packet retransmitted last.
        let q = packets(1, 2);
        assert_eq!(a.push(14, 180, true, &q[1]), None);
        assert_eq!(a.push(13, 180, false, &q[0]), recovered(probe(1)));
        // One in order.
        let r = packets(2, 2);
        assert_eq!(a.push(15, 270, false, &r[0]), None);
        assert_eq!(a.push(16, 270, true, &r[1]), on_time(probe(2)));
    }

    #[test]
    fn a_lost_packet_loses_its_frame_only() {
        let mut a = FrameAssembler::new(VideoCodec::Vp8);
        let p = packets(0, 3);
        a.push(1, 90, false, &p[0]);
        a.push(3, 90, true, &p[2]); // 2 never comes
        let q = packets(1, 2);
        a.push(4, 180, false, &q[0]);
        assert_eq!(a.push(5, 180, true, &q[1]), on_time(probe(1)));
    }

    #[test]
    fn without_a_start_mark_a_frame_starts_after_another_timestamp() {
        let mut a = FrameAssembler::new(VideoCodec::H264);
        // FU-A fragments of an IDR slice (not a start by themselves) after a STAP-A.
        let stap = [24u8, 0, 2, 0x67, 0x42];
        let mut fu1 = vec![28u8, 0x80 | 5];
        probe(7).write_escaped(&mut fu1);
        let fu2 = [28u8, 0x40 | 5, 1, 2, 3];
        assert_eq!(a.push(100, 5, false, &stap), None);
        assert_eq!(a.push(102, 5, true, &fu2), None);
        assert_eq!(a.push(101, 5, false, &fu1), recovered(probe(7)));
        // An inter frame whose first packet is lost: its other packets do not make it.
        let mut single = vec![0x41u8];
        probe(8).write_escaped(&mut single);
        let frag = [28u8, 0x40 | 1, 9];
        assert_eq!(a.push(104, 6, true, &frag), None);
        assert_eq!(a.push(105, 7, true, &single), on_time(probe(8)));
    }

    #[test]
    fn old_packets_are_ignored() {
        let mut a = FrameAssembler::new(VideoCodec::Vp8);
        let p = packets(0, 1);
        a.push(10_000, 1, true, &p[0]);
        assert_eq!(a.push(10, 2, true, &p[0]), None);
    }
}
