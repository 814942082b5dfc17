//! The control API's vocabulary: what the control plane asks of shards, and the events
//! the node reports. Carried in-process now; the signalling node carries it over QUIC.

use std::sync::Arc;

use crossbeam_channel::Sender;
use str0m::Rtc;

use crate::core::room::RoomFigures;
use crate::core::{Kind, Layer, ParticipantId, Preference, TrackId};
use crate::peer::JoinKind;

/// Events of the node, in the order they happened within a room.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NodeEvent {
    ParticipantJoined {
        room: Arc<str>,
        participant: ParticipantId,
        identity: Arc<str>,
    },
    /// The participant's connection is up (ICE + DTLS done).
    Connected {
        room: Arc<str>,
        participant: ParticipantId,
    },
    ParticipantLeft {
        room: Arc<str>,
        participant: ParticipantId,
    },
    TrackPublished {
        room: Arc<str>,
        participant: ParticipantId,
        track: TrackId,
        kind: Kind,
    },
    TrackUnpublished {
        room: Arc<str>,
        participant: ParticipantId,
        track: TrackId,
    },
    /// The node renegotiates: hand this offer to the participant's client and give
    /// its answer to `Node::answer`.
    Offer {
        room: Arc<str>,
        participant: ParticipantId,
        sdp: String,
    },
    LayerChanged {
        room: Arc<str>,
        subscriber: ParticipantId,
        track: TrackId,
        layer: Layer,
    },
    VideoPaused {
        room: Arc<str>,
        subscriber: ParticipantId,
        track: TrackId,
    },
    VideoResumed {
        room: Arc<str>,
        subscriber: ParticipantId,
        track: TrackId,
    },
    ActiveSpeaker {
        room: Arc<str>,
        participant: ParticipantId,
    },
    /// The connection failed or timed out; the participant was removed.
    PeerFailed {
        room: Arc<str>,
        participant: ParticipantId,
        reason: String,
    },
}

impl NodeEvent {
    /// The participant this event is addressed to, for events meant for one client.
    pub fn recipient(&self) -> Option<ParticipantId> {
        match self {
            NodeEvent::Offer { participant, .. } => Some(*participant),
            NodeEvent::LayerChanged { subscriber, .. }
            | NodeEvent::VideoPaused { subscriber, .. }
            | NodeEvent::VideoResumed { subscriber, .. } => Some(*subscriber),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ControlError {
    #[error("bad offer: {0}")]
    BadOffer(String),
    #[error("bad answer: {0}")]
    BadAnswer(String),
    #[error("no such participant")]
    NoSuchParticipant,
    #[error("no such track")]
    NoSuchTrack,
    #[error("no such room")]
    NoSuchRoom,
    #[error("room is full ({0} participants)")]
    RoomFull(usize),
    #[error("media node is shutting down")]
    ShuttingDown,
    #[error("media node unavailable: {0}")]
    Unavailable(String),
    #[error("busy: {0} joins already waiting; retry shortly")]
    Busy(usize),
}

/// A participant's connection, built and answered off the shard (building an `Rtc`
/// costs a millisecond of CPU; the shard only adopts it).
pub struct NewPeer {
    pub rtc: Rtc,
    pub kind: JoinKind,
    pub participant: ParticipantId,
    pub identity: Arc<str>,
    pub room: Arc<str>,
    pub local_ufrag: String,
}

pub type Reply<T> = Sender<Result<T, ControlError>>;

/// Figures of one room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomStats {
    pub name: String,
    pub shard: usize,
    pub figures: RoomFigures,
}

pub enum Command {
    AddPeer(Box<NewPeer>),
    RemovePeer(ParticipantId),
    Answer {
        participant: ParticipantId,
        sdp: String,
        reply: Reply<()>,
    },
    SetPreference {
        participant: ParticipantId,
        track: TrackId,
        pref: Preference,
        reply: Reply<()>,
    },
    CloseRoom(Arc<str>),
    RoomStats {
        room: Arc<str>,
        reply: Reply<RoomFigures>,
    },
    Shutdown,
}
