//! knudepunkt's media node: a sharded WebRTC selective forwarding unit.
//!
//! - [`core`]: the routing core, sans-IO (rooms, tracks, subscriptions, allocator).
//! - [`peer`]: the WebRTC glue around one `str0m::Rtc` per participant.
//! - [`worker`]: a shard's peers and rooms as a sans-IO state machine (datagrams,
//!   commands and time in; datagrams, events and the next deadline out).
//! - [`shard`]: the I/O driver, one OS thread per core owning a socket and a worker.
//! - [`node`]: the node's handle: places rooms on shards, joins, reports events;
//!   [`requests`] carries out the `control` crate's requests on it (`control::MediaNode`).
//! - [`command`]: what the node asks of a shard.
//! - [`backlog`]: the events a shard holds for a lagging control plane.
//! - [`remote`]: the node on its own machine, registered with a signalling node.
//! - [`metrics`]: Prometheus metrics.

pub mod backlog;
pub mod command;
pub mod core;
pub mod dtls;
pub mod links;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod placement;
pub mod remote;
pub mod requests;
pub mod shard;
pub mod tcp;
pub mod worker;

pub use control::{ControlError, JoinKind, NodeEvent, NodeLoad};
pub use node::{HostCandidates, Joined, Node, NodeConfig};
