//! knudepunkt's load generator: real WebRTC clients (str0m) joining through the
//! signalling node's public API, VDX-shaped scenarios, explicit quality thresholds,
//! and reports for people (table, charts) and machines (JSON).
//!
//! - [`target`]: what a run's participants join: knudepunkt through its WebSocket API
//!   (the `client` crate's participant), Janus's videoroom ([`janus`]), or the bare UDP
//!   relay with plain RTP ([`plain`], the capacity benchmark's baseline). The WebRTC
//!   peer, its media and measurements are the `client` crate's.
//! - [`thresholds`], [`validity`]: how streams are judged, and whether the run could
//!   offer its load at all.
//! - [`sip`]: a share of a run's participants dialling in through the SIP gateway as
//!   plain-RTP legs (`--sip-share`).
//! - [`model`], [`runner`], [`report`], [`metrics`]: scenarios, runs and their output;
//!   [`sched`]: leaving the cores to a server beside it.

pub mod janus;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod plain;
pub mod report;
pub mod runner;
pub mod sched;
pub mod sip;
pub mod target;
pub mod thresholds;
pub mod validity;
