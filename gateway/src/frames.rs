//! One of the room's videos as whole frames, from the room peer's RTP packets (str0m's
//! RTP mode): sans-IO, packets and time in, frames out.
//!
//! str0m's frame mode delivers frames strictly in sequence: across a gap it waits for
//! the missing packet's NACKs to run out (some 160 ms on loopback). The node leaves
//! such a gap on purpose whenever it switches a subscription's layer in the middle
//! of a frame (so that the cut frame is visibly incomplete), and the packet never
//! comes: every layer switch held the caller's picture that long. Here a frame goes
//! out as soon as it is whole and decodable:
//! - whole: every packet from its first (the codec says it starts a frame, or the one
//!   before it ended the previous frame) to its marker came, in any order;
//! - decodable: a keyframe, or the frame right after the last one out. A delta frame
//!   whose predecessor is missing waits for the retransmission [`RECOVERY`] at most;
//!   then the stream waits for a keyframe (and asks for one). A whole keyframe makes
//!   every unfinished frame before it moot.

use std::time::{Duration, Instant};

use crate::sdp::VideoCodec;
use crate::{h264, vp8};

/// How long a whole frame waits for its predecessor's retransmission.
pub const RECOVERY: Duration = Duration::from_millis(150);
/// How often a keyframe is asked for again while none comes.
pub const KEY_REPEAT: Duration = Duration::from_millis(500);
/// Unfinished frames kept at most (the oldest goes first).
const MAX_PENDING: usize = 16;
/// Packets one frame may span, and its payload bytes at most.
const MAX_PACKETS: usize = 1024;

struct Pending {
    ts: u32,
    /// Its packets by sequence number, in order.
    packets: Vec<(u64, Vec<u8>)>,
    bytes: usize,
    /// The packet the codec marks as a frame's first, and the marker packet.
    start: Option<u64>,
    end: Option<u64>,
    key: bool,
}

impl Pending {
    fn first(&self) -> u64 {
        self.packets.first().map_or(u64::MAX, |p| p.0)
    }

    /// Every packet from its first to its marker is here, and its first opens it.
    fn whole(&self, ended_before: impl Fn(u64) -> bool) -> bool {
        let (Some(end), first) = (self.end, self.first()) else {
            return false;
        };
        let opens = self.start == Some(first) || (first > 0 && ended_before(first - 1));
        opens && end >= first && (end - first + 1) as usize == self.packets.len()
    }
}

/// One video's frames under way.
pub struct Frames {
    codec: VideoCodec,
    pending: Vec<Pending>,
    /// The marker packet of the last frame out.
    last_out: Option<u64>,
    /// Marker packets seen lately (a frame after one of them starts with the next
    /// packet), whatever became of their frames.
    markers: [u64; 8],
    next_marker: usize,
    /// Timestamps of frames dropped lately: their late packets are not a new frame.
    dropped_ts: [Option<u32>; 8],
    next_dropped: usize,
    /// Nothing but a keyframe can be decoded now.
    need_key: bool,
    /// When the publisher was last asked for a keyframe (asked again every
    /// [`KEY_REPEAT`] while none comes).
    key_asked: Option<Instant>,
    /// Since when a whole frame waits for its predecessor.
    blocked_since: Option<Instant>,
    key_wanted: bool,
    out: std::collections::VecDeque<(Vec<u8>, u32)>,
    /// Frames dropped: undecodable, unfinished, or over the limits.
    pub dropped: u64,
}

impl Frames {
    pub fn new(codec: VideoCodec) -> Frames {
        Frames {
            codec,
            pending: Vec::new(),
            last_out: None,
            markers: [u64::MAX; 8],
            next_marker: 0,
            dropped_ts: [None; 8],
            next_dropped: 0,
            need_key: true,
            key_asked: None,
            blocked_since: None,
            key_wanted: false,
            out: Default::default(),
            dropped: 0,
        }
    }

    /// One RTP packet of the video (`seq` extended, as str0m gives it).
    pub fn push(&mut self, now: Instant, seq: u64, ts: u32, marker: bool, payload: &[u8]) {
        if self.last_out.is_some_and(|l| seq <= l)
            || payload.is_empty()
            || self.dropped_ts.contains(&Some(ts))
        {
            return; // its frame is out (or given up) already
        }
        let (start, key) = match self.codec {
            VideoCodec::Vp8 => match vp8::fragment(payload) {
                Some(f) => (f.start, f.keyframe),
                None => return,
            },
            VideoCodec::H264 => (
                h264::packet_starts_frame(payload),
                h264::packet_has_keyframe(payload),
            ),
        };
        if marker {
            self.markers[self.next_marker] = seq;
            self.next_marker = (self.next_marker + 1) % self.markers.len();
        }
        let i = match self.pending.iter().position(|f| f.ts == ts) {
            Some(i) => i,
            None => {
                if self.pending.len() >= MAX_PENDING {
                    self.drop_at(0);
                }
                self.pending.push(Pending {
                    ts,
                    packets: Vec::new(),
                    bytes: 0,
                    start: None,
                    end: None,
                    key: false,
                });
                self.pending.sort_by_key(Pending::first);
                self.pending
                    .iter()
                    .position(|f| f.ts == ts)
                    .expect("just added")
            }
        };
        let f = &mut self.pending[i];
        let at = match f.packets.binary_search_by_key(&seq, |p| p.0) {
            Ok(_) => return, // a duplicate
            Err(at) => at,
        };
        if f.packets.len() >= MAX_PACKETS || f.bytes + payload.len() > h264::MAX_FRAME {
            self.drop_at(i);
            return;
        }
        f.packets.insert(at, (seq, payload.to_vec()));
        f.bytes += payload.len();
        f.key |= key;
        if start {
            f.start = Some(f.start.map_or(seq, |s| s.min(seq)));
        }
        if marker {
            f.end = Some(seq);
        }
        // Its first packet may have changed: keep the frames in order.
        self.pending.sort_by_key(Pending::first);
        self.release(now);
    }

    /// The time passed: a frame that waited too long for its predecessor gives up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.need_key
            && self.last_out.is_some()
            && self
                .key_asked
                .is_some_and(|t| now.duration_since(t) >= KEY_REPEAT)
        {
            // The keyframe asked for did not come (the request or it was lost).
            self.key_wanted = true;
            self.key_asked = Some(now);
        }
        let Some(since) = self.blocked_since else {
            return;
        };
        if now.duration_since(since) < RECOVERY {
            return;
        }
        // The predecessor is lost: nothing but a keyframe decodes from here.
        self.blocked_since = None;
        self.broken(now);
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].key {
                i += 1;
            } else {
                self.drop_at(i);
            }
        }
        self.release(now);
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let again = self
            .key_asked
            .filter(|_| self.need_key && self.last_out.is_some())
            .map(|t| t + KEY_REPEAT);
        let recovery = self.blocked_since.map(|t| t + RECOVERY);
        match (again, recovery) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    /// The next frame out (Annex B for H.264), with its RTP time.
    pub fn poll(&mut self) -> Option<(Vec<u8>, u32)> {
        self.out.pop_front()
    }

    /// Whether the stream broke since last asked: the publisher is to send a keyframe.
    pub fn take_key_wanted(&mut self) -> bool {
        std::mem::take(&mut self.key_wanted)
    }

    fn drop_at(&mut self, i: usize) {
        let f = self.pending.remove(i);
        self.dropped_ts[self.next_dropped] = Some(f.ts);
        self.next_dropped = (self.next_dropped + 1) % self.dropped_ts.len();
        self.dropped += 1;
    }

    /// The stream broke: nothing but a keyframe decodes from here; ask for one.
    fn broken(&mut self, now: Instant) {
        self.need_key = true;
        self.key_wanted = true;
        self.key_asked = Some(now);
    }

    fn ended_before(markers: &[u64; 8], last_out: Option<u64>, seq: u64) -> bool {
        last_out == Some(seq) || markers.contains(&seq)
    }

    /// Send out what is whole and decodable, in order.
    fn release(&mut self, now: Instant) {
        loop {
            let (markers, last_out) = (self.markers, self.last_out);
            let whole = |f: &Pending| f.whole(|s| Frames::ended_before(&markers, last_out, s));
            let Some(front) = self.pending.first() else {
                self.blocked_since = None;
                return;
            };
            // Waiting for a keyframe, a frame known to be a delta is undecodable: VP8
            // says so on its first packet; an H.264 frame only once whole (its first
            // packet may be a delimiter or SEI before the IDR).
            let delta = !front.key
                && match self.codec {
                    VideoCodec::Vp8 => front.start.is_some(),
                    VideoCodec::H264 => whole(front),
                };
            if self.need_key && delta {
                self.drop_at(0);
                continue;
            }
            let front_whole = whole(front);
            let follows = last_out.is_some_and(|l| front.first() == l + 1);
            if front_whole && (front.key || (follows && !self.need_key)) {
                let f = self.pending.remove(0);
                self.emit(f, now);
                self.blocked_since = None;
                continue;
            }
            // A whole keyframe later on makes every frame before it moot (the node's
            // switch to another layer leaves one cut short; a lost delta frame's
            // successors are no use to a decoder either).
            if let Some(k) = self.pending.iter().position(|f| f.key && whole(f)) {
                for _ in 0..k {
                    self.drop_at(0);
                }
                continue;
            }
            if self.need_key {
                // Nothing decodes before a keyframe: whole deltas behind are dropped,
                // and nothing waits.
                let mut i = 1;
                while i < self.pending.len() {
                    if whole(&self.pending[i]) && !self.pending[i].key {
                        self.drop_at(i);
                    } else {
                        i += 1;
                    }
                }
                self.blocked_since = None;
                return;
            }
            // A whole frame waits for its predecessor's retransmission (or gives up).
            if front_whole || self.pending.iter().skip(1).any(whole) {
                self.blocked_since.get_or_insert(now);
            }
            return;
        }
    }

    fn emit(&mut self, f: Pending, now: Instant) {
        self.last_out = f.end;
        self.need_key = false;
        let frame = match self.codec {
            VideoCodec::Vp8 => {
                let mut frame = Vec::with_capacity(f.bytes);
                for (_, p) in &f.packets {
                    if let Some(fr) = vp8::fragment(p) {
                        frame.extend_from_slice(fr.data);
                    }
                }
                frame
            }
            VideoCodec::H264 => {
                let mut a = h264::Assembler::default();
                if !f.packets.iter().all(|(_, p)| a.push(p)) {
                    self.dropped += 1;
                    self.broken(now);
                    return;
                }
                a.take()
            }
        };
        self.out.push_back((frame, f.ts));
    }
}

#[cfg(test)]
mod tests;
