//! The WebSocket protocol: JSON objects with a `type` field. Documented in API.md.

use control::TrackSource;
use serde::{Deserialize, Serialize};

/// Client -> server.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// First message: the token and the SDP offer.
    Join {
        token: String,
        offer: String,
        /// The room's PIN, from a caller who has no token of their own (the SIP
        /// gateway passes what the caller dialled or keyed in).
        #[serde(default)]
        pin: Option<String>,
        /// The `mid` of a sending video m-line of `offer` kept for sharing the
        /// screen: published to the room only between `screen` messages.
        #[serde(default)]
        screen: Option<String>,
    },
    /// First message instead of a join: take back a session whose WebSocket was lost
    /// (its peer connection and media go on), with the `resume` token of `joined`.
    Resume {
        token: String,
    },
    /// Answer to a server `offer` (renegotiation).
    Answer {
        sdp: String,
    },
    /// Tell the room this participant muted or unmuted a kind of media.
    Mute {
        kind: MediaKind,
        muted: bool,
    },
    /// Start (`on`) or stop sharing the screen on the m-line named by the join's
    /// `screen`.
    Screen {
        on: bool,
    },
    /// A host lets a waiting guest in.
    Admit {
        guest: u64,
    },
    /// A host turns a waiting guest away.
    Deny {
        guest: u64,
    },
    /// A host removes a participant from the room.
    Remove {
        participant: String,
    },
    /// A host ends the meeting for everyone (the room stays, its waiting room too).
    End,
    /// A host mutes a participant's audio (the node forwards none of it until the
    /// participant unmutes, or a host does: `muted: false`).
    MuteParticipant {
        participant: String,
        #[serde(default = "yes")]
        muted: bool,
    },
    /// Subscription preference for one track: pause it or cap its layer (0..=2).
    Preference {
        track: u64,
        #[serde(default)]
        paused: bool,
        #[serde(default = "top_layer")]
        max_layer: u8,
    },
    Leave,
}

fn yes() -> bool {
    true
}

fn top_layer() -> u8 {
    2
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ParticipantInfo {
    pub participant: String,
    pub identity: String,
    /// `"sip"` for a caller through the SIP gateway; absent for everyone else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
}

/// Server -> client.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Answer to the join offer, with who is already in the room.
    Joined {
        participant: String,
        sdp: String,
        participants: Vec<ParticipantInfo>,
        /// Takes the session back over a new WebSocket if this one is lost.
        resume: String,
        /// STUN/TURN servers (with credentials) for an ICE restart; the page asks
        /// `GET /api/ice-servers` before its first offer.
        ice_servers: Vec<crate::ice::IceServer>,
        /// The room's one video codec, when it has one (`vp8`, `h264`).
        #[serde(skip_serializing_if = "Option::is_none")]
        video_codec: Option<&'static str>,
        /// The participant is a host (of a room that has a waiting room or not).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        host: bool,
    },
    /// The join waits in the room's waiting room until a host admits it (then
    /// `joined`) or not (then an `error` with code `denied`).
    Waiting {},
    /// To hosts: who waits in the waiting room now (on every change).
    Lobby {
        waiting: Vec<crate::lobby::Waiting>,
    },
    /// The session was taken back (`resume`): the same participant and peer
    /// connection; who is in the room now.
    Resumed {
        participant: String,
        participants: Vec<ParticipantInfo>,
    },
    /// The media node renegotiates: answer with `answer`. `tracks` says what each
    /// of the node's sending m-lines carries once answered: an m-line may carry a
    /// later track than the one its msid names (the node reuses m-lines whose
    /// track ended).
    Offer {
        sdp: String,
        tracks: Vec<OfferTrack>,
    },
    ParticipantJoined {
        participant: String,
        identity: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<&'static str>,
    },
    ParticipantLeft {
        participant: String,
    },
    /// A track appeared; its m-line's stream id is `stream`.
    TrackPublished {
        participant: String,
        track: u64,
        kind: MediaKind,
        stream: String,
        /// `camera` or `screen` (a shared screen, shown large).
        source: TrackSource,
    },
    TrackUnpublished {
        participant: String,
        track: u64,
    },
    Muted {
        participant: String,
        kind: MediaKind,
        muted: bool,
        /// A host muted it (at the node: none of its audio is forwarded).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        by_host: bool,
    },
    ActiveSpeaker {
        participant: String,
    },
    /// This subscriber's video of `track` is paused for lack of bandwidth.
    VideoPaused {
        track: u64,
    },
    VideoResumed {
        track: u64,
    },
    LayerChanged {
        track: u64,
        layer: u8,
    },
    /// The media connection failed (or its node was lost); rejoin.
    Failed {
        reason: String,
    },
    /// The room was closed: the session is over; do not rejoin.
    Closed {
        reason: String,
    },
    Error {
        /// Why a join was refused (`bad_token`, `no_room`, `room_full`,
        /// `pin_required`, `pin_wrong`, ...); absent for errors after joining.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        message: String,
    },
    /// A message another signalling node relayed (through Redis), as it was made
    /// there: passed on as is.
    #[serde(untagged)]
    Relayed(serde_json::Value),
}

/// Participant ids on the wire: "p<N>", the same as the stream id of their media.
pub fn pid(p: control::ParticipantId) -> String {
    format!("p{}", p.0)
}

/// One sending m-line of the node's and the track it carries.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OfferTrack {
    pub mid: String,
    pub participant: String,
    pub track: u64,
    pub kind: MediaKind,
    pub source: TrackSource,
}

impl MediaKind {
    pub fn of(kind: control::Kind) -> Self {
        match kind {
            control::Kind::Audio => MediaKind::Audio,
            control::Kind::Video => MediaKind::Video,
        }
    }
}

impl ServerMsg {
    /// The node's offer with what its m-lines carry, in the clients' terms.
    pub fn offer(sdp: String, tracks: &[control::SlotTrack]) -> Self {
        ServerMsg::Offer {
            sdp,
            tracks: tracks
                .iter()
                .map(|t| OfferTrack {
                    mid: t.mid.clone(),
                    participant: pid(t.publisher),
                    track: t.track.0,
                    kind: MediaKind::of(t.kind),
                    source: t.source,
                })
                .collect(),
        }
    }
}
