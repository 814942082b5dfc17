//! The room peer's media at the RTP level (str0m's RTP mode).
//!
//! Received: each room stream's packets, by SSRC; Opus packets are frames already,
//! video packets become frames in [`Frames`] (whole and decodable at once, never held
//! across the gap the node leaves when it switches layers; see there). Sent: the
//! caller's Opus with its RFC 6464 level, and the caller's video frames cut by
//! str0m's own packetizers, unpaced (a leg's frames arrive spaced already).

use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::unversioned::{H264Packetizer, Packetizer, Vp8Packetizer};
use str0m::Rtc;

use crate::frames::Frames;
use crate::sdp::VideoCodec;

/// RTP payload bytes per packet sent to the room: within str0m's 1,150-byte datagram
/// target with the header, extensions and SRTP tag.
const PAYLOAD_MTU: usize = 1_080;

/// One stream the room sends: which source (m-line) it is, and its frames under way.
struct Incoming {
    ssrc: Ssrc,
    source: u32,
    pt: Pt,
    codec: Option<Codec>,
    frames: Option<Frames>,
    /// The newest audio packet handed on: an older one comes too late for the
    /// call's jitter buffer, which plays in arrival order (str0m's RTP mode does not
    /// reorder).
    audio_seq: Option<u64>,
}

/// What the room peer sends and receives.
pub(super) struct Media {
    audio_seq: u64,
    audio_time: u64,
    video_seq: u64,
    vp8: Vp8Packetizer,
    h264: H264Packetizer,
    incoming: Vec<Incoming>,
}

/// The negotiated payload type of `codec` on `mid` (H.264: packetization mode 1).
fn pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let remote = rtc.media(mid)?.remote_pts();
    rtc.codec_config()
        .find(|p| {
            remote.contains(&p.pt())
                && p.spec().codec == codec
                && (codec != Codec::H264 || p.spec().format.packetization_mode == Some(1))
        })
        .map(|p| p.pt())
}

impl Media {
    pub(super) fn new() -> Media {
        Media {
            // Below 2^15, so that the rollover counter starts at 0.
            audio_seq: rand::random::<u16>() as u64 >> 1,
            audio_time: rand::random::<u32>() as u64,
            video_seq: rand::random::<u16>() as u64 >> 1,
            vp8: Vp8Packetizer::default(),
            h264: H264Packetizer::default(),
            incoming: Vec::new(),
        }
    }

    /// One Opus frame of `samples` (48 kHz) with its RFC 6464 level (-dBov); dropped
    /// before the peer is connected.
    pub(super) fn send_opus(
        &mut self,
        rtc: &mut Rtc,
        mid: Mid,
        now: Instant,
        opus: Vec<u8>,
        level: i8,
        samples: u32,
    ) {
        let ts = self.audio_time as u32;
        self.audio_time += u64::from(samples.clamp(120, 5760));
        let Some(pt) = pt(rtc, mid, Codec::Opus) else {
            return;
        };
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        tx.set_unpaced(true);
        let ext = ExtensionValues {
            audio_level: Some(-level),
            voice_activity: Some(level < 60),
            ..Default::default()
        };
        tx.write_rtp(RtpWrite::new(pt, self.audio_seq.into(), ts, now, opus).ext_vals(ext));
        self.audio_seq += 1;
    }

    /// One video frame (VP8, or H.264 in Annex B) at its 90 kHz RTP time.
    pub(super) fn send_video(
        &mut self,
        rtc: &mut Rtc,
        mid: Mid,
        now: Instant,
        codec: VideoCodec,
        frame: &[u8],
        rtp_time: u32,
    ) {
        let (want, packetizer): (_, &mut dyn Packetizer) = match codec {
            VideoCodec::Vp8 => (Codec::Vp8, &mut self.vp8),
            VideoCodec::H264 => (Codec::H264, &mut self.h264),
        };
        let Some(pt) = pt(rtc, mid, want) else {
            return;
        };
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        tx.set_unpaced(true);
        let payloads = packetizer.packetize(PAYLOAD_MTU, frame).unwrap_or_default();
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.into_iter().enumerate() {
            let rtp = RtpWrite::new(pt, self.video_seq.into(), rtp_time, now, payload)
                .marker(i == last)
                .nackable(true);
            tx.write_rtp(rtp);
            self.video_seq += 1;
        }
    }

    /// A packet from the room: Opus handed to `audio` (source, frame), whole video
    /// frames to `video` (source, codec, frame, RTP time). `source_of` numbers the
    /// m-lines.
    pub(super) fn on_packet(
        &mut self,
        rtc: &mut Rtc,
        now: Instant,
        p: &RtpPacket,
        source_of: impl FnOnce(Mid) -> u32,
        audio: impl FnOnce(u32, &[u8]),
        video: impl FnMut(u32, VideoCodec, &[u8], u32),
    ) {
        let ssrc = p.header.ssrc;
        let i = match self.incoming.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None => {
                let Some(mid) = rtc.direct_api().stream_rx(&ssrc).map(|rx| rx.mid()) else {
                    return;
                };
                self.incoming.push(Incoming {
                    ssrc,
                    source: source_of(mid),
                    pt: p.header.payload_type,
                    codec: None,
                    frames: None,
                    audio_seq: None,
                });
                self.incoming.len() - 1
            }
        };
        let s = &mut self.incoming[i];
        if s.codec.is_none() || s.pt != p.header.payload_type {
            s.pt = p.header.payload_type;
            s.codec = rtc
                .codec_config()
                .find(|c| c.pt() == s.pt)
                .map(|c| c.spec().codec);
            s.frames = match s.codec {
                Some(Codec::Vp8) => Some(Frames::new(VideoCodec::Vp8)),
                Some(Codec::H264) => Some(Frames::new(VideoCodec::H264)),
                _ => None,
            };
        }
        match (s.codec, s.frames.as_mut()) {
            (Some(Codec::Opus), _) => {
                let seq = *p.seq_no;
                if s.audio_seq.is_none_or(|last| seq > last) {
                    s.audio_seq = Some(seq);
                    audio(s.source, &p.payload);
                }
            }
            (_, Some(frames)) => {
                let t = p.header.timestamp;
                frames.push(now, *p.seq_no, t, p.header.marker, &p.payload);
                drain(rtc, s, video);
            }
            _ => {}
        }
    }

    /// The time passed: frames that waited too long for a lost predecessor give up.
    pub(super) fn handle_timeout(
        &mut self,
        rtc: &mut Rtc,
        now: Instant,
        mut video: impl FnMut(u32, VideoCodec, &[u8], u32),
    ) {
        for s in &mut self.incoming {
            if let Some(f) = s.frames.as_mut() {
                if f.next_timeout().is_some_and(|t| t <= now) {
                    f.handle_timeout(now);
                    drain(rtc, s, &mut video);
                }
            }
        }
    }

    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.incoming
            .iter()
            .filter_map(|s| s.frames.as_ref()?.next_timeout())
            .min()
    }

    /// Ask for a keyframe of `source`'s video (RTCP PLI), on `mid`.
    pub(super) fn request_keyframe(&self, rtc: &mut Rtc, mid: Mid, source: u32) {
        let mut api = rtc.direct_api();
        // The stream last seen on the source's m-line, else whichever str0m has there.
        let known = self.incoming.iter().rev().find(|s| s.source == source);
        let ssrc = known
            .map(|s| s.ssrc)
            .filter(|ssrc| api.stream_rx(ssrc).is_some())
            .or_else(|| api.stream_rx_by_mid(mid, None).map(|rx| rx.ssrc()));
        if let Some(rx) = ssrc.and_then(|ssrc| api.stream_rx(&ssrc)) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }
}

/// Hand the stream's finished frames to `video`; a broken stream asks its publisher
/// for a keyframe.
fn drain(rtc: &mut Rtc, s: &mut Incoming, mut video: impl FnMut(u32, VideoCodec, &[u8], u32)) {
    let Some(frames) = s.frames.as_mut() else {
        return;
    };
    let codec = match s.codec {
        Some(Codec::H264) => VideoCodec::H264,
        _ => VideoCodec::Vp8,
    };
    while let Some((frame, ts)) = frames.poll() {
        video(s.source, codec, &frame, ts);
    }
    if frames.take_key_wanted() {
        if let Some(rx) = rtc.direct_api().stream_rx(&s.ssrc) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }
}
