//! The words both planes use: who takes part, what they publish, how they join, what
//! they asked for, and what a room holds. Plain data; the media node's routing core
//! uses the same types.

use serde::{Deserialize, Serialize};

/// A participant of a room: one peer connection (or one SIP leg). Unique within the
/// signalling node, which hands them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParticipantId(pub u64);

/// A published audio or video track, unique within the media node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrackId(pub u64);

/// Simulcast layer index, 0 is the lowest. Non-simulcast tracks have only layer 0.
pub type Layer = u8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Audio,
    Video,
}

/// The video a room's clients send: any codec the node takes (browsers pick VP8),
/// or one alone (`POST /api/rooms {"video_codec": "h264"}`: a room that room systems,
/// which send H.264, dial into). The node answers each offer with that codec only,
/// so every client publishes it and receives it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomVideo {
    #[default]
    Any,
    Vp8,
    H264,
}

impl RoomVideo {
    /// The API's name for it (`video_codec`), `None` for [`RoomVideo::Any`].
    pub fn name(self) -> Option<&'static str> {
        match self {
            RoomVideo::Any => None,
            RoomVideo::Vp8 => Some("vp8"),
            RoomVideo::H264 => Some("h264"),
        }
    }

    /// From the API's name.
    pub fn from_name(name: &str) -> Option<RoomVideo> {
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Some(RoomVideo::Vp8),
            "h264" => Some(RoomVideo::H264),
            _ => None,
        }
    }
}

/// What a video track shows: a camera (the default), or a shared screen, which the
/// allocator serves first within each subscriber's estimate and clients show large.
/// Audio tracks are cameras' (a screen share has no audio of its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackSource {
    #[default]
    Camera,
    Screen,
}

impl TrackSource {
    /// Its name on the wire (`camera`, `screen`).
    pub fn name(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Screen => "screen",
        }
    }
}

/// How a participant's media joins its room: the way it takes part, the room's
/// video codec, and the m-line of its offer kept for a screen share (its `mid`):
/// published only while the participant shares (`Request::Screen`), so that sharing
/// needs no renegotiation from the client's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinMedia {
    pub kind: JoinKind,
    pub video: RoomVideo,
    pub screen: Option<String>,
}

impl JoinMedia {
    /// A join without a screen m-line, in a room that takes any codec.
    pub fn new(kind: JoinKind) -> Self {
        JoinMedia {
            kind,
            video: RoomVideo::Any,
            screen: None,
        }
    }
}

/// How a participant takes part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    /// Publishes what it offers; receives every other track through m-lines the
    /// node adds by renegotiation (the WebSocket API).
    Full,
    /// Publishes only (WHIP): no renegotiation exists to send it anything.
    PublishOnly,
    /// Receives only, in the receive-only m-lines of its offer (WHEP): the node
    /// fills them with the room's tracks, oldest first, and refills a slot when its
    /// track ends.
    ViewOnly,
    /// Receives every other track like `Full`, and publishes nothing: an offer with
    /// a sending m-line is refused (a viewer token on the WebSocket API).
    Viewer,
}

impl JoinKind {
    /// The node adds m-lines for the room's tracks by renegotiation.
    pub fn renegotiates(self) -> bool {
        matches!(self, JoinKind::Full | JoinKind::Viewer)
    }

    /// What it sends may be published to the room.
    pub fn publishes(self) -> bool {
        matches!(self, JoinKind::Full | JoinKind::PublishOnly)
    }

    /// It receives the room's tracks.
    pub fn receives(self) -> bool {
        self != JoinKind::PublishOnly
    }
}

/// What a subscriber asked for of one track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preference {
    /// Receive nothing of this track.
    pub paused: bool,
    /// Highest layer wanted (e.g. a thumbnail needs only layer 0).
    pub max_layer: Layer,
}

impl Default for Preference {
    fn default() -> Self {
        Preference {
            paused: false,
            max_layer: Layer::MAX,
        }
    }
}

/// What one room holds now, as the media node counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomFigures {
    pub participants: usize,
    pub audio_tracks: usize,
    pub video_tracks: usize,
    pub subscriptions: usize,
    pub paused_videos: usize,
}

/// A media node's load, reported every second (the heartbeat) and shown to operators.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub participants: usize,
    pub rooms: usize,
    /// Datagrams received per second, all shards, over the last report interval.
    pub packets_per_second: f64,
    /// Mean of the shards' busy ratios (time spent working / time awake).
    pub busy_ratio: f64,
    /// The node is draining (stopping): no new rooms for it; its meetings go on.
    #[serde(default)]
    pub draining: bool,
}
