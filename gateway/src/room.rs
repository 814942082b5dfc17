//! The call's participant in its room: a str0m peer (RTP mode: Opus, VP8, H.264;
//! [`media`] makes and reads its packets) on a UDP socket of its own, joined through the signalling node's WebSocket API like
//! any participant, with a join token from [`Tokens`]. It publishes the caller's
//! audio (and video, when the leg has one) and receives the room's voices and videos
//! on the m-lines the node adds by renegotiation; which video is the caller's to see
//! it learns from the node's `tracks` and `active_speaker` messages, and it pauses
//! the others (`preference`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use client::websocket::{answer_offer, JoinError, Signalling};

mod media;

use crate::sdp::VideoCodec;

/// Why the SIP side ends a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hangup {
    /// The caller hung up (BYE, CANCEL): nothing to tell them.
    Caller,
    /// The gateway is stopping: the caller is told (BYE, or 503 before an answer).
    Closing,
}

/// How a call ended, from the driver's side.
#[derive(Debug)]
pub enum Ended {
    /// The caller hung up (BYE, CANCEL).
    Hangup,
    /// The gateway is stopping: the caller gets a BYE.
    Closing,
    /// No refresh came within the session timer's interval (RFC 4028): a BYE.
    Expired,
    /// The room went away (closed, or the node asked for a rejoin that failed).
    Room(String),
    /// The leg or the peer failed.
    Failed(String),
}

/// Where calls join rooms: the signalling node's public API.
#[derive(Clone)]
pub struct RoomApi {
    /// `http://host:port` of the signalling node.
    pub http_base: String,
    pub ws_base: String,
    pub tokens: Tokens,
    pub http: reqwest::Client,
    /// The address the room peers' sockets bind to (they reach the media node from it).
    pub media_ip: std::net::IpAddr,
}

/// Where a call's join token comes from.
#[derive(Clone)]
pub enum Tokens {
    /// The node's dev-token endpoint (a node in dev mode, on loopback).
    Dev,
    /// Minted with the node's keys, by the signalling node itself when the gateway
    /// runs in it (`signalling --sip`).
    Mint(Arc<MintToken>),
    /// A gateway of its own asks the signalling node for each call's join token
    /// (`POST /api/sip/token`) with this service token: it holds no key that mints
    /// tokens.
    Service(Arc<str>),
}

/// `(room, identity, call) -> token`: how join tokens are minted. `call` is `None` for
/// an ordinary participant, what the gateway says of it for a SIP call.
pub type MintToken = dyn Fn(&str, &str, Option<CallClaims>) -> String + Send + Sync;

/// What a SIP call's join token says of it (its `sip` claim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallClaims {
    /// From a trusted network (`--sip-trust`): no PIN asked.
    pub trusted: bool,
    /// Where its SIP came from: the node counts wrong PINs per room and caller.
    pub source: Option<IpAddr>,
}

impl CallClaims {
    /// The claim as JSON (for a token minted outside the signalling node).
    pub fn to_json(self) -> Value {
        let mut v = serde_json::json!({ "trusted": self.trusted });
        if let Some(ip) = self.source {
            v["source"] = ip.to_string().into();
        }
        v
    }
}

impl RoomApi {
    /// A dev token for a SIP call (`kind=sip`), from a node in dev mode.
    async fn dev_sip_token(&self, room: &str, identity: &str) -> Result<String, String> {
        let mut url = reqwest::Url::parse(&format!("{}/api/dev-token", self.http_base))
            .map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("room", room)
            .append_pair("identity", identity)
            .append_pair("kind", "sip");
        let v: Value = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("dev token: {e}"))?
            .json()
            .await
            .map_err(|e| format!("dev token: {e}"))?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "dev token: none (is the node in dev mode?)".into())
    }

    pub fn new(http_base: &str, tokens: Tokens, media_ip: std::net::IpAddr) -> RoomApi {
        let http_base = http_base.trim_end_matches('/').to_owned();
        let ws_base = http_base
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1);
        RoomApi {
            http_base,
            ws_base,
            tokens,
            // A node that does not answer must not hold a call's set-up for long.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            media_ip,
        }
    }

    async fn token(
        &self,
        room: &str,
        identity: &str,
        sip: Option<CallClaims>,
    ) -> Result<String, JoinFailure> {
        let unreachable = JoinFailure::Unreachable;
        match &self.tokens {
            Tokens::Mint(mint) => Ok(mint(room, identity, sip)),
            Tokens::Dev if sip.is_none() => {
                let http = &self.http;
                client::websocket::token_from(http, &self.http_base, None, room, identity)
                    .await
                    .map_err(unreachable)
            }
            // A call's dev token says it is one (shown as such in the room).
            Tokens::Dev => self
                .dev_sip_token(room, identity)
                .await
                .map_err(unreachable),
            Tokens::Service(service) => {
                let Some(call) = sip else {
                    let why = "a service token gets tokens for SIP calls only";
                    return Err(JoinFailure::NotAllowed(why.into()));
                };
                self.service_sip_token(service, room, identity, call).await
            }
        }
    }

    /// Whether the node takes this gateway's service token (a gateway of its own
    /// checks at start): an empty request is refused for its body (400) only once
    /// the token passed.
    pub async fn check_service_token(&self) -> Result<(), String> {
        let Tokens::Service(service) = &self.tokens else {
            return Ok(());
        };
        let r = self
            .http
            .post(format!("{}/api/sip/token", self.http_base))
            .bearer_auth(service)
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| format!("the signalling node at {}: {e}", self.http_base))?;
        let status = r.status();
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Ok(());
        }
        let v: Value = r.json().await.unwrap_or_default();
        Err(format!(
            "the signalling node refused the service token: {status}: {}",
            v["error"]
        ))
    }

    /// A call's join token from the signalling node, for a gateway of its own.
    async fn service_sip_token(
        &self,
        service: &str,
        room: &str,
        identity: &str,
        call: CallClaims,
    ) -> Result<String, JoinFailure> {
        let mut body = call.to_json();
        body["room"] = room.into();
        body["identity"] = identity.into();
        let r = self
            .http
            .post(format!("{}/api/sip/token", self.http_base))
            .bearer_auth(service)
            .json(&body)
            .send()
            .await
            .map_err(|e| JoinFailure::Unreachable(format!("call token: {e}")))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        if matches!(status.as_u16(), 401 | 403) {
            // A bad or expired service token: the operator's to fix.
            return Err(JoinFailure::NotAllowed(format!("{status}: {}", v["error"])));
        }
        if !status.is_success() {
            let why = format!("call token: {status}: {}", v["error"]);
            return Err(JoinFailure::Unreachable(why));
        }
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| JoinFailure::Unreachable("call token: none in the node's answer".into()))
    }
}

/// Why a room could not be joined.
#[derive(Debug)]
pub enum JoinFailure {
    /// The signalling node refused the join (the room does not exist, is full, the
    /// PIN is needed or wrong): its error `code` and message.
    Refused { code: String, message: String },
    /// The node could not be reached or did not answer in time: ours.
    Unreachable(String),
    /// The node refused the gateway's own credentials (its service token is wrong
    /// or expired): the operator's to fix, not the caller's.
    NotAllowed(String),
}

impl std::fmt::Display for JoinFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinFailure::Refused { code, message } => write!(f, "join refused ({code}): {message}"),
            JoinFailure::Unreachable(m) => write!(f, "room not reachable: {m}"),
            JoinFailure::NotAllowed(m) => write!(f, "the gateway's service token: {m}"),
        }
    }
}

/// What woke a [`RoomPeer`] that was waiting.
#[derive(Debug)]
pub enum Woke {
    /// A datagram or the time: handled.
    Media,
    /// A message from the signalling node (`None`: the session is over): for
    /// [`RoomPeer::on_signal`], outside any `select!` that could drop it half-handled.
    Signal(Option<Value>),
}

/// The call's participant in the room: a str0m peer on its own UDP socket, and its
/// signalling session. Public so that tests (and tools) can take part in a room the
/// way a call does.
pub struct RoomPeer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    link: Signalling,
    mid: Mid,
    /// Where the caller's video is published, when the leg has video.
    video_mid: Option<Mid>,
    answered: Option<(String, String)>,
    /// The m-lines the room's media arrive on: an m-line's index is its source id.
    sources: Vec<Mid>,
    /// What each of the node's m-lines carries now (its last `offer`'s `tracks`).
    tracks: HashMap<Mid, Track>,
    /// The room's dominant speaker (its participant id), as the node last said.
    speaker: Option<String>,
    /// The room asked for a keyframe of the caller's video.
    keyframe_asked: bool,
    /// The `preference` each video track was last given: (paused, max_layer).
    preferences: HashMap<u64, (bool, u8)>,
    media: media::Media,
    buf: Vec<u8>,
}

/// One of the room's tracks, on one of the node's m-lines.
#[derive(Clone, Debug)]
struct Track {
    participant: String,
    id: u64,
    video: bool,
    /// A shared screen (shown before any camera).
    screen: bool,
}

/// The video a room peer publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Video {
    None,
    Camera,
    /// Kept for a screen share.
    Screen,
}

fn peer_config() -> RtcConfig {
    RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
}

impl RoomPeer {
    /// Join `room` as `identity` through the signalling node: the publishing offer
    /// with one audio track, the node's answer applied.
    pub async fn join(api: &RoomApi, room: &str, identity: &str) -> Result<RoomPeer, JoinFailure> {
        RoomPeer::join_as(api, room, identity, None, None, Video::None).await
    }

    /// [`RoomPeer::join`], publishing a video track too (VP8 or H.264: [`RoomPeer::send_video`]).
    pub async fn join_with_video(
        api: &RoomApi,
        room: &str,
        identity: &str,
    ) -> Result<RoomPeer, JoinFailure> {
        RoomPeer::join_as(api, room, identity, None, None, Video::Camera).await
    }

    /// [`RoomPeer::join`] with a video track kept for a screen share: published to
    /// the room only while [`RoomPeer::share_screen`] says so (a presenter, in tests).
    pub async fn join_sharing(
        api: &RoomApi,
        room: &str,
        identity: &str,
    ) -> Result<RoomPeer, JoinFailure> {
        RoomPeer::join_as(api, room, identity, None, None, Video::Screen).await
    }

    /// Start or stop sharing the screen (a peer of [`RoomPeer::join_sharing`]).
    pub async fn share_screen(&mut self, on: bool) -> Result<(), Ended> {
        let m = serde_json::json!({"type": "screen", "on": on});
        self.link.send(&m).await.map_err(Ended::Failed)
    }

    /// [`RoomPeer::join`] for a SIP call (publishing video when the leg has it):
    /// unless it is trusted, `pin` must be the room's.
    pub async fn join_call(
        api: &RoomApi,
        room: &str,
        identity: &str,
        call: CallClaims,
        pin: Option<&str>,
        video: bool,
    ) -> Result<RoomPeer, JoinFailure> {
        let video = if video { Video::Camera } else { Video::None };
        RoomPeer::join_as(api, room, identity, Some(call), pin, video).await
    }

    async fn join_as(
        api: &RoomApi,
        room: &str,
        identity: &str,
        sip: Option<CallClaims>,
        pin: Option<&str>,
        video: Video,
    ) -> Result<RoomPeer, JoinFailure> {
        let ours = JoinFailure::Unreachable;
        let socket = UdpSocket::bind(SocketAddr::new(api.media_ip, 0))
            .await
            .map_err(|e| ours(format!("room socket: {e}")))?;
        let local = socket.local_addr().map_err(|e| ours(e.to_string()))?;
        let mut rtc = peer_config().build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| ours(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut sdp = rtc.sdp_api();
        let mid = sdp.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = (video != Video::None)
            .then(|| sdp.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let (offer, pending): (_, SdpPendingOffer) =
            sdp.apply().ok_or_else(|| ours("no offer".into()))?;
        let token = api.token(room, identity, sip).await?;
        let mut fields = serde_json::json!({});
        if let Some(pin) = pin {
            fields["pin"] = pin.into();
        }
        if let (Video::Screen, Some(mid)) = (video, video_mid) {
            fields["screen"] = mid.to_string().into();
        }
        let (link, answer) =
            Signalling::join_with_fields(&api.ws_base, room, &token, &offer, fields)
                .await
                .map_err(|e| match e {
                    JoinError::Refused(v) => JoinFailure::Refused {
                        code: v["code"].as_str().unwrap_or("").to_owned(),
                        message: v["message"].as_str().unwrap_or("").to_owned(),
                    },
                    JoinError::Failed(e) => ours(e),
                })?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| ours(format!("answer: {e}")))?;
        Ok(RoomPeer {
            rtc,
            socket,
            local,
            link,
            mid,
            video_mid,
            answered: None,
            sources: Vec::new(),
            tracks: HashMap::new(),
            speaker: None,
            keyframe_asked: false,
            preferences: HashMap::new(),
            media: media::Media::new(),
            buf: vec![0; 2048],
        })
    }

    /// The node's `joined` message (the participant's id, who else is there).
    pub fn joined(&self) -> &Value {
        &self.link.joined
    }

    /// Send one Opus frame of `samples` (48 kHz; 960 for 20 ms) with its RFC 6464
    /// level (-dBov); dropped before the peer is connected.
    pub fn send_opus(&mut self, now: Instant, opus: Vec<u8>, level: i8, samples: u32) {
        let mid = self.mid;
        self.media
            .send_opus(&mut self.rtc, mid, now, opus, level, samples);
    }

    /// Send one video frame of the caller's (VP8, or H.264 in Annex B), at its 90 kHz
    /// RTP time; dropped before the peer is connected or when the call publishes no
    /// video.
    pub fn send_video(&mut self, now: Instant, codec: VideoCodec, frame: Vec<u8>, rtp_time: u32) {
        if let Some(mid) = self.video_mid {
            self.media
                .send_video(&mut self.rtc, mid, now, codec, &frame, rtp_time);
        }
    }

    /// Ask the publisher of source `source`'s video for a keyframe (RTCP PLI).
    pub fn request_keyframe(&mut self, source: u32) {
        if let Some(&mid) = self.sources.get(source as usize) {
            self.media.request_keyframe(&mut self.rtc, mid, source);
        }
    }

    /// Whether the room asked for a keyframe of the caller's video since last asked.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_asked)
    }

    /// The room's videos now, ordered by participant (cameras before screens).
    pub fn videos(&mut self) -> Vec<crate::video::Candidate> {
        let mut videos: Vec<(Mid, &Track)> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.video)
            .map(|(m, t)| (*m, t))
            .collect();
        videos.sort_by(|a, b| (&a.1.participant, a.1.screen).cmp(&(&b.1.participant, b.1.screen)));
        videos
            .into_iter()
            .map(|(m, t)| crate::video::Candidate {
                source: source_index(&mut self.sources, m),
                participant: t.participant.clone(),
                screen: t.screen,
            })
            .collect()
    }

    /// The room's dominant speaker, as the node last said.
    pub fn speaker(&self) -> Option<&str> {
        self.speaker.as_deref()
    }

    /// Pause every video but `shown` (the sources on the leg or on their way), and
    /// cap the shown ones at `max_layer`: the node sends only what the leg shows.
    /// Only changes are sent.
    pub async fn prefer(&mut self, shown: &[u32], max_layer: u8) -> Result<(), Ended> {
        let wanted: Vec<(u64, bool)> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.video)
            .map(|(mid, t)| {
                let i = self.sources.iter().position(|m| m == mid).map(|i| i as u32);
                let on = i.is_some_and(|i| shown.contains(&i));
                (t.id, !on)
            })
            .collect();
        // Tracks that ended are forgotten (a long call sees many come and go).
        self.preferences
            .retain(|track, _| wanted.iter().any(|(t, _)| t == track));
        for (track, paused) in wanted {
            if self.preferences.get(&track) == Some(&(paused, max_layer)) {
                continue;
            }
            self.preferences.insert(track, (paused, max_layer));
            let m = serde_json::json!({
                "type": "preference", "track": track, "paused": paused, "max_layer": max_layer,
            });
            self.link.send(&m).await.map_err(Ended::Failed)?;
        }
        Ok(())
    }

    /// Drain the peer: its datagrams sent, each voice's Opus frame handed to `audio`
    /// (source id, frame), each video frame to `video` (source id, codec, frame, 90 kHz
    /// RTP time). Returns when it next needs time, or why it failed.
    pub fn poll(
        &mut self,
        mut audio: impl FnMut(u32, &[u8]),
        mut video: impl FnMut(u32, VideoCodec, &[u8], u32),
    ) -> Result<Instant, String> {
        let now = Instant::now();
        self.media.handle_timeout(&mut self.rtc, now, &mut video);
        loop {
            match self
                .rtc
                .poll_output()
                .map_err(|e| format!("room peer: {e}"))?
            {
                RtcOutput::Timeout(t) => {
                    return Ok(self.media.next_timeout().map_or(t, |m| m.min(t)));
                }
                RtcOutput::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                RtcOutput::Event(Event::RtpPacket(p)) => {
                    let sources = &mut self.sources;
                    let source_of = |mid| source_index(sources, mid);
                    self.media
                        .on_packet(&mut self.rtc, now, &p, source_of, &mut audio, &mut video);
                }
                RtcOutput::Event(Event::KeyframeRequest(r)) if Some(r.mid) == self.video_mid => {
                    self.keyframe_asked = true;
                }
                RtcOutput::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => return Err("the media node is unreachable".into()),
                RtcOutput::Event(_) => {}
            }
        }
    }

    /// Wait for the peer's next datagram (handled), message (returned), or until
    /// `until`. Cancel-safe: a `select!` may drop it.
    pub async fn wait(&mut self, until: Instant) -> Woke {
        tokio::select! {
            r = self.socket.recv_from(&mut self.buf) => {
                if let Ok((n, from)) = r {
                    self.receive(n, from);
                }
            }
            m = self.link.recv() => return Woke::Signal(m),
            _ = tokio::time::sleep_until(until.into()) => self.timeout(),
        }
        Woke::Media
    }

    fn receive(&mut self, n: usize, from: SocketAddr) {
        if let Ok(contents) = self.buf[..n].try_into() {
            let _ = self.rtc.handle_input(Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: self.local,
                    contents,
                },
            ));
        }
    }

    fn timeout(&mut self) {
        let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
    }

    /// A message from the signalling node: offers answered; the room's end, or the
    /// session's, ends the call.
    pub async fn on_signal(&mut self, m: Option<Value>) -> Result<(), Ended> {
        let Some(v) = m else {
            return Err(Ended::Room("the signalling session ended".into()));
        };
        match v["type"].as_str().unwrap_or("") {
            "offer" => {
                self.tracks = offered_tracks(&v);
                answer_offer(&mut self.rtc, &mut self.link, &mut self.answered, &v)
                    .await
                    .map_err(Ended::Failed)
            }
            "active_speaker" => {
                self.speaker = v["participant"].as_str().map(str::to_owned);
                Ok(())
            }
            "closed" => Err(Ended::Room("the room was closed".into())),
            "failed" => Err(Ended::Room(format!(
                "the node ended the session: {}",
                v["reason"].as_str().unwrap_or("")
            ))),
            _ => Ok(()),
        }
    }

    /// Leave the room.
    pub async fn leave(mut self) {
        self.link.leave().await;
        self.rtc.disconnect();
    }
}

/// The source id of the media on `mid` (numbered as they are first seen).
fn source_index(sources: &mut Vec<Mid>, mid: Mid) -> u32 {
    match sources.iter().position(|m| *m == mid) {
        Some(i) => i as u32,
        None => {
            sources.push(mid);
            (sources.len() - 1) as u32
        }
    }
}

/// What the node's m-lines carry, from an `offer`'s `tracks` (entries it cannot read
/// are skipped: the node is trusted, but a bad entry must not end the call).
fn offered_tracks(offer: &Value) -> HashMap<Mid, Track> {
    let Some(tracks) = offer["tracks"].as_array() else {
        return HashMap::new();
    };
    tracks
        .iter()
        .filter_map(|t| {
            let mid = t["mid"]
                .as_str()
                .filter(|m| !m.is_empty() && m.len() <= 16)?;
            let track = Track {
                participant: t["participant"].as_str()?.to_owned(),
                id: t["track"].as_u64()?,
                video: t["kind"] == "video",
                screen: t["source"] == "screen",
            };
            Some((Mid::from(mid), track))
        })
        .collect()
}
