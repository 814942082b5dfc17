//! A participant through the signalling node's public WebSocket API, as the browser
//! page joins: a token (minted with the run's secret or asked of the dev-token
//! endpoint), `join` with the publishing offer, then the node's renegotiation offers
//! answered until the deadline; a `failed` from the node or a lost connection is a
//! rejoin. Its one peer connection publishes and receives (`peer`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::env::{Env, ParticipantResult};
use crate::peer::Meter;
use crate::stats::{StreamKind, StreamStats};
use crate::udp::UdpPeer;

const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mut result = ParticipantResult::new(&room, id);
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
                    result.join_ms = session.meter.join_ms;
                }
                break;
            }
            Ok(End::Rejoin(why)) if Instant::now() < deadline => {
                tracing::info!(room, id, "rejoining: {why}");
                result.join_ms = result.join_ms.or(session.meter.join_ms);
                result.rejoins += 1;
            }
            Ok(End::Rejoin(_)) => break,
            Err(e) => {
                result.join_ms = result.join_ms.or(session.meter.join_ms);
                result.error = Some(e);
                break;
            }
        }
    }
    result.close(&env, deadline, &stats);
    result
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Session {
    /// The participant's one peer connection: it publishes and receives.
    peer: UdpPeer,
    ws: SplitSink<Ws, Message>,
    /// The node's messages, parsed by a reader task: the media loop never polls the
    /// WebSocket itself (tungstenite re-zeroes its read buffer on every poll).
    signals: mpsc::Receiver<Value>,
    reader: JoinHandle<()>,
    id: u32,
    meter: Meter,
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
        let mut udp = UdpPeer::new(env)?;
        let peer = &mut udp.peer;
        let (offer, pending, audio, video) = peer.publishing_offer()?;
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
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("answer: {e}"))?;
        peer.start_sending(env, (audio, video), id, loud, Instant::now())?;
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
            peer: udp,
            ws,
            signals,
            reader,
            id,
            meter: Meter {
                started,
                join_ms: None,
            },
        })
    }

    async fn run(
        &mut self,
        env: &Env,
        deadline: Instant,
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
    ) -> Result<End, String> {
        let mut last_turn = Instant::now();
        let mut timeout = self
            .peer
            .peer
            .poll(env, stats, &mut self.meter, Instant::now())?;
        loop {
            let now = Instant::now();
            crate::env::count_turn(env, &mut last_turn, now);
            if now >= deadline {
                let leave = json!({"type": "leave"}).to_string();
                let _ = self.ws.send(Message::Text(leave.into())).await;
                let _ = self.ws.close().await;
                return Ok(End::Done);
            }
            let wake = self.peer.wake(timeout.min(deadline));
            tokio::select! {
                r = self.peer.socket.readable() => {
                    r.map_err(|e| format!("udp: {e}"))?;
                    self.peer.read_datagrams(env, stats, &mut self.meter)?;
                }
                m = self.signals.recv() => {
                    let Some(v) = m else {
                        return Ok(End::Rejoin("signalling connection closed".into()));
                    };
                    match v["type"].as_str().unwrap_or("") {
                        "offer" => {
                            let offer = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or(""))
                                .map_err(|e| format!("server offer: {e}"))?;
                            let answer = self.peer.peer.rtc.sdp_api().accept_offer(offer)
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
            timeout = self
                .peer
                .turn(env, stats, &mut self.meter, Instant::now())?;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
