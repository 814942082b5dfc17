//! Dial-out: a room calls a room system or phone (`POST /api/rooms/{room}/dial
//! {"uri"}`, handed to the gateway as a [`DialOut`]). The gateway offers what it
//! serves (PCMA, PCMU, G.722, Opus; VP8 and H.264 video; SDES-SRTP, or plain RTP
//! where that is allowed), and once the
//! far end answers (within [`RING_WAIT`]; a stopping gateway CANCELs), joins the room
//! as a trusted call (no PIN: an admin placed it) and carries it like an incoming one.
//! Re-INVITEs and UPDATEs are answered with the call's SDP, as for incoming calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rsipstack::dialog::dialog::DialogStateSender;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::StatusCode;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::answering::{carry, room_video, video_on, Answer, Answers};
use crate::call::Call;
use crate::driver::Leg;
use crate::driver::Media;
use crate::metrics::Metrics;
use crate::room::{CallClaims, RoomPeer};
use crate::sdp;
use crate::sip::SipConfig;

/// A call to place from a room.
#[derive(Debug)]
pub struct DialOut {
    pub room: String,
    /// `sip:` or `sips:` URI of the room system or phone.
    pub uri: rsipstack::sip::Uri,
    /// Placed over TLS (`sips:`, or `;transport=tls`): its media SRTP.
    pub tls: bool,
}

/// Longest URI taken (a SIP URI with parameters fits many times over).
const MAX_URI: usize = 256;

/// How long a dialled endpoint may ring before the call is given up (CANCEL).
pub const RING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Dial-out requests waiting for the gateway: more are refused (busy).
pub(crate) const DIALS_QUEUED: usize = 16;

/// Hands dial-out requests to a running gateway ([`crate::sip::Serving::dialer`]).
#[derive(Clone)]
pub struct Dialer {
    pub(crate) queue: mpsc::Sender<DialOut>,
    /// It places calls over TLS (it has trust anchors for the far ends, --sip-tls-ca).
    pub(crate) tls: bool,
}

impl Dialer {
    /// Ask the gateway to call `uri` into `room`; `Err` says why it will not, with
    /// the HTTP status for it (400: not a SIP URI; 503: the gateway is busy or
    /// stopping). The call is placed in the background.
    pub fn dial(&self, room: &str, uri: &str) -> Result<(), (u16, String)> {
        let bad = |why: String| (400, why);
        if uri.len() > MAX_URI || uri.chars().any(char::is_control) {
            return Err(bad(format!("a SIP URI of at most {MAX_URI} characters")));
        }
        let not_sip = || bad("not a SIP URI (sip:user@host)".into());
        let parsed = rsipstack::sip::Uri::try_from(uri).map_err(|_| not_sip())?;
        let scheme = parsed.scheme.as_ref().map(|s| s.to_string());
        if !matches!(scheme.as_deref(), Some("sip" | "sips")) || parsed.auth.is_none() {
            return Err(not_sip());
        }
        let tls = scheme.as_deref() == Some("sips")
            || parsed.params.iter().any(|p| {
                matches!(
                    p,
                    rsipstack::sip::uri::Param::Transport(rsipstack::sip::Transport::Tls)
                )
            });
        if tls && !self.tls {
            // Placing calls over TLS needs trust anchors for the far ends' certificates.
            let why = "this gateway places no calls over TLS (sips:): it needs \
                       --sip-tls-ca to check the far end's certificate with, and \
                       --sip-tls-cert for its own TLS listener";
            return Err(bad(why.into()));
        }
        self.queue
            .try_send(DialOut {
                room: room.to_owned(),
                uri: parsed,
                tls,
            })
            .map_err(|_| (503, "the SIP gateway is busy or stopping".to_owned()))
    }
}

/// What an outgoing call needs from its gateway.
pub(crate) struct Placing {
    pub(crate) dial: DialOut,
    pub(crate) config: SipConfig,
    pub(crate) dialogs: Arc<DialogLayer>,
    pub(crate) states: DialogStateSender,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) session: u64,
    /// Where the call's line goes once its dialog exists (the gateway's loop keeps it).
    pub(crate) lines: mpsc::UnboundedSender<(String, crate::sip::CallLine)>,
    /// The answers to re-INVITEs, by dialog id.
    pub(crate) answers: Answers,
    /// The gateway is stopping: a call still ringing is cancelled.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// Tells the gateway's loop the call ended (renamed to its dialog once it has one).
    pub(crate) done: crate::sip::Done,
}

impl Placing {
    pub(crate) async fn run(self) {
        let Placing {
            dial,
            config,
            dialogs,
            states,
            metrics,
            session,
            lines,
            answers,
            stop,
            mut done,
        } = self;
        let bind = |port| UdpSocket::bind(SocketAddr::new(config.media_ip, port));
        let (Ok(audio), Ok(video)) = (bind(0).await, bind(0).await) else {
            metrics.result("failed");
            tracing::warn!("dial-out failed: no RTP port");
            return;
        };
        let (Ok(local), Ok(video_local)) = (audio.local_addr(), video.local_addr()) else {
            return;
        };
        // SDES-SRTP over TLS, and where plain RTP is not allowed.
        let encrypted = dial.tls || !config.allow_plain_rtp;
        let offer = sdp::Offer::new(local, Some(video_local.port()), session, encrypted);
        // Where the far end reaches the gateway: its SIP port, on the media address
        // when it listens on all of them.
        let mut ours = config.bind;
        if ours.ip().is_unspecified() {
            ours.set_ip(config.media_ip);
        }
        let caller = format!("sip:knudepunkt@{ours}");
        let Ok(caller) = rsipstack::sip::Uri::try_from(caller.as_str()) else {
            return;
        };
        // Over TLS to the URI's host and port (5061 by default); the Contact names
        // the gateway's own TLS listener (the SIP port + 1), where the far end's
        // requests (its BYE, a re-INVITE) come when it does not reuse the connection.
        // A Contact with a transport is sent as it is (rsipstack would otherwise put
        // the first listener's address there, marked TLS).
        let destination = dial.tls.then(|| rsipstack::transport::SipAddr {
            r#type: Some(rsipstack::sip::Transport::Tls),
            addr: dial.uri.host_with_port.clone(),
        });
        let contact = if dial.tls {
            let tls = std::net::SocketAddr::new(ours.ip(), ours.port().saturating_add(1));
            let Ok(c) = rsipstack::sip::Uri::try_from(
                format!("sip:knudepunkt@{tls};transport=tls").as_str(),
            ) else {
                return;
            };
            c
        } else {
            caller.clone()
        };
        let option = InviteOption {
            caller: caller.clone(),
            callee: dial.uri.clone(),
            destination,
            contact,
            content_type: Some("application/sdp".into()),
            offer: Some(offer.sdp.clone().into_bytes()),
            ..Default::default()
        };
        let (dialog, ringing) = match dialogs.do_invite_async(option, states) {
            Ok(d) => d,
            Err(e) => {
                metrics.result("failed");
                // Its words name the far end: not at INFO.
                tracing::info!("dial-out failed");
                tracing::debug!("dial-out: {e}");
                return;
            }
        };
        let answered = tokio::select! {
            r = ringing => r,
            _ = stop.cancelled() => {
                let _ = dialog.cancel().await;
                metrics.result("refused");
                tracing::info!("dial-out cancelled: the gateway is stopping");
                return;
            }
            _ = tokio::time::sleep(RING_WAIT) => {
                let _ = dialog.cancel().await;
                metrics.result("refused");
                tracing::info!("dial-out not answered within {RING_WAIT:?}: cancelled");
                return;
            }
        };
        let (id, response) = match answered {
            Ok(Ok((id, Some(r)))) if r.status_code == StatusCode::OK => (id.to_string(), r),
            Ok(Ok((_, r))) => {
                metrics.result("refused");
                let status = r.map(|r| r.status_code.code()).unwrap_or(0);
                tracing::info!(status, "dial-out not answered");
                return;
            }
            Ok(Err(e)) => {
                metrics.result("failed");
                tracing::info!("dial-out failed");
                tracing::debug!("dial-out: {e}");
                return;
            }
            Err(_) => {
                metrics.result("failed");
                return;
            }
        };
        // From here the gateway's loop forgets the call (its line, its answers) by
        // its dialog when it ends.
        done.rename(&id);
        // The far end's answer, read as the offers of incoming calls are, with the
        // keys offered.
        let body = String::from_utf8_lossy(&response.body).into_owned();
        let leg = match offer.read(&body) {
            Ok(l) => l,
            Err(r) => {
                // As an incoming call whose offer is not served.
                metrics.result("refused");
                tracing::info!(
                    warning = r.warning,
                    "dial-out answer not served: {}",
                    r.text
                );
                let _ = dialog.bye().await;
                return;
            }
        };
        let (hangup_tx, hangup) = oneshot::channel();
        let (keys, _) = mpsc::channel(1);
        let (refreshed, _) = watch::channel(0);
        let (rekeys_tx, rekeys) = mpsc::channel(crate::sip::REKEYS_QUEUED);
        let fast_update = Arc::new(tokio::sync::Notify::new());
        let line = crate::sip::CallLine {
            hangup: hangup_tx,
            keys,
            fast_update: fast_update.clone(),
            refreshed,
            rekeys: rekeys_tx,
        };
        let _ = lines.send((id.clone(), line));
        // Re-INVITEs and UPDATEs (session refreshes, hold) get the call's SDP again.
        let video_port = leg.video.as_ref().map(|_| video_local.port());
        answers.lock().expect("answers").insert(
            id.clone(),
            Answer::new(leg.clone(), local, video_port, session),
        );
        // In the room under the far end's user part, masked like a caller's number.
        let user = dial.uri.auth.as_ref().map(|a| a.user.clone());
        let identity = crate::admission::name_of(None, user.as_deref());
        let claims = CallClaims {
            trusted: true,
            source: None,
        };
        let far_ip = leg.remote.map(|r| r.ip());
        let joined = RoomPeer::join_call(
            &config.api,
            &dial.room,
            &identity,
            claims,
            None,
            leg.video.is_some(),
        )
        .await;
        let joined = match joined {
            Ok(j) => j,
            Err(e) => {
                metrics.result("failed");
                tracing::info!("dial-out: the room could not be joined");
                tracing::debug!(room = dial.room, "dial-out join: {e}");
                let _ = dialog.bye().await;
                return;
            }
        };
        let Ok(call) = Call::new(leg.clone(), rand::random(), Instant::now()) else {
            metrics.result("failed");
            joined.leave().await;
            let _ = dialog.bye().await;
            return;
        };
        let audio_leg = Leg::new(audio, &call, far_ip);
        let mut leg_video = leg.video.clone();
        // A room of one codec: the answer's codec must be it (no transcoding).
        if let (Some(codec), Some(v)) = (room_video(&joined), leg_video.as_ref()) {
            if v.codec != codec {
                tracing::info!("dial-out: the far end's video is not its room's codec: audio only");
                leg_video = None;
            }
        }
        let video = leg_video.and_then(|v| {
            video_on(v, video, far_ip, &dialog, fast_update)
                .map_err(|e| tracing::warn!("dial-out goes on without video: {e}"))
                .ok()
        });
        if video.is_none() {
            // Answers to come refuse its line (port 0): nothing listens there.
            if let Some(a) = answers.lock().expect("answers").get_mut(&id) {
                a.drop_video();
            }
        }
        let media = Media {
            call,
            leg: audio_leg,
            video,
            rekeys,
        };
        carry(media, joined, &dialog, hangup, None, &metrics).await;
    }
}
