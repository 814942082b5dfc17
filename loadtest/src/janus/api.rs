//! Janus's REST API as the videoroom participant uses it: room numbers, requests
//! (`post`), the session's long poll, its events parsed, and the subscriber handle's
//! offer/answer rounds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub(super) const PLUGIN: &str = "janus.plugin.videoroom";
pub(super) const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Janus holds a long poll up to 30 s before it answers with a keepalive.
const POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// A subscription round (offer, answer, `started`) that takes longer is given up.
pub(super) const ROUND_TIMEOUT: Duration = Duration::from_secs(5);
/// Janus's "room already exists" error.
pub(super) const ROOM_EXISTS: i64 = 427;

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

    pub(super) fn videoroom(&self) -> &str {
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

pub(super) fn transaction() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// POST a request to Janus; `Err` for transport failures and Janus-level errors.
pub(super) async fn post(
    http: &reqwest::Client,
    url: &str,
    mut body: Value,
) -> Result<Value, String> {
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
pub(super) async fn long_poll(http: reqwest::Client, url: String, tx: mpsc::Sender<Value>) {
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
        assert!(str0m::Candidate::from_sdp_string(&c).is_ok(), "{c}");
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
