//! Why a control request failed, as the requester learns it (in-process or over QUIC).

/// A failed control request.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ControlError {
    #[error("bad offer: {0}")]
    BadOffer(String),
    #[error("bad answer: {0}")]
    BadAnswer(String),
    #[error("no such participant")]
    NoSuchParticipant,
    #[error("participant id already in use on this node")]
    ParticipantExists,
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
    /// One shared screen a room at a time.
    #[error("another participant is sharing their screen")]
    ScreenTaken,
}
