//! The control protocol on QUIC (quinn): one connection per media node,
//! length-prefixed JSON messages.
//!
//! - The node connects and opens the control stream: authentication ([`Hello`],
//!   [`Challenge`], [`Register`], answered with a [`Welcome`] or a refusal), then
//!   its [`NodeLoad`](crate::NodeLoad) every second (the heartbeat).
//! - The signalling node opens one bidirectional stream per
//!   [`Request`](crate::Request) and reads one [`Reply`].
//! - The node sends its [`NodeEvent`](crate::NodeEvent)s on one unidirectional stream.
//!
//! Authentication: both ends hold a shared secret. TLS here only encrypts (the
//! signalling node's certificate is self-signed); each end proves knowledge of the
//! secret with an HMAC over the other's nonce and the TLS session's exported keying
//! material, which binds the proof to this very connection (no relaying by a
//! man in the middle). See [`crate::auth`].

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::node::Reply;

/// Largest message accepted: an SDP offer with many m-lines fits many times over.
pub const MAX_FRAME: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("stream: {0}")]
    Io(String),
    #[error("frame of {0} bytes exceeds the limit")]
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
    read_frame_within(recv, MAX_FRAME).await
}

/// Largest message of the handshake, before the peer has proved anything.
pub const MAX_HANDSHAKE_FRAME: usize = 4 * 1024;

/// [`read_frame`] with a lower size limit (the handshake's).
pub async fn read_frame_within<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<T>, WireError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(WireError::Io(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
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

/// Signalling -> node: its nonce, for the node to prove the secret over.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
}

/// Node -> signalling: the node's proof, then what it offers; answered with
/// `Ok(Welcome)` or the refusal (`Err(ControlError)`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Register {
    pub mac: String,
    pub shards: usize,
    /// Most participants the node takes.
    pub capacity: usize,
    pub shard_addrs: Vec<SocketAddr>,
}

/// Signalling -> node, once the node's proof holds: the signalling node's own proof,
/// over the node's nonce.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Welcome {
    pub mac: String,
    /// It takes [`NodeEvent::Quality`](crate::NodeEvent::Quality) events (a signalling
    /// node older than them says nothing, and would stop reading at the first).
    #[serde(default)]
    pub quality: bool,
}
