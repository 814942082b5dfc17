//! The client peer, sans-IO: one str0m `Rtc` (datagrams and time in; transmits, the
//! next deadline and measurements out; its socket is the driver's, `udp`) and, when it
//! publishes, the media profile of the load model (ARCHITECTURE.md) (Opus
//! every 20 ms with audio level, three VP8 simulcast layers, keyframes on an interval
//! and on request), every frame carrying a probe; every frame it receives is measured.
//!
//! The `Rtc` runs in RTP mode: frames are packetized here with str0m's own
//! packetizers (as its frame mode would) and received frames are judged from their
//! packets' headers (`frames`) instead of being depacketized, which was most of a
//! client's receive cost beyond SRTP. It stays a full client: ICE, DTLS-SRTP, TWCC
//! feedback, NACK and RTX, keyframe requests answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::unversioned::{H264Packetizer, Packetizer, Vp8Packetizer};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use udpbatch::TxQueue;

use crate::env::Env;
use crate::frames::FrameAssembler;
use crate::media::{opus_probe, video_frame, Probe, VideoCodec};
use crate::sendlog::{self, Outbox, Senders};
use crate::slots::{self, Slots};
use crate::stats::{StreamKind, StreamStats};

pub const RIDS: [&str; 3] = ["q", "h", "f"];
/// RTP payload bytes per packet: a datagram then stays within str0m's 1,150-byte
/// target with the RTP header, its extensions and the SRTP tag.
const PAYLOAD_MTU: usize = 1_080;

/// Join time is measured from the participant's start to its first media.
pub struct Meter {
    pub started: Instant,
    pub join_ms: Option<f64>,
}

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

/// A stream this peer receives: audio packets are frames; video packets are judged
/// into frames.
enum Incoming {
    Audio,
    Video(Box<FrameAssembler>),
    /// Not one of the m-lines this peer receives on.
    Other,
}

/// What the publishing peer sends, and when.
pub struct Sending {
    audio: Outgoing,
    video: [Option<Outgoing>; 3],
    /// Payload types, looked up once (the local codec config does not change).
    audio_pt: Option<Pt>,
    video_pt: Option<Pt>,
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
}

/// One str0m peer connection: the client side of WebRTC (the knudepunkt client has
/// one; a Janus participant a publisher and a subscriber). Its driver hands it
/// datagrams and turns, and sends what [`Peer::transmits`] holds.
pub struct Peer {
    pub rtc: Rtc,
    tx: TxQueue,
    local: SocketAddr,
    /// Received streams by SSRC (a handful per peer: a scan beats hashing).
    incoming: Vec<(Ssrc, Incoming)>,
    /// When the kernel received the datagram being handled (media that it completes
    /// arrived then); `None` outside the receive path.
    arrived: Option<Instant>,
    /// The senders whose frames this peer has received, for their send lags.
    senders: Senders,
    pub send: Option<Sending>,
}

impl Peer {
    /// A peer whose socket is bound at `local`.
    pub fn new(env: &Env, local: SocketAddr, now: Instant) -> Result<Peer, String> {
        let config = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false);
        let mut rtc = match env.codec {
            VideoCodec::Vp8 => config.enable_vp8(true),
            VideoCodec::H264 => config.enable_h264(true),
        }
        .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
        Ok(Peer {
            rtc,
            tx: TxQueue::with_capacity(64),
            local,
            incoming: Vec::new(),
            arrived: None,
            senders: Senders::default(),
            send: None,
        })
    }

    /// The earliest of `t` and the next frame due to be sent.
    pub fn wake(&self, mut t: Instant) -> Instant {
        if let Some(s) = &self.send {
            t = t.min(s.audio_slots.next());
            for v in &s.video_slots {
                t = t.min(v.next());
            }
        }
        t
    }

    /// A datagram from `from`, read at `now`, which the kernel received at `arrived`
    /// (media it completes arrived then): through str0m, and drained.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_datagram(
        &mut self,
        env: &Env,
        now: Instant,
        arrived: Instant,
        from: SocketAddr,
        data: &[u8],
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
        meter: &mut Meter,
    ) -> Result<(), String> {
        self.input(now, from, data);
        self.arrived = Some(arrived);
        let polled = self.poll(env, stats, meter, now);
        self.arrived = None;
        polled.map(|_| ())
    }

    /// Datagrams to send, in order. The driver sends and empties it after each turn.
    pub fn transmits(&mut self) -> &mut TxQueue {
        &mut self.tx
    }

    fn input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let _ = self.rtc.handle_input(Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.local,
                contents,
            },
        ));
    }

    /// Media due, str0m's clock moved on; returns its timeout. What it sends waits in
    /// [`Peer::transmits`].
    pub fn turn(
        &mut self,
        env: &Env,
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
        meter: &mut Meter,
        now: Instant,
    ) -> Result<Instant, String> {
        // str0m releases written packets when time moves on: tell it now, so the
        // frames just written leave in this turn, not at the next wake-up. Without
        // them, its timeout pass (over every stream) waits until it is due (`poll`).
        if self.send_media(env, now) {
            let _ = self.rtc.handle_input(Input::Timeout(now));
        }
        let timeout = self.poll(env, stats, meter, now)?;
        if let Some(s) = self.send.as_mut() {
            s.outbox.sending(now, &env.counters.frames_sent_late);
        }
        Ok(timeout)
    }

    /// The payload type of `codec`; for H.264 the Constrained Baseline, packetization
    /// mode 1 one that the frames are (str0m offers several profiles).
    fn pt(&self, codec: Codec) -> Option<Pt> {
        self.rtc
            .codec_config()
            .find(|p| {
                let f = &p.spec().format;
                p.spec().codec == codec
                    && (codec != Codec::H264
                        || (f.packetization_mode == Some(1)
                            && f.profile_level_id.map(|p| p >> 8) == Some(0x42e0)))
            })
            .map(|p| p.pt())
    }

    /// Write the frames now due, packetized; whether any was written.
    fn send_media(&mut self, env: &Env, now: Instant) -> bool {
        if self.send.is_none() || !self.rtc.is_connected() {
            return false;
        }
        let mut wrote = false;
        let Some(s) = self.send.as_mut() else {
            return false;
        };
        let (apt, vpt) = (s.audio_pt, s.video_pt);
        let mut api = self.rtc.direct_api();
        let sent_us = env.clock.us(now);
        let (c, skip) = (&env.counters, env.skip_every);
        if slots::take_counted(&mut s.audio_slots, now, c, skip) {
            if let (Some(pt), Some(tx)) = (apt, api.stream_tx(&s.audio.ssrc)) {
                let probe = Probe {
                    sender: s.id,
                    layer: 0,
                    seq: s.seq_audio,
                    sent_us,
                };
                let data = env.opus.frame(s.seq_audio as usize, &probe);
                let ts = s.seq_audio.wrapping_mul(960);
                s.outbox.wrote(sendlog::lane(true, 0), probe.seq);
                let ext = ExtensionValues {
                    audio_level: Some(if s.loud { -25 } else { -70 }),
                    voice_activity: Some(s.loud),
                    ..Default::default()
                };
                let rtp = RtpWrite::new(pt, s.audio.seq.into(), ts, now, data)
                    .marker(s.seq_audio == 0)
                    .ext_vals(ext);
                tx.write_rtp(rtp);
                s.audio.seq += 1;
                s.seq_audio += 1;
                wrote = true;
            }
        }
        if now >= s.next_key {
            s.next_key = now + env.keyframe_interval;
            s.keyframe_wanted = [true; 3];
        }
        let Some(vpt) = vpt else {
            return wrote;
        };
        let ts = (env.clock.us(now) * 9 / 100) as u32;
        for (i, layer) in env.layers.iter().enumerate().take(3) {
            if !slots::take_counted(&mut s.video_slots[i], now, c, skip) {
                continue;
            }
            let Some(out) = s.video[i].as_mut() else {
                continue;
            };
            let key = std::mem::take(&mut s.keyframe_wanted[i]);
            let probe = Probe {
                sender: s.id,
                layer: i as u8,
                seq: s.seq_video[i],
                sent_us,
            };
            s.seq_video[i] += 1;
            s.outbox.wrote(sendlog::lane(false, i as u8), probe.seq);
            let size = layer.frame_bytes() * if key { 3 } else { 1 };
            let (w, h) = (320u16 << i, 180u16 << i);
            let frame = video_frame(env.codec, key, w, h, &probe, size);
            let Some(tx) = api.stream_tx(&out.ssrc) else {
                continue;
            };
            let packets = s.packetizers[i].packetize(&frame);
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

    /// Drain str0m at `now`: send, record, answer keyframe requests. Returns its next
    /// timeout.
    pub fn poll(
        &mut self,
        env: &Env,
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
        meter: &mut Meter,
        now: Instant,
    ) -> Result<Instant, String> {
        let mut released = 0;
        loop {
            match self.rtc.poll_output().map_err(|e| format!("rtc: {e}"))? {
                Output::Timeout(t) if released < 64 && t <= now => {
                    released += 1;
                    let _ = self.rtc.handle_input(Input::Timeout(now));
                }
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => self.tx.push(t.destination, &t.contents),
                Output::Event(e) => match e {
                    Event::RtpPacket(p) => {
                        let Some((kind, mut probe)) = self.on_packet(env.codec, &p) else {
                            continue;
                        };
                        let lane = sendlog::lane(kind == StreamKind::Audio, probe.layer);
                        probe.sent_us +=
                            self.senders
                                .lag_us(&env.send_log, probe.sender, lane, probe.seq);
                        let now_us = env.clock.us(self.arrived.unwrap_or(now));
                        if meter.join_ms.is_none() {
                            let since = now.saturating_duration_since(meter.started);
                            meter.join_ms = Some(since.as_secs_f64() * 1000.0);
                        }
                        stats
                            .entry((probe.sender, kind))
                            .or_insert_with(|| StreamStats::new(kind, probe.sender))
                            .on_frame(&probe, now_us);
                    }
                    Event::KeyframeRequest(r) => {
                        if let Some(s) = self.send.as_mut() {
                            let i = r
                                .rid
                                .and_then(|rid| RIDS.iter().position(|x| Rid::from(*x) == rid))
                                .unwrap_or(0);
                            s.keyframe_wanted[i.min(2)] = true;
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

impl Peer {
    /// A received packet: the probe of the frame it completes, with the stream's kind.
    fn on_packet(&mut self, codec: VideoCodec, p: &RtpPacket) -> Option<(StreamKind, Probe)> {
        let ssrc = p.header.ssrc;
        let i = match self.incoming.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|rx| rx.mid())?;
                let media = self.rtc.media(mid)?;
                let stream = match (media.kind(), media.direction()) {
                    (_, Direction::SendOnly | Direction::Inactive) => Incoming::Other,
                    (MediaKind::Audio, _) => Incoming::Audio,
                    (MediaKind::Video, _) => Incoming::Video(Box::new(FrameAssembler::new(codec))),
                };
                self.incoming.push((ssrc, stream));
                self.incoming.len() - 1
            }
        };
        match &mut self.incoming[i].1 {
            Incoming::Audio => Some((StreamKind::Audio, opus_probe(&p.payload)?)),
            Incoming::Video(frames) if !p.payload.is_empty() => {
                let probe =
                    frames.push(*p.seq_no, p.header.timestamp, p.header.marker, &p.payload)?;
                Some((StreamKind::Video, probe))
            }
            _ => None,
        }
    }

    /// The publishing offer: sendonly Opus, and VP8 in the run's simulcast layers
    /// (rids lowest first). Returns the offer, its pending state and the two mids.
    pub fn publishing_offer(
        &mut self,
        env: &Env,
    ) -> Result<(SdpOffer, SdpPendingOffer, Mid, Mid), String> {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let mut sim = Simulcast::new();
        for r in RIDS.iter().take(env.layers.len()) {
            sim.add_send_layer(SimulcastLayer::new(r));
        }
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim));
        let (offer, pending) = api.apply().ok_or("no offer")?;
        Ok((offer, pending, audio, video))
    }

    /// The answer is in: send unpaced (so that the delay measured is the server's:
    /// str0m's pacer would hold a keyframe burst for tens of milliseconds before it
    /// reached the socket) and start the media clock at `now`.
    pub fn start_sending(
        &mut self,
        env: &Env,
        (audio, video): (Mid, Mid),
        id: u32,
        loud: bool,
        now: Instant,
    ) -> Result<(), String> {
        let mut direct = self.rtc.direct_api();
        let mut video_out: [Option<Outgoing>; 3] = [None, None, None];
        for (i, rid) in RIDS.iter().enumerate().take(env.layers.len()) {
            if let Some(tx) = direct.stream_tx_by_mid(video, Some(Rid::from(*rid))) {
                tx.set_unpaced(true);
                video_out[i] = Some(Outgoing::new(tx.ssrc()));
            }
        }
        let audio_out = direct.stream_tx_by_mid(audio, None).map(|tx| {
            tx.set_unpaced(true);
            Outgoing::new(tx.ssrc())
        });
        let streams = video_out.iter().flatten().count() + audio_out.iter().count();
        let Some(audio_out) = audio_out.filter(|_| streams == env.layers.len() + 1) else {
            return Err(format!(
                "negotiated {streams} send streams, expected {}",
                env.layers.len() + 1
            ));
        };
        let vcodec = match env.codec {
            VideoCodec::Vp8 => Codec::Vp8,
            VideoCodec::H264 => Codec::H264,
        };
        let (audio_pt, video_pt) = (self.pt(Codec::Opus), self.pt(vcodec));
        let jitter = Duration::from_millis(rand::rng().random_range(0..20));
        self.send = Some(Sending {
            audio: audio_out,
            video: video_out,
            audio_pt,
            video_pt,
            packetizers: std::array::from_fn(|_| VideoPacketizer::new(env.codec)),
            id,
            loud,
            keyframe_wanted: [true; 3],
            audio_slots: Slots::new(now + jitter, Duration::from_millis(20)),
            video_slots: std::array::from_fn(|i| Slots::for_layer(&env.layers, i, now + jitter)),
            next_key: now + env.keyframe_interval,
            seq_audio: 0,
            seq_video: [0; 3],
            outbox: Outbox::new(&env.send_log, id),
        });
        Ok(())
    }
}
