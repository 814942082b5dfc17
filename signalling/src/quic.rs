//! Media nodes register here over QUIC: prove the shared secret, register, send
//! heartbeats and events; a node that stops answering is lost and its clients are
//! told to rejoin.

use std::sync::Arc;
use std::time::Duration;

use control::handshake;
use control::remote::RemoteNode;
use control::wire::{read_frame, WireError};
use control::{tls, NodeEvent, NodeLoad};

use crate::directory::{Directory, NodeId};
use crate::limiter::AddressLimiter;
use crate::messages::ServerMsg;
use crate::state::AppState;

/// A node silent for this long (no heartbeat, connection gone) is lost.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection attempts allowed per source address: one a second, bursts of five.
const CONNECTS_PER_SECOND: f64 = 1.0;
const CONNECT_BURST: f64 = 5.0;

pub fn endpoint(addr: std::net::SocketAddr) -> Result<quinn::Endpoint, String> {
    quinn::Endpoint::server(tls::server_config()?, addr).map_err(|e| e.to_string())
}

pub async fn serve(endpoint: quinn::Endpoint, secret: Vec<u8>, state: Arc<AppState>) {
    let secret: Arc<[u8]> = secret.into();
    let attempts = AddressLimiter::new(CONNECTS_PER_SECOND, CONNECT_BURST);
    while let Some(incoming) = endpoint.accept().await {
        // A source address is counted only once it is proven (a stateless retry makes
        // the client echo a token): a forged address cannot spend a real node's budget.
        if !incoming.remote_address_validated() {
            let _ = incoming.retry();
            continue;
        }
        // Media nodes connect once and stay: many attempts from one address are a
        // probe or a fault, refused before any handshake work.
        if !attempts.allow(incoming.remote_address().ip()) {
            state.metrics.media_nodes_refused.inc();
            incoming.refuse();
            continue;
        }
        let (secret, state) = (secret.clone(), state.clone());
        tokio::spawn(async move {
            let from = incoming.remote_address();
            if let Err(e) = node_session(incoming, &secret, &state).await {
                tracing::warn!(%from, "media node session: {e}");
            }
        });
    }
}

async fn node_session(
    incoming: quinn::Incoming,
    secret: &[u8],
    state: &Arc<AppState>,
) -> Result<(), String> {
    let conn = incoming.await.map_err(|e| e.to_string())?;
    // A node that does not complete the handshake (wrong secret on either side,
    // or garbage) is refused and counted.
    let handshake::Registered {
        hello,
        register: reg,
        stream: mut control_stream,
    } = handshake::accept(&conn, secret, HANDSHAKE_TIMEOUT)
        .await
        .inspect_err(|_| state.metrics.media_nodes_refused.inc())?;
    let remote = Arc::new(RemoteNode::new(conn.clone()));
    let entry = state
        .cluster
        .add_node(hello.name.clone(), reg.capacity.max(1), remote.clone());
    state.update_node_gauges();
    tracing::info!(node = hello.name, shards = reg.shards, capacity = reg.capacity, addrs = ?reg.shard_addrs, "media node registered");

    // Events arrive on one unidirectional stream.
    let events_conn = conn.clone();
    let events_state = state.clone();
    let (node_id, node_name) = (entry.id, hello.name.clone());
    let node: Arc<dyn control::MediaNode> = remote.clone();
    let events = tokio::spawn(async move {
        let Ok(mut uni) = events_conn.accept_uni().await else {
            return;
        };
        loop {
            let ev = match read_frame::<NodeEvent>(&mut uni).await {
                Ok(Some(ev)) => ev,
                // A whole frame this node cannot read (an event of a newer media
                // node): skipped, the stream stays in step; the others go on.
                Err(WireError::Malformed(_)) => {
                    events_state.metrics.node_events_refused.inc();
                    tracing::warn!(
                        node = node_name,
                        "an event this node does not know (a newer media node?): skipped"
                    );
                    continue;
                }
                Ok(None) | Err(_) => break,
            };
            let carrying = matches!(ev, NodeEvent::Carrying { .. });
            let participant = ev.participant();
            let shared = events_state.cluster.is_shared();
            let verdict = judge(&*events_state.directory, &ev, node_id, shared);
            if carrying && !(verdict == Verdict::Accept && events_state.adopt(ev.clone(), node_id))
            {
                // A session not taken back: the node lets it go.
                let node = node.clone();
                tokio::spawn(async move {
                    let _ = node
                        .done(control::Request::RemoveParticipant { participant })
                        .await;
                });
            }
            match verdict {
                Verdict::Accept if carrying => {}
                Verdict::Accept => events_state.on_node_event(ev),
                Verdict::Moot => {}
                Verdict::Refuse => {
                    events_state.metrics.node_events_refused.inc();
                    tracing::warn!(
                        node = node_name,
                        event = ev.name(),
                        participant = ev.participant().0,
                        "event about a session not placed on this node: dropped"
                    );
                }
            }
        }
    });

    // Heartbeats (the node's load, every second) keep the node alive.
    loop {
        let heartbeat = read_frame::<NodeLoad>(&mut control_stream.recv);
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, heartbeat).await {
            Ok(Ok(Some(load))) => remote.set_load(load),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::warn!(node = hello.name, "control stream: {e}");
                break;
            }
            Err(_) => {
                tracing::warn!(node = hello.name, "no heartbeat for {HEARTBEAT_TIMEOUT:?}");
                break;
            }
        }
    }
    events.abort();
    conn.close(0u32.into(), b"lost");
    let gone = state.cluster.node_lost(entry.id);
    state.metrics.media_nodes_lost.inc();
    state.update_node_gauges();
    tracing::warn!(
        node = hello.name,
        participants = gone.len(),
        "media node lost; its participants rejoin"
    );
    let reason = format!("media node {} lost", hello.name);
    state.hub.tell(&gone, &ServerMsg::Failed { reason });
    Ok(())
}

/// What to do with an event a remote node reports.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    /// A departure whose entry and room are gone already: nothing to tell anyone.
    Moot,
    /// About a session the node does not carry: dropped and counted.
    Refuse,
}

/// A node speaks only for sessions placed on it: the participant an event concerns is
/// in that room on that node. A departure may come after its entry is gone (the
/// participant left, the room closed); it is still news while the room lives on the
/// node, and moot once the room is gone. With other signalling nodes (`shared`), a
/// room's news of their participants comes too, for a room on that node here.
/// News of a session that left lately is moot: the node had not heard yet (an offer
/// to one who just left).
fn judge(directory: &dyn Directory, ev: &NodeEvent, node: NodeId, shared: bool) -> Verdict {
    if let NodeEvent::Carrying { room, .. } = ev {
        // A session handed back: new here, in a room that is on no other node.
        return match (
            directory.member(ev.participant()),
            directory.node_of_room(room),
        ) {
            (Some(_), _) => Verdict::Refuse,
            (None, Some(n)) if n != node => Verdict::Refuse,
            (None, _) => Verdict::Accept,
        };
    }
    match directory.member(ev.participant()) {
        Some(m) if m.node == node && *m.room == *ev.room() => Verdict::Accept,
        Some(_) => Verdict::Refuse,
        // The media node tells each signalling node of the rooms it has someone in:
        // one whose last here just left may still hear of it.
        None if shared && room_news(ev) => match directory.node_of_room(ev.room()) {
            Some(n) if n == node => Verdict::Accept,
            Some(_) => Verdict::Refuse,
            None => Verdict::Moot,
        },
        None if !ev.is_departure() && directory.left_lately(ev.participant()) => Verdict::Moot,
        None if !ev.is_departure() => Verdict::Refuse,
        None => match directory.node_of_room(ev.room()) {
            Some(n) if n == node => Verdict::Accept,
            Some(_) => Verdict::Refuse,
            None => Verdict::Moot,
        },
    }
}

/// News of a room for everyone in it, about someone who may be on another
/// signalling node.
fn room_news(ev: &NodeEvent) -> bool {
    matches!(
        ev,
        NodeEvent::ParticipantJoined { .. }
            | NodeEvent::TrackPublished { .. }
            | NodeEvent::ActiveSpeaker { .. }
    )
}

#[cfg(test)]
mod tests {
    use control::ParticipantId;

    use super::*;
    use crate::directory::{Candidate, Membership, MemoryDirectory, Via};

    #[test]
    fn nodes_speak_only_for_their_own_rooms_and_sessions() {
        let d = MemoryDirectory::default();
        let on = |node| [Candidate { node, capacity: 10 }];
        let member = |p, room: &str| Membership {
            participant: ParticipantId(p),
            room: room.into(),
            identity: "x".into(),
            via: Via::WebSocket,
            node: 0,
            sip: false,
            org: None,
        };
        d.admit(member(1, "a"), &on(1)).unwrap();
        d.admit(member(4, "a"), &on(1)).unwrap();
        d.admit(member(2, "b"), &on(2)).unwrap();
        let offer = |p, room: &str| NodeEvent::Offer {
            room: room.into(),
            participant: ParticipantId(p),
            sdp: String::new(),
            tracks: Vec::new(),
        };
        let left = |p, room: &str| NodeEvent::ParticipantLeft {
            room: room.into(),
            participant: ParticipantId(p),
        };
        use Verdict::*;
        assert_eq!(judge(&d, &offer(1, "a"), 1, false), Accept);
        assert_eq!(
            judge(&d, &offer(1, "a"), 2, false),
            Refuse,
            "another node's session"
        );
        assert_eq!(
            judge(&d, &offer(1, "b"), 1, false),
            Refuse,
            "claims another room"
        );
        assert_eq!(judge(&d, &offer(9, "a"), 1, false), Refuse, "nobody placed");

        // With other signalling nodes, a room's news of their participants is taken
        // for a room on that node; their own events are not.
        let joined = |p, room: &str| NodeEvent::ParticipantJoined {
            room: room.into(),
            participant: ParticipantId(p),
            identity: "y".into(),
        };
        assert_eq!(judge(&d, &joined(9, "a"), 1, true), Accept);
        assert_eq!(judge(&d, &joined(9, "a"), 1, false), Refuse);
        assert_eq!(
            judge(&d, &joined(9, "a"), 2, true),
            Refuse,
            "room a is on 1"
        );
        assert_eq!(judge(&d, &offer(9, "a"), 1, true), Refuse);
        assert_eq!(
            judge(&d, &joined(9, "gone"), 1, true),
            Moot,
            "nobody here now"
        );
        // A node cannot evict a participant of another node by saying it left.
        assert_eq!(judge(&d, &left(2, "a"), 1, false), Refuse);
        assert_eq!(judge(&d, &left(2, "b"), 1, false), Refuse);
        // A departure after the entry went: news to the room while it lives here.
        d.remove(ParticipantId(1));
        assert_eq!(judge(&d, &left(1, "a"), 1, false), Accept);
        assert_eq!(
            judge(&d, &offer(1, "a"), 1, false),
            Moot,
            "one that left lately: the node had not heard yet"
        );
        assert_eq!(judge(&d, &left(1, "a"), 2, false), Refuse);
        // A session handed back after a restart: taken if new and its room is on no
        // other node.
        let carrying = |p, room: &str| NodeEvent::Carrying {
            room: room.into(),
            participant: ParticipantId(p),
            identity: "x".into(),
            kind: control::JoinKind::Full,
            offer: None,
            tracks: Vec::new(),
        };
        assert_eq!(judge(&d, &carrying(7, "c"), 1, false), Accept);
        assert_eq!(
            judge(&d, &carrying(7, "a"), 1, false),
            Accept,
            "the room is on it"
        );
        assert_eq!(
            judge(&d, &carrying(7, "b"), 1, false),
            Refuse,
            "the room is on node 2"
        );
        assert_eq!(
            judge(&d, &carrying(4, "a"), 1, false),
            Refuse,
            "known already"
        );
        assert_eq!(judge(&d, &carrying(4, "a"), 2, false), Refuse);
        // The room closed: its members' departures are moot, not counted.
        d.close_room("a");
        assert_eq!(judge(&d, &left(4, "a"), 1, false), Moot);
        assert_eq!(judge(&d, &offer(4, "a"), 1, false), Moot, "left lately");
    }
}
