//! A participant for Janus 1.1.2's videoroom plugin (`--target janus://HOST:PORT`), the
//! capacity benchmark's peer: the same str0m publisher as the knudepunkt client (Opus
//! and three-layer VP8 simulcast, unpaced, same probes), a second str0m peer on its own
//! socket subscribing to every other publisher, and the same measurements.
//!
//! Signalling is Janus's REST API: a session with two videoroom handles (publisher and
//! subscriber); the session's events come from a long-poll task (which also keeps the
//! session alive) and are routed by the handle that sent them. Requests made while
//! media flows are sent from their own tasks, so that the media loop never waits on HTTP.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::Candidate;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Env, ParticipantResult};
use crate::peer::{Meter, Peer};
use crate::stats::{StreamKind, StreamStats};

const PLUGIN: &str = "janus.plugin.videoroom";
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Janus holds a long poll up to 30 s before it answers with a keepalive.
const POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// A subscription round (offer, answer, `started`) that takes longer is given up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);
/// Janus's "room already exists" error.
const ROOM_EXISTS: i64 = 427;

/// The Janus room number for a room name: FNV-1a, folded into 1..2^52 (exact in JSON
/// doubles, as Janus's clients need), the same in every process and run.
pub fn room_number(room: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    1 + h % ((1u64 << 52) - 1)
}

/// Check that a Janus answers at `base` (`http://HOST:PORT/janus`).
pub async fn check(http: &reqwest::Client, base: &str) -> Result<(), String> {
    let v: Value = http
        .get(format!("{base}/info"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| format!("/info is not Janus's JSON: {e}"))?;
    if v["janus"] != "server_info" {
        return Err(format!("/info answered {}", v["janus"]));
    }
    if v["plugins"].get(PLUGIN).is_none() {
        return Err(format!("Janus runs without the {PLUGIN} plugin"));
    }
    Ok(())
}

/// One message from Janus (a long-poll event or a request's synchronous reply), in the
/// parts that matter here.
#[derive(Debug, PartialEq)]
pub(crate) struct JanusEvent {
    /// `event`, `success`, `error`, `trickle`, `hangup`, `webrtcup`, `media`, ...
    pub kind: String,
    /// The handle it concerns (0 for session-level messages).
    pub sender: u64,
    /// The plugin's data (`plugindata.data`), or `Null`.
    pub data: Value,
    /// `(type, sdp)` of an attached JSEP.
    pub jsep: Option<(String, String)>,
    /// A trickled candidate line; `None` also for "completed".
    pub candidate: Option<String>,
    /// Janus's own error, or the plugin's `error_code`/`error`.
    pub error: Option<(i64, String)>,
}

impl JanusEvent {
    pub(crate) fn parse(v: &Value) -> Option<JanusEvent> {
        let kind = v["janus"].as_str()?.to_owned();
        let data = v["plugindata"]["data"].clone();
        let jsep = match (v["jsep"]["type"].as_str(), v["jsep"]["sdp"].as_str()) {
            (Some(t), Some(s)) => Some((t.to_owned(), s.to_owned())),
            _ => None,
        };
        let candidate = v["candidate"]["candidate"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(|c| c.strip_prefix("a=").unwrap_or(c).to_owned());
        let error = if kind == "error" {
            Some((
                v["error"]["code"].as_i64().unwrap_or(0),
                v["error"]["reason"].as_str().unwrap_or("").to_owned(),
            ))
        } else {
            data["error_code"]
                .as_i64()
                .map(|code| (code, data["error"].as_str().unwrap_or("").to_owned()))
        };
        Some(JanusEvent {
            kind,
            sender: v["sender"].as_u64().unwrap_or(0),
            data,
            jsep,
            candidate,
            error,
        })
    }

    /// Publishers announced in a `joined` or `event` (their feed ids).
    pub(crate) fn publishers(&self) -> Vec<u64> {
        self.data["publishers"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
            .unwrap_or_default()
    }

    fn videoroom(&self) -> &str {
        self.data["videoroom"].as_str().unwrap_or("")
    }
}

/// A long poll's body: one message, or an array of them (with `maxev`).
pub(crate) fn poll_messages(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        v if v["janus"] == "keepalive" => Vec::new(),
        v => vec![v],
    }
}

fn transaction() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// POST a request to Janus; `Err` for transport failures and Janus-level errors.
async fn post(http: &reqwest::Client, url: &str, mut body: Value) -> Result<Value, String> {
    body["transaction"] = json!(transaction());
    let v: Value = http
        .post(url)
        .json(&body)
        .timeout(HTTP_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("janus {}: {e}", body["janus"]))?
        .json()
        .await
        .map_err(|e| format!("janus {}: {e}", body["janus"]))?;
    if v["janus"] == "error" {
        return Err(format!(
            "janus {}: error {}: {}",
            body["janus"], v["error"]["code"], v["error"]["reason"]
        ));
    }
    Ok(v)
}

/// The session's events, forever (until the session goes or the receiver is dropped).
async fn long_poll(http: reqwest::Client, url: String, tx: mpsc::Sender<Value>) {
    let mut failures = 0;
    loop {
        let got = async {
            http.get(&url)
                .timeout(POLL_TIMEOUT)
                .send()
                .await?
                .json::<Value>()
                .await
        }
        .await;
        match got {
            Ok(v) => {
                failures = 0;
                for m in poll_messages(v) {
                    let gone = m["janus"] == "error";
                    if tx.send(m).await.is_err() || gone {
                        return;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= 3 {
                    let reason = format!("long poll failed: {e}");
                    let _ = tx
                        .send(json!({"janus": "error", "error": {"code": 0, "reason": reason}}))
                        .await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The subscriber handle's offer/answer rounds: one at a time, the rest queued.
#[derive(Default)]
pub(crate) struct Subscriptions {
    /// Our own feed, never subscribed to.
    pub own: u64,
    pub joined: bool,
    /// Since when a round (request, offer, answer, `started`) is under way.
    pub pending: Option<Instant>,
    pub queue: Vec<u64>,
    pub asked: HashSet<u64>,
}

impl Subscriptions {
    /// Feeds announced: queue those not yet asked for.
    pub(crate) fn announce(&mut self, feeds: &[u64]) {
        for f in feeds {
            if *f != self.own && !self.asked.contains(f) && !self.queue.contains(f) {
                self.queue.push(*f);
            }
        }
    }

    /// The next request to send on the subscriber handle, if one may go now.
    pub(crate) fn next_request(&mut self, room: u64, now: Instant) -> Option<Value> {
        if let Some(since) = self.pending {
            if now.duration_since(since) < ROUND_TIMEOUT {
                return None;
            }
            tracing::warn!("janus: a subscription round got no answer in 5 s, moving on");
        }
        if self.queue.is_empty() {
            self.pending = None;
            return None;
        }
        let feeds: Vec<u64> = std::mem::take(&mut self.queue);
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        self.asked.extend(feeds);
        self.pending = Some(now);
        Some(if self.joined {
            json!({"request": "subscribe", "streams": streams})
        } else {
            self.joined = true;
            json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams})
        })
    }
}

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
    publisher: Peer,
    subscriber: Peer,
    subs: Subscriptions,
    /// Messages that arrived while the publisher was joining.
    backlog: VecDeque<Value>,
    id: u32,
    meter: Meter,
}

impl Session {
    /// A Janus session with its two handles and its event poller.
    async fn create(env: &Env, base: &str, room: &str, id: u32) -> Result<Session, String> {
        let started = Instant::now();
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
            let publisher = Peer::new(env)?;
            let subscriber = Peer::new(env)?;
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
            meter: Meter {
                started,
                join_ms: None,
            },
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

        let (offer, pending, audio, video) = self.publisher.publishing_offer(env)?;
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
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("janus answer: {e}"))?;
        self.publisher
            .start_sending(env, audio, video, self.id, loud)
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
                    Ok(c) if to_publisher => self.publisher.rtc.add_remote_candidate(c),
                    Ok(c) if to_subscriber => self.subscriber.rtc.add_remote_candidate(c),
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
        stats: &mut HashMap<(u32, StreamKind), StreamStats>,
    ) -> Result<(), String> {
        while let Some(v) = self.backlog.pop_front() {
            self.on_message(&v)?;
        }
        self.subscribe_more();
        let mut last_turn = Instant::now();
        let mut t_pub = self.publisher.poll(env, stats, &mut self.meter)?;
        let mut t_sub = self.subscriber.poll(env, stats, &mut self.meter)?;
        loop {
            let now = Instant::now();
            crate::peer::count_turn(env, &mut last_turn, now);
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
                    self.publisher.read_datagrams(env, stats, &mut self.meter)?;
                }
                r = self.subscriber.socket.readable() => {
                    r.map_err(|e| format!("udp: {e}"))?;
                    self.subscriber.read_datagrams(env, stats, &mut self.meter)?;
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
            t_pub = self.publisher.turn(env, stats, &mut self.meter, now)?;
            t_sub = self.subscriber.turn(env, stats, &mut self.meter, now)?;
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
    let mut stats: HashMap<(u32, StreamKind), StreamStats> = HashMap::new();
    match Session::create(&env, &base, &room, id).await {
        Ok(mut s) => {
            let r = match s.publish(&env, loud).await {
                Ok(()) => s.run(&env, deadline, &mut stats).await,
                Err(e) => Err(e),
            };
            result.join_ms = s.meter.join_ms;
            result.error = r.err();
            s.destroy().await;
        }
        Err(e) => result.error = Some(e),
    }
    result.close(&env, deadline, &stats);
    for s in result
        .streams
        .iter()
        .filter(|s| s.kind == StreamKind::Video)
    {
        tracing::debug!(room, id, sender = s.sender, layers = ?s.layer_frames, "janus video received");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_numbers_are_stable_and_in_range() {
        // Fixed values: other processes (and other runs) must map a name alike.
        assert_eq!(room_number("lt1-steady-0"), room_number("lt1-steady-0"));
        assert_eq!(
            room_number(""),
            1 + 0xcbf2_9ce4_8422_2325 % ((1u64 << 52) - 1)
        );
        assert_eq!(
            room_number("a"),
            1 + 0xaf63_dc4c_8601_ec8c % ((1u64 << 52) - 1)
        );
        let mut seen = HashSet::new();
        for i in 0..10_000 {
            let n = room_number(&format!("lt42-cap10-{i}"));
            assert!((1..1u64 << 52).contains(&n));
            seen.insert(n);
        }
        assert_eq!(seen.len(), 10_000);
    }

    #[test]
    fn parses_janus_messages() {
        let joined = json!({"janus":"event","session_id":1,"transaction":"d","sender":77,
            "plugindata":{"plugin":PLUGIN,"data":{"videoroom":"joined","room":5,"id":900,
            "private_id":3,"publishers":[{"id":901,"display":"lt-1"},{"id":902}]}}});
        let e = JanusEvent::parse(&joined).unwrap();
        assert_eq!((e.kind.as_str(), e.sender), ("event", 77));
        assert_eq!(e.videoroom(), "joined");
        assert_eq!(e.publishers(), vec![901, 902]);
        assert_eq!((e.jsep.is_none(), e.error.is_none()), (true, true));

        let exists = json!({"janus":"success","sender":77,"plugindata":{"plugin":PLUGIN,
            "data":{"videoroom":"event","error_code":427,"error":"Room 5 already exists"}}});
        let e = JanusEvent::parse(&exists).unwrap();
        assert_eq!(e.error, Some((427, "Room 5 already exists".into())));

        let attached = json!({"janus":"event","sender":78,"plugindata":{"plugin":PLUGIN,
            "data":{"videoroom":"attached","room":5,"streams":[]}},
            "jsep":{"type":"offer","sdp":"v=0\r\n"}});
        let e = JanusEvent::parse(&attached).unwrap();
        assert_eq!(e.jsep, Some(("offer".into(), "v=0\r\n".into())));

        let trickle = json!({"janus":"trickle","session_id":1,"sender":78,"candidate":{
            "sdpMid":"0","sdpMLineIndex":0,
            "candidate":"candidate:1 1 udp 2015363327 127.0.0.1 20000 typ host"}});
        let e = JanusEvent::parse(&trickle).unwrap();
        let c = e.candidate.unwrap();
        assert!(Candidate::from_sdp_string(&c).is_ok(), "{c}");
        let done = json!({"janus":"trickle","sender":78,"candidate":{"completed":true}});
        assert_eq!(JanusEvent::parse(&done).unwrap().candidate, None);

        let gone = json!({"janus":"error","error":{"code":458,"reason":"No such session 1"}});
        let e = JanusEvent::parse(&gone).unwrap();
        assert_eq!((e.sender, e.error.unwrap().0), (0, 458));
        assert!(JanusEvent::parse(&json!({"x": 1})).is_none());
    }

    #[test]
    fn long_poll_bodies() {
        assert!(poll_messages(json!({"janus":"keepalive"})).is_empty());
        assert_eq!(
            poll_messages(json!({"janus":"webrtcup","sender":1})).len(),
            1
        );
        let two = json!([{"janus":"event","sender":1},{"janus":"media","sender":2}]);
        assert_eq!(poll_messages(two).len(), 2);
    }

    #[test]
    fn subscriptions_go_one_round_at_a_time() {
        let t0 = Instant::now();
        let mut s = Subscriptions {
            own: 1,
            ..Default::default()
        };
        assert_eq!(s.next_request(9, t0), None);
        s.announce(&[1, 2, 3]);
        let first = s.next_request(9, t0).unwrap();
        assert_eq!(
            first,
            json!({"request":"join","ptype":"subscriber","room":9,
                "streams":[{"feed":2},{"feed":3}]})
        );
        // While that round is open, new feeds wait; known ones are not asked again.
        s.announce(&[3, 4]);
        assert_eq!(s.next_request(9, t0), None);
        s.pending = None;
        let next = s.next_request(9, t0).unwrap();
        assert_eq!(next, json!({"request":"subscribe","streams":[{"feed":4}]}));
        // A round that never ends is given up after a while.
        s.announce(&[5]);
        assert_eq!(s.next_request(9, t0 + Duration::from_secs(1)), None);
        assert!(s.next_request(9, t0 + ROUND_TIMEOUT).is_some());
    }
}
