//! Test clients: the product's client peer (`client` crate: full ICE agent, DTLS,
//! SRTP, TWCC, NACK, probes in every frame) on loopback UDP, joining a real media node
//! through its control API, publishing Opus and simulcast video and recording what
//! they receive. No mocks: every packet crosses a socket. What is the tests' own here
//! is the driver: a plain socket, a downlink shaper, the node's control API.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use client::media::{Clock, LayerProfile, OpusFrames};
use client::peer::{Peer, PeerSetup};
use client::receive::Received;
use client::stats::{Measure, StreamKind};
use client::Env;
use sfu::core::ParticipantId;
use sfu::{Node, NodeConfig, NodeEvent};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};

pub use client::media::VideoCodec;

/// The tests' layers: ~150 / 500 / 1,200 kbit/s, all at 30 fps, so that a one-layer
/// client and the top layer alike send a frame every 33 ms.
const LAYERS: [LayerProfile; 3] = [
    LayerProfile {
        kbps: 150,
        fps: 30.0,
    },
    LayerProfile {
        kbps: 500,
        fps: 30.0,
    },
    LayerProfile {
        kbps: 1200,
        fps: 30.0,
    },
];

/// What every client of the test process shares: one clock and send log, so that
/// probes are read on the clock they were stamped with.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let opus = OpusFrames::new().expect("opus encoder");
        Arc::new(Env {
            layers: LAYERS.to_vec(),
            ..Env::new("", opus, Clock(Instant::now()))
        })
    })
    .clone()
}

/// Downlink shaping: a token bucket with a bounded queue, like `tc tbf`.
#[derive(Debug)]
pub struct Shaper {
    pub rate_bps: u64,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
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

    fn push(&mut self, from: SocketAddr, data: &[u8]) {
        if self.queued_bytes + data.len() > self.max_queue_bytes {
            self.dropped += 1;
        } else {
            self.queued_bytes += data.len();
            self.queue.push_back((from, data.to_vec()));
        }
    }

    /// What the bucket lets through by `now`.
    fn release(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate_bps as f64 / 8.0).min(20_000.0);
        let mut out = Vec::new();
        while let Some((_, d)) = self.queue.front() {
            if (d.len() as f64) > self.tokens {
                break;
            }
            let (from, d) = self.queue.pop_front().expect("checked");
            self.tokens -= d.len() as f64;
            self.queued_bytes -= d.len();
            out.push((from, d));
        }
        out
    }
}

pub struct Client {
    pub id: u8,
    pub participant: ParticipantId,
    pub peer: Peer,
    env: Arc<Env>,
    socket: UdpSocket,
    measure: Measure,
    pub shaper: Option<Shaper>,
    buf: Vec<u8>,
    /// The addresses datagrams came from.
    pub heard_from: Vec<SocketAddr>,
    /// The last answer given to the node's offers.
    pub last_answer: Option<String>,
    /// ICE-TCP instead of UDP: connected to the node's passive candidate once joined.
    tcp: Option<TcpLink>,
    wants_tcp: bool,
}

/// A client's ICE-TCP connection to the node (RFC 4571 frames both ways).
pub struct TcpLink {
    pub stream: TcpStream,
    pub node: SocketAddr,
    rx: sfu::tcp::framing::Deframer,
    out: Vec<u8>,
}

impl Client {
    /// A client publishing audio + video with `layers` simulcast layers (1 = none).
    pub fn new(id: u8, codec: VideoCodec, layers: usize) -> Self {
        Self::with_vp8_pt(id, codec, layers, None)
    }

    /// Like [`Client::new`], with VP8 on an unusual payload type (and its RTX on the
    /// next one), so that the node must map payload types between clients.
    pub fn with_vp8_pt(id: u8, codec: VideoCodec, layers: usize, vp8_pt: Option<u8>) -> Self {
        Self::at("127.0.0.1:0", id, codec, layers, vp8_pt)
    }

    /// Like [`Client::new`], its socket bound to `bind` (e.g. `[::1]:0`: its one
    /// host candidate is then IPv6).
    pub fn at(bind: &str, id: u8, codec: VideoCodec, layers: usize, vp8_pt: Option<u8>) -> Self {
        let setup = PeerSetup {
            codec,
            audio: true,
            layers: layers.clamp(1, 3),
            vp8_pt,
            audio_red: false,
        };
        Self::with_setup(bind, id, setup)
    }

    /// A VP8 client (one layer) that offers Opus in RED, or only plain Opus.
    pub fn red(id: u8, red: bool) -> Self {
        let setup = PeerSetup {
            codec: VideoCodec::Vp8,
            audio: true,
            layers: 1,
            vp8_pt: None,
            audio_red: red,
        };
        Self::with_setup("127.0.0.1:0", id, setup)
    }

    fn with_setup(bind: &str, id: u8, setup: PeerSetup) -> Self {
        let env = env();
        let socket = UdpSocket::bind(bind).unwrap_or_else(|e| {
            panic!("bind a client socket to {bind}: {e} (IPv6 needs ::1 on lo)")
        });
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let now = Instant::now();
        Client {
            id,
            participant: ParticipantId(0),
            peer: Peer::with_setup(&env, setup, addr, now).expect("client peer"),
            env,
            socket,
            measure: Measure::new(now),
            shaper: None,
            buf: vec![0; 2048],
            heard_from: Vec::new(),
            last_answer: None,
            tcp: None,
            wants_tcp: false,
        }
    }

    /// A VP8 client (one layer) on a network that blocks UDP: it offers no
    /// candidate and reaches the node over ICE-TCP alone.
    pub fn over_tcp(id: u8) -> Self {
        let setup = PeerSetup {
            codec: VideoCodec::Vp8,
            audio: true,
            layers: 1,
            vp8_pt: None,
            audio_red: false,
        };
        let mut c = Self::with_setup("127.0.0.1:0", id, setup);
        c.peer = Peer::over_tcp(&c.env, setup, Instant::now()).expect("client peer");
        c.wants_tcp = true;
        c
    }

    /// The ICE-TCP connection, once joined over TCP.
    pub fn tcp(&self) -> Option<&TcpLink> {
        self.tcp.as_ref()
    }

    /// Offer to publish and join `room` on the node.
    pub fn join(&mut self, node: &Node, room: &str) {
        self.join_as(node, room, sfu::JoinKind::Full);
    }

    /// Join as a WHIP-style publisher (publish only) or a WHEP-style viewer (an
    /// offer of one receive-only audio and one receive-only video m-line).
    pub fn join_as(&mut self, node: &Node, room: &str, kind: sfu::JoinKind) {
        if kind == sfu::JoinKind::ViewOnly {
            let (offer, pending) = self.peer.viewing_offer().expect("offer");
            self.finish_join(node, room, kind, offer, pending);
            return;
        }
        let (offer, pending, mids) = self.peer.publishing_offer().expect("offer");
        self.finish_join(node, room, kind, offer, pending);
        // Client 1 is the loud one: the active speaker.
        let (id, loud) = (self.id as u32, self.id == 1);
        self.peer
            .start_sending(&self.env, mids, id, loud, Instant::now())
            .expect("publishing streams negotiated");
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
        self.peer
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        if self.wants_tcp {
            self.connect_tcp(&joined.answer);
        }
    }

    /// Connect to the passive TCP host candidate the node's answer names.
    fn connect_tcp(&mut self, answer: &str) {
        let node: SocketAddr = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate:") && l.contains("tcptype passive"))
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2)?.eq_ignore_ascii_case("tcp"))
                    .then(|| format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok())?
            })
            .unwrap_or_else(|| panic!("the answer offers a passive TCP candidate:\n{answer}"));
        let stream = TcpStream::connect(node).expect("connect to the node's ICE-TCP candidate");
        stream.set_nonblocking(true).unwrap();
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        self.peer.connected_tcp(local).expect("TCP candidate");
        self.tcp = Some(TcpLink {
            stream,
            node,
            rx: Default::default(),
            out: Vec::new(),
        });
    }

    /// The node renegotiates: answer its offer.
    pub fn on_offer(&mut self, node: &Node, sdp: &str) {
        let offer = SdpOffer::from_sdp_string(sdp).expect("node offer parses");
        let answer = self
            .peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("offer accepted");
        let answer = answer.to_sdp_string();
        node.answer(self.participant, &answer)
            .expect("answer taken");
        self.last_answer = Some(answer);
    }

    /// Read, shape, feed, send: one turn of this client's event loop.
    pub fn turn(&mut self, now: Instant) {
        loop {
            let got = self.socket.recv_from(&mut self.buf);
            if let Ok((_, from)) = got {
                if !self.heard_from.contains(&from) {
                    self.heard_from.push(from);
                }
            }
            match got {
                Ok((n, from)) => match &mut self.shaper {
                    Some(s) => s.push(from, &self.buf[..n]),
                    None => {
                        let data = self.buf[..n].to_vec();
                        self.input(now, from, &data);
                    }
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let mut framed = Vec::new();
        if let Some(link) = &mut self.tcp {
            while let Ok(n) = link.stream.read(&mut self.buf) {
                if n == 0 {
                    break;
                }
                link.rx.push(&self.buf[..n]);
                while let sfu::tcp::framing::Frame::Packet(p) = link.rx.next_frame() {
                    framed.push(p.to_vec());
                }
            }
        }
        for p in framed {
            let from = self.tcp.as_ref().expect("tcp").node;
            self.input(now, from, &p);
        }
        let released = self.shaper.as_mut().map(|s| s.release(now));
        for (from, d) in released.into_iter().flatten() {
            self.input(now, from, &d);
        }
        let env = &self.env;
        let _ = self.peer.turn(env, &mut self.measure, now);
        let tx = self.peer.transmits();
        match &mut self.tcp {
            Some(link) => {
                for (_, d) in tx.iter() {
                    link.out
                        .extend_from_slice(&sfu::tcp::framing::header(d.len()));
                    link.out.extend_from_slice(d);
                }
                while !link.out.is_empty() {
                    match link.stream.write(&link.out) {
                        Ok(n) if n > 0 => {
                            link.out.drain(..n);
                        }
                        _ => break,
                    }
                }
            }
            None if self.wants_tcp => {}
            None => {
                for (to, d) in tx.iter() {
                    let _ = self.socket.send_to(d, to);
                }
            }
        }
        tx.clear();
    }

    fn input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let env = &self.env;
        let _ = self
            .peer
            .handle_datagram(env, now, now, from, data, &mut self.measure);
    }

    /// Send raw bytes to `to` from this client's own (known to the node) address.
    pub fn send_raw(&self, to: SocketAddr, data: &[u8]) {
        let _ = self.socket.send_to(data, to);
    }

    /// What arrived on each received stream.
    pub fn received(&self) -> Vec<&Received> {
        self.peer.received().collect()
    }

    /// The video stream whose last frame came from client `from`.
    pub fn video_from(&self, from: u8) -> Option<&Received> {
        self.peer
            .received()
            .find(|r| r.kind == StreamKind::Video && r.frames > 0 && r.from == Some(from as u32))
    }

    pub fn audio_packets(&self) -> u64 {
        self.peer
            .received()
            .filter(|r| r.kind == StreamKind::Audio)
            .map(|r| r.frames)
            .sum()
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
        Self::with_config(NodeConfig {
            shards,
            ..NodeConfig::default()
        })
    }

    pub fn with_config(config: NodeConfig) -> Self {
        let (node, events) = Node::start(config).expect("node starts");
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
