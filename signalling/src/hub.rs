//! Delivers media-node events and room messages to the WebSocket sessions of this
//! signalling node: one bounded queue per session, filled without waiting (a stalled
//! client loses its own messages, never anyone else's). Who is in a room is the
//! [`Directory`]'s to say; the hub only holds the queues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use control::{NodeEvent, ParticipantId, SlotTrack};
use tokio::sync::mpsc;

use crate::directory::{Directory, Membership};
use crate::messages::{pid, MediaKind, ParticipantInfo, ServerMsg};

pub const SESSION_QUEUE: usize = 256;

pub struct Hub {
    sessions: Mutex<HashMap<ParticipantId, mpsc::Sender<ServerMsg>>>,
    /// Queues of sessions a media node handed back after this node restarted, kept
    /// (and filling) until their clients resume.
    parked: Mutex<HashMap<ParticipantId, mpsc::Receiver<ServerMsg>>>,
    /// The unanswered offer each was handed back with, queued first: the node may
    /// report it again among the events it held, and a client answers an offer once.
    handed_offers: Mutex<HashMap<ParticipantId, String>>,
    /// What each session cut off for falling behind is told last.
    last_words: Mutex<HashMap<ParticipantId, ServerMsg>>,
    /// Participants who are SIP calls (their join token said so): shown as such.
    sip: Mutex<std::collections::HashSet<ParticipantId>>,
    directory: Arc<dyn Directory>,
}

impl Hub {
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        Hub {
            sessions: Mutex::default(),
            parked: Mutex::default(),
            handed_offers: Mutex::default(),
            last_words: Mutex::default(),
            sip: Mutex::default(),
            directory,
        }
    }

    fn parked(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, mpsc::Receiver<ServerMsg>>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handed_offers(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, String>> {
        self.handed_offers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn last_words(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, ServerMsg>> {
        self.last_words.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open a queue for a session whose client is yet to resume it, the node's
    /// unanswered offer first.
    pub fn park(&self, participant: ParticipantId, offer: Option<(String, Vec<SlotTrack>)>) {
        let queue = self.register(participant);
        if let Some((sdp, tracks)) = offer {
            self.send_to(participant, ServerMsg::offer(sdp.clone(), &tracks));
            self.handed_offers().insert(participant, sdp);
        }
        self.parked().insert(participant, queue);
    }

    /// The parked session's queue, taken once: by the client that resumes it, or by
    /// the deadline that lets it go.
    pub fn resume(&self, participant: ParticipantId) -> Option<mpsc::Receiver<ServerMsg>> {
        self.parked().remove(&participant)
    }

    /// Whether `sdp` repeats the offer the session was handed back with. Any offer
    /// from the node settles it: the next one is new.
    fn handed_already(&self, participant: ParticipantId, sdp: &str) -> bool {
        let mut handed = self.handed_offers();
        if handed.is_empty() {
            return false;
        }
        handed.remove(&participant).is_some_and(|h| h == sdp)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, mpsc::Sender<ServerMsg>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open the session's queue before its join, so no event for it is missed.
    pub fn register(&self, participant: ParticipantId) -> mpsc::Receiver<ServerMsg> {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        self.lock().insert(participant, tx);
        rx
    }

    pub fn unregister(&self, participant: ParticipantId) {
        self.lock().remove(&participant);
        self.parked().remove(&participant);
        self.handed_offers().remove(&participant);
        self.last_words().remove(&participant);
        self.sip_calls().remove(&participant);
    }

    fn sip_calls(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<ParticipantId>> {
        self.sip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `participant` is a SIP call (through the gateway).
    pub fn mark_sip(&self, participant: ParticipantId) {
        self.sip_calls().insert(participant);
    }

    /// How a participant is shown besides its identity: `"sip"` for SIP calls.
    pub fn kind(&self, participant: ParticipantId) -> Option<&'static str> {
        self.sip_calls().contains(&participant).then_some("sip")
    }

    /// Everyone in the room but `me`, however they joined.
    pub fn others(&self, room: &str, me: ParticipantId) -> Vec<ParticipantInfo> {
        self.directory
            .members(room)
            .into_iter()
            .filter(|m| m.participant != me)
            .map(|m| ParticipantInfo {
                participant: pid(m.participant),
                identity: m.identity.to_string(),
                kind: self.kind(m.participant),
            })
            .collect()
    }

    pub fn send_to(&self, participant: ParticipantId, msg: ServerMsg) {
        let mut sessions = self.lock();
        if let Some(tx) = sessions.get(&participant) {
            if let Delivery::CutOff(msg) = deliver(tx, msg) {
                sessions.remove(&participant);
                self.cut_off(participant, msg);
            }
        }
    }

    /// The session is cut off: its end, when this is it, is what it hears last.
    fn cut_off(&self, participant: ParticipantId, msg: ServerMsg) {
        let last = match msg {
            last @ (ServerMsg::Closed { .. } | ServerMsg::Failed { .. }) => last,
            _ => ServerMsg::Failed {
                reason: "too many messages piled up for this connection: join again".into(),
            },
        };
        self.last_words().insert(participant, last);
    }

    /// What a session cut off hears before it closes (taken once).
    pub fn last_word(&self, participant: ParticipantId) -> Option<ServerMsg> {
        self.last_words().remove(&participant)
    }

    /// To everyone in `room` but `except` who has a session here.
    pub fn broadcast(&self, room: &str, except: Option<ParticipantId>, msg: &ServerMsg) {
        let members = self.directory.members(room);
        let mut sessions = self.lock();
        for m in members {
            if Some(m.participant) == except {
                continue;
            }
            if let Some(tx) = sessions.get(&m.participant) {
                if let Delivery::CutOff(msg) = deliver(tx, msg.clone()) {
                    sessions.remove(&m.participant);
                    self.cut_off(m.participant, msg);
                }
            }
        }
    }

    /// Tell each of these participants the same (their session is over: room closed,
    /// node lost).
    pub fn tell(&self, members: &[Membership], msg: &ServerMsg) {
        for m in members {
            self.send_to(m.participant, msg.clone());
        }
    }

    /// Deliver one node event.
    pub fn dispatch(&self, ev: NodeEvent) {
        match ev {
            NodeEvent::ParticipantJoined {
                room,
                participant,
                identity,
            } => self.broadcast(
                &room,
                Some(participant),
                &ServerMsg::ParticipantJoined {
                    participant: pid(participant),
                    identity: identity.to_string(),
                    kind: self.kind(participant),
                },
            ),
            NodeEvent::ParticipantLeft { room, participant } => self.broadcast(
                &room,
                Some(participant),
                &ServerMsg::ParticipantLeft {
                    participant: pid(participant),
                },
            ),
            NodeEvent::TrackPublished {
                room,
                participant,
                track,
                kind,
                source,
            } => self.broadcast(
                &room,
                Some(participant),
                &ServerMsg::TrackPublished {
                    participant: pid(participant),
                    track: track.0,
                    kind: MediaKind::of(kind),
                    stream: pid(participant),
                    source,
                },
            ),
            NodeEvent::TrackUnpublished {
                room,
                participant,
                track,
            } => self.broadcast(
                &room,
                Some(participant),
                &ServerMsg::TrackUnpublished {
                    participant: pid(participant),
                    track: track.0,
                },
            ),
            NodeEvent::ActiveSpeaker { room, participant } => self.broadcast(
                &room,
                None,
                &ServerMsg::ActiveSpeaker {
                    participant: pid(participant),
                },
            ),
            // The offer a session was handed back with, held by the node too: once.
            NodeEvent::Offer {
                participant, sdp, ..
            } if self.handed_already(participant, &sdp) => {}
            NodeEvent::Offer {
                participant,
                sdp,
                tracks,
                ..
            } => self.send_to(participant, ServerMsg::offer(sdp, &tracks)),
            NodeEvent::LayerChanged {
                subscriber,
                track,
                layer,
                ..
            } => self.send_to(
                subscriber,
                ServerMsg::LayerChanged {
                    track: track.0,
                    layer,
                },
            ),
            NodeEvent::VideoPaused {
                subscriber, track, ..
            } => self.send_to(subscriber, ServerMsg::VideoPaused { track: track.0 }),
            NodeEvent::VideoResumed {
                subscriber, track, ..
            } => self.send_to(subscriber, ServerMsg::VideoResumed { track: track.0 }),
            NodeEvent::PeerFailed {
                participant,
                reason,
                ..
            } => self.send_to(participant, ServerMsg::Failed { reason }),
            // A session handed back is the directory's to take (`AppState::adopt`);
            // a subscriber's quality is the meeting record's.
            NodeEvent::Connected { .. }
            | NodeEvent::Carrying { .. }
            | NodeEvent::Quality { .. } => {}
        }
    }
}

/// What became of a message for a session.
enum Delivery {
    Queued,
    /// The next message of its kind replaces it: dropped for this client alone.
    Dropped,
    /// It carries state the client would miss: the client is cut off instead.
    CutOff(ServerMsg),
}

/// Queue `msg` for a session without waiting. A client too slow to take its messages
/// loses those the next one of their kind replaces (the active speaker, its layer of
/// a track, who waits in the waiting room, refusals); one that would lose state (an offer to answer, who came or
/// went, tracks, mutes, paused videos, the end of its session) is cut off instead:
/// its session ends with that news if it is the end (`closed`, `failed`), else with
/// `failed` (join again; `ws.rs`).
fn deliver(tx: &mpsc::Sender<ServerMsg>, msg: ServerMsg) -> Delivery {
    match tx.try_send(msg) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Queued,
        Err(mpsc::error::TrySendError::Full(msg)) => match msg {
            ServerMsg::ActiveSpeaker { .. }
            | ServerMsg::LayerChanged { .. }
            | ServerMsg::Lobby { .. }
            | ServerMsg::Error { .. } => Delivery::Dropped,
            msg => Delivery::CutOff(msg),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Candidate, Membership, MemoryDirectory, Via};

    #[test]
    fn a_handed_back_session_gets_its_unanswered_offer_once() {
        let hub = Hub::new(Arc::new(MemoryDirectory::default()));
        let p = ParticipantId(5);
        let offer = |sdp: &str| NodeEvent::Offer {
            room: "r".into(),
            participant: p,
            sdp: sdp.into(),
            tracks: Vec::new(),
        };
        hub.park(p, Some(("v=0 first".into(), Vec::new())));
        // The node held the same offer among its events: not sent twice. A later
        // one is new.
        hub.dispatch(offer("v=0 first"));
        hub.dispatch(offer("v=0 second"));
        hub.dispatch(offer("v=0 first"));
        let mut queue = hub.resume(p).expect("parked");
        assert!(hub.resume(p).is_none(), "taken once");
        let mut got = Vec::new();
        while let Ok(ServerMsg::Offer { sdp, .. }) = queue.try_recv() {
            got.push(sdp);
        }
        assert_eq!(got, ["v=0 first", "v=0 second", "v=0 first"]);
    }

    #[test]
    fn a_client_too_slow_for_state_is_cut_off_not_left_inconsistent() {
        let directory = Arc::new(MemoryDirectory::default());
        let hub = Hub::new(directory.clone());
        let p = ParticipantId(1);
        let member = Membership {
            participant: p,
            room: "r".into(),
            identity: "x".into(),
            via: Via::WebSocket,
            node: 0,
            sip: false,
            org: None,
        };
        directory
            .admit(
                member,
                &[Candidate {
                    node: 0,
                    capacity: 10,
                }],
            )
            .unwrap();
        let mut queue = hub.register(p);
        let speaker = ServerMsg::ActiveSpeaker {
            participant: "p2".into(),
        };
        for _ in 0..SESSION_QUEUE {
            hub.broadcast("r", None, &speaker);
        }
        // Full: one more speaker change is dropped, the session goes on.
        hub.broadcast("r", None, &speaker);
        assert!(hub.lock().contains_key(&p));
        // An offer it cannot take ends its session: its queue closes once drained,
        // and its last word says to join again.
        hub.send_to(p, ServerMsg::offer("v=0".into(), &[]));
        assert!(!hub.lock().contains_key(&p));
        assert!(matches!(hub.last_word(p), Some(ServerMsg::Failed { .. })));
        assert!(hub.last_word(p).is_none(), "taken once");
        let mut n = 0;
        while queue.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, SESSION_QUEUE);
        assert!(matches!(
            queue.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn a_room_closed_on_a_client_that_fell_behind_is_still_closed_for_it() {
        let hub = Hub::new(Arc::new(MemoryDirectory::default()));
        let p = ParticipantId(1);
        let _queue = hub.register(p);
        for _ in 0..SESSION_QUEUE {
            hub.send_to(p, ServerMsg::offer("v=0".into(), &[]));
        }
        let closed = ServerMsg::Closed {
            reason: "closed by an admin".into(),
        };
        hub.send_to(p, closed.clone());
        assert_eq!(
            hub.last_word(p),
            Some(closed),
            "not 'failed': it must not rejoin"
        );
    }
}
