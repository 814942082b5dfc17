//! What a publishing peer sends, and when: Opus every 20 ms with its audio level, video
//! in up to three simulcast layers at the run's rates (keyframes on an interval and on
//! request), every frame carrying a probe, packetized with str0m's own packetizers and
//! written unpaced in RTP mode.

use std::time::{Duration, Instant};

use rand::Rng;
use str0m::format::Codec;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RedEncoder, RedundantBlock, RtpWrite, Ssrc};
use str0m::unversioned::{H264Packetizer, Packetizer, Vp8Packetizer};
use str0m::Rtc;

use crate::env::Env;
use crate::media::{video_frame, Probe, VideoCodec};
use crate::sendlog::{self, Outbox};
use crate::slots::{self, Slots};

/// The simulcast layers' rids, lowest first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
/// RTP payload bytes per packet: a datagram then stays within str0m's 1,150-byte
/// target with the RTP header, its extensions and the SRTP tag.
const PAYLOAD_MTU: usize = 1_080;

/// One RTP stream this peer sends: its SSRC and next sequence number.
struct Outgoing {
    ssrc: Ssrc,
    seq: u64,
}

impl Outgoing {
    fn new(ssrc: Ssrc) -> Self {
        // Browsers start at a random sequence number (RFC 3550 §5.1); below 2^15 so
        // that the rollover counter starts at 0 (str0m warns otherwise).
        Outgoing {
            ssrc,
            seq: rand::rng().random_range(0..1 << 15),
        }
    }
}

/// str0m's packetizer of the video codec, one per layer (each keeps its own state).
#[derive(Debug)]
enum VideoPacketizer {
    Vp8(Vp8Packetizer),
    H264(H264Packetizer),
}

impl VideoPacketizer {
    fn new(codec: VideoCodec) -> Self {
        match codec {
            VideoCodec::Vp8 => VideoPacketizer::Vp8(Vp8Packetizer::default()),
            VideoCodec::H264 => VideoPacketizer::H264(H264Packetizer::default()),
        }
    }

    fn packetize(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        let p: &mut dyn Packetizer = match self {
            VideoPacketizer::Vp8(p) => p,
            VideoPacketizer::H264(p) => p,
        };
        p.packetize(PAYLOAD_MTU, frame).unwrap_or_default()
    }
}

/// The payload type of `codec`; for H.264 the Constrained Baseline, packetization
/// mode 1 one that the frames are (str0m offers several profiles).
fn pt(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .find(|p| {
            let f = &p.spec().format;
            p.spec().codec == codec
                && (codec != Codec::H264
                    || (f.packetization_mode == Some(1)
                        && f.profile_level_id.map(|p| p >> 8) == Some(0x42e0)))
        })
        .map(|p| p.pt())
}

/// Earlier Opus frames each RED packet repeats (RFC 2198; `--audio-red`): a frame is
/// lost only with the two packets after it.
pub const RED_COPIES: usize = 2;

/// The frames a RED packet repeats: timestamp and payload, oldest first.
type Copies = [Option<(u32, Vec<u8>)>; RED_COPIES];

/// RED's payload type for Opus, if the remote side took it (str0m keeps RED on the
/// Opus params only while both sides have it).
fn red_pt(rtc: &Rtc) -> Option<Pt> {
    rtc.codec_config()
        .find(|p| p.spec().codec == Codec::Opus)?
        .red()
}

/// A RED payload: `frame` (timestamp `ts`) after the earlier frames in `copies`
/// (timestamp and payload, oldest first), which then holds `frame` too, as the newest.
fn red_packet(opus_pt: Pt, frame: &[u8], ts: u32, copies: &mut Copies) -> Vec<u8> {
    let earlier: Vec<RedundantBlock> = copies
        .iter()
        .flatten()
        .map(|(t, payload)| RedundantBlock {
            pt: *opus_pt,
            timestamp_offset: ts.wrapping_sub(*t),
            payload: payload.clone(),
        })
        .collect();
    let red = RedEncoder::encode(*opus_pt, frame, &earlier);
    copies.rotate_left(1);
    copies[RED_COPIES - 1] = Some((ts, frame.to_vec()));
    red
}

/// The m-lines a publishing offer made: audio, video, or both.
#[derive(Clone, Copy, Debug)]
pub struct Mids {
    pub audio: Option<Mid>,
    pub video: Option<Mid>,
}

/// What the publishing peer sends, and when.
pub struct Sending {
    audio: Option<Outgoing>,
    video: [Option<Outgoing>; 3],
    /// Payload types, looked up once (the local codec config does not change).
    audio_pt: Option<Pt>,
    video_pt: Option<Pt>,
    /// RED's payload type when the run sends Opus in RED and the node took it; with
    /// the last frames sent, repeated in each packet (oldest first).
    red: Option<(Pt, Copies)>,
    codec: VideoCodec,
    /// How many of the run's layers this peer sends (1: no simulcast; 0: no video).
    layers: usize,
    packetizers: [VideoPacketizer; 3],
    id: u32,
    loud: bool,
    keyframe_wanted: [bool; 3],
    audio_slots: Slots,
    video_slots: [Slots; 3],
    next_key: Instant,
    seq_audio: u32,
    seq_video: [u32; 3],
    /// Where this sender records when its frames really left.
    outbox: Outbox,
    /// Whether the connection was up at the last turn: frames are due only while it
    /// is (see `Slots::resume`).
    live: bool,
    /// Layers not sent for now, as a browser drops its top layer under CPU or uplink
    /// pressure (their frames are not planned meanwhile).
    held: [bool; 3],
}

impl Sending {
    /// The answer is in: send unpaced (so that the delay measured is the server's:
    /// str0m's pacer would hold a keyframe burst for tens of milliseconds before it
    /// reached the socket) and start the media clock at `now`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        rtc: &mut Rtc,
        env: &Env,
        (codec, layers): (VideoCodec, usize),
        mids: Mids,
        id: u32,
        loud: bool,
        now: Instant,
    ) -> Result<Sending, String> {
        // Only a peer that offered RED has it in its config once negotiated.
        let red = mids
            .audio
            .and_then(|_| red_pt(rtc))
            .map(|pt| (pt, [None, None]));
        let (audio_pt, video_pt) = (
            pt(rtc, Codec::Opus),
            pt(
                rtc,
                match codec {
                    VideoCodec::Vp8 => Codec::Vp8,
                    VideoCodec::H264 => Codec::H264,
                },
            ),
        );
        let mut direct = rtc.direct_api();
        let mut video_out: [Option<Outgoing>; 3] = [None, None, None];
        let layers = if mids.video.is_some() { layers } else { 0 };
        for (i, rid) in RIDS.iter().enumerate().take(layers) {
            let rid = (layers > 1).then(|| Rid::from(*rid));
            let tx = mids.video.and_then(|v| direct.stream_tx_by_mid(v, rid));
            if let Some(tx) = tx {
                tx.set_unpaced(true);
                video_out[i] = Some(Outgoing::new(tx.ssrc()));
            }
        }
        let audio_out = mids
            .audio
            .and_then(|a| direct.stream_tx_by_mid(a, None))
            .map(|tx| {
                tx.set_unpaced(true);
                Outgoing::new(tx.ssrc())
            });
        let streams = video_out.iter().flatten().count() + audio_out.iter().count();
        let expected = layers + mids.audio.iter().count();
        if streams != expected {
            return Err(format!(
                "negotiated {streams} send streams, expected {expected}"
            ));
        }
        let jitter = Duration::from_millis(rand::rng().random_range(0..20));
        let rates = &env.layers[..layers];
        Ok(Sending {
            audio: audio_out,
            video: video_out,
            audio_pt,
            video_pt,
            red,
            codec,
            layers,
            packetizers: std::array::from_fn(|_| VideoPacketizer::new(codec)),
            id,
            loud,
            keyframe_wanted: [true; 3],
            audio_slots: Slots::new(now + jitter, Duration::from_millis(20)),
            video_slots: std::array::from_fn(|i| Slots::for_layer(rates, i, now + jitter)),
            next_key: now + env.keyframe_interval,
            seq_audio: 0,
            seq_video: [0; 3],
            outbox: Outbox::new(&env.send_log, id),
            live: false,
            held: [false; 3],
        })
    }

    /// The earliest of `t` and the next frame due (none while offline: its slots
    /// wait, in the past, for the connection; none of a held layer).
    pub(crate) fn wake(&self, t: Instant) -> Instant {
        if !self.live {
            return t;
        }
        let t = match self.audio {
            Some(_) => t.min(self.audio_slots.next()),
            None => t,
        };
        self.video_slots
            .iter()
            .zip(self.held)
            .filter(|(_, held)| !held)
            .fold(t, |t, (v, _)| t.min(v.next()))
    }

    /// Audio frames and video frames (all layers) written so far.
    pub(crate) fn frames_written(&self) -> (u64, u64) {
        let video = self.seq_video.iter().map(|n| *n as u64).sum();
        (self.seq_audio as u64, video)
    }

    /// The receiver asked for a keyframe of the layer `rid` (or the only one).
    pub(crate) fn keyframe_requested(&mut self, rid: Option<Rid>) {
        let i = rid
            .and_then(|rid| RIDS.iter().position(|x| Rid::from(*x) == rid))
            .unwrap_or(0);
        self.keyframe_wanted[i.min(2)] = true;
    }

    /// Record that what was written before `now` is on its way out.
    pub(crate) fn sending(&mut self, env: &Env, now: Instant) {
        self.outbox.sending(now, &env.counters.frames_sent_late);
    }

    /// Stop (or resume) sending layer `i`; it starts again with a keyframe.
    pub(crate) fn hold_layer(&mut self, i: usize, held: bool) {
        if let Some(h) = self.held.get_mut(i) {
            if *h && !held {
                self.keyframe_wanted[i] = true;
            }
            *h = held;
        }
    }

    /// The connection is down (not up yet, or lost): no frames are due meanwhile.
    pub(crate) fn offline(&mut self) {
        self.live = false;
    }

    /// Write the frames now due, packetized; whether any was written.
    pub(crate) fn write_due(&mut self, rtc: &mut Rtc, env: &Env, now: Instant) -> bool {
        if !self.live {
            self.live = true;
            self.audio_slots.resume(now);
            self.video_slots.iter_mut().for_each(|s| s.resume(now));
        }
        let mut wrote = false;
        let (apt, vpt) = (self.audio_pt, self.video_pt);
        let mut api = rtc.direct_api();
        let sent_us = env.clock.us(now);
        let (c, skip) = (&env.counters, env.skip_every);
        let audio = self
            .audio
            .as_mut()
            .filter(|_| slots::take_counted(&mut self.audio_slots, now, c, skip));
        if let Some(audio) = audio {
            if let (Some(pt), Some(tx)) = (apt, api.stream_tx(&audio.ssrc)) {
                let probe = Probe {
                    sender: self.id,
                    layer: 0,
                    seq: self.seq_audio,
                    sent_us,
                };
                let data = env.opus.frame(self.seq_audio as usize, &probe);
                let ts = self.seq_audio.wrapping_mul(960);
                self.outbox.wrote(sendlog::lane(true, 0), probe.seq);
                let ext = ExtensionValues {
                    audio_level: Some(if self.loud { -25 } else { -70 }),
                    voice_activity: Some(self.loud),
                    ..Default::default()
                };
                let (pt, data) = match &mut self.red {
                    Some((red_pt, copies)) => (*red_pt, red_packet(pt, &data, ts, copies)),
                    None => (pt, data),
                };
                let rtp = RtpWrite::new(pt, audio.seq.into(), ts, now, data)
                    .marker(self.seq_audio == 0)
                    .ext_vals(ext);
                tx.write_rtp(rtp);
                audio.seq += 1;
                self.seq_audio += 1;
                wrote = true;
            }
        }
        if now >= self.next_key {
            self.next_key = now + env.keyframe_interval;
            self.keyframe_wanted = [true; 3];
        }
        let Some(vpt) = vpt else {
            return wrote;
        };
        let ts = (env.clock.us(now) * 9 / 100) as u32;
        for (i, layer) in env.layers.iter().enumerate().take(self.layers) {
            if self.held[i] {
                self.video_slots[i].resume(now);
                continue;
            }
            if !slots::take_counted(&mut self.video_slots[i], now, c, skip) {
                continue;
            }
            let Some(out) = self.video[i].as_mut() else {
                continue;
            };
            let key = std::mem::take(&mut self.keyframe_wanted[i]);
            let probe = Probe {
                sender: self.id,
                layer: i as u8,
                seq: self.seq_video[i],
                sent_us,
            };
            self.seq_video[i] += 1;
            self.outbox.wrote(sendlog::lane(false, i as u8), probe.seq);
            let size = layer.frame_bytes() * if key { 3 } else { 1 };
            let (w, h) = (320u16 << i, 180u16 << i);
            let frame = video_frame(self.codec, key, w, h, &probe, size);
            let Some(tx) = api.stream_tx(&out.ssrc) else {
                continue;
            };
            let packets = self.packetizers[i].packetize(&frame);
            let last = packets.len().saturating_sub(1);
            for (k, payload) in packets.into_iter().enumerate() {
                let rtp = RtpWrite::new(vpt, out.seq.into(), ts, now, payload)
                    .marker(k == last)
                    .nackable(true);
                tx.write_rtp(rtp);
                out.seq += 1;
                wrote = true;
            }
        }
        wrote
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::RedDecoder;

    #[test]
    fn red_packets_repeat_the_two_frames_before() {
        let opus = Pt::new_with_value(111);
        let mut copies: Copies = [None, None];
        let frames: [&[u8]; 4] = [b"zero", b"one", b"two", b"three"];
        let packets: Vec<Vec<u8>> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| red_packet(opus, f, 960 * i as u32, &mut copies))
            .collect();
        let blocks = |p: &[u8]| -> Vec<(u32, Vec<u8>)> {
            RedDecoder::decode(p)
                .unwrap()
                .iter()
                .map(|b| (b.timestamp_offset, b.payload.to_vec()))
                .collect()
        };
        assert_eq!(blocks(&packets[0]), [(0, b"zero".to_vec())]);
        assert_eq!(
            blocks(&packets[1]),
            [(960, b"zero".to_vec()), (0, b"one".to_vec())]
        );
        // Oldest first, each at its distance back; never more than two earlier.
        assert_eq!(
            blocks(&packets[3]),
            [
                (1920, b"one".to_vec()),
                (960, b"two".to_vec()),
                (0, b"three".to_vec())
            ]
        );
    }
}
