//! knudepunkt's client peer: a real str0m WebRTC client as the product's own users of
//! the public protocols need it (the load generator; later the SIP gateway, the tests
//! and the benches). Full WebRTC (ICE, DTLS-SRTP, TWCC feedback, NACK/RTX, keyframe
//! requests answered), run in str0m's RTP mode.
//!
//! - [`peer`]: one str0m peer connection, sans-IO (datagrams and time in; transmits,
//!   its next deadline and measurements out); publishes Opus and VP8/H.264 simulcast,
//!   every frame carrying a probe ([`media`]), and measures every frame it receives
//!   ([`frames`], [`stats`]). [`udp`] is its driver on a UDP socket.
//! - [`websocket`]: a participant joining through the signalling node's WebSocket API;
//!   [`whip`]: publishing over WHIP and viewing over WHEP.
//! - [`env`]: what the clients of a run share, and one participant's result;
//!   [`slots`] and [`sendlog`]: when frames were due and when they really left, so that
//!   a client that fell behind is seen.

pub mod env;
pub mod frames;
pub mod media;
pub mod peer;
pub mod publish;
pub mod receive;
pub mod sendlog;
pub mod slots;
pub mod stats;
pub mod udp;
pub mod websocket;
pub mod whip;

pub use env::{Counters, Env, Impairment, ParticipantResult};

#[cfg(test)]
mod tests;
