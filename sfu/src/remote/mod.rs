//! The control API carried over QUIC (quinn) between a media node and the
//! signalling node: one connection per node, length-prefixed JSON messages.
//!
//! - The node connects and opens the control stream: authentication, then
//!   `Register` and a `Heartbeat` every second carrying its load.
//! - The signalling node opens one bidirectional stream per `Request` and reads
//!   one `Response`.
//! - The node sends its `NodeEvent`s on one unidirectional stream.
//!
//! Authentication: both ends hold a shared secret. TLS here only encrypts (the
//! signalling node's certificate is self-signed); each end proves knowledge of the
//! secret with an HMAC over the other's nonce and the TLS session's exported keying
//! material, which binds the proof to this very connection (no relaying by a
//! man in the middle).

pub mod auth;
pub mod client;
pub mod tls;
pub mod wire;
