//! What a media node reports: events of its rooms, in the order they happened within
//! a room. The signalling node turns them into messages to the clients concerned.

use std::sync::Arc;

use crate::ids::{JoinKind, Kind, Layer, ParticipantId, TrackId, TrackSource};

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
        /// Absent from an older node: a camera.
        #[serde(default)]
        source: TrackSource,
    },
    TrackUnpublished {
        room: Arc<str>,
        participant: ParticipantId,
        track: TrackId,
    },
    /// The node renegotiates: hand this offer to the participant's client and give
    /// its answer back as [`Request::Answer`](crate::Request::Answer).
    Offer {
        room: Arc<str>,
        participant: ParticipantId,
        sdp: String,
        /// What each of the node's sending m-lines carries once the offer is
        /// answered (see [`SlotTrack`]).
        tracks: Vec<SlotTrack>,
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
    /// How a subscriber's receiving went, from its RTCP receiver reports since the
    /// last such event (about every ten seconds while it receives media): loss as
    /// the reports gave it (per mille, their mean and the worst), and the worst
    /// interarrival jitter they named (milliseconds). For meeting records.
    Quality {
        room: Arc<str>,
        participant: ParticipantId,
        loss_mean_permille: u32,
        loss_max_permille: u32,
        /// How many loss figures the mean is of (0: none came, the loss fields say
        /// nothing).
        #[serde(default)]
        loss_figures: u32,
        jitter_max_ms: u32,
    },
    /// Sent first after the node registers again (the signalling node restarted, or
    /// the control connection dropped): a participant it kept, with the offer that
    /// still awaits its client's answer. The signalling node takes the session back
    /// and the client resumes it over a new WebSocket.
    Carrying {
        room: Arc<str>,
        participant: ParticipantId,
        identity: Arc<str>,
        kind: JoinKind,
        offer: Option<String>,
        /// What the node's sending m-lines carry (as of `offer`, if one is open).
        tracks: Vec<SlotTrack>,
    },
}

/// One of the node's sending m-lines and the track it carries. The m-line's msid
/// names the track it was added for; an m-line the node reuses for a later track
/// (so that SDP stays bounded as participants come and go) keeps that msid, since
/// an m-line's msid cannot change. Clients learn what a reused m-line carries from
/// this instead.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotTrack {
    pub mid: String,
    pub publisher: ParticipantId,
    pub track: TrackId,
    pub kind: Kind,
    #[serde(default)]
    pub source: TrackSource,
}

impl NodeEvent {
    /// The room the event happened in.
    pub fn room(&self) -> &str {
        match self {
            NodeEvent::ParticipantJoined { room, .. }
            | NodeEvent::Connected { room, .. }
            | NodeEvent::ParticipantLeft { room, .. }
            | NodeEvent::TrackPublished { room, .. }
            | NodeEvent::TrackUnpublished { room, .. }
            | NodeEvent::Offer { room, .. }
            | NodeEvent::LayerChanged { room, .. }
            | NodeEvent::VideoPaused { room, .. }
            | NodeEvent::VideoResumed { room, .. }
            | NodeEvent::ActiveSpeaker { room, .. }
            | NodeEvent::PeerFailed { room, .. }
            | NodeEvent::Quality { room, .. }
            | NodeEvent::Carrying { room, .. } => room,
        }
    }

    /// The participant the event is about (for a subscriber's event: the subscriber).
    pub fn participant(&self) -> ParticipantId {
        match self {
            NodeEvent::ParticipantJoined { participant, .. }
            | NodeEvent::Connected { participant, .. }
            | NodeEvent::ParticipantLeft { participant, .. }
            | NodeEvent::TrackPublished { participant, .. }
            | NodeEvent::TrackUnpublished { participant, .. }
            | NodeEvent::Offer { participant, .. }
            | NodeEvent::ActiveSpeaker { participant, .. }
            | NodeEvent::PeerFailed { participant, .. }
            | NodeEvent::Quality { participant, .. }
            | NodeEvent::Carrying { participant, .. } => *participant,
            NodeEvent::LayerChanged { subscriber, .. }
            | NodeEvent::VideoPaused { subscriber, .. }
            | NodeEvent::VideoResumed { subscriber, .. } => *subscriber,
        }
    }

    /// Whether the next event of its kind replaces it (the room's active speaker, a
    /// subscriber's layer of a track), so that losing it to a lagging consumer loses
    /// nothing for long. Every other event carries state a client needs.
    pub fn is_superseded_by_next(&self) -> bool {
        matches!(
            self,
            NodeEvent::ActiveSpeaker { .. } | NodeEvent::LayerChanged { .. }
        )
    }

    /// The event's name, for logs (it names nobody).
    pub fn name(&self) -> &'static str {
        match self {
            NodeEvent::ParticipantJoined { .. } => "participant_joined",
            NodeEvent::Connected { .. } => "connected",
            NodeEvent::ParticipantLeft { .. } => "participant_left",
            NodeEvent::TrackPublished { .. } => "track_published",
            NodeEvent::TrackUnpublished { .. } => "track_unpublished",
            NodeEvent::Offer { .. } => "offer",
            NodeEvent::LayerChanged { .. } => "layer_changed",
            NodeEvent::VideoPaused { .. } => "video_paused",
            NodeEvent::VideoResumed { .. } => "video_resumed",
            NodeEvent::ActiveSpeaker { .. } => "active_speaker",
            NodeEvent::PeerFailed { .. } => "peer_failed",
            NodeEvent::Quality { .. } => "quality",
            NodeEvent::Carrying { .. } => "carrying",
        }
    }

    /// Whether the event tells of someone going (their entry may be gone already).
    pub fn is_departure(&self) -> bool {
        matches!(
            self,
            NodeEvent::ParticipantLeft { .. }
                | NodeEvent::TrackUnpublished { .. }
                | NodeEvent::PeerFailed { .. }
        )
    }
}
