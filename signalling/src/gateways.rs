//! SIP gateways of their own (`gateway --signalling URL --service-token T`) place this
//! node's dial-outs (`POST /api/rooms/{room}/dial`) when no gateway runs in-process.
//! Each holds a WebSocket at `GET /api/sip/dials` (with its service token): the node
//! sends `{"id", "room", "uri"}` down one of them, in turn, and the gateway answers
//! `{"id", "status", "error"}`: 202 when it places the call, else why not (400 for
//! the URI, 503 when busy or stopping), as its in-process twin does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// How long a gateway may take to say whether it places a call (one that answers
/// later may still place it: the caller was told 503, which says so).
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How often the node pings each gateway: a link that is silent for [`SILENT`]
/// (no pong, no answer) is dead (a host gone, a NAT that forgot it) and dropped.
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT: Duration = Duration::from_secs(60);
/// Dial requests waiting on one gateway's socket.
const QUEUED: usize = 16;
/// Gateways connected at once (each is an operator's process).
pub const MAX_GATEWAYS: usize = 64;

/// What a gateway says of a dial: placed, or the HTTP status and why not.
pub type Placed = Result<(), (u16, String)>;

type Request = (Dial, oneshot::Sender<Placed>);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    pub id: u64,
    pub room: String,
    pub uri: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DialAnswer {
    pub id: u64,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The gateways connected now.
#[derive(Default)]
pub struct Gateways {
    links: Mutex<Links>,
}

#[derive(Default)]
struct Links {
    next_link: u64,
    next_dial: u64,
    /// In the order they came; the next dial goes to the front one, which then goes
    /// to the back.
    queue: Vec<(u64, mpsc::Sender<Request>)>,
}

impl Gateways {
    /// Whether a gateway is connected.
    pub fn any(&self) -> bool {
        !self.links.lock().expect("gateways").queue.is_empty()
    }

    /// Whether as many gateways are connected as are taken.
    pub fn full(&self) -> bool {
        self.links.lock().expect("gateways").queue.len() >= MAX_GATEWAYS
    }

    /// Hand the call to a connected gateway (the next in turn; one that is busy or
    /// gone passes it on); `None` when none is connected.
    pub async fn dial(&self, room: &str, uri: &str) -> Option<Placed> {
        let mut tries = self.links.lock().expect("gateways").queue.len();
        loop {
            let (tx, dial) = {
                let mut links = self.links.lock().expect("gateways");
                if links.queue.is_empty() {
                    return None;
                }
                if tries == 0 {
                    return Some(Err((503, "every SIP gateway is busy".into())));
                }
                tries -= 1;
                let link = links.queue.remove(0);
                let tx = link.1.clone();
                links.queue.push(link);
                links.next_dial += 1;
                let dial = Dial {
                    id: links.next_dial,
                    room: room.to_owned(),
                    uri: uri.to_owned(),
                };
                (tx, dial)
            };
            let (answer, answered) = oneshot::channel();
            match tx.try_send((dial, answer)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => continue,
                // Gone (its socket closed): the next one.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.links
                        .lock()
                        .expect("gateways")
                        .queue
                        .retain(|(_, t)| !t.same_channel(&tx));
                    continue;
                }
            }
            let gone = || Err((503, "the SIP gateway did not answer".to_owned()));
            return Some(match tokio::time::timeout(ANSWER_WAIT, answered).await {
                Ok(Ok(placed)) => placed,
                _ => gone(),
            });
        }
    }

    /// Serve one gateway's socket until it closes (at once when [`MAX_GATEWAYS`] are
    /// connected).
    pub async fn serve(&self, socket: WebSocket) {
        let (tx, mut requests) = mpsc::channel::<Request>(QUEUED);
        let id = {
            let mut links = self.links.lock().expect("gateways");
            if links.queue.len() >= MAX_GATEWAYS {
                return;
            }
            links.next_link += 1;
            let id = links.next_link;
            links.queue.push((id, tx));
            id
        };
        tracing::info!(gateway = id, "a SIP gateway places this node's dial-outs");
        let (mut out, mut inbound) = socket.split();
        let mut waiting: HashMap<u64, oneshot::Sender<Placed>> = HashMap::new();
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = ping.tick() => {
                    if heard.elapsed() > SILENT {
                        tracing::info!(gateway = id, "a SIP gateway fell silent");
                        break;
                    }
                    if out.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break;
                    }
                }
                r = requests.recv() => {
                    let Some((dial, answer)) = r else { break };
                    // Its caller gave up waiting (and was told 503): not placed now.
                    if answer.is_closed() {
                        continue;
                    }
                    let text = serde_json::to_string(&dial).expect("a dial serializes");
                    if out.send(Message::Text(text.into())).await.is_err() {
                        let _ = answer.send(Err((503, "the SIP gateway is gone".into())));
                        break;
                    }
                    // Answers that never come are dropped with their dial's wait.
                    waiting.retain(|_, a| !a.is_closed());
                    waiting.insert(dial.id, answer);
                }
                m = inbound.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        heard = tokio::time::Instant::now();
                        match serde_json::from_str::<DialAnswer>(&t) {
                            Ok(a) => {
                                if let Some(w) = waiting.remove(&a.id) {
                                    let placed = match a.status {
                                        202 => Ok(()),
                                        s @ 400..=599 => {
                                            Err((s, a.error.unwrap_or_else(|| "refused".into())))
                                        }
                                        _ => Err((502, "the SIP gateway answered nonsense".into())),
                                    };
                                    let _ = w.send(placed);
                                }
                            }
                            Err(_) => tracing::warn!(gateway = id, "a SIP gateway's answer does not parse"),
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    // Pongs (and pings) say it is there.
                    Some(Ok(_)) => heard = tokio::time::Instant::now(),
                }
            }
        }
        self.links
            .lock()
            .expect("gateways")
            .queue
            .retain(|(link, _)| *link != id);
        tracing::info!(gateway = id, "a SIP gateway left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_gateway_no_dial() {
        let g = Gateways::default();
        assert!(!g.any());
        assert_eq!(g.dial("r", "sip:a@b").await, None);
    }

    #[tokio::test]
    async fn a_gone_gateway_passes_the_dial_on_and_is_forgotten() {
        let g = Gateways::default();
        let (gone, closed) = mpsc::channel::<Request>(QUEUED);
        drop(closed);
        let (here, mut requests) = mpsc::channel::<Request>(QUEUED);
        g.links.lock().unwrap().queue = vec![(1, gone), (2, here)];
        let answering = tokio::spawn(async move {
            let (dial, answer) = requests.recv().await.unwrap();
            assert_eq!((dial.room.as_str(), dial.uri.as_str()), ("ward", "sip:a@b"));
            answer.send(Err((400, "not a SIP URI".into()))).unwrap();
        });
        let placed = g.dial("ward", "sip:a@b").await;
        assert_eq!(placed, Some(Err((400, "not a SIP URI".into()))));
        answering.await.unwrap();
        let links = g.links.lock().unwrap();
        assert_eq!(links.queue.iter().map(|l| l.0).collect::<Vec<_>>(), vec![2]);
    }

    #[tokio::test]
    async fn a_gateway_that_does_not_answer_is_a_503() {
        let g = Gateways::default();
        let (here, _requests) = mpsc::channel::<Request>(QUEUED);
        g.links.lock().unwrap().queue = vec![(1, here)];
        let placed = g.dial("ward", "sip:a@b").await;
        assert_eq!(placed.map(|p| p.map_err(|e| e.0)), Some(Err(503)));
    }

    #[test]
    fn the_wire_forms() {
        let d = Dial {
            id: 3,
            room: "ward".into(),
            uri: "sip:a@b".into(),
        };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"id":3,"room":"ward","uri":"sip:a@b"}"#);
        let a: DialAnswer = serde_json::from_str(r#"{"id":3,"status":400,"error":"no"}"#).unwrap();
        assert_eq!((a.id, a.status, a.error.as_deref()), (3, 400, Some("no")));
    }
}
