//! What the node's control API asks of a shard, on the shard's command channel. (The
//! control API between signalling and node is the `control` crate; this is the
//! node's inside.)

use std::sync::Arc;

use crossbeam_channel::Sender;
use str0m::Rtc;

use control::{ControlError, JoinKind, ParticipantId, Preference, RoomFigures, TrackId};

/// A participant's connection, built and answered off the shard (building an `Rtc`
/// costs a millisecond of CPU; the shard only adopts it).
pub struct NewPeer {
    pub rtc: Rtc,
    pub kind: JoinKind,
    pub participant: ParticipantId,
    pub identity: Arc<str>,
    pub room: Arc<str>,
    pub local_ufrag: String,
    /// The m-line its client kept for a screen share.
    pub screen: Option<str0m::media::Mid>,
}

/// Where a shard sends the outcome of a command.
pub type ReplyTo<T> = Sender<Result<T, ControlError>>;

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
        reply: ReplyTo<()>,
    },
    SetPreference {
        participant: ParticipantId,
        track: TrackId,
        pref: Preference,
        reply: ReplyTo<()>,
    },
    CloseRoom(Arc<str>),
    RoomStats {
        room: Arc<str>,
        reply: ReplyTo<RoomFigures>,
    },
    Screen {
        participant: ParticipantId,
        on: bool,
        reply: ReplyTo<()>,
    },
    HoldAudio {
        participant: ParticipantId,
        held: bool,
        reply: ReplyTo<()>,
    },
    /// Every participant of the shard as `NodeEvent::Carrying`.
    Sessions(ReplyTo<Vec<control::NodeEvent>>),
    Shutdown,
}
