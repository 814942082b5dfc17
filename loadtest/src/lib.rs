//! knudepunkt's load generator: real WebRTC clients (str0m) joining through the
//! signalling node's public API, VDX-shaped scenarios, explicit quality thresholds,
//! and reports for people (table, charts) and machines (JSON).
//!
//! - [`client`]: a participant through knudepunkt's WebSocket API; [`janus`]: the same
//!   through Janus's videoroom; [`plain`]: plain RTP through the bare UDP relay (the
//!   capacity benchmark's baseline). [`peer`] is their shared WebRTC peer.
//! - [`media`], [`stats`], [`thresholds`]: what is sent, measured and judged.
//! - [`model`], [`runner`], [`report`], [`metrics`]: scenarios, runs and their output;
//!   [`sched`]: leaving the cores to a server beside it.

pub mod client;
pub mod frames;
pub mod janus;
pub mod media;
pub mod metrics;
pub mod model;
pub mod peer;
pub mod plain;
pub mod report;
pub mod runner;
pub mod sched;
pub mod sendlog;
pub mod slots;
pub mod stats;
pub mod thresholds;
pub mod validity;
