//! One call's video, sans-IO: the room's videos in as whole frames (VP8, or H.264 in
//! Annex B, from the room's peer), the caller's as RTP; the leg's RTP, the caller's frames for the room
//! and keyframe requests out ([`VideoOutput`]).
//!
//! - Room -> leg: one video at a time (the driver names it: the active speaker's, or
//!   the first there is), rewritten into one SSRC with continuous sequence numbers,
//!   timestamps (and VP8 PictureIDs); sources in another codec than the leg's are
//!   never shown (no transcoding). A switch asks the new source for a keyframe and keeps
//!   the old one on the leg until that keyframe arrives: the caller's decoder never
//!   gets a frame it cannot decode, so the picture changes without a freeze.
//! - Leg -> room: the caller's VP8 packets put back together into frames; after a
//!   loss nothing goes to the room until a keyframe, which is asked for at once.
//! - Keyframe requests: the caller's RTCP PLI/FIR go to the shown source; the room's
//!   go to the caller as RTCP PLI (or FIR) where it offered them, else as a SIP INFO
//!   `picture_fast_update` (RFC 5168) that the driver sends; at most one per 500 ms.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::h264;
use crate::rtcp;
use crate::rtp;
use crate::sdp::{LegVideo, VideoCodec};
use crate::srtp::LegSrtp;
use crate::vp8;

/// Keyframe requests, either way, at most this often (the 500 ms: a burst
/// of requests makes an encoder send keyframe after keyframe).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// The leg's video clock.
const CLOCK: u32 = 90_000;
/// Largest frame taken from a caller (a 1080p keyframe is a few hundred kB).
const MAX_FRAME: usize = h264::MAX_FRAME;
/// Keyframe requests a switch makes before it gives up (5 s), and how long its
/// source is then left alone.
const SWITCH_TRIES: u32 = 10;
const GIVEN_UP_FOR: Duration = Duration::from_secs(30);

/// What the video asks its driver to do.
#[derive(Debug, PartialEq, Eq)]
pub enum VideoOutput {
    /// An RTP packet for the leg's video port.
    Leg(Vec<u8>),
    /// An RTCP packet for the caller's RTCP address.
    LegRtcp(Vec<u8>),
    /// A whole frame of the caller's (in the leg's codec) for the room, at its 90 kHz
    /// RTP time.
    Room { frame: Vec<u8>, rtp_time: u32 },
    /// Ask this room source for a keyframe.
    SourceKeyframe(u32),
    /// Ask the caller for a keyframe by SIP INFO (`picture_fast_update`).
    CallerKeyframe,
    /// What the node should send changed (a switch completed, a source turned out
    /// to be in another codec, the leg's layer moved): the driver steers anew.
    Steer,
}

/// What the video counted, for the call's end-of-call log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoStats {
    /// The caller's frames sent to the room, and dropped (lost packets, no keyframe yet).
    pub frames_to_room: u64,
    pub frames_dropped: u64,
    /// The room's frames sent to the caller.
    pub frames_to_leg: u64,
    /// Times the leg's picture changed source.
    pub switches: u64,
    /// Keyframe requests sent to the caller.
    pub caller_keyframes_asked: u64,
    /// Datagrams on the video port that were not the caller's video.
    pub ignored: u64,
}

pub struct Video {
    leg: LegVideo,
    srtp: Option<LegSrtp>,
    /// Our SSRC on the leg.
    ssrc: u32,
    /// The source on the leg, and the one it switches to at its next keyframe.
    shown: Option<u32>,
    wanted: Option<u32>,
    /// When the wanted source was last asked for a keyframe, and how often.
    asked_source: Option<Instant>,
    switch_tries: u32,
    /// When the shown source was last asked for one for the caller.
    asked_shown: Option<Instant>,
    /// The source a switch last gave up on, and when.
    given_up: Option<(u32, Instant)>,
    seq: u16,
    picture_id: u16,
    /// Leg timestamp = source timestamp + offset (set anew at each switch).
    ts_offset: u32,
    /// The last timestamp sent on the leg, and when.
    last_sent: Option<(u32, Instant)>,
    /// The caller's stream: its SSRC, the next sequence number expected, the frame
    /// being put together (timestamp, bytes, whether it began with its first packet).
    caller_ssrc: Option<u32>,
    next_seq: Option<u16>,
    frame: Assembly,
    frame_ts: Option<u32>,
    frame_whole: bool,
    /// After a loss, the caller's frames wait for a keyframe.
    need_keyframe: bool,
    asked_caller: Option<Instant>,
    /// The room's H.264 cut into packets (VP8 is cut here).
    h264_out: h264::Packetizer,
    /// Sources seen sending another codec than the leg's.
    unsuitable: Vec<u32>,
    layers: LayerCap,
    out: VecDeque<VideoOutput>,
    buf: Vec<u8>,
    pub stats: VideoStats,
}

impl Video {
    pub fn new(leg: LegVideo, ssrc: u32) -> Result<Video, String> {
        let srtp = leg.srtp.as_ref().map(|k| k.contexts()).transpose()?;
        let layers = LayerCap::new(max_layer(leg.max_kbps));
        Ok(Video {
            frame: Assembly::new(leg.codec),
            leg,
            srtp,
            ssrc,
            shown: None,
            wanted: None,
            asked_source: None,
            switch_tries: 0,
            asked_shown: None,
            given_up: None,
            seq: rand::random(),
            picture_id: rand::random::<u16>() & 0x7fff,
            ts_offset: 0,
            last_sent: None,
            caller_ssrc: None,
            next_seq: None,
            frame_ts: None,
            frame_whole: false,
            need_keyframe: true,
            asked_caller: None,
            h264_out: h264::Packetizer::default(),
            unsuitable: Vec::new(),
            layers,
            out: VecDeque::new(),
            buf: Vec::with_capacity(1500),
            stats: VideoStats::default(),
        })
    }

    pub fn leg(&self) -> &LegVideo {
        &self.leg
    }

    /// The caller re-keyed its video (a re-INVITE's new SDES key).
    pub fn rekey(&mut self, keys: crate::srtp::Sdes) -> Result<(), String> {
        match self.srtp.as_mut() {
            Some(s) => s.rekey(keys.clone()).map(|()| self.leg.srtp = Some(keys)),
            None => Ok(()),
        }
    }

    /// Carry `codec` (the room's one codec) if the caller offered it, before any
    /// media: `false` if it did not.
    pub fn fit(&mut self, codec: VideoCodec) -> bool {
        if !self.leg.fit(codec) {
            return false;
        }
        self.frame = Assembly::new(codec);
        true
    }

    /// The highest simulcast layer the leg's link carries now.
    pub fn max_layer(&self) -> u8 {
        self.layers.now
    }

    /// The source on the leg now.
    pub fn shown(&self) -> Option<u32> {
        self.shown
    }

    /// The source being switched to (its keyframe awaited).
    pub fn wanted(&self) -> Option<u32> {
        self.wanted
    }

    /// Show `source` on the leg from its next keyframe on.
    pub fn show(&mut self, now: Instant, source: u32) {
        if self.shown == Some(source) {
            self.wanted = None;
            return;
        }
        if self.wanted != Some(source) {
            self.wanted = Some(source);
            self.ask_source(now, source);
        }
    }

    /// `source` is gone (its participant left or stopped its video).
    pub fn forget(&mut self, source: u32) {
        if self.shown == Some(source) {
            self.shown = None;
        }
        if self.wanted == Some(source) {
            self.wanted = None;
        }
    }

    fn ask_source(&mut self, now: Instant, source: u32) {
        self.asked_source = Some(now);
        self.out.push_back(VideoOutput::SourceKeyframe(source));
    }

    /// Whether `source` may be shown: it was not seen sending another codec, and a
    /// switch to it did not just give up.
    pub fn suitable(&self, source: u32, now: Instant) -> bool {
        let resting = self
            .given_up
            .is_some_and(|(s, at)| s == source && now.duration_since(at) < GIVEN_UP_FOR);
        !self.unsuitable.contains(&source) && !resting
    }

    /// A whole frame of `source`'s in `codec` (a keyframe or not), at its 90 kHz RTP
    /// time.
    pub fn on_room_frame(
        &mut self,
        now: Instant,
        source: u32,
        codec: VideoCodec,
        frame: &[u8],
        rtp_time: u32,
    ) {
        if frame.is_empty() {
            return;
        }
        // Another codec, or H.264 above Baseline (a leg is answered as Baseline):
        // never shown, as there is no transcoding.
        let baseline = codec != VideoCodec::H264 || h264::profile(frame).is_none_or(|p| p == 66);
        if codec != self.leg.codec || !baseline {
            if !self.unsuitable.contains(&source) && self.unsuitable.len() < 256 {
                self.unsuitable.push(source);
            }
            if self.shown == Some(source) || self.wanted == Some(source) {
                // Another source is to be chosen, and the node told.
                self.forget(source);
                self.out.push_back(VideoOutput::Steer);
            }
            return;
        }
        let keyframe = match codec {
            VideoCodec::Vp8 => vp8::is_keyframe(frame),
            VideoCodec::H264 => h264::is_keyframe(frame),
        };
        if self.shown.is_none() && self.wanted.is_none() {
            // Nothing chosen yet: the first video there is (never the caller's own,
            // which the room does not send back).
            self.show(now, source);
        }
        if self.wanted == Some(source) {
            if !keyframe {
                return;
            }
            // The switch: the new source's time continues the leg's (one frame's
            // worth on, or the time that really passed since the last frame).
            let next = match self.last_sent {
                Some((ts, at)) => {
                    let passed = (now - at).as_micros() as u64 * u64::from(CLOCK) / 1_000_000;
                    ts.wrapping_add(passed.clamp(1, u64::from(CLOCK)) as u32)
                }
                None => rand::random(),
            };
            self.ts_offset = next.wrapping_sub(rtp_time);
            self.shown = Some(source);
            self.wanted = None;
            self.switch_tries = 0;
            self.stats.switches += 1;
            // The old source is paused now; the new one's parameter sets are its own.
            self.h264_out = h264::Packetizer::default();
            self.out.push_back(VideoOutput::Steer);
        }
        if self.shown != Some(source) || !self.leg.direction_sends() {
            return;
        }
        if self.leg.remote.is_none() {
            return;
        }
        let ts = rtp_time.wrapping_add(self.ts_offset);
        let payloads: Vec<Vec<u8>> = match self.leg.codec {
            VideoCodec::Vp8 => frame
                .chunks(vp8::MAX_PAYLOAD)
                .enumerate()
                .map(|(i, chunk)| [&vp8::descriptor(i == 0, self.picture_id)[..], chunk].concat())
                .collect(),
            VideoCodec::H264 => self
                .h264_out
                .payloads(frame, vp8::MAX_PAYLOAD + 4)
                .into_iter()
                .map(|b| b.to_vec())
                .collect(),
        };
        let chunks = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            let last = i + 1 == chunks;
            rtp::write(
                &mut self.buf,
                self.leg.pt,
                last,
                self.seq,
                ts,
                self.ssrc,
                &payload,
            );
            self.seq = self.seq.wrapping_add(1);
            let packet = match self.srtp.as_mut() {
                Some(s) => match s.protect(&self.buf) {
                    Some(p) => p,
                    None => continue,
                },
                None => self.buf.clone(),
            };
            self.out.push_back(VideoOutput::Leg(packet));
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        self.last_sent = Some((ts, now));
        self.stats.frames_to_leg += 1;
    }

    /// The caller wants a keyframe of what it sees (RTCP PLI or FIR, or SIP INFO):
    /// the shown source is asked, at most once per 500 ms (a switch under way asks
    /// its own source on its own timer).
    pub fn caller_wants_keyframe(&mut self, now: Instant) {
        let Some(s) = self.shown else { return };
        if self
            .asked_shown
            .is_none_or(|t| now.duration_since(t) >= KEYFRAME_INTERVAL)
        {
            self.asked_shown = Some(now);
            self.out.push_back(VideoOutput::SourceKeyframe(s));
        }
    }

    /// The room wants a keyframe of the caller's video.
    pub fn room_wants_keyframe(&mut self, now: Instant) {
        if self
            .asked_caller
            .is_some_and(|t| now.duration_since(t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        self.asked_caller = Some(now);
        self.stats.caller_keyframes_asked += 1;
        let media = self.caller_ssrc;
        let rtcp = match media {
            Some(media) if self.leg.pli => Some(rtcp::pli(self.ssrc, media)),
            Some(media) if self.leg.fir => Some(rtcp::fir(
                self.ssrc,
                media,
                self.stats.caller_keyframes_asked as u8,
            )),
            _ => None,
        };
        let rtcp = match (rtcp, self.srtp.as_mut()) {
            (Some(p), Some(s)) => s.protect_rtcp(&p),
            (p, _) => p,
        };
        self.out.push_back(match rtcp {
            Some(p) => VideoOutput::LegRtcp(p),
            None => VideoOutput::CallerKeyframe,
        });
    }

    /// A datagram on the leg's video port (RTP, or RTCP sent to it).
    pub fn on_leg_datagram(&mut self, now: Instant, data: &[u8]) -> bool {
        let rtcp = data.len() >= 2 && (192..=223).contains(&data[1]);
        let plain;
        let data = match (self.srtp.as_mut(), rtcp) {
            (None, _) => data,
            (Some(s), false) => match s.unprotect(data) {
                Some(p) => {
                    plain = p;
                    &plain[..]
                }
                None => return self.ignored(),
            },
            (Some(s), true) => match s.unprotect_rtcp(data) {
                Some(p) => {
                    plain = p;
                    &plain[..]
                }
                None => return self.ignored(),
            },
        };
        if rtcp {
            let f = rtcp::read(data, self.ssrc);
            if f.keyframe {
                self.caller_wants_keyframe(now);
            }
            self.layers.on_feedback(now, f);
            if self.layers.changed() {
                self.out.push_back(VideoOutput::Steer);
            }
            return true;
        }
        let Ok(p) = rtp::parse(data) else {
            return self.ignored();
        };
        if p.pt != self.leg.pt {
            return self.ignored();
        }
        // VP8 says where a frame starts; H.264 frames are told apart by timestamp.
        let (start, payload) = match self.leg.codec {
            VideoCodec::Vp8 => match vp8::fragment(p.payload) {
                Some(f) => (f.start, f.data),
                None => return self.ignored(),
            },
            VideoCodec::H264 => (false, p.payload),
        };
        if self.caller_ssrc != Some(p.ssrc) {
            // A new sender (or the first): its frames start at its next keyframe.
            self.caller_ssrc = Some(p.ssrc);
            self.next_seq = None;
            self.frame_ts = None;
            self.need_keyframe = true;
        }
        let mut lost = false;
        if let Some(next) = self.next_seq {
            let ahead = p.seq.wrapping_sub(next);
            if ahead > 0x8000 {
                // Late or repeated: its frame is gone already.
                return true;
            }
            if ahead > 0 {
                // Lost: the frame being put together is broken, and so is every
                // frame until the next keyframe.
                self.frame_whole = false;
                lost = true;
                self.lost(now);
            }
        }
        self.next_seq = Some(p.seq.wrapping_add(1));
        if self.frame_ts != Some(p.ts) || start {
            if self.frame_ts.is_some() && self.frame_whole && !self.frame.is_empty() {
                // A frame that never saw its marker.
                self.stats.frames_dropped += 1;
            }
            self.frame.restart();
            // A VP8 frame is whole only from its first packet; an H.264 one from
            // the first packet of its timestamp that came in order.
            self.frame_whole = start || (self.leg.codec == VideoCodec::H264 && !lost);
            self.frame_ts = Some(p.ts);
        }
        if self.frame.len() + payload.len() > MAX_FRAME {
            self.frame_whole = false;
        }
        if self.frame_whole && !self.frame.push(payload) {
            self.frame_whole = false;
        }
        if p.marker {
            self.frame_ts = None;
            if !self.frame_whole || self.frame.is_empty() {
                // What follows refers to it: nothing more until a keyframe.
                self.stats.frames_dropped += 1;
                self.lost(now);
                return true;
            }
            let key = self.frame.is_keyframe();
            if self.need_keyframe && !key {
                self.stats.frames_dropped += 1;
                self.room_wants_keyframe(now);
                return true;
            }
            self.need_keyframe = false;
            self.stats.frames_to_room += 1;
            self.out.push_back(VideoOutput::Room {
                frame: self.frame.take(),
                rtp_time: p.ts,
            });
        }
        true
    }

    fn lost(&mut self, now: Instant) {
        self.need_keyframe = true;
        self.room_wants_keyframe(now);
    }

    fn ignored(&mut self) -> bool {
        self.stats.ignored += 1;
        false
    }

    /// Time passes: a switch whose keyframe has not come asks again, and gives up
    /// after [`SWITCH_TRIES`] (its source sends nothing: the leg stays as it is).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(w) = self.wanted {
            if self
                .asked_source
                .is_none_or(|t| now.duration_since(t) >= KEYFRAME_INTERVAL)
            {
                self.switch_tries += 1;
                if self.switch_tries >= SWITCH_TRIES {
                    // Left alone for a while, and the node told to stop sending it.
                    self.given_up = Some((w, now));
                    self.wanted = None;
                    self.switch_tries = 0;
                    self.out.push_back(VideoOutput::Steer);
                    return;
                }
                self.ask_source(now, w);
            }
        }
    }

    /// When [`Video::handle_timeout`] wants to run next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.wanted?;
        self.asked_source.map(|t| t + KEYFRAME_INTERVAL)
    }

    pub fn poll_output(&mut self) -> Option<VideoOutput> {
        self.out.pop_front()
    }
}

/// One of the room's videos as the leg may show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its source id on the room peer.
    pub source: u32,
    /// Its participant's id.
    pub participant: String,
    /// A shared screen rather than a camera.
    pub screen: bool,
}

/// The room video the leg should show: a shared screen while one is shared (the one
/// shown now while it lasts), else the dominant speaker's camera when they have one,
/// else the one shown now while it lasts, else the first there is. `videos` are the
/// room's, the caller's own never among them.
pub fn pick(videos: &[Candidate], speaker: Option<&str>, now: Option<u32>) -> Option<u32> {
    let shown = |c: &&Candidate| Some(c.source) == now;
    let screens = || videos.iter().filter(|c| c.screen);
    let screen = screens().find(shown).or_else(|| screens().next());
    let cameras = || videos.iter().filter(|c| !c.screen);
    let of_speaker = cameras().find(|c| Some(c.participant.as_str()) == speaker);
    let still = cameras().find(shown);
    screen
        .or(of_speaker)
        .or(still)
        .or(videos.first())
        .map(|c| c.source)
}

/// How long loss must stay low before the layer goes up again, and the least time
/// between two changes (a layer switch costs a keyframe).
const CLEAN_FOR: Duration = Duration::from_secs(10);
const CHANGE_EVERY: Duration = Duration::from_secs(2);
/// Reported loss (of 256) above which the layer goes down, and below which it counts
/// as clean: about 10% and 2%.
const LOSSY: u8 = 26;
const CLEAN: u8 = 5;

/// The simulcast layer the leg's link carries: at most what its SDP bandwidth and the
/// caller's TMMBR allow, one lower for each report of heavy loss (at most one change
/// per 2 s), one higher after 10 s of clean reports.
struct LayerCap {
    /// From `b=TIAS`/`b=AS`.
    sdp: u8,
    tmmbr: Option<u8>,
    now: u8,
    changed_at: Option<Instant>,
    clean_since: Option<Instant>,
    told: u8,
}

impl LayerCap {
    fn new(sdp: u8) -> LayerCap {
        LayerCap {
            sdp,
            tmmbr: None,
            now: sdp,
            changed_at: None,
            clean_since: None,
            told: sdp,
        }
    }

    fn cap(&self) -> u8 {
        self.tmmbr.map_or(self.sdp, |t| t.min(self.sdp))
    }

    fn on_feedback(&mut self, now: Instant, f: rtcp::Feedback) {
        if let Some(bps) = f.max_bitrate {
            self.tmmbr = Some(max_layer(Some(
                u32::try_from(bps / 1000).unwrap_or(u32::MAX),
            )));
            self.now = self.now.min(self.cap());
        }
        let Some(lost) = f.fraction_lost else {
            return;
        };
        let may_change = self
            .changed_at
            .is_none_or(|t| now.duration_since(t) >= CHANGE_EVERY);
        if lost > LOSSY {
            self.clean_since = None;
            if self.now > 0 && may_change {
                self.now -= 1;
                self.changed_at = Some(now);
            }
        } else if lost >= CLEAN {
            // Neither heavy nor clean: the clean period starts over.
            self.clean_since = None;
        } else {
            let since = *self.clean_since.get_or_insert(now);
            let settled = self
                .changed_at
                .is_none_or(|t| now.duration_since(t) >= CLEAN_FOR);
            if self.now < self.cap() && now.duration_since(since) >= CLEAN_FOR && settled {
                self.now += 1;
                self.changed_at = Some(now);
                self.clean_since = Some(now);
            }
        }
    }

    /// Whether the layer changed since last asked.
    fn changed(&mut self) -> bool {
        let changed = self.now != self.told;
        self.told = self.now;
        changed
    }
}

/// The highest simulcast layer a leg's bandwidth (`b=AS`/`b=TIAS`) carries: the
/// browser's layers are about 150, 500 and 1500 kbit/s.
pub fn max_layer(kbps: Option<u32>) -> u8 {
    match kbps {
        Some(k) if k < 400 => 0,
        Some(k) if k < 1200 => 1,
        _ => 2,
    }
}

impl LegVideo {
    /// Whether the answer lets the gateway send video to the caller.
    pub fn direction_sends(&self) -> bool {
        matches!(self.direction, "sendrecv" | "sendonly")
    }
}

/// A caller's frame being put together: VP8 payloads are concatenated, H.264 ones
/// depacketized (STAP-A, FU-A) into Annex B.
enum Assembly {
    Vp8(Vec<u8>),
    H264(h264::Assembler),
}

impl Assembly {
    fn new(codec: VideoCodec) -> Assembly {
        match codec {
            VideoCodec::Vp8 => Assembly::Vp8(Vec::new()),
            VideoCodec::H264 => Assembly::H264(h264::Assembler::default()),
        }
    }

    fn restart(&mut self) {
        match self {
            Assembly::Vp8(f) => f.clear(),
            Assembly::H264(a) => a.restart(),
        }
    }

    /// One packet's payload (after its VP8 descriptor); `false` when unreadable.
    fn push(&mut self, payload: &[u8]) -> bool {
        match self {
            Assembly::Vp8(f) => {
                f.extend_from_slice(payload);
                true
            }
            Assembly::H264(a) => a.push(payload),
        }
    }

    fn len(&self) -> usize {
        match self {
            Assembly::Vp8(f) => f.len(),
            Assembly::H264(a) => a.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_keyframe(&self) -> bool {
        match self {
            Assembly::Vp8(f) => vp8::is_keyframe(f),
            Assembly::H264(a) => a.is_keyframe(),
        }
    }

    fn take(&mut self) -> Vec<u8> {
        match self {
            Assembly::Vp8(f) => std::mem::take(f),
            Assembly::H264(a) => a.take(),
        }
    }
}

#[cfg(test)]
mod tests;
