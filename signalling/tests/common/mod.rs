//! A WebSocket-API client for tests: a real str0m peer (ICE, DTLS, SRTP) on loopback
//! UDP that joins through the signalling node exactly as the browser page does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn start_server(secret: Option<&str>, max_room_size: usize) -> signalling::Server {
    signalling::start({
        let mut c = signalling::Config::local(1);
        c.secret = secret.map(str::to_owned);
        c.node.max_room_size = max_room_size;
        c
    })
    .await
    .expect("server starts")
}

pub async fn connect(server: &signalling::Server, room: &str) -> Ws {
    let url = format!("ws://{}/ws/{room}", server.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connects")
        .0
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("ws send");
}

/// The next JSON message, within `limit`.
pub async fn recv(ws: &mut Ws, limit: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(limit, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub async fn dev_token(server: &signalling::Server, room: &str, identity: &str) -> String {
    let url = format!(
        "http://{}/api/dev-token?room={room}&identity={identity}",
        server.addr
    );
    let v: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    v["token"].as_str().expect("token").to_owned()
}

pub async fn get(server: &signalling::Server, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://{}{path}", server.addr));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A publishing and subscribing str0m peer behind the WebSocket API.
pub struct Peer {
    pub name: String,
    pub rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    pub ws: Option<Ws>,
    audio: Option<Mid>,
    video: Option<Mid>,
    /// WHIP/WHEP resource URL, to DELETE.
    pub location: Option<String>,
    pub me: String,
    /// Messages other than offers, in order.
    pub events: Vec<Value>,
    /// Video frames received, by the publisher's stream id.
    pub frames_from: std::collections::HashMap<String, u64>,
    stream_of_mid: std::collections::HashMap<Mid, String>,
    frame_no: u64,
    next_frame: Instant,
}

impl Peer {
    fn rtc() -> (Rtc, UdpSocket, SocketAddr) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let socket = UdpSocket::from_std(socket).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        (rtc, socket, addr)
    }

    fn publishing_offer(rtc: &mut Rtc) -> (SdpOffer, str0m::change::SdpPendingOffer, Mid, Mid) {
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let mut sim = Simulcast::new();
        for r in ["q", "h", "f"] {
            sim.add_send_layer(SimulcastLayer::new(r));
        }
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim));
        let (offer, pending) = api.apply().unwrap();
        (offer, pending, audio, video)
    }

    fn new(name: &str, rtc: Rtc, socket: UdpSocket, addr: SocketAddr) -> Peer {
        Peer {
            name: name.into(),
            rtc,
            socket,
            addr,
            ws: None,
            audio: None,
            video: None,
            location: None,
            me: String::new(),
            events: Vec::new(),
            frames_from: Default::default(),
            stream_of_mid: Default::default(),
            frame_no: 0,
            next_frame: Instant::now(),
        }
    }

    /// Offer audio + 3-layer VP8 simulcast and join `room` with `token`.
    pub async fn join(
        server: &signalling::Server,
        room: &str,
        name: &str,
        token: &str,
    ) -> Result<Peer, Value> {
        let (mut rtc, socket, addr) = Self::rtc();
        let (offer, pending, audio, video) = Self::publishing_offer(&mut rtc);
        let mut ws = connect(server, room).await;
        send(
            &mut ws,
            json!({"type": "join", "token": token, "offer": offer.to_sdp_string()}),
        )
        .await;
        let reply = recv(&mut ws, Duration::from_secs(10))
            .await
            .expect("a reply to join");
        if reply["type"] != "joined" {
            return Err(reply);
        }
        let answer = SdpAnswer::from_sdp_string(reply["sdp"].as_str().unwrap()).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let mut p = Peer::new(name, rtc, socket, addr);
        p.ws = Some(ws);
        p.audio = Some(audio);
        p.video = Some(video);
        p.me = reply["participant"].as_str().unwrap().to_owned();
        p.events.push(reply);
        Ok(p)
    }

    /// Publish through WHIP: POST the offer, take the answer. Err: (status, body).
    pub async fn whip(
        server: &signalling::Server,
        room: &str,
        token: &str,
    ) -> Result<Peer, (u16, String)> {
        let (mut rtc, socket, addr) = Self::rtc();
        let (offer, pending, audio, video) = Self::publishing_offer(&mut rtc);
        let (answer, location) = post_sdp(
            server,
            &format!("/whip/{room}"),
            token,
            &offer.to_sdp_string(),
        )
        .await?;
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let mut p = Peer::new("whip", rtc, socket, addr);
        p.audio = Some(audio);
        p.video = Some(video);
        p.location = Some(location);
        Ok(p)
    }

    /// View through WHEP: one receive-only audio and one receive-only video m-line.
    pub async fn whep(
        server: &signalling::Server,
        room: &str,
        token: &str,
    ) -> Result<Peer, (u16, String)> {
        let (mut rtc, socket, addr) = Self::rtc();
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let (answer, location) = post_sdp(
            server,
            &format!("/whep/{room}"),
            token,
            &offer.to_sdp_string(),
        )
        .await?;
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let mut p = Peer::new("whep", rtc, socket, addr);
        p.location = Some(location);
        Ok(p)
    }

    /// Video frames received in total.
    pub fn frames(&self) -> u64 {
        self.frames_from.values().sum()
    }

    /// Run the peer for `d`: media out, media in, renegotiations answered.
    pub async fn run(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = vec![0u8; 2048];
        while Instant::now() < end {
            let timeout = self.poll();
            let wait = timeout
                .min(self.next_frame)
                .min(end)
                .saturating_duration_since(Instant::now());
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        let now = Instant::now();
                        if let Ok(contents) = buf[..n].try_into() {
                            let _ = self.rtc.handle_input(Input::Receive(now, Receive {
                                proto: Protocol::Udp, source: from, destination: self.addr, contents,
                            }));
                        }
                    }
                }
                m = next_ws(&mut self.ws) => {
                    if let Some(Ok(Message::Text(t))) = m {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["type"] == "offer" {
                            let offer = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap();
                            let answer = self.rtc.sdp_api().accept_offer(offer).unwrap();
                            let ws = self.ws.as_mut().unwrap();
                            send(ws, json!({"type": "answer", "sdp": answer.to_sdp_string()})).await;
                        } else {
                            self.events.push(v);
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
            self.send_media();
        }
    }

    fn send_media(&mut self) {
        let now = Instant::now();
        let (Some(audio), Some(video)) = (self.audio, self.video) else {
            return;
        };
        if now < self.next_frame || !self.rtc.is_connected() {
            return;
        }
        self.next_frame = now + Duration::from_millis(33);
        self.frame_no += 1;
        let pt_of = |rtc: &Rtc, c: Codec| {
            rtc.codec_config()
                .find(|p| p.spec().codec == c)
                .unwrap()
                .pt()
        };
        let (apt, vpt) = (pt_of(&self.rtc, Codec::Opus), pt_of(&self.rtc, Codec::Vp8));
        let t = MediaTime::new(self.frame_no * 1600, Frequency::FORTY_EIGHT_KHZ);
        if let Some(w) = self.rtc.writer(audio) {
            let _ = w
                .audio_level(-30, true)
                .write(apt, now, t, vec![0xfc, 1, 2, 3]);
        }
        let key = self.frame_no % 30 == 1;
        for (i, rid) in ["q", "h", "f"].into_iter().enumerate() {
            let mut f = if key {
                vec![0x10, 2, 0, 0x9d, 1, 0x2a, 0x80, 2, 0xe0, 1]
            } else {
                vec![0x11, 2, 0]
            };
            f.extend_from_slice(b"KNU");
            f.resize([300, 800, 1500][i], 0xaa);
            let t = MediaTime::new(self.frame_no * 3000, Frequency::NINETY_KHZ);
            if let Some(w) = self.rtc.writer(video) {
                let _ = w.rid(Rid::from(rid)).write(vpt, now, t, f);
            }
        }
    }

    /// Drain str0m; returns its next timeout.
    fn poll(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::MediaAdded(m))) => {
                    if let Some(media) = self.rtc.media(m.mid) {
                        self.stream_of_mid
                            .insert(m.mid, media.stream_id().to_owned());
                    }
                }
                Ok(Output::Event(Event::MediaData(d))) => {
                    // Count only our test frames (they carry the marker), by sender.
                    let ours = d.data.windows(3).any(|w| w == b"KNU");
                    if d.params.spec().codec == Codec::Vp8 && ours {
                        let from = self.stream_of_mid.get(&d.mid).cloned().unwrap_or_default();
                        *self.frames_from.entry(from).or_default() += 1;
                    } else if d.params.spec().codec == Codec::Vp8 {
                        *self.frames_from.entry("other".into()).or_default() += 1;
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return Instant::now() + Duration::from_millis(10),
            }
        }
    }

    pub fn saw(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
}

async fn next_ws(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// POST an SDP offer to a WHIP/WHEP endpoint; returns the answer and the Location.
pub async fn post_sdp(
    server: &signalling::Server,
    path: &str,
    token: &str,
    offer: &str,
) -> Result<(SdpAnswer, String), (u16, String)> {
    let r = reqwest::Client::new()
        .post(format!("http://{}{path}", server.addr))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let body = r.text().await.unwrap();
    if status != 201 {
        return Err((status, body));
    }
    assert!(body.starts_with("v=0"), "the answer is SDP");
    Ok((
        SdpAnswer::from_sdp_string(&body).unwrap(),
        location.expect("a Location header"),
    ))
}

pub async fn delete(server: &signalling::Server, location: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .delete(format!("http://{}{location}", server.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
