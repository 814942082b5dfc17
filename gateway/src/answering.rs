//! One INVITE on its way to being a call, and the call until it ends: the leg's RTP
//! port, the room joined (after the PIN prompt, if the caller must key one in), the
//! answer, the media ([`driver::run`]), and the call's end logged with its RTP
//! figures (never who called or which room).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCode};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::admission::{Attempt, Target};
use crate::call::Call;
use crate::driver::{self, Keyed, Leg, Media};
use crate::metrics::Metrics;
use crate::room::{CallClaims, Ended, Hangup, JoinFailure, RoomPeer};
use crate::sdp;
use crate::sip::SipConfig;
use crate::timer::SessionTimer;

/// A call's answer as it was last given, for re-INVITEs: the same media with the
/// `o=` version moved on each time (RFC 3264 §8).
pub(crate) struct Answer {
    audio: sdp::LegAudio,
    local: SocketAddr,
    /// The leg's video port, when it has video.
    video_port: Option<u16>,
    session: u64,
    version: u64,
    /// The session timer's interval, when the call has one.
    timer: Option<u32>,
}

impl Answer {
    /// The call goes on without video: answers to come refuse its line (port 0).
    pub(crate) fn drop_video(&mut self) {
        self.video_port = None;
        self.audio.video = None;
    }

    /// A call's first answer (version 1), with no session timer.
    pub(crate) fn new(
        audio: sdp::LegAudio,
        local: SocketAddr,
        video_port: Option<u16>,
        session: u64,
    ) -> Answer {
        Answer {
            audio,
            local,
            video_port,
            session,
            version: 1,
            timer: None,
        }
    }

    /// A re-offer's new SDES keys for the call (kept for the answers after it).
    pub(crate) fn rekeyed(&mut self, reoffer: &str) -> sdp::Rekey {
        if reoffer.trim().is_empty() {
            return sdp::Rekey::default();
        }
        self.audio.rekeyed(reoffer)
    }

    pub(crate) fn next(&mut self) -> String {
        self.version += 1;
        self.audio
            .answer(self.local, self.video_port, self.session, self.version)
    }

    /// A refresh came: the interval it asked replaces the call's (when the call has
    /// a timer); the interval now.
    pub(crate) fn refresh(&mut self, asked: Option<u32>) -> Option<u32> {
        if let (Some(t), Some(a)) = (self.timer.as_mut(), asked) {
            *t = a;
        }
        self.timer
    }
}

/// The headers a 2xx carries for a call with a session timer: its interval, the
/// caller refreshing, and that the caller must (RFC 4028 §9).
pub(crate) fn timer_headers(timer: Option<u32>) -> Vec<Header> {
    match timer {
        Some(s) => vec![
            Header::SessionExpires(crate::timer::header_value(s).into()),
            Header::Require("timer".into()),
        ],
        None => Vec::new(),
    }
}

pub(crate) type Answers = Arc<std::sync::Mutex<HashMap<String, Answer>>>;

/// One INVITE on its way to being a call.
pub(crate) struct Answering {
    pub(crate) dialog: InviteDialog,
    pub(crate) id: String,
    pub(crate) target: Target,
    /// The leg's audio from the caller's offer, or a delayed offer's (the gateway
    /// offers in its 200 and reads the caller's answer in the ACK).
    pub(crate) audio: CallerOffer,
    pub(crate) config: SipConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) answers: Answers,
    /// Counted against the caller's address until the join is decided.
    pub(crate) attempt: Option<Attempt>,
    pub(crate) session: u64,
    pub(crate) signalling_ip: Option<IpAddr>,
    /// From a `--sip-trust` network: no PIN asked.
    pub(crate) trusted: bool,
    /// The caller's INVITE allows INFO: it may key in by SIP INFO (dtmf-relay).
    pub(crate) info_keys: bool,
    /// The session timer's interval (RFC 4028), when the caller supports them.
    pub(crate) timer: Option<u32>,
    /// A re-INVITE or UPDATE refreshed the call: the interval it asked.
    pub(crate) refreshed: tokio::sync::watch::Receiver<u32>,
    /// A re-INVITE or UPDATE carried new SDES keys of the caller's.
    pub(crate) rekeys: mpsc::Receiver<sdp::Rekey>,
    /// The caller asked for a keyframe by SIP INFO (`picture_fast_update`).
    pub(crate) fast_update: Arc<tokio::sync::Notify>,
}

/// What an INVITE offered.
pub(crate) enum CallerOffer {
    /// An SDP offer, and the leg's audio chosen from it.
    Sdp(Box<sdp::LegAudio>),
    /// None: the gateway offers in its 200, encrypted where SRTP is required.
    Delayed { encrypted: bool },
}

/// Wrong PINs one call may key in before it is ended.
const PIN_TRIES: u32 = 3;

/// How long a call may take to join its room before the caller gets a 504.
const JOIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

impl Answering {
    pub(crate) async fn run(
        self,
        mut hangup: oneshot::Receiver<Hangup>,
        mut info_keys: mpsc::Receiver<char>,
    ) {
        let Answering {
            dialog,
            id,
            target,
            audio,
            config,
            metrics,
            answers,
            attempt,
            session,
            signalling_ip,
            trusted,
            info_keys: keys_by_info,
            timer,
            refreshed,
            rekeys,
            fast_update,
        } = self;
        let _ = dialog.ringing(None, None);
        let bound = UdpSocket::bind(SocketAddr::new(config.media_ip, 0))
            .await
            .and_then(|s| Ok((s.local_addr()?, s)));
        let (local, socket) = match bound {
            Ok(b) => b,
            Err(e) => {
                metrics.result("failed");
                tracing::warn!("no RTP port for a call: {e}");
                let _ = dialog.reject(Some(StatusCode::ServiceUnavailable), None);
                return;
            }
        };
        // Answered once: at once for a delayed offer (the 200 carries the gateway's
        // offer), when the caller must key in a PIN first (a lobby), or when the room
        // is joined.
        let mut answered = false;
        // When the 200 went out: the caller's session timer runs from then.
        let mut answered_at = None;
        // A delayed offer's video port: offered in the 200, so bound before it.
        let mut offered_video = None;
        // Negotiated in the ACK (a delayed offer): the caller's answer took every
        // video format it lists, so the room's codec may be fitted to it later.
        let by_ack = matches!(audio, CallerOffer::Delayed { .. });
        let mut audio = match audio {
            CallerOffer::Sdp(a) => *a,
            CallerOffer::Delayed { encrypted } => {
                let Ok(video) = UdpSocket::bind(SocketAddr::new(config.media_ip, 0)).await else {
                    metrics.result("failed");
                    tracing::warn!("no video port for a call");
                    let _ = dialog.reject(Some(StatusCode::ServiceUnavailable), None);
                    return;
                };
                let offered = (local, &video, encrypted);
                match delayed_offer(&dialog, offered, session, timer, &mut hangup).await {
                    Some(a) => {
                        answered = true;
                        answered_at = Some(Instant::now());
                        let video_port = video.local_addr().ok().map(|v| v.port());
                        let video_port = video_port.filter(|_| a.video.is_some());
                        // Kept only for a video the answer took.
                        offered_video = a.video.is_some().then_some(video);
                        answers.lock().expect("answers").insert(
                            id.clone(),
                            Answer {
                                audio: a.clone(),
                                local,
                                video_port,
                                session,
                                version: 1,
                                timer,
                            },
                        );
                        a
                    }
                    None => {
                        metrics.result("refused");
                        return;
                    }
                }
            }
        };
        let mut call = match Call::new(audio.clone(), rand::random(), Instant::now()) {
            Ok(c) => c,
            Err(e) => {
                metrics.result("failed");
                tracing::warn!("call set-up failed: {e}");
                if answered {
                    let _ = dialog.bye().await;
                } else {
                    let _ = dialog.reject(Some(StatusCode::ServerInternalError), None);
                }
                return;
            }
        };
        let mut leg = Leg::new(socket, &call, signalling_ip);
        // The leg's video, when the caller offered one the gateway takes: a port of
        // its own, and SIP INFO for keyframes where RTCP feedback was not offered.
        let mut video = match audio.video.clone() {
            Some(v) => {
                let made = match offered_video.take() {
                    Some(socket) => video_on(v, socket, signalling_ip, &dialog, fast_update),
                    None => {
                        leg_video(v, config.media_ip, signalling_ip, &dialog, fast_update).await
                    }
                };
                match made {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::warn!("the call goes on without video: {e}");
                        // Answers to come refuse its line (port 0).
                        audio.video = None;
                        if let Some(a) = answers.lock().expect("answers").get_mut(&id) {
                            a.drop_video();
                        }
                        None
                    }
                }
            }
            None => None,
        };
        let video_port = video.as_ref().and_then(|v| v.port.local_port());
        let answer = |dialog: &InviteDialog, audio: &sdp::LegAudio| {
            let sdp = audio.answer(local, video_port, session, 1);
            let mut headers = timer_headers(timer);
            headers.push(Header::ContentType("application/sdp".into()));
            let ok = dialog.accept(Some(headers), Some(sdp.into_bytes())).is_ok();
            if ok {
                answers.lock().expect("answers").insert(
                    id.clone(),
                    Answer {
                        audio: audio.clone(),
                        local,
                        video_port,
                        session,
                        version: 1,
                        timer,
                    },
                );
            }
            ok
        };
        // Ends a call that could not go on: a final response if unanswered, else BYE.
        let end = |dialog: InviteDialog, answered: bool, status: StatusCode| async move {
            if answered {
                let _ = dialog.bye().await;
            } else {
                let _ = dialog.reject(Some(status), None);
            }
        };
        let claims = CallClaims {
            trusted,
            source: signalling_ip,
        };
        let mut pin = target.pin.clone();
        let mut wrong = 0;
        // The join, unless the caller gives up (CANCEL, BYE) or it takes too long; a
        // caller who can key in (telephone-event offered) and needs a PIN gets the
        // prompt and up to three tries.
        let joined = loop {
            let join = RoomPeer::join_call(
                &config.api,
                &target.room,
                &target.identity,
                claims,
                pin.as_deref(),
                video.is_some(),
            );
            let joined = tokio::select! {
                j = tokio::time::timeout(JOIN_DEADLINE, join) => j,
                h = &mut hangup => {
                    // The caller gave up (487), or the gateway is stopping (503).
                    let status = match h {
                        Ok(Hangup::Closing) => StatusCode::ServiceUnavailable,
                        _ => StatusCode::RequestTerminated,
                    };
                    end(dialog, answered, status).await;
                    return;
                }
            };
            let (code, message) = match joined {
                Ok(Ok(j)) => break j,
                Ok(Err(JoinFailure::Refused { code, message })) => (code, message),
                Ok(Err(JoinFailure::NotAllowed(why))) => {
                    metrics.result("failed");
                    // The node's words on the gateway's own token: no room, no caller.
                    tracing::warn!("call failed: the signalling node refused the gateway: {why}");
                    end(dialog, answered, StatusCode::ServiceUnavailable).await;
                    return;
                }
                Ok(Err(JoinFailure::Unreachable(why))) => {
                    metrics.result("failed");
                    tracing::warn!("call failed: the room could not be reached");
                    tracing::debug!(room = target.room, "join failed: {why}");
                    end(dialog, answered, StatusCode::ServiceUnavailable).await;
                    return;
                }
                Err(_) => {
                    metrics.result("failed");
                    tracing::warn!("call failed: joining its room took over {JOIN_DEADLINE:?}");
                    end(dialog, answered, StatusCode::ServerTimeOut).await;
                    return;
                }
            };
            if code == "pin_wrong" {
                wrong += 1;
                if let Some(a) = attempt.as_ref() {
                    a.failed();
                }
            }
            let keys = audio.dtmf_pt.is_some() || keys_by_info;
            let again = matches!(code.as_str(), "pin_required" | "pin_wrong");
            if again && keys && wrong < PIN_TRIES {
                if !answered {
                    if !answer(&dialog, &audio) {
                        return;
                    }
                    answered = true;
                    answered_at = Some(Instant::now());
                }
                match driver::collect_pin(&mut call, &mut leg, &mut hangup, &mut info_keys).await {
                    Keyed::Pin(p) => {
                        pin = Some(p);
                        continue;
                    }
                    Keyed::Nothing => {
                        metrics.result("refused");
                        tracing::info!("call refused: no PIN keyed in");
                        end(dialog, answered, StatusCode::Forbidden).await;
                        return;
                    }
                    // The caller is gone: nothing to tell them.
                    Keyed::Hangup(Hangup::Caller) => return,
                    Keyed::Hangup(Hangup::Closing) => {
                        end(dialog, answered, StatusCode::ServiceUnavailable).await;
                        return;
                    }
                }
            }
            metrics.result("refused");
            tracing::info!(code, "call refused: the room would not take it");
            tracing::debug!(room = target.room, "join refused: {message}");
            let status = match code.as_str() {
                "pin_wrong" | "pin_required" | "pin_locked" | "no_pin" => StatusCode::Forbidden,
                "room_full" | "busy" => StatusCode::BusyHere,
                // The node is stopping (a trunk tries another route) or failed.
                "draining" | "error" => StatusCode::ServiceUnavailable,
                _ => StatusCode::NotFound,
            };
            end(dialog, answered, status).await;
            return;
        };
        drop(attempt);
        // The caller may have hung up while the room was joined.
        match hangup.try_recv() {
            Ok(Hangup::Caller) => {
                joined.leave().await;
                return;
            }
            Ok(Hangup::Closing) => {
                joined.leave().await;
                end(dialog, answered, StatusCode::ServiceUnavailable).await;
                return;
            }
            Err(_) if matches!(dialog.state(), DialogState::Terminated(..)) => {
                joined.leave().await;
                return;
            }
            Err(_) => {}
        }
        // A room of one video codec: the leg carries it, or is refused (no transcoding).
        if let (Some(codec), Some(v)) = (room_video(&joined), video.as_mut()) {
            if v.video.leg().codec != codec {
                if (!answered || by_ack) && v.video.fit(codec) {
                    audio.video = Some(v.video.leg().clone());
                    if let Some(a) = answers.lock().expect("answers").get_mut(&id) {
                        a.audio.video = audio.video.clone();
                    }
                } else if answered {
                    // The lobby's answer named the caller's codec: no video then, and
                    // its line refused in the answers to come (port 0).
                    tracing::info!("the call's video is not its room's codec: audio only");
                    video = None;
                    audio.video = None;
                    if let Some(a) = answers.lock().expect("answers").get_mut(&id) {
                        a.drop_video();
                    }
                } else {
                    metrics.result("refused");
                    tracing::info!("call refused: its video is not its room's codec");
                    joined.leave().await;
                    let name = match codec {
                        sdp::VideoCodec::H264 => "H.264 (packetization-mode 1)",
                        sdp::VideoCodec::Vp8 => "VP8",
                    };
                    let why = format!("SIP;cause=488;text=\"the room's video is {name}\"");
                    let _ = dialog.reject(Some(StatusCode::NotAcceptableHere), Some(why));
                    return;
                }
            }
        }
        if !answered && !answer(&dialog, &audio) {
            joined.leave().await;
            return;
        }
        let answered_at = answered_at.unwrap_or_else(Instant::now);
        let timer = timer.map(|seconds| (SessionTimer::new(seconds, answered_at), refreshed));
        let media = Media {
            call,
            leg,
            video: video.take(),
            rekeys,
        };
        carry(media, joined, &dialog, hangup, timer, &metrics).await;
    }
}

/// An answered call (either way), carried until one side ends it; then counted,
/// logged with its RTP figures (never who called or which room), and ended with a
/// BYE unless the other side hung up.
pub(crate) async fn carry(
    media: Media,
    joined: RoomPeer,
    dialog: &InviteDialog,
    hangup: oneshot::Receiver<Hangup>,
    timer: Option<(SessionTimer, tokio::sync::watch::Receiver<u32>)>,
    metrics: &Metrics,
) {
    metrics.result("answered");
    metrics.calls_active.inc();
    let started = Instant::now();
    let codec = media.call.leg().codec;
    let (ended, stats, video_stats) = driver::run(media, joined, hangup, timer, metrics).await;
    metrics.calls_active.dec();
    let expected = stats.leg_packets + stats.leg_lost;
    if expected > 0 {
        metrics
            .leg_loss_ratio
            .observe(stats.leg_lost as f64 / expected as f64);
        metrics.leg_jitter.observe(stats.leg_jitter_max_s);
    }
    metrics.leg_ignored.inc_by(stats.leg_ignored);
    tracing::info!(
        codec = ?codec,
        seconds = started.elapsed().as_secs(),
        leg_packets = stats.leg_packets,
        leg_lost = stats.leg_lost,
        leg_jitter_ms = (stats.leg_jitter_max_s * 1000.0).round(),
        leg_sent = stats.leg_sent,
        room_frames = stats.room_frames_in,
        video_to_room = video_stats.frames_to_room,
        video_dropped = video_stats.frames_dropped,
        video_to_leg = video_stats.frames_to_leg,
        video_switches = video_stats.switches,
        ended = ?ended,
        "call ended"
    );
    if !matches!(ended, Ended::Hangup) {
        match ended {
            // Answered, then lost: told apart from calls that never joined.
            Ended::Failed(_) => metrics.result("dropped"),
            // No refresh came: the far end is gone (RFC 4028).
            Ended::Expired => metrics.result("expired"),
            _ => {}
        }
        let _ = dialog.bye().await;
    }
}

/// How long a delayed offer's ACK (with the caller's answer) may take: RFC 3261's
/// 64*T1 would be 32 s; a caller that answers at all does so at once.
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A delayed-offer INVITE: the gateway's offer goes in its 200 (audio, and video on
/// `video`'s port; SRTP when `encrypted`), and the caller's answer comes in the ACK.
/// `None` (the call ended: BYE, or the caller's CANCEL or BYE) when no usable answer
/// came.
async fn delayed_offer(
    dialog: &InviteDialog,
    (local, video, encrypted): (SocketAddr, &UdpSocket, bool),
    session: u64,
    timer: Option<u32>,
    hangup: &mut oneshot::Receiver<Hangup>,
) -> Option<sdp::LegAudio> {
    let mut headers = timer_headers(timer);
    headers.push(Header::ContentType("application/sdp".into()));
    let video_port = video.local_addr().ok().map(|v| v.port());
    let offer = sdp::Offer::new(local, video_port, session, encrypted);
    if dialog
        .accept(Some(headers), Some(offer.sdp.clone().into_bytes()))
        .is_err()
    {
        return None;
    }
    let end = tokio::time::Instant::now() + ACK_WAIT;
    loop {
        match dialog.state() {
            DialogState::Confirmed(..) => break,
            DialogState::Terminated(..) => return None,
            _ => {}
        }
        tokio::select! {
            h = &mut *hangup => {
                // The 200 went out: a stopping gateway says goodbye; a caller who
                // hung up needs nothing.
                if let Ok(Hangup::Closing) = h {
                    let _ = dialog.bye().await;
                }
                return None;
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
        if tokio::time::Instant::now() >= end {
            tracing::info!("call failed: no ACK with an answer to the gateway's offer");
            let _ = dialog.bye().await;
            return None;
        }
    }
    let answer = dialog
        .last_remote_ack()
        .and_then(|ack| String::from_utf8(ack.body).ok())
        .unwrap_or_default();
    // The answer says which codec, where, and (to an encrypted offer) its key.
    match offer.read(&answer) {
        Ok(a) => Some(a),
        Err(r) => {
            tracing::info!(
                warning = r.warning,
                "call refused: its answer in the ACK: {}",
                r.text
            );
            let _ = dialog.bye().await;
            None
        }
    }
}

/// The room's one video codec, as the node said when the call joined.
pub(crate) fn room_video(joined: &RoomPeer) -> Option<sdp::VideoCodec> {
    match joined.joined()["video_codec"].as_str()? {
        "h264" => Some(sdp::VideoCodec::H264),
        "vp8" => Some(sdp::VideoCodec::Vp8),
        _ => None,
    }
}

/// RFC 5168's request for a keyframe, in a SIP INFO.
const PICTURE_FAST_UPDATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n\
    <media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder>\
    </vc_primitive></media_control>\r\n";

/// A call's video: its port, and a task that sends the caller keyframe requests by
/// SIP INFO in the call's dialog (it ends with the call, when the sender is dropped).
async fn leg_video(
    leg: sdp::LegVideo,
    media_ip: IpAddr,
    signalling_ip: Option<IpAddr>,
    dialog: &InviteDialog,
    caller_asks: Arc<tokio::sync::Notify>,
) -> Result<driver::CallVideo, String> {
    let socket = UdpSocket::bind(SocketAddr::new(media_ip, 0))
        .await
        .map_err(|e| format!("no video port: {e}"))?;
    video_on(leg, socket, signalling_ip, dialog, caller_asks)
}

/// [`leg_video`] on a port bound already (dial-out offers it before the answer).
pub(crate) fn video_on(
    leg: sdp::LegVideo,
    socket: UdpSocket,
    signalling_ip: Option<IpAddr>,
    dialog: &InviteDialog,
    caller_asks: Arc<tokio::sync::Notify>,
) -> Result<driver::CallVideo, String> {
    let video = crate::video::Video::new(leg, rand::random())?;
    let port = driver::VideoPort::new(socket, &video, signalling_ip);
    let (fast_update, mut asked) = mpsc::channel::<()>(1);
    let dialog = dialog.clone();
    tokio::spawn(async move {
        while asked.recv().await.is_some() {
            let headers = vec![Header::ContentType("application/media_control+xml".into())];
            let body = PICTURE_FAST_UPDATE.as_bytes().to_vec();
            let _ = dialog.info(Some(headers), Some(body)).await;
        }
    });
    Ok(driver::CallVideo {
        video,
        port,
        fast_update,
        caller_asks,
    })
}
