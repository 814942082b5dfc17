//! One load-test participant: a real str0m peer (ICE, DTLS, SRTP, TWCC, NACK, PLI)
//! joining through the signalling node's public WebSocket API with a token, as the
//! browser page does; publishing Opus and three-layer VP8 simulcast, answering the
//! node's renegotiations and keyframe requests, and measuring every stream it gets.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use udpbatch::{BatchSocket, RxBatch, TxQueue};

use crate::media::{opus_probe, vp8_frame, Clock, LayerProfile, OpusFrames, Probe};
use crate::stats::{StreamKind, StreamResult, StreamStats};

pub(crate) const RIDS: [&str; 3] = ["q", "h", "f"];
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    /// Receive buffers, one set per worker thread (they are large enough for GRO, and
    /// a client only borrows them between two awaits).
    pub(crate) static RX: RefCell<RxBatch> = RefCell::new(RxBatch::default());
}

/// Process-wide counters, for the progress bar and the metrics endpoint.
#[derive(Default)]
pub struct Counters {
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// Client-side impairment of what each participant receives.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Impairment {
    /// Share of received media datagrams dropped before str0m sees them, percent.
    pub drop_pct: f64,
    /// Extra delay added to every received datagram, milliseconds.
    pub delay_ms: u64,
}

/// What the participants join.
#[derive(Clone, Debug)]
pub enum Target {
    /// knudepunkt's signalling node (`http_base`/`ws_base`), WebRTC clients.
    Signalling,
    /// The bare UDP relay baseline: plain-RTP clients, rooms spread over its shards.
    Relay { addr: SocketAddr, shards: u16 },
    /// Janus's videoroom plugin through its HTTP API at `base` (`http://HOST:PORT/janus`).
    Janus { base: String },
}

/// What all participants of a run share.
pub struct Env {
    pub target: Target,
    pub http_base: String,
    pub ws_base: String,
    /// Mint tokens with this secret; without it, ask the server's dev-token endpoint.
    pub token_secret: Option<jsonwebtoken::EncodingKey>,
    pub http: reqwest::Client,
    pub opus: Arc<OpusFrames>,
    pub clock: Clock,
    pub layers: Vec<LayerProfile>,
    pub keyframe_interval: Duration,
    pub impair: Impairment,
    pub bind_ip: IpAddr,
    pub counters: Counters,
}

#[derive(Clone, Debug, Serialize)]
pub struct ParticipantResult {
    pub room: String,
    pub id: u32,
    pub join_ms: Option<f64>,
    pub streams: Vec<StreamResult>,
    pub rejoins: u32,
    pub error: Option<String>,
}

enum End {
    Done,
    Rejoin(String),
}

/// Take part in `room` as participant `id` until `deadline`.
pub async fn participant(
    env: Arc<Env>,
    room: String,
    id: u32,
    deadline: Instant,
    loud: bool,
) -> ParticipantResult {
    let mut result = ParticipantResult {
        room: room.clone(),
        id,
        join_ms: None,
        streams: Vec::new(),
        rejoins: 0,
        error: None,
    };
    if let Target::Relay { addr, shards } = env.target {
        let relay = crate::plain::relay_addr(addr, shards, &room);
        return crate::plain::participant(env, relay, room, id, deadline).await;
    }
    if let Target::Janus { base } = &env.target {
        let base = base.clone();
        return crate::janus::participant(env, base, room, id, deadline, loud).await;
    }
    let mut stats: HashMap<(u32, StreamKind), StreamStats> = HashMap::new();
    loop {
        let mut session = match Session::join(&env, &room, id, loud).await {
            Ok(s) => s,
            Err(e) => {
                result.error = Some(e);
                break;
            }
        };
        match session.run(&env, deadline, &mut stats).await {
            Ok(End::Done) => {
                if result.join_ms.is_none() {
                    result.join_ms = session.join_ms;
                }
                break;
            }
            Ok(End::Rejoin(why)) if Instant::now() < deadline => {
                tracing::info!(room, id, "rejoining: {why}");
                result.join_ms = result.join_ms.or(session.join_ms);
                result.rejoins += 1;
            }
            Ok(End::Rejoin(_)) => break,
            Err(e) => {
                result.join_ms = result.join_ms.or(session.join_ms);
                result.error = Some(e);
                break;
            }
        }
    }
    let end_us = env.clock.us(Instant::now().min(deadline));
    let mut streams: Vec<StreamResult> = stats.values().map(|s| s.finish(end_us)).collect();
    streams.sort_by_key(|s| (s.sender, s.kind == StreamKind::Video));
    result.streams = streams;
    result
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Session {
    rtc: Rtc,
    socket: UdpSocket,
    io: BatchSocket,
    /// What str0m wrote this turn, sent at its end (a frame's packets in one GSO call).
    tx: TxQueue,
    local: SocketAddr,
    ws: SplitSink<Ws, Message>,
    /// The node's messages, parsed by a reader task: the media loop never polls the
    /// WebSocket itself (tungstenite re-zeroes its read buffer on every poll).
    signals: mpsc::Receiver<Value>,
    reader: JoinHandle<()>,
    audio: Mid,
    video: Mid,
    id: u32,
    loud: bool,
    started: Instant,
    join_ms: Option<f64>,
    remote_kind: HashMap<Mid, StreamKind>,
    keyframe_wanted: [bool; 3],
    next_audio: Instant,
    next_video: [Instant; 3],
    next_key: Instant,
    seq_audio: u32,
    seq_video: [u32; 3],
    delayed: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
}

/// A client socket with room for bursts (a few layers' keyframes at once).
pub(crate) fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(1 << 20);
    let _ = s.set_send_buffer_size(1 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn mint(key: &jsonwebtoken::EncodingKey, room: &str, identity: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = json!({"room": room, "sub": identity, "role": "publisher", "exp": exp});
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, key)
        .expect("HS256 encoding cannot fail")
}

impl Session {
    async fn join(env: &Env, room: &str, id: u32, loud: bool) -> Result<Session, String> {
        let started = Instant::now();
        let identity = format!("lt-{id}");
        let token = match &env.token_secret {
            Some(key) => mint(key, room, &identity),
            None => {
                let url = format!(
                    "{}/api/dev-token?room={room}&identity={identity}",
                    env.http_base
                );
                let v: Value = env
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("dev token: {e}"))?
                    .json()
                    .await
                    .map_err(|e| format!("dev token: {e}"))?;
                v["token"]
                    .as_str()
                    .ok_or("dev token: no token (is the server in dev mode?)")?
                    .to_owned()
            }
        };
        let socket =
            udp_socket(SocketAddr::new(env.bind_ip, 0)).map_err(|e| format!("udp bind: {e}"))?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let mut sim = Simulcast::new();
        for r in RIDS.iter().take(env.layers.len()) {
            sim.add_send_layer(SimulcastLayer::new(r));
        }
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim));
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let url = format!("{}/ws/{room}", env.ws_base);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        let join = json!({"type": "join", "token": token, "offer": offer.to_sdp_string()});
        ws.send(Message::Text(join.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(JOIN_TIMEOUT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => return serde_json::from_str::<Value>(&t).ok(),
                    Some(Ok(_)) => continue,
                    _ => return None,
                }
            }
        })
        .await
        .map_err(|_| "no answer to the join within 10 s".to_owned())?
        .ok_or("signalling closed the join")?;
        if reply["type"] != "joined" {
            return Err(format!("join refused: {}", reply["message"]));
        }
        let answer = SdpAnswer::from_sdp_string(reply["sdp"].as_str().unwrap_or(""))
            .map_err(|e| format!("answer: {e}"))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("answer: {e}"))?;
        // Unpaced, so that the delay measured is the node's: str0m's pacer would hold
        // a keyframe burst for tens of milliseconds before it reached the socket.
        let mut direct = rtc.direct_api();
        let mut streams = 0;
        for rid in RIDS.iter().take(env.layers.len()) {
            if let Some(tx) = direct.stream_tx_by_mid(video, Some(Rid::from(*rid))) {
                tx.set_unpaced(true);
                streams += 1;
            }
        }
        if let Some(tx) = direct.stream_tx_by_mid(audio, None) {
            tx.set_unpaced(true);
            streams += 1;
        }
        if streams != env.layers.len() + 1 {
            return Err(format!(
                "negotiated {streams} send streams, expected {}",
                env.layers.len() + 1
            ));
        }
        let now = Instant::now();
        let jitter = Duration::from_millis(rand::rng().random_range(0..20));
        let io = BatchSocket::new(&socket).map_err(|e| format!("udp: {e}"))?;
        let (ws, mut incoming) = ws.split();
        let (signal_tx, signals) = mpsc::channel(16);
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = incoming.next().await {
                if let Message::Text(t) = m {
                    let v = serde_json::from_str::<Value>(&t).unwrap_or_else(
                        |e| json!({"type": "error", "message": format!("signalling sent bad JSON: {e}")}),
                    );
                    if signal_tx.send(v).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Session {
            rtc,
            socket,
            io,
            tx: TxQueue::with_capacity(64),
            local,
            ws,
            signals,
            reader,
            audio,
            video,
            id,
            loud,
            started,
            join_ms: None,
            remote_kind: HashMap::new(),
            keyframe_wanted: [true; 3],
            next_audio: now + jitter,
            next_video: [now + jitter; 3],
            next_key: now + env.keyframe_interval,
            seq_audio: 0,
            seq_video: [0; 3],
            delayed: VecDeque::new(),
        })
    }

    async fn run(
        &mut self,
        env: &Env,
        deadline: Instant,
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
    ) -> Result<End, String> {
        let mut last_turn = Instant::now();
        let mut timeout = self.poll(env, stats)?;
        loop {
            let now = Instant::now();
            if now.duration_since(last_turn) > Duration::from_millis(50) {
                tracing::warn!(
                    id = self.id,
                    gap_ms = now.duration_since(last_turn).as_millis() as u64,
                    "slow client turn"
                );
            }
            last_turn = now;
            if now >= deadline {
                let leave = json!({"type": "leave"}).to_string();
                let _ = self.ws.send(Message::Text(leave.into())).await;
                let _ = self.ws.close().await;
                return Ok(End::Done);
            }
            let mut wake = timeout.min(deadline).min(self.next_audio);
            for t in &self.next_video {
                wake = wake.min(*t);
            }
            if let Some((t, _, _)) = self.delayed.front() {
                wake = wake.min(*t);
            }
            tokio::select! {
                r = self.socket.readable() => {
                    r.map_err(|e| format!("udp: {e}"))?;
                    self.read_datagrams(env, stats)?;
                }
                m = self.signals.recv() => {
                    let Some(v) = m else {
                        return Ok(End::Rejoin("signalling connection closed".into()));
                    };
                    match v["type"].as_str().unwrap_or("") {
                        "offer" => {
                            let offer = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or(""))
                                .map_err(|e| format!("server offer: {e}"))?;
                            let answer = self.rtc.sdp_api().accept_offer(offer)
                                .map_err(|e| format!("server offer: {e}"))?;
                            let msg = json!({"type": "answer", "sdp": answer.to_sdp_string()}).to_string();
                            self.ws.send(Message::Text(msg.into())).await.map_err(|e| e.to_string())?;
                        }
                        "failed" => return Ok(End::Rejoin(v["reason"].as_str().unwrap_or("").to_owned())),
                        "error" => tracing::warn!(id = self.id, "signalling: {}", v["message"]),
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            while self.delayed.front().is_some_and(|(t, _, _)| *t <= now) {
                let (_, from, d) = self.delayed.pop_front().expect("checked");
                self.input(now, from, &d);
                self.poll(env, stats)?;
            }
            self.send_media(env, now);
            // str0m releases written packets when time moves on: tell it now, so the
            // frames just written leave in this turn, not at the next wake-up.
            let _ = self.rtc.handle_input(Input::Timeout(now));
            timeout = self.poll(env, stats)?;
            let done = self.tx.flush(&self.io, &self.socket);
            env.counters
                .packets_out
                .fetch_add(done.datagrams, Ordering::Relaxed);
        }
    }

    /// Everything the socket holds, a batch per call, each datagram through str0m.
    fn read_datagrams(
        &mut self,
        env: &Env,
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
    ) -> Result<(), String> {
        RX.with_borrow_mut(|rx| loop {
            match self
                .socket
                .try_io(Interest::READABLE, || rx.recv(&self.io, &self.socket))
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("udp: {e}")),
            }
            let now = Instant::now();
            for (from, data) in rx.datagrams() {
                env.counters.packets_in.fetch_add(1, Ordering::Relaxed);
                env.counters
                    .bytes_in
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                let media = data.len() > 12
                    && (128..192).contains(&data[0])
                    && !(192..=223).contains(&data[1]);
                if media
                    && env.impair.drop_pct > 0.0
                    && rand::rng().random::<f64>() * 100.0 < env.impair.drop_pct
                {
                    continue;
                }
                if env.impair.delay_ms > 0 {
                    let at = now + Duration::from_millis(env.impair.delay_ms);
                    self.delayed.push_back((at, from, data.to_vec()));
                } else {
                    self.input(now, from, data);
                    self.poll(env, stats)?;
                }
            }
        })
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

    fn pt(&self, codec: Codec) -> Option<str0m::media::Pt> {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    fn send_media(&mut self, env: &Env, now: Instant) {
        if !self.rtc.is_connected() {
            return;
        }
        let sent_us = env.clock.us(now);
        if now >= self.next_audio {
            self.next_audio += Duration::from_millis(20);
            if self.next_audio < now {
                self.next_audio = now + Duration::from_millis(20);
            }
            if let Some(pt) = self.pt(Codec::Opus) {
                let probe = Probe {
                    sender: self.id,
                    layer: 0,
                    seq: self.seq_audio,
                    sent_us,
                };
                let data = env.opus.frame(self.seq_audio as usize, &probe);
                let t = MediaTime::new(self.seq_audio as u64 * 960, Frequency::FORTY_EIGHT_KHZ);
                self.seq_audio += 1;
                let level = if self.loud { -25 } else { -70 };
                if let Some(w) = self.rtc.writer(self.audio) {
                    let _ = w.audio_level(level, self.loud).write(pt, now, t, data);
                }
            }
        }
        if now >= self.next_key {
            self.next_key = now + env.keyframe_interval;
            self.keyframe_wanted = [true; 3];
        }
        let Some(vpt) = self.pt(Codec::Vp8) else {
            return;
        };
        let t = MediaTime::new(env.clock.us(now) * 9 / 100, Frequency::NINETY_KHZ);
        for (i, layer) in env.layers.iter().enumerate().take(3) {
            if now < self.next_video[i] {
                continue;
            }
            let period = Duration::from_secs_f64(1.0 / layer.fps);
            self.next_video[i] += period;
            if self.next_video[i] < now {
                self.next_video[i] = now + period;
            }
            let key = std::mem::take(&mut self.keyframe_wanted[i]);
            let probe = Probe {
                sender: self.id,
                layer: i as u8,
                seq: self.seq_video[i],
                sent_us,
            };
            self.seq_video[i] += 1;
            let size = layer.frame_bytes() * if key { 3 } else { 1 };
            let (w, h) = (320u16 << i, 180u16 << i);
            let frame = vp8_frame(key, w, h, &probe, size);
            if let Some(wr) = self.rtc.writer(self.video) {
                let _ = wr.rid(Rid::from(RIDS[i])).write(vpt, now, t, frame);
            }
        }
    }

    /// Drain str0m: send, record, answer keyframe requests. Returns its next timeout.
    fn poll(
        &mut self,
        env: &Env,
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
    ) -> Result<Instant, String> {
        let mut released = 0;
        loop {
            match self.rtc.poll_output().map_err(|e| format!("rtc: {e}"))? {
                // str0m's pacer hands out one packet per timeout: handle a due one at
                // once, so a frame leaves in this turn (and in one GSO send).
                Output::Timeout(t) if released < 64 && t <= Instant::now() => {
                    released += 1;
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => self.tx.push(t.destination, &t.contents),
                Output::Event(e) => match e {
                    Event::MediaAdded(m) if m.direction == Direction::RecvOnly => {
                        let kind = if m.kind == MediaKind::Audio {
                            StreamKind::Audio
                        } else {
                            StreamKind::Video
                        };
                        self.remote_kind.insert(m.mid, kind);
                    }
                    Event::MediaData(d) => {
                        let Some(kind) = self.remote_kind.get(&d.mid).copied() else {
                            continue;
                        };
                        let probe = match kind {
                            StreamKind::Audio => opus_probe(&d.data),
                            StreamKind::Video => Probe::find(&d.data),
                        };
                        let Some(probe) = probe else { continue };
                        let now_us = env.clock.us(Instant::now());
                        if self.join_ms.is_none() {
                            self.join_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
                        }
                        stats
                            .entry((probe.sender, kind))
                            .or_insert_with(|| StreamStats::new(kind, probe.sender))
                            .on_frame(&probe, now_us);
                    }
                    Event::KeyframeRequest(r) => {
                        let i = r
                            .rid
                            .and_then(|rid| RIDS.iter().position(|x| Rid::from(*x) == rid))
                            .unwrap_or(0);
                        self.keyframe_wanted[i.min(2)] = true;
                    }
                    _ => {}
                },
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
