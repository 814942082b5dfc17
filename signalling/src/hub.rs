//! Delivers media-node events and room messages to the WebSocket sessions of this
//! signalling node: one bounded queue per session, filled without waiting (a stalled
//! client loses its own messages, never anyone else's). Who is in a room is the
//! [`Directory`]'s to say; the hub only holds the queues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use control::{Kind, NodeEvent, ParticipantId};
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
    directory: Arc<dyn Directory>,
}

impl Hub {
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        Hub {
            sessions: Mutex::default(),
            parked: Mutex::default(),
            handed_offers: Mutex::default(),
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

    /// Open a queue for a session whose client is yet to resume it, the node's
    /// unanswered offer first.
    pub fn park(&self, participant: ParticipantId, offer: Option<String>) {
        let queue = self.register(participant);
        if let Some(sdp) = offer {
            self.send_to(participant, ServerMsg::Offer { sdp: sdp.clone() });
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
            })
            .collect()
    }

    pub fn send_to(&self, participant: ParticipantId, msg: ServerMsg) {
        if let Some(tx) = self.lock().get(&participant) {
            let _ = tx.try_send(msg);
        }
    }

    /// To everyone in `room` but `except` who has a session here.
    pub fn broadcast(&self, room: &str, except: Option<ParticipantId>, msg: &ServerMsg) {
        let members = self.directory.members(room);
        let sessions = self.lock();
        for m in members {
            if Some(m.participant) == except {
                continue;
            }
            if let Some(tx) = sessions.get(&m.participant) {
                let _ = tx.try_send(msg.clone());
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
            } => self.broadcast(
                &room,
                Some(participant),
                &ServerMsg::TrackPublished {
                    participant: pid(participant),
                    track: track.0,
                    kind: match kind {
                        Kind::Audio => MediaKind::Audio,
                        Kind::Video => MediaKind::Video,
                    },
                    stream: pid(participant),
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
                participant, sdp, ..
            } => self.send_to(participant, ServerMsg::Offer { sdp }),
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
            // A session handed back is the directory's to take (`AppState::adopt`).
            NodeEvent::Connected { .. } | NodeEvent::Carrying { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MemoryDirectory;

    #[test]
    fn a_handed_back_session_gets_its_unanswered_offer_once() {
        let hub = Hub::new(Arc::new(MemoryDirectory::default()));
        let p = ParticipantId(5);
        let offer = |sdp: &str| NodeEvent::Offer {
            room: "r".into(),
            participant: p,
            sdp: sdp.into(),
        };
        hub.park(p, Some("v=0 first".into()));
        // The node held the same offer among its events: not sent twice. A later
        // one is new.
        hub.dispatch(offer("v=0 first"));
        hub.dispatch(offer("v=0 second"));
        hub.dispatch(offer("v=0 first"));
        let mut queue = hub.resume(p).expect("parked");
        assert!(hub.resume(p).is_none(), "taken once");
        let mut got = Vec::new();
        while let Ok(ServerMsg::Offer { sdp }) = queue.try_recv() {
            got.push(sdp);
        }
        assert_eq!(got, ["v=0 first", "v=0 second", "v=0 first"]);
    }
}
