//! The routing core: plain state machines, no sockets, no clocks, no threads.
//!
//! Inputs are events with the time they happened (`Instant`s supplied by the caller);
//! outputs are [`Forward`]s (which subscriber gets which packet with which rewritten
//! sequence number and timestamp) and [`Action`]s (requests the I/O layer carries out).
//! Every rule of the SFU lives here so that it can be tested with simulated time.

pub mod allocator;
pub mod budget;
pub mod keyframe;
pub mod picture;
pub mod rewrite;
pub mod room;
pub mod speaker;
pub mod subscription;
pub mod track;

// The ids and words the core shares with the control plane live in the `control`
// crate (the signalling node speaks them too, without the media path).
pub use control::{Kind, Layer, ParticipantId, Preference, TrackId, TrackSource};
pub use picture::Picture;
pub use room::Room;
pub use subscription::Resume;
pub use track::Track;

/// Most simulcast layers a track may have.
pub const MAX_LAYERS: usize = 3;

/// The codecs whose payload the core must understand (keyframe detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    H264,
    /// Forwarded without payload inspection; every packet counts as a switch point.
    Other,
}

/// Where forwarded packets for one subscription go. Chosen by the I/O layer (for the
/// WebRTC glue: the subscriber's peer slot and outgoing media slot) so that forwarding
/// needs no lookup by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sink {
    pub peer: u32,
    pub slot: u32,
}

/// What the core needs to know about one received RTP packet. The payload itself
/// stays with the I/O layer; the core only decides where it goes.
#[derive(Clone, Copy, Debug)]
pub struct PacketIn {
    pub layer: Layer,
    pub ssrc: u32,
    /// Extended (64-bit, never wrapping) sequence number of the publisher's stream.
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    /// First packet of a keyframe (VP8 key frame, H.264 IDR). Always true for audio.
    pub keyframe: bool,
    pub payload_len: usize,
    /// RFC 6464 audio level in dBov as str0m reports it (0 loudest, -127 silence).
    pub audio_level: Option<i8>,
    /// VP8 payload descriptor numbering, when the packet has a PictureID.
    pub picture: Option<Picture>,
}

/// One packet to write to one subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    pub sink: Sink,
    pub seq: u64,
    pub ts: u32,
    /// The VP8 numbering to write in place of the publisher's (see [`picture`]).
    pub picture: Option<Picture>,
}

impl Forward {
    fn new(sink: Sink, out: rewrite::Out) -> Self {
        Forward {
            sink,
            seq: out.seq,
            ts: out.ts,
            picture: out.picture,
        }
    }
}

/// Events a room reports to the control plane (and on to clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomEvent {
    TrackPublished {
        track: TrackId,
        publisher: ParticipantId,
        kind: Kind,
        source: TrackSource,
    },
    TrackUnpublished {
        track: TrackId,
        publisher: ParticipantId,
    },
    LayerChanged {
        subscriber: ParticipantId,
        track: TrackId,
        layer: Layer,
    },
    VideoPaused {
        subscriber: ParticipantId,
        track: TrackId,
    },
    VideoResumed {
        subscriber: ParticipantId,
        track: TrackId,
    },
    ActiveSpeaker {
        participant: ParticipantId,
    },
}

/// Requests from the core to the I/O layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask the publisher for a keyframe on this layer (PLI). Already merged.
    RequestKeyframe {
        publisher: ParticipantId,
        track: TrackId,
        layer: Layer,
    },
    /// Give the subscriber a sending slot for this track (renegotiate), then call
    /// [`Room::subscription_ready`].
    Subscribe {
        subscriber: ParticipantId,
        track: TrackId,
        kind: Kind,
        publisher: ParticipantId,
        source: TrackSource,
    },
    /// The track is gone: release the subscriber's slot.
    Unsubscribe {
        subscriber: ParticipantId,
        track: TrackId,
        sink: Option<Sink>,
    },
    /// Steer the subscriber's bandwidth probing (str0m `bwe().set_bitrate`).
    SetBitrate {
        subscriber: ParticipantId,
        min_bps: u64,
        desired_bps: u64,
    },
    Event(RoomEvent),
}

#[cfg(test)]
mod tests;
