//! The control API itself: the requests a signalling node makes of a media node, their
//! responses, and [`MediaNode`], the one interface over the embedded node (in-process)
//! and a remote one (over QUIC, [`crate::remote::RemoteNode`]).

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::ControlError;
use crate::ids::{
    JoinKind, JoinMedia, NodeLoad, ParticipantId, Preference, RoomFigures, RoomVideo, TrackId,
};

/// Signalling -> media node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Request {
    /// Take the participant into the room with this SDP offer; answers `Joined`.
    AddParticipant {
        participant: ParticipantId,
        room: String,
        identity: String,
        offer: String,
        kind: JoinKind,
        /// The room's video codec (absent from an older signalling node: any).
        #[serde(default)]
        video: RoomVideo,
        /// The m-line kept for a screen share (see [`JoinMedia`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screen: Option<String>,
    },
    /// The client's answer to a `NodeEvent::Offer`.
    Answer {
        participant: ParticipantId,
        sdp: String,
    },
    RemoveParticipant {
        participant: ParticipantId,
    },
    SetPreference {
        participant: ParticipantId,
        track: TrackId,
        pref: Preference,
    },
    RoomStats {
        room: String,
    },
    /// Start (`on`) or stop sharing the screen on the m-line the participant kept
    /// for it at its join: its track is published to the room, or unpublished.
    Screen {
        participant: ParticipantId,
        on: bool,
    },
    /// A host mutes (`held`) or releases the participant's audio: the node forwards
    /// none of it meanwhile.
    HoldAudio {
        participant: ParticipantId,
        held: bool,
    },
}

/// Media node -> signalling, one per request (failures are the `Err` of [`Reply`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Response {
    Joined { answer: String },
    Done,
    RoomStats(RoomFigures),
}

/// What a request comes to.
pub type Reply = Result<Response, ControlError>;

/// A request on its way.
pub type Pending<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// A media node as the signalling node drives it: the same requests and replies
/// whether it runs in-process or on another machine. Its events arrive separately
/// (a channel from the embedded node, a QUIC stream from a remote one).
pub trait MediaNode: Send + Sync {
    /// Carry out one request.
    fn call(&self, request: Request) -> Pending<'_>;

    /// The node's load now (a remote node: its last heartbeat).
    fn load(&self) -> NodeLoad;

    /// Prometheus text the signalling node adds to its own `/metrics`: the embedded
    /// node's series. A remote node serves its own and returns `None`.
    fn metrics(&self) -> Option<String> {
        None
    }
}

impl dyn MediaNode {
    /// `AddParticipant`, answered with the node's SDP answer.
    pub async fn add_participant(
        &self,
        participant: ParticipantId,
        room: &str,
        identity: &str,
        offer: &str,
        media: JoinMedia,
    ) -> Result<String, ControlError> {
        let request = Request::AddParticipant {
            participant,
            room: room.to_owned(),
            identity: identity.to_owned(),
            offer: offer.to_owned(),
            kind: media.kind,
            video: media.video,
            screen: media.screen,
        };
        match self.call(request).await? {
            Response::Joined { answer } => Ok(answer),
            other => Err(unexpected(other)),
        }
    }

    /// `RoomStats`, answered with the room's figures.
    pub async fn room_stats(&self, room: &str) -> Result<RoomFigures, ControlError> {
        match self.call(Request::RoomStats { room: room.into() }).await? {
            Response::RoomStats(figures) => Ok(figures),
            other => Err(unexpected(other)),
        }
    }

    /// Any request answered with `Done`.
    pub async fn done(&self, request: Request) -> Result<(), ControlError> {
        match self.call(request).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> ControlError {
    ControlError::Unavailable(format!("unexpected reply from the media node: {r:?}"))
}
