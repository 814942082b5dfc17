//! A participant for Janus 1.1.2's videoroom plugin (`--target janus://HOST:PORT`), the
//! capacity benchmark's peer: the same str0m publisher as the knudepunkt client (Opus
//! and three-layer VP8 simulcast, unpaced, same probes), a second str0m peer on its own
//! socket subscribing to every other publisher, and the same measurements.
//!
//! Signalling is Janus's REST API: a session with two videoroom handles (publisher and
//! subscriber); the session's events come from a long-poll task (which also keeps the
//! session alive) and are routed by the handle that sent them. Requests made while
//! media flows are sent from their own tasks, so that the media loop never waits on HTTP.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::Candidate;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use client::stats::{Measure, StreamKind};
use client::udp::UdpPeer;
use client::{Env, ParticipantResult};

mod api;

pub use api::{check, room_number};
use api::{
    long_poll, post, JanusEvent, Subscriptions, JOIN_TIMEOUT, PLUGIN, ROOM_EXISTS, ROUND_TIMEOUT,
};

struct Session {
    http: reqwest::Client,
    /// `{base}/{session}`.
    url: String,
    publisher_handle: u64,
    subscriber_handle: u64,
    room: u64,
    events: mpsc::Receiver<Value>,
    /// For the replies of requests sent from their own tasks.
    replies: mpsc::Sender<Value>,
    poller: JoinHandle<()>,
    publisher: UdpPeer,
    subscriber: UdpPeer,
    subs: Subscriptions,
    /// Messages that arrived while the publisher was joining.
    backlog: VecDeque<Value>,
    id: u32,
}

impl Session {
    /// A Janus session with its two handles and its event poller.
    async fn create(env: &Env, base: &str, room: &str, id: u32) -> Result<Session, String> {
        let http = env.http.clone();
        let v = post(&http, base, json!({"janus": "create"})).await?;
        let session = v["data"]["id"]
            .as_u64()
            .ok_or("janus create: no session id")?;
        let url = format!("{base}/{session}");
        let attach = async {
            let mut handles = [0u64; 2];
            for h in &mut handles {
                let v = post(&http, &url, json!({"janus": "attach", "plugin": PLUGIN})).await?;
                *h = v["data"]["id"]
                    .as_u64()
                    .ok_or("janus attach: no handle id")?;
            }
            let publisher = UdpPeer::new(env)?;
            let subscriber = UdpPeer::new(env)?;
            Ok::<_, String>((handles, publisher, subscriber))
        }
        .await;
        let ([publisher_handle, subscriber_handle], publisher, subscriber) = match attach {
            Ok(x) => x,
            Err(e) => {
                let _ = post(&http, &url, json!({"janus": "destroy"})).await;
                return Err(e);
            }
        };
        let (replies, events) = mpsc::channel(64);
        let poller = tokio::spawn(long_poll(
            http.clone(),
            format!("{url}?maxev=10"),
            replies.clone(),
        ));
        Ok(Session {
            http,
            url,
            publisher_handle,
            subscriber_handle,
            room: room_number(room),
            events,
            replies,
            poller,
            publisher,
            subscriber,
            subs: Subscriptions::default(),
            backlog: VecDeque::new(),
            id,
        })
    }

    fn handle_url(&self, handle: u64) -> String {
        format!("{}/{handle}", self.url)
    }

    /// A message to a handle, synchronously (setup only).
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, String> {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        post(&self.http, &self.handle_url(handle), m).await
    }

    /// A message to a handle from its own task; its reply (unless a mere ack) or its
    /// failure comes back with the events.
    fn message_later(&self, handle: u64, body: Value, jsep: Option<Value>) {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let (http, url, replies) = (
            self.http.clone(),
            self.handle_url(handle),
            self.replies.clone(),
        );
        tokio::spawn(async move {
            let reply = match post(&http, &url, m).await {
                Ok(v) if v["janus"] == "ack" => return,
                Ok(v) => v,
                Err(e) => {
                    json!({"janus": "error", "sender": handle, "error": {"code": 0, "reason": e}})
                }
            };
            let _ = replies.send(reply).await;
        });
    }

    /// Wait for the publisher handle's message that `done` accepts (or its error);
    /// everything else waits in the backlog.
    async fn wait_publisher(
        &mut self,
        until: Instant,
        what: &str,
        done: impl Fn(&JanusEvent) -> bool,
    ) -> Result<JanusEvent, String> {
        loop {
            let v = tokio::time::timeout_at(until.into(), self.events.recv())
                .await
                .map_err(|_| format!("janus: no {what} within {} s", JOIN_TIMEOUT.as_secs()))?
                .ok_or("janus: event stream ended")?;
            let Some(e) = JanusEvent::parse(&v) else {
                continue;
            };
            if e.sender == self.publisher_handle || e.sender == 0 {
                if let Some((code, reason)) = &e.error {
                    return Err(format!("janus {what}: error {code}: {reason}"));
                }
                if e.kind == "hangup" {
                    return Err(format!("janus {what}: hung up ({})", e.data));
                }
                if done(&e) {
                    return Ok(e);
                }
            }
            self.backlog.push_back(v);
        }
    }

    /// Create the room (if no one did), join it, publish; media starts once connected.
    async fn publish(&mut self, env: &Env, loud: bool) -> Result<(), String> {
        let until = Instant::now() + JOIN_TIMEOUT;
        let create = json!({
            "request": "create", "room": self.room, "publishers": 16,
            "audiocodec": "opus", "videocodec": "vp8", "permanent": false,
        });
        let v = self.message(self.publisher_handle, create, None).await?;
        if let Some(e) = JanusEvent::parse(&v) {
            match e.error {
                Some((ROOM_EXISTS, _)) | None => {}
                Some((code, reason)) => {
                    return Err(format!("janus create room: error {code}: {reason}"))
                }
            }
        }
        let join = json!({
            "request": "join", "ptype": "publisher", "room": self.room,
            "display": format!("lt-{}", self.id),
        });
        self.message(self.publisher_handle, join, None).await?;
        let joined = self
            .wait_publisher(until, "joined", |e| e.videoroom() == "joined")
            .await?;
        self.subs.own = joined.data["id"].as_u64().unwrap_or(0);
        self.subs.announce(&joined.publishers());

        let (offer, pending, mids) = self.publisher.peer.publishing_offer()?;
        // Our rids go lowest first; Janus assumes highest first unless told.
        let jsep = json!({
            "type": "offer", "sdp": offer.to_sdp_string(), "trickle": false, "rid_order": "lmh",
        });
        let publish = json!({"request": "publish", "audio": true, "video": true});
        self.message(self.publisher_handle, publish, Some(jsep))
            .await?;
        let answer = self
            .wait_publisher(until, "publish answer", |e| {
                e.jsep.as_ref().is_some_and(|(t, _)| t == "answer")
            })
            .await?;
        let (_, sdp) = answer.jsep.expect("checked");
        let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| format!("janus answer: {e}"))?;
        self.publisher
            .peer
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("janus answer: {e}"))?;
        self.publisher
            .peer
            .start_sending(env, mids, self.id, loud, Instant::now())
            .map_err(|e| format!("janus: {e}"))?;
        Ok(())
    }

    /// One message from Janus while media flows.
    fn on_message(&mut self, v: &Value) -> Result<(), String> {
        let Some(e) = JanusEvent::parse(v) else {
            return Ok(());
        };
        let to_publisher = e.sender == self.publisher_handle;
        let to_subscriber = e.sender == self.subscriber_handle;
        if e.kind == "trickle" {
            if let Some(c) = &e.candidate {
                match Candidate::from_sdp_string(c) {
                    Ok(c) if to_publisher => self.publisher.peer.rtc.add_remote_candidate(c),
                    Ok(c) if to_subscriber => self.subscriber.peer.rtc.add_remote_candidate(c),
                    Ok(_) => {}
                    Err(err) => tracing::debug!(id = self.id, "janus candidate {c:?}: {err}"),
                }
            }
            return Ok(());
        }
        if e.kind == "hangup" && to_publisher {
            return Err(format!("janus hung up the publisher: {}", v["reason"]));
        }
        if let Some((code, reason)) = &e.error {
            if to_subscriber {
                tracing::warn!(id = self.id, "janus subscriber: error {code}: {reason}");
                self.subs.pending = None;
                return Ok(());
            }
            if to_publisher || e.sender == 0 {
                return Err(format!("janus: error {code}: {reason}"));
            }
        }
        if to_publisher {
            self.subs.announce(&e.publishers());
        } else if to_subscriber {
            match &e.jsep {
                Some((t, sdp)) if t == "offer" => {
                    let offer = SdpOffer::from_sdp_string(sdp)
                        .map_err(|err| format!("janus subscriber offer: {err}"))?;
                    let answer = self
                        .subscriber
                        .peer
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .map_err(|err| format!("janus subscriber offer: {err}"))?;
                    let jsep =
                        json!({"type": "answer", "sdp": answer.to_sdp_string(), "trickle": false});
                    self.subs.pending = Some(Instant::now());
                    self.message_later(
                        self.subscriber_handle,
                        json!({"request": "start"}),
                        Some(jsep),
                    );
                }
                _ if e.data["started"] == "ok" => self.subs.pending = None,
                // A subscribe that changed nothing comes back without an offer.
                _ if e.videoroom() == "updated" => self.subs.pending = None,
                _ => {}
            }
        }
        Ok(())
    }

    fn subscribe_more(&mut self) {
        if let Some(body) = self.subs.next_request(self.room, Instant::now()) {
            self.message_later(self.subscriber_handle, body, None);
        }
    }

    async fn run(
        &mut self,
        env: &Env,
        deadline: Instant,
        measure: &mut Measure,
    ) -> Result<(), String> {
        while let Some(v) = self.backlog.pop_front() {
            self.on_message(&v)?;
        }
        self.subscribe_more();
        let mut last_turn = Instant::now();
        let mut t_pub = self.publisher.peer.poll(env, measure, Instant::now())?;
        let mut t_sub = self.subscriber.peer.poll(env, measure, Instant::now())?;
        loop {
            let now = Instant::now();
            client::env::count_turn(env, &mut last_turn, now);
            if now >= deadline {
                return Ok(());
            }
            let mut wake = t_pub.min(t_sub).min(deadline);
            wake = self.subscriber.wake(self.publisher.wake(wake));
            if let Some(since) = self.subs.pending {
                wake = wake.min(since + ROUND_TIMEOUT);
            }
            tokio::select! {
                r = self.publisher.socket.readable() => {
                    r.map_err(|e| format!("udp: {e}"))?;
                    self.publisher.read_datagrams(env, measure)?;
                }
                r = self.subscriber.socket.readable() => {
                    r.map_err(|e| format!("udp: {e}"))?;
                    self.subscriber.read_datagrams(env, measure)?;
                }
                m = self.events.recv() => {
                    let v = m.ok_or("janus: event stream ended")?;
                    self.on_message(&v)?;
                    self.subscribe_more();
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.subscribe_more();
                }
            }
            let now = Instant::now();
            t_pub = self.publisher.turn(env, measure, now)?;
            t_sub = self.subscriber.turn(env, measure, now)?;
        }
    }

    /// Destroy the session (Janus detaches both handles and leaves the room with it).
    async fn destroy(&self) {
        self.poller.abort();
        if let Err(e) = post(&self.http, &self.url, json!({"janus": "destroy"})).await {
            tracing::debug!(id = self.id, "janus destroy: {e}");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Take part in `room` on the Janus at `base` (`http://HOST:PORT/janus`) until `deadline`.
pub async fn participant(
    env: Arc<Env>,
    base: String,
    room: String,
    id: u32,
    deadline: Instant,
    loud: bool,
) -> ParticipantResult {
    let mut result = ParticipantResult::new(&room, id);
    let mut measure = Measure::new(Instant::now());
    match Session::create(&env, &base, &room, id).await {
        Ok(mut s) => {
            let r = match s.publish(&env, loud).await {
                Ok(()) => s.run(&env, deadline, &mut measure).await,
                Err(e) => Err(e),
            };
            result.error = r.err();
            s.destroy().await;
        }
        Err(e) => result.error = Some(e),
    }
    result.close(&env, deadline, &measure);
    for s in result
        .streams
        .iter()
        .filter(|s| s.kind == StreamKind::Video)
    {
        tracing::debug!(room, id, sender = s.sender, layers = ?s.layer_frames, "janus video received");
    }
    result
}
