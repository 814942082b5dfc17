//! A participant through the signalling node's public WebSocket API, as the browser
//! page joins: a token (minted with the run's secret or asked of the dev-token
//! endpoint), `join` with the publishing offer, then the node's renegotiation offers
//! answered while it runs; a `failed` from the node or a lost connection ends a
//! [`Session`] with a rejoin. Its one peer connection publishes and receives (`peer`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::env::{count_turn, Env, ParticipantResult};
use crate::stats::Measure;
use crate::udp::UdpPeer;

const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages from the node kept per session when asked to ([`Session::keep_events`]):
/// a few per participant who comes and goes.
const EVENTS_KEPT: usize = 1024;

/// Take part in `room` as participant `id` until `deadline`, rejoining when the node
/// says so: the load generator's participant.
pub async fn participant(
    env: Arc<Env>,
    room: String,
    id: u32,
    deadline: Instant,
    loud: bool,
) -> ParticipantResult {
    let mut result = ParticipantResult::new(&room, id);
    let mut measure = Measure::new(Instant::now());
    loop {
        let joined = match token(&env, &room, &format!("lt-{id}")).await {
            Ok(t) => Session::join(&env, &room, &t, id, loud).await,
            Err(e) => Err(JoinError::Failed(e)),
        };
        let mut session = match joined {
            Ok(s) => s,
            Err(e) => {
                result.error = Some(e.to_string());
                break;
            }
        };
        let ended = session.run(&env, deadline, &mut measure).await;
        result.video_pauses += session.video_pauses;
        match ended {
            Ok(End::Deadline) => {
                session.leave().await;
                break;
            }
            Ok(End::Rejoin(why)) if Instant::now() < deadline => {
                // Room names can name people: DEBUG only (the SIP gateway uses this too).
                tracing::debug!(room, id, "rejoining: {why}");
                result.rejoins += 1;
            }
            Ok(End::Rejoin(_)) => break,
            Ok(End::Closed(why)) => {
                tracing::debug!(room, id, "room closed: {why}");
                break;
            }
            Err(e) => {
                result.error = Some(e);
                break;
            }
        }
    }
    result.close(&env, deadline, &measure);
    result
}

/// A join token for `identity` in `room`: minted with the run's secret, or asked of
/// the node's dev-token endpoint.
pub async fn token(env: &Env, room: &str, identity: &str) -> Result<String, String> {
    token_from(
        &env.http,
        &env.http_base,
        env.token_secret.as_ref(),
        room,
        identity,
    )
    .await
}

/// A publisher's join token for `identity` in `room`: minted with `key`, or asked of
/// the dev-token endpoint under `http_base` (a node in dev mode).
pub async fn token_from(
    http: &reqwest::Client,
    http_base: &str,
    key: Option<&jsonwebtoken::EncodingKey>,
    room: &str,
    identity: &str,
) -> Result<String, String> {
    if let Some(key) = key {
        return Ok(mint(key, room, identity));
    }
    let mut url =
        reqwest::Url::parse(&format!("{http_base}/api/dev-token")).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("room", room)
        .append_pair("identity", identity);
    let v: Value = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("dev token: {e}"))?
        .json()
        .await
        .map_err(|e| format!("dev token: {e}"))?;
    Ok(v["token"]
        .as_str()
        .ok_or("dev token: no token (is the server in dev mode?)")?
        .to_owned())
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

/// Why a join did not happen.
#[derive(Debug)]
pub enum JoinError {
    /// The node answered the join with this refusal (`type: "error"`, a `code` and a
    /// `message`).
    Refused(Value),
    /// No answer: the connection, the peer or the answer failed.
    Failed(String),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Refused(v) => write!(f, "join refused: {}", v["message"]),
            JoinError::Failed(e) => f.write_str(e),
        }
    }
}

/// How [`Session::run`] ended.
#[derive(Debug)]
pub enum End {
    /// It ran until the time it was given; the session goes on.
    Deadline,
    /// The node said the participant must join again (`failed`), or the connection
    /// closed.
    Rejoin(String),
    /// The room was closed (`closed`): the meeting is over for everyone.
    Closed(String),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the session asks of its WebSocket link.
enum Out {
    Send(Value),
    Close,
}

/// How long a lost WebSocket is retried with the session's resume token before the
/// session counts as lost (a restarted signalling node is back within seconds).
const RESUME_FOR: Duration = Duration::from_secs(30);
/// A send the WebSocket has not taken within this is a lost connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One joined participant: its peer connection and its WebSocket.
pub struct Session {
    /// The participant's one peer connection: it publishes and receives.
    pub peer: UdpPeer,
    link: Signalling,
    id: u32,
    /// The node's `joined` reply: the participant's id, who else is in the room.
    pub joined: Value,
    /// The node's messages other than offers, in order (the first [`EVENTS_KEPT`]),
    /// once [`Session::keep_events`] asked for them: the load generator does not,
    /// so that a long run's active-speaker messages do not pile up in memory.
    pub events: Vec<Value>,
    keeping: bool,
    /// The last offer answered, and the answer.
    answered: Option<(String, String)>,
    /// `video_paused` messages so far.
    pub video_pauses: u32,
}

impl Session {
    /// Join `room` with `token`, publishing as probe sender `id`.
    pub async fn join(
        env: &Env,
        room: &str,
        token: &str,
        id: u32,
        loud: bool,
    ) -> Result<Session, JoinError> {
        let failed = JoinError::Failed;
        let mut udp = UdpPeer::new(env).map_err(failed)?;
        let peer = &mut udp.peer;
        let (offer, pending, mids) = peer.publishing_offer().map_err(failed)?;
        // Spread over the cluster's signalling nodes by participant; the others are
        // where it resumes.
        let mut bases: Vec<String> = std::iter::once(env.ws_base.clone())
            .chain(env.ws_fallbacks.iter().cloned())
            .collect();
        let first = id as usize % bases.len();
        bases.rotate_left(first);
        let (link, answer) =
            Signalling::join_with_fallbacks(&bases[0], &bases[1..], room, token, &offer, json!({}))
                .await?;
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| failed(format!("answer: {e}")))?;
        peer.start_sending(env, mids, id, loud, Instant::now())
            .map_err(failed)?;
        let joined = link.joined.clone();
        Ok(Session {
            peer: udp,
            link,
            id,
            joined,
            events: Vec::new(),
            keeping: false,
            answered: None,
            video_pauses: 0,
        })
    }

    /// The participant id the node gave.
    pub fn participant(&self) -> &str {
        self.joined["participant"].as_str().unwrap_or("")
    }

    /// Send a message to the node (over the WebSocket of the moment: one lost on the
    /// way to a resume goes out once the session is resumed).
    pub async fn send(&mut self, v: &Value) -> Result<(), String> {
        self.link.send(v).await
    }

    /// Say goodbye and close the WebSocket.
    pub async fn leave(&mut self) {
        self.link.leave().await;
    }

    /// Media and signalling until `until` (then [`End::Deadline`]) or until the node
    /// asks for a rejoin.
    pub async fn run(
        &mut self,
        env: &Env,
        until: Instant,
        measure: &mut Measure,
    ) -> Result<End, String> {
        let mut last_turn = Instant::now();
        let mut timeout = self.peer.peer.poll(env, measure, Instant::now())?;
        loop {
            let now = Instant::now();
            count_turn(env, &mut last_turn, now);
            if now >= until {
                return Ok(End::Deadline);
            }
            let wake = self.peer.wake(timeout.min(until));
            tokio::select! {
                r = self.peer.socket.readable() => {
                    r.map_err(|e| format!("udp: {e}"))?;
                    self.peer.read_datagrams(env, measure)?;
                }
                m = self.link.recv() => {
                    let Some(v) = m else {
                        return Ok(End::Rejoin("signalling connection closed".into()));
                    };
                    if let Some(end) = self.on_signal(v).await? {
                        return Ok(end);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            timeout = self.peer.turn(env, measure, Instant::now())?;
        }
    }

    /// A message from the node: offers are answered, the rest kept.
    async fn on_signal(&mut self, v: Value) -> Result<Option<End>, String> {
        match v["type"].as_str().unwrap_or("") {
            "offer" => {
                let rtc = &mut self.peer.peer.rtc;
                answer_offer(rtc, &mut self.link, &mut self.answered, &v).await?;
                return Ok(None);
            }
            "failed" => {
                let why = v["reason"].as_str().unwrap_or("").to_owned();
                self.keep(v);
                return Ok(Some(End::Rejoin(why)));
            }
            "closed" => {
                let why = v["reason"].as_str().unwrap_or("").to_owned();
                self.keep(v);
                return Ok(Some(End::Closed(why)));
            }
            "error" => tracing::warn!(id = self.id, "signalling: {}", v["message"]),
            "video_paused" => self.video_pauses += 1,
            _ => {}
        }
        self.keep(v);
        Ok(None)
    }

    /// Keep the node's messages from now on (those not yet read by [`Session::run`]
    /// included) in [`Session::events`].
    pub fn keep_events(&mut self) {
        self.keeping = true;
    }

    fn keep(&mut self, v: Value) {
        if self.keeping && self.events.len() < EVENTS_KEPT {
            self.events.push(v);
        }
    }
}

/// The session's WebSocket: the node's messages to `signals`, the session's to the
/// node. A WebSocket lost without a last word (`failed`, `closed`) is opened again
/// with the resume token, for up to [`RESUME_FOR`], while media goes on; the node's
/// `resumed` is passed on. `signals` closes when the session is over (then the
/// session rejoins). A message the old WebSocket took just before it was lost is
/// gone: an unanswered offer comes again after the resume, a mute or preference not.
async fn link(
    mut ws: Ws,
    urls: Vec<String>,
    resume: Option<String>,
    mut out: mpsc::Receiver<Out>,
    signals: mpsc::Sender<Value>,
) {
    let mut over = false;
    let mut unsent: Option<Value> = None;
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v = serde_json::from_str::<Value>(&t).unwrap_or_else(
                        |e| json!({"type": "error", "message": format!("signalling sent bad JSON: {e}")}),
                    );
                    over |= matches!(v["type"].as_str(), Some("failed" | "closed"));
                    if signals.send(v).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    let Some(token) = resume.as_deref().filter(|_| !over) else {
                        return;
                    };
                    match reconnect(&urls, token).await {
                        Some((again, resumed)) => {
                            ws = again;
                            if signals.send(resumed).await.is_err() {
                                return;
                            }
                            if let Some(v) = unsent.take() {
                                let _ = ws.send(Message::Text(v.to_string().into())).await;
                            }
                        }
                        None => return,
                    }
                }
            },
            o = out.recv(), if unsent.is_none() => match o {
                Some(Out::Send(v)) => {
                    let sent = tokio::time::timeout(
                        SEND_TIMEOUT,
                        ws.send(Message::Text(v.to_string().into())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        // Sent again over the resumed WebSocket; a send that hangs
                        // ends this one.
                        unsent = Some(v);
                        if sent.is_err() {
                            let _ = ws.close(None).await;
                        }
                    }
                }
                Some(Out::Close) | None => {
                    let _ = ws.close(None).await;
                    return;
                }
            },
        }
    }
}

/// A new WebSocket that resumed the session with `token`, and the node's `resumed`;
/// `None` if the node refused (the session is over: join again) or none answered
/// within [`RESUME_FOR`]. Each attempt asks the next of `urls` (the signalling node
/// it was on first, then the others of its cluster).
async fn reconnect(urls: &[String], token: &str) -> Option<(Ws, Value)> {
    let end = Instant::now() + RESUME_FOR;
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 0;
    while Instant::now() < end {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        let url = &urls[attempt % urls.len()];
        attempt += 1;
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
            continue;
        };
        let resume = json!({"type": "resume", "token": token});
        if ws
            .send(Message::Text(resume.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        let first = tokio::time::timeout(JOIN_TIMEOUT, ws.next()).await;
        if let Ok(Some(Ok(Message::Text(t)))) = first {
            let v: Value = serde_json::from_str(&t).unwrap_or_default();
            if v["type"] == "resumed" {
                return Some((ws, v));
            }
            tracing::debug!("resume refused: {}", v["message"]);
            return None;
        }
    }
    None
}

/// Answer the node's renegotiation `offer` (a `type: "offer"` message) with `rtc`.
/// The node sends an offer again while it waits for the answer: one answered already
/// (`answered`: the last offer and its answer) gets the same answer again (it may have
/// been lost with a signalling node that went down; the node takes a repeated answer
/// as the same one).
pub async fn answer_offer(
    rtc: &mut str0m::Rtc,
    link: &mut Signalling,
    answered: &mut Option<(String, String)>,
    offer: &Value,
) -> Result<(), String> {
    let sdp = offer["sdp"].as_str().unwrap_or("");
    if let Some((offered, answer)) = answered.as_ref() {
        if offered == sdp {
            let again = json!({"type": "answer", "sdp": answer});
            return link.send(&again).await;
        }
    }
    let parsed = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("server offer: {e}"))?;
    let answer = rtc
        .sdp_api()
        .accept_offer(parsed)
        .map_err(|e| format!("server offer: {e}"))?
        .to_sdp_string();
    link.send(&json!({"type": "answer", "sdp": answer})).await?;
    *answered = Some((sdp.to_owned(), answer));
    Ok(())
}

/// A participant's signalling: its joined WebSocket session with the node, resumed
/// when the connection drops (see [`link`]). The load generator's [`Session`] and
/// the SIP gateway's calls both join through it.
pub struct Signalling {
    out: mpsc::Sender<Out>,
    /// The node's messages, parsed by a reader task: the media loop never polls the
    /// WebSocket itself (tungstenite re-zeroes its read buffer on every poll).
    signals: mpsc::Receiver<Value>,
    reader: JoinHandle<()>,
    /// The node's `joined` reply: the participant's id, who else is in the room.
    pub joined: Value,
}

impl Signalling {
    /// Join `room` under `ws_base` with `token` and the participant's `offer`;
    /// returns the link and the node's answer.
    pub async fn join(
        ws_base: &str,
        room: &str,
        token: &str,
        offer: &SdpOffer,
    ) -> Result<(Signalling, SdpAnswer), JoinError> {
        Signalling::join_with_pin(ws_base, room, token, offer, None).await
    }

    /// [`Signalling::join`] giving the room's PIN (a SIP caller's).
    pub async fn join_with_pin(
        ws_base: &str,
        room: &str,
        token: &str,
        offer: &SdpOffer,
        pin: Option<&str>,
    ) -> Result<(Signalling, SdpAnswer), JoinError> {
        let fields = match pin {
            Some(pin) => json!({ "pin": pin }),
            None => json!({}),
        };
        Signalling::join_with_fields(ws_base, room, token, offer, fields).await
    }

    /// [`Signalling::join`] with more fields of the join message (`pin`, `screen`).
    pub async fn join_with_fields(
        ws_base: &str,
        room: &str,
        token: &str,
        offer: &SdpOffer,
        fields: Value,
    ) -> Result<(Signalling, SdpAnswer), JoinError> {
        Signalling::join_with_fallbacks(ws_base, &[], room, token, offer, fields).await
    }

    /// [`Signalling::join_with_fields`], resuming a lost WebSocket through `ws_base`
    /// or any of `fallbacks` (other signalling nodes of the cluster), in turn.
    pub async fn join_with_fallbacks(
        ws_base: &str,
        fallbacks: &[String],
        room: &str,
        token: &str,
        offer: &SdpOffer,
        fields: Value,
    ) -> Result<(Signalling, SdpAnswer), JoinError> {
        let failed = JoinError::Failed;
        let url = format!("{ws_base}/ws/{room}");
        let mut urls = vec![url.clone()];
        urls.extend(fallbacks.iter().map(|base| format!("{base}/ws/{room}")));
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| failed(format!("connect: {e}")))?;
        let mut join = json!({"type": "join", "token": token, "offer": offer.to_sdp_string()});
        if let (Some(join), Some(fields)) = (join.as_object_mut(), fields.as_object()) {
            join.extend(fields.clone());
        }
        ws.send(Message::Text(join.to_string().into()))
            .await
            .map_err(|e| failed(e.to_string()))?;
        // A room with a waiting room says `waiting` first: its host's word comes
        // within the same time limit, or the join fails.
        let reply = tokio::time::timeout(JOIN_TIMEOUT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(&t) {
                        Ok(v) if v["type"] == "waiting" => continue,
                        v => return v.ok(),
                    },
                    Some(Ok(_)) => continue,
                    _ => return None,
                }
            }
        })
        .await
        .map_err(|_| failed("no answer to the join within 10 s".to_owned()))?
        .ok_or_else(|| failed("signalling closed the join".to_owned()))?;
        if reply["type"] != "joined" {
            return Err(JoinError::Refused(reply));
        }
        let answer = SdpAnswer::from_sdp_string(reply["sdp"].as_str().unwrap_or(""))
            .map_err(|e| failed(format!("answer: {e}")))?;
        let (signal_tx, signals) = mpsc::channel(16);
        let (out, out_rx) = mpsc::channel(64);
        let resume = reply["resume"].as_str().map(str::to_owned);
        let reader = tokio::spawn(link(ws, urls, resume, out_rx, signal_tx));
        let link = Signalling {
            out,
            signals,
            reader,
            joined: reply,
        };
        Ok((link, answer))
    }

    /// Send a message to the node (over the WebSocket of the moment: one lost on the
    /// way to a resume goes out once the session is resumed).
    pub async fn send(&mut self, v: &Value) -> Result<(), String> {
        self.out
            .send(Out::Send(v.clone()))
            .await
            .map_err(|_| "signalling: the session's WebSocket is gone".to_owned())
    }

    /// The node's next message; `None` once the session is over.
    pub async fn recv(&mut self) -> Option<Value> {
        self.signals.recv().await
    }

    /// Say goodbye and close the WebSocket.
    pub async fn leave(&mut self) {
        let _ = self.send(&json!({"type": "leave"})).await;
        let _ = self.out.send(Out::Close).await;
    }
}

impl Drop for Signalling {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
