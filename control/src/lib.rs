//! knudepunkt's control API: what the signalling node and its media nodes say to each
//! other, and nothing of how media flows (no str0m here). The signalling node builds
//! on this crate alone; a media node implements [`MediaNode`] for itself and speaks the
//! QUIC protocol of [`wire`] when it runs on another machine.
//!
//! - [`ids`]: participants, tracks, layers, join kinds, preferences, figures, load.
//! - [`node`]: [`Request`], [`Response`] and the [`MediaNode`] trait over the
//!   embedded node and [`remote::RemoteNode`].
//! - [`event`]: [`NodeEvent`], what a media node reports.
//! - [`error`]: [`ControlError`], why a request failed.
//! - [`secret`]: what shared secret is strong enough, and a fresh one.
//! - [`wire`], [`handshake`], [`auth`], [`tls`]: the QUIC protocol, its first
//!   messages, the secret's proof bound to the connection, and TLS.

pub mod auth;
pub mod error;
pub mod event;
pub mod handshake;
pub mod ids;
pub mod node;
pub mod remote;
pub mod secret;
pub mod tls;
pub mod wire;

pub use error::ControlError;
pub use event::{NodeEvent, SlotTrack};
pub use ids::{
    JoinKind, JoinMedia, Kind, Layer, NodeLoad, ParticipantId, Preference, RoomFigures, RoomVideo,
    TrackId, TrackSource,
};
pub use node::{MediaNode, Pending, Reply, Request, Response};

#[cfg(test)]
mod tests;
