//! What a run's participants join, and the participant that joins each kind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use client::{Env, ParticipantResult};

use crate::sip::SipShare;

/// What the participants join.
#[derive(Clone, Debug)]
pub enum Target {
    /// knudepunkt's signalling node (the run's `http_base`/`ws_base`), WebRTC clients;
    /// a share of them SIP legs through its gateway, if given.
    Signalling { sip: Option<Arc<SipShare>> },
    /// The bare UDP relay baseline: plain-RTP clients, rooms spread over its shards.
    Relay { addr: SocketAddr, shards: u16 },
    /// Janus's videoroom plugin through its HTTP API at `base` (`http://HOST:PORT/janus`).
    Janus { base: String },
}

/// Take part in `room` as participant `id` of `target` until `deadline`.
pub async fn participant(
    target: &Target,
    env: Arc<Env>,
    room: String,
    id: u32,
    deadline: Instant,
    loud: bool,
) -> ParticipantResult {
    match target {
        Target::Signalling { sip: Some(sip) } if sip.take() => {
            crate::sip::participant(env, sip.gateway, room, id, deadline, loud).await
        }
        Target::Signalling { .. } => {
            client::websocket::participant(env, room, id, deadline, loud).await
        }
        Target::Relay { addr, shards } => {
            let relay = crate::plain::relay_addr(*addr, *shards, &room);
            crate::plain::participant(env, relay, room, id, deadline).await
        }
        Target::Janus { base } => {
            crate::janus::participant(env, base.clone(), room, id, deadline, loud).await
        }
    }
}
