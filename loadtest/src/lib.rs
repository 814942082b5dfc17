//! knudepunkt's load generator: real WebRTC clients (str0m) joining through the
//! signalling node's public API, VDX-shaped scenarios, explicit quality thresholds,
//! and reports for people (table, charts) and machines (JSON).

pub mod client;
pub mod janus;
pub mod media;
pub mod metrics;
pub mod model;
pub mod peer;
pub mod plain;
pub mod report;
pub mod runner;
pub mod stats;
pub mod thresholds;
