//! Routes media-node events to the WebSocket sessions of the participants they
//! concern: one bounded queue per session, filled without waiting (a stalled client
//! loses its own messages, never anyone else's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use control::{Kind, NodeEvent, ParticipantId};
use tokio::sync::mpsc;

use crate::messages::{pid, MediaKind, ParticipantInfo, ServerMsg};

pub const SESSION_QUEUE: usize = 256;

struct Session {
    room: Arc<str>,
    identity: String,
    tx: mpsc::Sender<ServerMsg>,
}

#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<ParticipantId, Session>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a session before its join, so no event for it is missed.
    pub fn register(
        &self,
        participant: ParticipantId,
        room: &str,
        identity: &str,
    ) -> mpsc::Receiver<ServerMsg> {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        self.lock().insert(
            participant,
            Session {
                room: room.into(),
                identity: identity.to_owned(),
                tx,
            },
        );
        rx
    }

    pub fn unregister(&self, participant: ParticipantId) {
        self.lock().remove(&participant);
    }

    /// Everyone else in the room.
    pub fn others(&self, room: &str, me: ParticipantId) -> Vec<ParticipantInfo> {
        let mut v: Vec<ParticipantInfo> = self
            .lock()
            .iter()
            .filter(|(p, s)| **p != me && &*s.room == room)
            .map(|(p, s)| ParticipantInfo {
                participant: pid(*p),
                identity: s.identity.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.participant.cmp(&b.participant));
        v
    }

    pub fn room_count(&self) -> usize {
        let sessions = self.lock();
        let mut rooms: Vec<&str> = sessions.values().map(|s| &*s.room).collect();
        rooms.sort_unstable();
        rooms.dedup();
        rooms.len()
    }

    pub fn send_to(&self, participant: ParticipantId, msg: ServerMsg) {
        if let Some(s) = self.lock().get(&participant) {
            let _ = s.tx.try_send(msg);
        }
    }

    /// To everyone in `room` but `except`.
    pub fn broadcast(&self, room: &str, except: Option<ParticipantId>, msg: &ServerMsg) {
        for (p, s) in self.lock().iter() {
            if &*s.room == room && Some(*p) != except {
                let _ = s.tx.try_send(msg.clone());
            }
        }
    }

    /// Tell every session of `room` it is over.
    pub fn close_room(&self, room: &str, reason: &str) {
        self.broadcast(
            room,
            None,
            &ServerMsg::Failed {
                reason: reason.to_owned(),
            },
        );
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
            NodeEvent::Connected { .. } => {}
        }
    }
}
