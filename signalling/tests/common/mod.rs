//! Test clients of the signalling node's public API: the product's client peer
//! (`client` crate: ICE, DTLS-SRTP, TWCC, NACK, probes in every frame) on loopback UDP,
//! joining over the WebSocket API exactly as the browser page does, or publishing over
//! WHIP and viewing over WHEP; plus raw WebSocket and HTTP helpers for the refusals.
#![allow(dead_code)]

pub mod members;
pub mod processes;
pub mod sip;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use client::media::{Clock, OpusFrames};
use client::stats::{Measure, StreamKind};
use client::udp::UdpPeer;
use client::websocket::{JoinError, Session};
use client::Env;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use str0m::change::SdpAnswer;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn start_server(secret: Option<&str>, max_room_size: usize) -> signalling::Server {
    signalling::start({
        let mut c = signalling::Config::local(1);
        c.secret = secret.map(str::to_owned);
        c.embedded.as_mut().expect("an embedded node").max_room_size = max_room_size;
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

/// The client environment for `server`: its URLs, and one clock and Opus encoder for
/// the whole test process.
fn env(server: &signalling::Server) -> Arc<Env> {
    static SHARED: OnceLock<(Arc<OpusFrames>, Clock)> = OnceLock::new();
    let (opus, clock) = SHARED
        .get_or_init(|| {
            (
                OpusFrames::new().expect("opus encoder"),
                Clock(Instant::now()),
            )
        })
        .clone();
    Arc::new(Env::new(&format!("http://{}", server.addr), opus, clock))
}

/// Every peer's probes carry an id of its own.
fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A client peer behind the WebSocket API (publishing and subscribing), or behind
/// WHIP (publishing) or WHEP (viewing).
pub struct Peer {
    pub name: String,
    /// The probe id of what this peer publishes.
    pub id: u32,
    env: Arc<Env>,
    session: Option<Session>,
    /// A WHIP or WHEP peer, with no signalling channel.
    udp: Option<UdpPeer>,
    /// WHIP/WHEP resource URL (as the server gave it), to DELETE.
    pub location: Option<String>,
    /// The participant id the node gave (WebSocket joins).
    pub me: String,
    measure: Measure,
}

impl Peer {
    fn new(name: &str, env: Arc<Env>, id: u32, started: Instant) -> Peer {
        Peer {
            name: name.into(),
            id,
            env,
            session: None,
            udp: None,
            location: None,
            me: String::new(),
            measure: Measure::new(started),
        }
    }

    /// Offer audio + 3-layer VP8 simulcast and join `room` with `token`; a refusal is
    /// the node's error message.
    pub async fn join(
        server: &signalling::Server,
        room: &str,
        name: &str,
        token: &str,
    ) -> Result<Peer, Value> {
        let (env, id, started) = (env(server), next_id(), Instant::now());
        let mut session = match Session::join(&env, room, token, id, false).await {
            Ok(s) => s,
            Err(JoinError::Refused(v)) => return Err(v),
            Err(JoinError::Failed(e)) => panic!("{name} could not join: {e}"),
        };
        let mut p = Peer::new(name, env, id, started);
        p.me = session.participant().to_owned();
        session.keep_events();
        p.session = Some(session);
        Ok(p)
    }

    /// Publish through WHIP: POST the offer, take the answer. Err: (status, body).
    pub async fn whip(
        server: &signalling::Server,
        room: &str,
        token: &str,
    ) -> Result<Peer, (u16, String)> {
        let (env, id, started) = (env(server), next_id(), Instant::now());
        let url = format!("{}/whip/{room}", env.http_base);
        let (udp, location) = client::whip::publish(&env, &url, token, id, false).await?;
        let mut p = Peer::new("whip", env, id, started);
        p.udp = Some(udp);
        p.location = Some(location);
        Ok(p)
    }

    /// View through WHEP: one receive-only audio and one receive-only video m-line.
    pub async fn whep(
        server: &signalling::Server,
        room: &str,
        token: &str,
    ) -> Result<Peer, (u16, String)> {
        let (env, id, started) = (env(server), next_id(), Instant::now());
        let url = format!("{}/whep/{room}", env.http_base);
        let (udp, location) = client::whip::view(&env, &url, token).await?;
        let mut p = Peer::new("whep", env, id, started);
        p.udp = Some(udp);
        p.location = Some(location);
        Ok(p)
    }

    /// Run the peer for `d`: media out, media in, renegotiations answered. A node's
    /// `failed` ends it early (it is kept in the events).
    pub async fn run(&mut self, d: Duration) {
        let until = Instant::now() + d;
        let (env, measure) = (&self.env, &mut self.measure);
        if let Some(s) = self.session.as_mut() {
            let _ = s.run(env, until, measure).await;
        } else if let Some(u) = self.udp.as_mut() {
            let _ = u.run_until(env, until, measure).await;
        }
    }

    /// Send a message on the WebSocket.
    pub async fn send(&mut self, v: Value) {
        let s = self.session.as_mut().expect("a WebSocket peer");
        s.send(&v).await.expect("ws send");
    }

    /// The node's `joined` reply.
    pub fn joined(&self) -> &Value {
        &self.session.as_ref().expect("a WebSocket peer").joined
    }

    /// The node's messages of type `kind`, in order.
    pub fn saw(&self, kind: &str) -> Vec<&Value> {
        self.session
            .iter()
            .flat_map(|s| s.events.iter())
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Video frames received from `other`'s probes.
    pub fn frames_from(&self, other: &Peer) -> u64 {
        self.measure
            .streams
            .get(&(other.id, StreamKind::Video))
            .map_or(0, |s| s.layer_frames.iter().sum())
    }

    /// Video frames without a probe: from a third-party publisher.
    pub fn unprobed_frames(&self) -> u64 {
        self.peer()
            .received()
            .filter(|r| r.kind == StreamKind::Video)
            .map(|r| r.unprobed)
            .sum()
    }

    /// Video frames received in total, from anyone.
    pub fn frames(&self) -> u64 {
        let probed: u64 = self
            .measure
            .streams
            .values()
            .map(|s| s.layer_frames.iter().sum::<u64>())
            .sum();
        probed + self.unprobed_frames()
    }

    /// Video frames by sender, for messages.
    pub fn frames_by_sender(&self) -> Vec<(u32, [u64; 3])> {
        let mut v: Vec<_> = self
            .measure
            .streams
            .values()
            .filter(|s| s.kind == StreamKind::Video)
            .map(|s| (s.sender, s.layer_frames))
            .collect();
        v.sort();
        v
    }

    fn peer(&self) -> &client::peer::Peer {
        match (&self.session, &self.udp) {
            (Some(s), _) => &s.peer.peer,
            (None, Some(u)) => &u.peer,
            (None, None) => unreachable!("a peer joins one way or another"),
        }
    }
}

/// POST an SDP offer to a WHIP/WHEP endpoint; returns the answer and the Location.
pub async fn post_sdp(
    server: &signalling::Server,
    path: &str,
    token: &str,
    offer: &str,
) -> Result<(SdpAnswer, String), (u16, String)> {
    let url = format!("http://{}{path}", server.addr);
    client::whip::post_offer(&reqwest::Client::new(), &url, token, offer).await
}

pub async fn delete(server: &signalling::Server, location: &str, token: &str) -> u16 {
    let url = format!("http://{}{location}", server.addr);
    client::whip::delete(&reqwest::Client::new(), &url, token)
        .await
        .expect("DELETE answered")
}
