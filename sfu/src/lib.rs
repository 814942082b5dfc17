//! knudepunkt's media node: a sharded WebRTC selective forwarding unit.
//!
//! - [`core`]: the routing core, sans-IO (rooms, tracks, subscriptions, allocator).
//! - [`peer`]: the WebRTC glue around one `str0m::Rtc` per participant.
//! - [`worker`]: a shard's peers and rooms as a sans-IO state machine (datagrams,
//!   commands and time in; datagrams, events and the next deadline out).
//! - [`shard`]: the I/O driver, one OS thread per core owning a socket and a worker.
//! - [`node`]: the control API that places rooms on shards and reports events.
//! - [`metrics`]: Prometheus metrics.

pub mod control;
pub mod core;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod placement;
pub mod remote;
pub mod shard;
pub mod worker;

pub use control::{ControlError, NodeEvent};
pub use node::{Joined, Load, Node, NodeConfig};
pub use peer::JoinKind;
