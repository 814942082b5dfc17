//! Several signalling nodes sharing their state in Redis (`--redis URL`): where each
//! room lives (room -> media node, decided in one atomic step), who is in each room
//! and through which signalling node, rooms' settings, which signalling nodes are
//! alive and the media nodes each has, which node records each meeting, and the room
//! messages and meeting steps one node hands the others (pub/sub). Without it,
//! today's in-memory state is all there is.
//!
//! Each signalling node keeps its own sessions in its [`Directory`] as before and
//! mirrors them here (`records::directory::Watched` -> [`mirror`]): a count per room and
//! signalling node, and each member. A signalling node that stops heartbeating is
//! nobody: its counts and members no longer hold a room in place, and its clients
//! resume through another node, which the media node hands their sessions to.
//!
//! Every media node registers with every signalling node (`sfu --signalling A,B`),
//! so each can place a room on any of them; the media node sends each signalling
//! node the events of its own participants and of their rooms.
//!
//! [`Directory`]: crate::directory::Directory

use std::sync::Weak;
use std::time::Duration;

use control::ParticipantId;
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::directory::Membership;
use crate::records::directory::{Event, Step};
use crate::state::AppState;

/// Every key starts so (one Redis may serve other things).
const PREFIX: &str = "knudepunkt:";
/// A signalling node that has not heartbeaten for this long is gone.
const ALIVE_FOR: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(3);
/// A room's keys outlive their last write by this; each node writes its rooms again
/// every [`REFRESH`], so only a gone node's leftovers expire.
const ROOM_TTL: Duration = Duration::from_secs(600);
const REFRESH: Duration = Duration::from_secs(60);
/// A room message not relayed within this is dropped.
const RELAY_STALE: Duration = Duration::from_secs(10);
/// A Redis that does not answer within this fails the step (a join is refused).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

fn alive_key() -> String {
    format!("{PREFIX}alive")
}
fn room_key(room: &str) -> String {
    format!("{PREFIX}room:{room}")
}
fn members_key(room: &str) -> String {
    format!("{PREFIX}members:{room}")
}
/// The media nodes registered with signalling node `instance`, and their load.
fn nodes_key(instance: u64) -> String {
    format!("{PREFIX}nodes:{instance}")
}
fn settings_key() -> String {
    format!("{PREFIX}rooms")
}
fn relay_channel() -> String {
    format!("{PREFIX}relay")
}
/// Steps of meetings for the signalling node `instance` records.
fn record_channel(instance: u64) -> String {
    format!("{PREFIX}record:{instance}")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A room message one signalling node hands the others.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Relay {
    /// Tell everyone in the room (but `except`) who has a session there.
    Broadcast {
        room: String,
        except: Option<u64>,
        msg: serde_json::Value,
    },
    /// The room is closed (`DELETE /api/rooms/{room}`): its sessions there end and
    /// its settings go.
    Close { room: String, reason: String },
    /// A host ended the meeting: its sessions there end (the room stays).
    End { room: String, reason: String },
    /// The room's settings (`POST /api/rooms`), or none.
    Settings {
        room: String,
        settings: Option<RoomSettings>,
    },
    /// A host removed a participant of the room: wherever its session is, it is
    /// told and let go.
    Remove {
        room: String,
        participant: u64,
        reason: String,
    },
}

/// What `POST /api/rooms` set for a room, kept in Redis for every signalling node
/// (and one that starts later).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RoomSettings {
    pub declared: bool,
    pub pin: Option<String>,
    pub video_codec: Option<String>,
    pub alias: Option<String>,
    pub lobby: bool,
}

#[derive(Serialize, Deserialize)]
struct Envelope<R = serde_json::Value> {
    from: u64,
    relay: R,
}

/// A member as kept in Redis (the room's other signalling nodes list it).
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The signalling node it is on.
    at: u64,
    identity: String,
    #[serde(default)]
    sip: bool,
}

type Outbox = tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, Relay)>;

/// What the mirror writes.
#[derive(Debug)]
pub enum Change {
    In(Membership),
    Out(Membership),
}

/// This signalling node's handle on the shared state.
pub struct Shared {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    /// This signalling node among the others: a number Redis handed out at start.
    pub instance: u64,
    place: redis::Script,
    count: redis::Script,
    recorder: redis::Script,
    /// Room messages for the others, published in order by [`publisher`].
    outbox: tokio::sync::mpsc::UnboundedSender<(std::time::Instant, Relay)>,
    outbox_rx: std::sync::Mutex<Option<Outbox>>,
}

/// A room's placement, as Redis decided it.
#[derive(Debug, PartialEq, Eq)]
pub enum Placed {
    /// On this media node (placed by this join: `new_room`).
    On { node: String, new_room: bool },
    /// The room lives on this media node, which is none of the candidates.
    Elsewhere(String),
    /// No candidate has capacity left.
    Full,
}

impl Shared {
    /// Connect, take an instance number and say this node is alive.
    pub async fn connect(url: &str) -> Result<Shared, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--redis {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT));
        let mut conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| format!("cannot reach Redis: {e}"))?;
        let instance: u64 = conn
            .incr(format!("{PREFIX}instances"), 1)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        let (outbox, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared {
            client,
            conn,
            instance,
            outbox,
            outbox_rx: std::sync::Mutex::new(Some(outbox_rx)),
            place: redis::Script::new(include_str!("shared/place.lua")),
            count: redis::Script::new(include_str!("shared/count.lua")),
            recorder: redis::Script::new(include_str!("shared/recorder.lua")),
        };
        shared
            .heartbeat()
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        Ok(shared)
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }

    /// This node is alive for [`ALIVE_FOR`] more; long-gone nodes leave the set.
    pub async fn heartbeat(&self) -> redis::RedisResult<()> {
        let now = unix_now();
        let until = now + ALIVE_FOR.as_secs();
        redis::pipe()
            .zadd(alive_key(), self.instance, until)
            .ignore()
            .zrembyscore(alive_key(), 0, now.saturating_sub(3600))
            .ignore()
            .query_async(&mut self.conn())
            .await
    }

    /// The keys matching `pattern` (SCAN: Redis serves others meanwhile).
    async fn keys(&self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn();
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// The signalling nodes alive now.
    async fn alive(&self) -> redis::RedisResult<Vec<u64>> {
        self.conn()
            .zrangebyscore(alive_key(), unix_now() + 1, "+inf")
            .await
    }

    /// Where the room lives, deciding it if nobody is in it: `candidates` are the
    /// media nodes this signalling node reaches, as (name, capacity, load).
    pub async fn place(
        &self,
        room: &str,
        candidates: &[(String, usize, usize)],
    ) -> redis::RedisResult<Placed> {
        let mut call = self.place.key(room_key(room));
        call.key(alive_key())
            .arg(self.instance)
            .arg(unix_now())
            .arg(ROOM_TTL.as_secs())
            .arg(PREFIX);
        for (name, capacity, load) in candidates {
            call.arg(name).arg(*capacity).arg(*load);
        }
        let placed: Vec<redis::Value> = call.invoke_async(&mut self.conn()).await?;
        Ok(match placed.as_slice() {
            [node, how] => {
                let node = redis::from_redis_value(node.clone())?;
                match redis::from_redis_value::<i64>(how.clone())? {
                    2 => Placed::Elsewhere(node),
                    how => Placed::On {
                        node,
                        new_room: how == 1,
                    },
                }
            }
            _ => Placed::Full,
        })
    }

    /// This node has `n` participants in the room, on media node `node`.
    pub async fn set_count(&self, room: &str, n: usize, node: &str) -> redis::RedisResult<()> {
        self.count
            .key(room_key(room))
            .arg(self.instance)
            .arg(n)
            .arg(node)
            .arg(ROOM_TTL.as_secs())
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map(drop)
    }

    async fn member_in(&self, m: &Membership) -> redis::RedisResult<()> {
        let entry = Entry {
            at: self.instance,
            identity: m.identity.to_string(),
            sip: m.sip,
        };
        let json = serde_json::to_string(&entry).unwrap_or_default();
        let key = members_key(&m.room);
        redis::pipe()
            .hset(&key, m.participant.0, json)
            .ignore()
            .expire(&key, ROOM_TTL.as_secs() as i64)
            .ignore()
            .query_async(&mut self.conn())
            .await
    }

    async fn member_out(&self, m: &Membership) -> redis::RedisResult<()> {
        self.conn()
            .hdel(members_key(&m.room), m.participant.0)
            .await
    }

    /// The room's members on other live signalling nodes: (participant, identity,
    /// SIP call).
    pub async fn others(
        &self,
        room: &str,
    ) -> redis::RedisResult<Vec<(ParticipantId, String, bool)>> {
        let alive = self.alive().await?;
        let all: Vec<(u64, String)> = self.conn().hgetall(members_key(room)).await?;
        Ok(all
            .into_iter()
            .filter_map(|(p, json)| {
                let e: Entry = serde_json::from_str(&json).ok()?;
                (e.at != self.instance && alive.contains(&e.at)).then_some((
                    ParticipantId(p),
                    e.identity,
                    e.sip,
                ))
            })
            .collect())
    }

    /// The media nodes registered here and their load, as the cluster's registry has
    /// them (for [`ALIVE_FOR`]).
    pub async fn publish_nodes(
        &self,
        nodes: &[crate::cluster::NodeStatus],
    ) -> redis::RedisResult<()> {
        let key = nodes_key(self.instance);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for n in nodes {
            let json = serde_json::to_string(n).unwrap_or_default();
            pipe.hset(&key, &n.name, json).ignore();
        }
        pipe.expire(&key, ALIVE_FOR.as_secs() as i64).ignore();
        pipe.query_async(&mut self.conn()).await
    }

    /// The cluster's registry: each live signalling node and the media nodes
    /// registered with it (name -> what it last said of the node).
    pub async fn registry(
        &self,
    ) -> redis::RedisResult<Vec<(u64, std::collections::BTreeMap<String, serde_json::Value>)>> {
        let mut out = Vec::new();
        for instance in self.alive().await? {
            let nodes: Vec<(String, String)> = self.conn().hgetall(nodes_key(instance)).await?;
            let nodes = nodes
                .into_iter()
                .filter_map(|(name, json)| Some((name, serde_json::from_str(&json).ok()?)))
                .collect();
            out.push((instance, nodes));
        }
        Ok(out)
    }

    /// Keep the room's settings (none: they go), and tell the other nodes.
    pub async fn store_settings(
        &self,
        room: &str,
        settings: Option<RoomSettings>,
    ) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        match &settings {
            Some(s) => {
                let json = serde_json::to_string(s).unwrap_or_default();
                let _: () = conn.hset(settings_key(), room, json).await?;
            }
            None => {
                let _: () = conn.hdel(settings_key(), room).await?;
            }
        }
        self.relay(Relay::Settings {
            room: room.to_owned(),
            settings,
        });
        Ok(())
    }

    /// Every room's settings (at start).
    pub async fn all_settings(&self) -> redis::RedisResult<Vec<(String, RoomSettings)>> {
        let all: Vec<(String, String)> = self.conn().hgetall(settings_key()).await?;
        Ok(all
            .into_iter()
            .filter_map(|(room, json)| Some((room, serde_json::from_str(&json).ok()?)))
            .collect())
    }

    /// The signalling node that records the room's meeting (this one, if the one
    /// that placed it is gone).
    pub async fn recorder_of(&self, room: &str) -> redis::RedisResult<u64> {
        self.recorder
            .key(room_key(room))
            .key(alive_key())
            .arg(self.instance)
            .arg(unix_now())
            .invoke_async(&mut self.conn())
            .await
    }

    /// Hand a meeting's step to the signalling node that records it; `false` if
    /// nobody listens there (that node is gone).
    pub async fn forward(&self, to: u64, step: &Step) -> redis::RedisResult<bool> {
        let json = serde_json::to_string(step).unwrap_or_default();
        let heard: i64 = self.conn().publish(record_channel(to), json).await?;
        Ok(heard > 0)
    }

    /// Hand a room message to the other signalling nodes (in the order of the calls).
    pub fn relay(&self, relay: Relay) {
        let _ = self.outbox.send((std::time::Instant::now(), relay));
    }

    async fn publish(&self, relay: Relay) -> redis::RedisResult<()> {
        let envelope = Envelope::<Relay> {
            from: self.instance,
            relay,
        };
        let json = serde_json::to_string(&envelope).unwrap_or_default();
        self.conn().publish(relay_channel(), json).await
    }
}

/// Publish the room messages [`Shared::relay`] was handed, one after the other.
pub async fn publisher(shared: std::sync::Arc<Shared>, state: Weak<AppState>) {
    let outbox = shared
        .outbox_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(mut outbox) = outbox else { return };
    while let Some((at, relay)) = outbox.recv().await {
        // Held up by a Redis outage: news this old would close or mute what has
        // moved on since.
        if at.elapsed() > RELAY_STALE {
            if let Some(state) = state.upgrade() {
                state.metrics.redis_errors.inc();
            }
            tracing::warn!("Redis: a room message too old to relay: dropped");
            continue;
        }
        if let Err(e) = shared.publish(relay).await {
            if let Some(state) = state.upgrade() {
                state.metrics.redis_errors.inc();
            }
            tracing::warn!("Redis: relaying a room message: {e}");
        }
    }
}

/// Say this node is alive (with its media nodes) every [`HEARTBEAT`]: a task of its
/// own, so that no long step of the mirror's delays it (others would count this
/// node gone).
pub async fn heartbeat(shared: std::sync::Arc<Shared>, state: Weak<AppState>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        if let Err(e) = heartbeat_with_nodes(&shared, &state).await {
            state.metrics.redis_errors.inc();
            tracing::warn!("Redis: heartbeat: {e}");
        }
    }
}

/// Keep Redis in step with this node's directory: each change as it comes, and every
/// room again each [`REFRESH`] (which also mends what a Redis outage lost).
pub async fn mirror(
    shared: std::sync::Arc<Shared>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<Change>,
    state: Weak<AppState>,
) {
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.tick().await;
    loop {
        let done = tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                let Some(state) = state.upgrade() else { return };
                write(&shared, &state, change).await
            }
            _ = refresh.tick() => {
                let Some(state) = state.upgrade() else { return };
                rewrite(&shared, &state).await
            }
        };
        if let Err(e) = done {
            if let Some(state) = state.upgrade() {
                state.metrics.redis_errors.inc();
            }
            tracing::warn!("Redis: {e}");
        }
    }
}

/// This node is alive, with its media nodes; and how many media nodes the others
/// have that this one has not (`signalling_media_nodes{state="unreached"}`: an `sfu`
/// missing this node in its `--signalling`, or a path between them broken).
async fn heartbeat_with_nodes(shared: &Shared, state: &AppState) -> redis::RedisResult<()> {
    shared.heartbeat().await?;
    let here = state.cluster.nodes();
    shared.publish_nodes(&here).await?;
    let mut elsewhere = std::collections::BTreeSet::new();
    for (instance, nodes) in shared.registry().await? {
        if instance != shared.instance {
            elsewhere.extend(nodes.into_keys());
        }
    }
    let unreached = elsewhere
        .iter()
        .filter(|name| !here.iter().any(|n| &n.name == *name))
        .count();
    state
        .metrics
        .media_nodes
        .with_label_values(&["unreached"])
        .set(unreached as i64);
    Ok(())
}

/// One change: the member, then the room's count as the directory has it now.
async fn write(shared: &Shared, state: &AppState, change: Change) -> redis::RedisResult<()> {
    let m = match &change {
        Change::In(m) => {
            shared.member_in(m).await?;
            m
        }
        Change::Out(m) => {
            shared.member_out(m).await?;
            m
        }
    };
    let here = state.directory.members(&m.room);
    let node = here.first().map_or(m.node, |h| h.node);
    let name = state.cluster.name_of(node).unwrap_or_default();
    shared.set_count(&m.room, here.len(), &name).await
}

/// Every room with someone here, written again; and what Redis still says of this
/// node that is no longer so (a write that failed, a join that did not finish after
/// its room was placed), cleared.
async fn rewrite(shared: &Shared, state: &AppState) -> redis::RedisResult<()> {
    for room in state.directory.rooms() {
        let here = state.directory.members(&room);
        let Some(first) = here.first() else { continue };
        for m in &here {
            shared.member_in(m).await?;
        }
        let name = state.cluster.name_of(first.node).unwrap_or_default();
        shared.set_count(&room, here.len(), &name).await?;
    }
    let mine = format!("c:{}", shared.instance);
    for key in shared.keys(&room_key("*")).await? {
        let room = &key[room_key("").len()..];
        let count: Option<u64> = shared.conn().hget(&key, &mine).await?;
        // A join in flight has counted itself there before this directory has it.
        if count.is_some()
            && state.directory.members(room).is_empty()
            && !state.cluster.placing(room)
        {
            shared.set_count(room, 0, "").await?;
        }
    }
    // Rooms made while this node missed their relay (resubscribing meanwhile); a
    // room this node knows keeps what the relays said (a snapshot could be older).
    for (room, settings) in shared.all_settings().await? {
        if !state.directory.is_declared(&room) {
            state.apply_settings(&room, Some(settings));
        }
    }
    for key in shared.keys(&members_key("*")).await? {
        let room = &key[members_key("").len()..];
        let all: Vec<(u64, String)> = shared.conn().hgetall(&key).await?;
        for (p, json) in all {
            let ours = serde_json::from_str::<Entry>(&json).is_ok_and(|e| e.at == shared.instance);
            let here = state
                .directory
                .member(ParticipantId(p))
                .is_some_and(|m| *m.room == *room);
            if ours && !here {
                let _: () = shared.conn().hdel(&key, p).await?;
            }
        }
    }
    Ok(())
}

/// Room messages from the other signalling nodes, delivered to the sessions here;
/// resubscribing after Redis comes back.
pub async fn relay(shared: std::sync::Arc<Shared>, state: Weak<AppState>) {
    loop {
        match shared.client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                let records = record_channel(shared.instance);
                let subscribed = pubsub.subscribe(&[relay_channel(), records.clone()]).await;
                if let Err(e) = subscribed {
                    tracing::warn!("Redis subscribe: {e}");
                } else {
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(state) = state.upgrade() else { return };
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        if msg.get_channel_name() == records {
                            match serde_json::from_str::<Step>(&payload) {
                                Ok(step) => {
                                    let _ = state.record_events.send(Event::Forwarded(step));
                                }
                                Err(e) => {
                                    state.metrics.redis_errors.inc();
                                    tracing::warn!("a meeting's step this node cannot read: {e}");
                                }
                            }
                            continue;
                        }
                        match serde_json::from_str::<Envelope>(&payload) {
                            Ok(e) if e.from == shared.instance => {}
                            Ok(e) => match serde_json::from_value::<Relay>(e.relay) {
                                Ok(relay) => state.on_relay(relay),
                                // A newer signalling node's kind of message (a
                                // rolling upgrade): not this node's to act on.
                                Err(e) => tracing::debug!(
                                    "a relayed message of a kind this node does not know: {e}"
                                ),
                            },
                            Err(e) => {
                                state.metrics.redis_errors.inc();
                                tracing::warn!("a relayed message this node cannot read: {e}");
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("Redis pub/sub: {e}"),
        }
        if state.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
