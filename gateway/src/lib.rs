//! knudepunkt's SIP gateway: room systems and phones dial `sip:ROOM@host` and take
//! part in the room as one participant each. A call joins its room through the
//! signalling node's public API, as a browser does, with one WebRTC peer connection
//! (a str0m peer) towards the room's media node: the media node never sees SIP, and
//! mixing audio stays off its packet shards.
//!
//! - [`sip`]: the SIP side on `rsipstack` (pinned exactly: an RFC 3261 transaction
//!   and dialog layer over UDP and TCP, MIT, kept up; ezk-sip was the alternative,
//!   but its default media stack pulls in OpenSSL and libsrtp of its own).
//! - `admission`: who may call into which room (PINs, trusted networks, the
//!   request's real source); `answering`: one INVITE on its way to being a call.
//! - [`sdp`]: the caller's offer read (`ezk-sdp-types`), the answer written;
//!   [`srtp`]: SDES-SRTP for legs that encrypt (`rtc-srtp`).
//! - [`call`]: one call's media, sans-IO (leg RTP and room Opus in, time in; leg RTP
//!   and room Opus out), with [`g711`], G.722 (the `audio-codec` crate), [`mix`] and [`rtp`].
//! - [`room`]: the call's participant in its room (a str0m peer in RTP mode and its
//!   signalling), the room's videos made whole frames in [`frames`];
//!   [`driver`]: a call's sockets and clock around [`call`], and the PIN prompt.
//! - [`video`]: one call's video, sans-IO (the room's VP8 frames and the caller's
//!   RTP in; the leg's RTP, the caller's frames and keyframe requests out), with
//!   [`vp8`] (RFC 7741 on the leg) and [`h264`] (RFC 6184, with `rtc-rtp`); [`rtcp`]:
//!   the caller's keyframe requests, loss reports and TMMBR.
//! - [`outbound`]: dial-out, a room calling a room system ([`outbound::Dialer`]).
//! - [`digest`]: digest authentication of a trunk (`--sip-auth-user`), the other
//!   way to trust a caller besides `--sip-trust`.
//! - [`register`]: registration with a trunk or registrar (`--sip-register`).
//! - [`keys`]: keys pressed in SIP INFO (dtmf-relay).
//! - [`timer`]: RFC 4028 session timers (a call no one refreshes is hung up).
//! - [`metrics`]: calls by result, the mix's duration, the legs' loss and jitter.

mod admission;
mod answering;
pub mod call;
pub mod dials;
pub mod digest;
pub mod driver;
pub mod frames;
pub mod g711;
pub mod h264;
pub mod keys;
pub mod metrics;
pub mod mix;
pub mod outbound;
pub mod register;
pub mod room;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod srtp;
pub mod timer;
pub mod tone;
pub mod video;
pub mod vp8;

/// Stops the gateway ([`sip::spawn`]) when cancelled.
pub use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM (systemd, Kubernetes) or SIGINT (Ctrl-C): what stops a process
/// that carries calls, which then ends each with a BYE rather than going silent.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
