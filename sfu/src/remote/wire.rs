//! Frames and messages of the control protocol.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::control::ControlError;
use crate::core::room::RoomFigures;
use crate::core::{ParticipantId, Preference, TrackId};
use crate::peer::JoinKind;

/// Largest message accepted: an SDP offer with many m-lines fits many times over.
pub const MAX_FRAME: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("stream: {0}")]
    Io(String),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Write one message: 4-byte big-endian length, then JSON.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    send.write_all(&buf)
        .await
        .map_err(|e| WireError::Io(e.to_string()))
}

/// Read one message; `Ok(None)` when the stream ended cleanly between messages.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<T>, WireError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(WireError::Io(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| WireError::Io(e.to_string()))?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| WireError::Malformed(e.to_string()))
}

/// Node -> signalling, first message on the control stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    pub name: String,
    pub nonce: String,
}

/// Signalling -> node: its proof and its own nonce.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
    pub mac: String,
}

/// Node -> signalling: the node's proof, then what it offers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Register {
    pub mac: String,
    pub shards: usize,
    /// Most participants the node takes.
    pub capacity: usize,
    pub shard_addrs: Vec<SocketAddr>,
}

/// Node -> signalling, every second on the control stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub participants: usize,
    pub rooms: usize,
    pub packets_per_second: f64,
    pub busy_ratio: f64,
}

/// Signalling -> node, one per bidirectional stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Request {
    AddParticipant {
        participant: ParticipantId,
        room: String,
        identity: String,
        offer: String,
        kind: JoinKind,
    },
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
    CloseRoom {
        room: String,
    },
    RoomStats {
        room: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Response {
    Joined { answer: String },
    Done,
    RoomStats(RoomFigures),
    Error(ControlError),
}
