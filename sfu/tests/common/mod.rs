//! Test clients: real str0m peers (full ICE agent, DTLS, SRTP, TWCC) on loopback UDP,
//! joining a real media node through its control API, publishing Opus and simulcast
//! video and recording what they receive. No mocks: every packet crosses a socket.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sfu::core::ParticipantId;
use sfu::{Node, NodeConfig, NodeEvent};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Rid};
use str0m::media::{Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

pub const MAGIC: &[u8] = b"KNU";
const FPS: u32 = 30;

/// Bytes per frame for each simulcast layer, ~150 / 500 / 1200 kbit/s at 30 fps.
pub const LAYER_FRAME_BYTES: [usize; 3] = [625, 2_080, 5_000];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

/// What one client received on one of its m-lines.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub kind: Option<MediaKind>,
    pub frames: u64,
    pub audio: u64,
    /// Publisher client id and layer of the last video frame.
    pub from: Option<u8>,
    pub last_layer: Option<u8>,
    pub frames_by_layer: [u64; 3],
    pub last_at: Option<Instant>,
}

/// Downlink shaping: a token bucket with a bounded queue, like `tc tbf`.
#[derive(Debug)]
pub struct Shaper {
    pub rate_bps: u64,
    queue: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    queued_bytes: usize,
    tokens: f64,
    last: Instant,
    max_queue_bytes: usize,
    pub dropped: u64,
}

impl Shaper {
    pub fn new(rate_bps: u64) -> Self {
        Shaper {
            rate_bps,
            queue: VecDeque::new(),
            queued_bytes: 0,
            tokens: 0.0,
            last: Instant::now(),
            // ~150 ms of queue at the rate: delay grows first, then loss.
            max_queue_bytes: (rate_bps as usize / 8 * 150 / 1000).max(3000),
            dropped: 0,
        }
    }
}

pub struct Client {
    pub id: u8,
    pub participant: ParticipantId,
    pub rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    codec: VideoCodec,
    rids: Vec<Rid>,
    next_audio: Instant,
    next_video: Instant,
    frame_no: u32,
    keyframe_wanted: [bool; 3],
    pending: Option<SdpPendingOffer>,
    pub received: HashMap<Mid, Received>,
    pub shaper: Option<Shaper>,
    pub keyframe_requests: u64,
    buf: Vec<u8>,
    pub publish: bool,
}

impl Client {
    /// Build a client publishing audio + video with `layers` simulcast layers (1 = none).
    pub fn new(id: u8, codec: VideoCodec, layers: usize) -> Self {
        Self::with_vp8_pt(id, codec, layers, None)
    }

    /// Like [`Client::new`], with VP8 on an unusual payload type (and its RTX on the
    /// next one), so that the node must map payload types between clients.
    pub fn with_vp8_pt(id: u8, codec: VideoCodec, layers: usize, vp8_pt: Option<u8>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let now = Instant::now();
        let mut cfg = RtcConfig::new().clear_codecs().enable_opus(true, false);
        cfg = match (codec, vp8_pt) {
            (VideoCodec::Vp8, None) => cfg.enable_vp8(true),
            (VideoCodec::Vp8, Some(pt)) => {
                cfg.codec_config().add_config(
                    pt.into(),
                    Some((pt + 1).into()),
                    Codec::Vp8,
                    Frequency::NINETY_KHZ,
                    None,
                    Default::default(),
                );
                cfg
            }
            (VideoCodec::H264, _) => cfg.enable_h264(true),
        };
        let mut rtc = cfg.build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let names = ["q", "h", "f"];
        let rids: Vec<Rid> = names[..layers.clamp(1, 3)]
            .iter()
            .map(|r| Rid::from(*r))
            .collect();
        Client {
            id,
            participant: ParticipantId(0),
            rtc,
            socket,
            addr,
            audio_mid: None,
            video_mid: None,
            codec,
            rids: if layers > 1 { rids } else { Vec::new() },
            next_audio: now,
            next_video: now,
            frame_no: 0,
            keyframe_wanted: [true; 3],
            pending: None,
            received: HashMap::new(),
            shaper: None,
            keyframe_requests: 0,
            buf: vec![0; 2048],
            publish: true,
        }
    }

    /// Offer to publish and join `room` on the node.
    pub fn join(&mut self, node: &Node, room: &str) {
        self.join_as(node, room, sfu::JoinKind::Full);
    }

    /// Join as a WHIP-style publisher (publish only) or a WHEP-style viewer (an
    /// offer of one receive-only audio and one receive-only video m-line).
    pub fn join_as(&mut self, node: &Node, room: &str, kind: sfu::JoinKind) {
        if kind == sfu::JoinKind::ViewOnly {
            self.publish = false;
            let mut api = self.rtc.sdp_api();
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            let (offer, pending) = api.apply().expect("offer");
            self.finish_join(node, room, kind, offer, pending);
            return;
        }
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let simulcast = (!self.rids.is_empty()).then(|| {
            let mut s = Simulcast::new();
            for r in &self.rids {
                s.add_send_layer(SimulcastLayer::new(r));
            }
            s
        });
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        let (offer, pending) = api.apply().expect("offer");
        self.audio_mid = Some(audio);
        self.video_mid = Some(video);
        self.finish_join(node, room, kind, offer, pending);
    }

    fn finish_join(
        &mut self,
        node: &Node,
        room: &str,
        kind: sfu::JoinKind,
        offer: SdpOffer,
        pending: SdpPendingOffer,
    ) {
        let id = node.allocate_participant();
        let joined = node
            .add_participant_as(
                id,
                room,
                &format!("client{}", self.id),
                &offer.to_sdp_string(),
                kind,
            )
            .expect("join accepted");
        self.participant = joined.participant;
        let answer = SdpAnswer::from_sdp_string(&joined.answer).expect("answer parses");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }

    /// The node renegotiates: answer its offer.
    pub fn on_offer(&mut self, node: &Node, sdp: &str) {
        let offer = SdpOffer::from_sdp_string(sdp).expect("node offer parses");
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("offer accepted");
        node.answer(self.participant, &answer.to_sdp_string())
            .expect("answer taken");
    }

    fn send_media(&mut self, now: Instant) {
        if !self.publish || !self.rtc.is_connected() {
            return;
        }
        if now >= self.next_audio {
            self.next_audio += Duration::from_millis(20);
            let mid = self.audio_mid.unwrap();
            let pt = self.pt(Codec::Opus);
            let t = MediaTime::new(self.frame_no as u64 * 960, Frequency::FORTY_EIGHT_KHZ);
            let level = if self.id == 1 { -20 } else { -60 };
            if let Some(w) = self.rtc.writer(mid) {
                let _ =
                    w.audio_level(level, true)
                        .write(pt, now, t, vec![0xfc, self.id, 0xaa, 0xbb]);
            }
        }
        if now >= self.next_video {
            self.next_video += Duration::from_millis(1000 / FPS as u64);
            self.frame_no += 1;
            let mid = self.video_mid.unwrap();
            let pt = self.pt(match self.codec {
                VideoCodec::Vp8 => Codec::Vp8,
                VideoCodec::H264 => Codec::H264,
            });
            let t = MediaTime::new(self.frame_no as u64 * 3000, Frequency::NINETY_KHZ);
            let layers: Vec<Option<Rid>> = if self.rids.is_empty() {
                vec![None]
            } else {
                self.rids.iter().map(|r| Some(*r)).collect()
            };
            for (i, rid) in layers.into_iter().enumerate() {
                let key = self.keyframe_wanted[i] || self.frame_no.is_multiple_of(FPS * 3);
                self.keyframe_wanted[i] = false;
                let frame = self.frame(i as u8, key);
                if let Some(mut w) = self.rtc.writer(mid) {
                    if let Some(rid) = rid {
                        w = w.rid(rid);
                    }
                    let _ = w.write(pt, now, t, frame);
                }
            }
        }
    }

    fn pt(&self, codec: Codec) -> str0m::media::Pt {
        self.rtc
            .codec_config()
            .find(|p| {
                p.spec().codec == codec
                    && (codec != Codec::H264
                        || (p.spec().format.packetization_mode == Some(1)
                            && p.spec().format.profile_level_id == Some(0x42e01f)))
            })
            .map(|p| p.pt())
            .expect("codec configured")
    }

    fn frame(&self, layer: u8, key: bool) -> Vec<u8> {
        let size = LAYER_FRAME_BYTES[layer as usize];
        let mut f = match (self.codec, key) {
            (VideoCodec::Vp8, true) => {
                vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]
            }
            (VideoCodec::Vp8, false) => vec![0x11, 0x02, 0x00],
            (VideoCodec::H264, true) => vec![
                0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1,
                0x65,
            ],
            (VideoCodec::H264, false) => vec![0, 0, 0, 1, 0x41],
        };
        f.extend_from_slice(MAGIC);
        f.push(self.id);
        f.push(layer);
        f.extend_from_slice(&self.frame_no.to_be_bytes());
        f.resize(size, 0xaa);
        f
    }

    /// Read, shape, feed, poll: one turn of this client's event loop.
    pub fn turn(&mut self, now: Instant) {
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    if let Some(s) = &mut self.shaper {
                        if s.queued_bytes + n > s.max_queue_bytes {
                            s.dropped += 1;
                        } else {
                            s.queued_bytes += n;
                            s.queue.push_back((now, from, self.buf[..n].to_vec()));
                        }
                    } else {
                        let data = self.buf[..n].to_vec();
                        self.input(now, from, &data);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        if let Some(mut s) = self.shaper.take() {
            let dt = now.saturating_duration_since(s.last).as_secs_f64();
            s.last = now;
            s.tokens = (s.tokens + dt * s.rate_bps as f64 / 8.0).min(20_000.0);
            while let Some((_, _, d)) = s.queue.front() {
                if (d.len() as f64) > s.tokens {
                    break;
                }
                let (_, from, d) = s.queue.pop_front().unwrap();
                s.tokens -= d.len() as f64;
                s.queued_bytes -= d.len();
                self.input(now, from, &d);
            }
            self.shaper = Some(s);
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.send_media(now);
        self.poll(now);
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
                destination: self.addr,
                contents,
            },
        ));
        self.poll(now);
    }

    fn poll(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) | Err(_) => return,
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => self.on_event(now, e),
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::MediaAdded(m) => {
                if matches!(m.direction, Direction::RecvOnly) {
                    self.received.entry(m.mid).or_default().kind = Some(m.kind);
                }
            }
            Event::KeyframeRequest(r) => {
                self.keyframe_requests += 1;
                let i = r
                    .rid
                    .and_then(|rid| self.rids.iter().position(|x| *x == rid))
                    .unwrap_or(0);
                self.keyframe_wanted[i] = true;
                let _ = r.kind == KeyframeRequestKind::Pli;
            }
            Event::MediaData(d) => {
                let r = self.received.entry(d.mid).or_default();
                r.last_at = Some(now);
                if d.params.spec().codec == Codec::Opus {
                    r.audio += 1;
                    return;
                }
                if let Some(at) = d.data.windows(MAGIC.len()).position(|w| w == MAGIC) {
                    let tail = &d.data[at + MAGIC.len()..];
                    if tail.len() >= 2 {
                        r.frames += 1;
                        r.from = Some(tail[0]);
                        r.last_layer = Some(tail[1]);
                        r.frames_by_layer[(tail[1] as usize).min(2)] += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// Send raw bytes to `to` from this client's own (known to the node) address.
    pub fn send_raw(&self, to: SocketAddr, data: &[u8]) {
        let _ = self.socket.send_to(data, to);
    }

    /// Video frames received from client `from`, by layer.
    pub fn video_from(&self, from: u8) -> Option<&Received> {
        self.received
            .values()
            .find(|r| r.frames > 0 && r.from == Some(from))
    }

    pub fn audio_packets(&self) -> u64 {
        self.received.values().map(|r| r.audio).sum()
    }
}

/// A node plus clients, driven from the test thread.
pub struct Net {
    pub node: Node,
    events: tokio::sync::mpsc::Receiver<NodeEvent>,
    pub clients: Vec<Client>,
    pub log: Vec<NodeEvent>,
}

impl Net {
    pub fn new(shards: usize) -> Self {
        let (node, events) = Node::start(NodeConfig {
            shards,
            ..NodeConfig::default()
        })
        .expect("node starts");
        Net {
            node,
            events,
            clients: Vec::new(),
            log: Vec::new(),
        }
    }

    pub fn join(&mut self, mut c: Client, room: &str) -> usize {
        c.join(&self.node, room);
        self.clients.push(c);
        self.clients.len() - 1
    }

    /// Run everything for `d`.
    pub fn run(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.step();
        }
    }

    /// Run until `cond` holds or `limit` passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Net) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            self.step();
            if cond(self) {
                return true;
            }
        }
        false
    }

    fn step(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            if let NodeEvent::Offer {
                participant, sdp, ..
            } = &ev
            {
                if let Some(c) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.participant == *participant)
                {
                    c.on_offer(&self.node, sdp);
                }
            }
            self.log.push(ev);
        }
        let now = Instant::now();
        for c in &mut self.clients {
            c.turn(now);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
