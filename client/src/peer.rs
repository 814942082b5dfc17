//! The client peer, sans-IO: one str0m `Rtc` (datagrams and time in; transmits, the
//! next deadline and measurements out; its socket is the driver's, `udp`) and, when it
//! publishes, the media profile of the load model (ARCHITECTURE.md): Opus every 20 ms
//! with audio level, VP8 or H.264 in up to three simulcast layers, keyframes on an
//! interval and on request, every frame carrying a probe (`publish`). Every frame it
//! receives is measured (`receive`, `stats`).
//!
//! The `Rtc` runs in RTP mode: frames are packetized with str0m's own packetizers (as
//! its frame mode would) and received frames are judged from their packets' headers
//! (`frames`) instead of being depacketized, which was most of a client's receive cost
//! beyond SRTP. It stays a full client: ICE, DTLS-SRTP, TWCC feedback, NACK and RTX,
//! keyframe requests answered.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use udpbatch::TxQueue;

use crate::env::Env;
use crate::media::{Probe, VideoCodec};
use crate::publish::{Mids, Sending, RIDS};
use crate::receive::{Incoming, Received};
use crate::sendlog::{self, Senders};
use crate::stats::{Measure, StreamKind};

/// How one peer differs from the run's defaults.
#[derive(Clone, Copy, Debug)]
pub struct PeerSetup {
    pub codec: VideoCodec,
    /// Whether it publishes audio.
    pub audio: bool,
    /// Video layers it publishes, the run's lowest first; 1 is a single stream, no
    /// simulcast; 0 is no video.
    pub layers: usize,
    /// VP8 on this payload type (its RTX on the next) instead of str0m's default: the
    /// node must map payload types between its clients.
    pub vp8_pt: Option<u8>,
    /// Offer Opus in RED, and send it so where the other side takes it.
    pub audio_red: bool,
}

impl PeerSetup {
    /// The run's codec and layers.
    pub fn of(env: &Env) -> Self {
        PeerSetup {
            codec: env.codec,
            audio: true,
            layers: env.layers.len(),
            vp8_pt: None,
            audio_red: env.audio_red,
        }
    }
}

/// One str0m peer connection: the client side of WebRTC (the knudepunkt client has
/// one; a Janus participant a publisher and a subscriber). Its driver hands it
/// datagrams and turns, and sends what [`Peer::transmits`] holds.
pub struct Peer {
    pub rtc: Rtc,
    tx: TxQueue,
    /// Its host candidate: a UDP socket, or an ICE-TCP connection to the node.
    proto: Protocol,
    local: SocketAddr,
    setup: PeerSetup,
    incoming: Incoming,
    /// When the kernel received the datagram being handled (media that it completes
    /// arrived then); `None` outside the receive path.
    arrived: Option<Instant>,
    /// The senders whose frames this peer has received, for their send lags.
    senders: Senders,
    send: Option<Sending>,
    keyframe_requests: u64,
}

impl Peer {
    /// A peer with the run's setup, whose socket is bound at `local`.
    pub fn new(env: &Env, local: SocketAddr, now: Instant) -> Result<Peer, String> {
        Peer::with_setup(env, PeerSetup::of(env), local, now)
    }

    pub fn with_setup(
        env: &Env,
        setup: PeerSetup,
        local: SocketAddr,
        now: Instant,
    ) -> Result<Peer, String> {
        let mut peer = Peer::without_candidate(env, setup, now)?;
        peer.local = local;
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        peer.rtc.add_local_candidate(candidate);
        Ok(peer)
    }

    /// A peer that will reach the node over ICE-TCP alone (as on a network that
    /// blocks UDP): it offers no candidate; once its driver has connected to the
    /// node's passive TCP candidate (named in the answer), [`Peer::connected_tcp`].
    pub fn over_tcp(env: &Env, setup: PeerSetup, now: Instant) -> Result<Peer, String> {
        let mut peer = Peer::without_candidate(env, setup, now)?;
        peer.proto = Protocol::Tcp;
        Ok(peer)
    }

    /// The driver's TCP connection is up, from `local`: the active candidate whose
    /// checks and media go on it (each packet framed by the driver, RFC 4571).
    pub fn connected_tcp(&mut self, local: SocketAddr) -> Result<(), String> {
        let candidate = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(str0m::net::TcpType::Active)
            .build()
            .map_err(|e| e.to_string())?;
        self.local = local;
        self.rtc.add_local_candidate(candidate);
        Ok(())
    }

    fn without_candidate(env: &Env, setup: PeerSetup, now: Instant) -> Result<Peer, String> {
        if setup.layers > env.layers.len() {
            return Err(format!(
                "{} video layers asked of a run with {}",
                setup.layers,
                env.layers.len()
            ));
        }
        let mut config = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, setup.audio_red);
        config = match (setup.codec, setup.vp8_pt) {
            (VideoCodec::Vp8, None) => config.enable_vp8(true),
            (VideoCodec::Vp8, Some(pt)) => {
                config.codec_config().add_config(
                    pt.into(),
                    Some(pt.wrapping_add(1).into()),
                    Codec::Vp8,
                    Frequency::NINETY_KHZ,
                    None,
                    Default::default(),
                );
                config
            }
            (VideoCodec::H264, _) => config.enable_h264(true),
        };
        Ok(Peer {
            rtc: config.build(now),
            tx: TxQueue::with_capacity(64),
            proto: Protocol::Udp,
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            setup,
            incoming: Incoming::default(),
            arrived: None,
            senders: Senders::default(),
            send: None,
            keyframe_requests: 0,
        })
    }

    /// The earliest of `t` and the next frame due to be sent.
    pub fn wake(&self, t: Instant) -> Instant {
        self.send.as_ref().map_or(t, |s| s.wake(t))
    }

    /// A datagram from `from`, read at `now`, which the kernel received at `arrived`
    /// (media it completes arrived then): through str0m, and drained.
    pub fn handle_datagram(
        &mut self,
        env: &Env,
        now: Instant,
        arrived: Instant,
        from: SocketAddr,
        data: &[u8],
        measure: &mut Measure,
    ) -> Result<(), String> {
        if let Ok(contents) = data.try_into() {
            let _ = self.rtc.handle_input(Input::Receive(
                now,
                Receive {
                    proto: self.proto,
                    source: from,
                    destination: self.local,
                    contents,
                },
            ));
        }
        self.arrived = Some(arrived);
        let polled = self.poll(env, measure, now);
        self.arrived = None;
        polled.map(|_| ())
    }

    /// Datagrams to send, in order. The driver sends and empties it after each turn.
    pub fn transmits(&mut self) -> &mut TxQueue {
        &mut self.tx
    }

    /// Media due, str0m's clock moved on; returns its timeout. What it sends waits in
    /// [`Peer::transmits`].
    pub fn turn(
        &mut self,
        env: &Env,
        measure: &mut Measure,
        now: Instant,
    ) -> Result<Instant, String> {
        // str0m releases written packets when time moves on: tell it now, so the
        // frames just written leave in this turn, not at the next wake-up. Without
        // them, its timeout pass (over every stream) waits until it is due (`poll`).
        if let Some(s) = self.send.as_mut() {
            if !self.rtc.is_connected() {
                s.offline();
            } else if s.write_due(&mut self.rtc, env, now) {
                let _ = self.rtc.handle_input(Input::Timeout(now));
            }
        }
        let timeout = self.poll(env, measure, now)?;
        if let Some(s) = self.send.as_mut() {
            s.sending(env, now);
        }
        Ok(timeout)
    }

    /// Drain str0m at `now`: send, record, answer keyframe requests. Returns its next
    /// timeout.
    pub fn poll(
        &mut self,
        env: &Env,
        measure: &mut Measure,
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
                Output::Event(Event::RtpPacket(p)) => {
                    let codec = self.setup.codec;
                    let now_us = env.clock.us(self.arrived.unwrap_or(now));
                    let senders = &mut self.senders;
                    let frame = |kind: StreamKind, mut probe: Probe, recovered| {
                        let lane = sendlog::lane(kind == StreamKind::Audio, probe.layer);
                        probe.sent_us +=
                            senders.lag_us(&env.send_log, probe.sender, lane, probe.seq);
                        measure.on_frame(kind, &probe, recovered, now, now_us);
                    };
                    self.incoming.on_packet(&mut self.rtc, codec, &p, frame);
                }
                Output::Event(Event::KeyframeRequest(r)) => {
                    self.keyframe_requests += 1;
                    if let Some(s) = self.send.as_mut() {
                        s.keyframe_requested(r.rid);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    /// The publishing offer: sendonly Opus, and video in this peer's simulcast layers
    /// (rids lowest first; one layer is a plain stream), as its setup says. Returns
    /// the offer, its pending state and the mids.
    pub fn publishing_offer(&mut self) -> Result<(SdpOffer, SdpPendingOffer, Mids), String> {
        let PeerSetup { audio, layers, .. } = self.setup;
        let mut api = self.rtc.sdp_api();
        let audio =
            audio.then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let simulcast = (layers > 1).then(|| {
            let mut sim = Simulcast::new();
            for r in RIDS.iter().take(layers) {
                sim.add_send_layer(SimulcastLayer::new(r));
            }
            sim
        });
        let video = (layers > 0)
            .then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast));
        let (offer, pending) = api.apply().ok_or("nothing to publish")?;
        Ok((offer, pending, Mids { audio, video }))
    }

    /// A viewer's offer (WHEP): one receive-only audio and one receive-only video m-line.
    pub fn viewing_offer(&mut self) -> Result<(SdpOffer, SdpPendingOffer), String> {
        let mut api = self.rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        api.apply().ok_or_else(|| "no offer".to_owned())
    }

    /// The answer to the publishing offer is in: start sending on its two mids as
    /// participant `id` (the probes' sender), loud or quiet, from `now`.
    pub fn start_sending(
        &mut self,
        env: &Env,
        mids: Mids,
        id: u32,
        loud: bool,
        now: Instant,
    ) -> Result<(), String> {
        let setup = (self.setup.codec, self.setup.layers);
        self.send = Some(Sending::start(
            &mut self.rtc,
            env,
            setup,
            mids,
            id,
            loud,
            now,
        )?);
        Ok(())
    }

    /// Audio frames and video frames (all layers) written so far.
    pub fn frames_written(&self) -> (u64, u64) {
        self.send.as_ref().map_or((0, 0), |s| s.frames_written())
    }

    /// Stop (or resume) sending simulcast layer `i` (0 lowest), as a browser drops its
    /// top layer under CPU or uplink pressure.
    pub fn hold_layer(&mut self, i: usize, held: bool) {
        if let Some(s) = self.send.as_mut() {
            s.hold_layer(i, held);
        }
    }

    /// Send no more media (the connection stays up).
    pub fn stop_sending(&mut self) {
        self.send = None;
    }

    /// What arrived on each received stream so far.
    pub fn received(&self) -> impl Iterator<Item = &Received> {
        self.incoming.received()
    }

    /// Keyframe requests (PLI/FIR) this peer has been asked.
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests
    }
}
