//! A call's I/O around its sans-IO core ([`Call`]): the leg's RTP socket ([`Leg`]),
//! the room's peer ([`RoomPeer`]) and the 20 ms clock; and the PIN prompt before the
//! room is joined ([`collect_pin`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::call::{Call, CallStats, Output};
use crate::metrics::Metrics;
use crate::room::{Ended, Hangup, RoomPeer, Woke};
use crate::timer::SessionTimer;
use crate::video::{self, Video, VideoOutput, VideoStats};

/// The leg's RTP socket, and where its packets go: the offer's address until the
/// caller's own RTP arrives, then where it comes from (symmetric RTP, RFC 4961: a
/// caller behind NAT is reached where it sends from). Only the offer's address, or
/// one on the IP the caller's SIP came from, may be latched, and only by a packet the
/// call takes as the caller's (on an SRTP leg: one that authenticated): someone
/// probing ports elsewhere can neither speak into the room nor hear it.
pub struct Leg {
    socket: UdpSocket,
    offered: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    latched: bool,
    signalling_ip: Option<IpAddr>,
    buf: Vec<u8>,
}

/// The leg's video port: RTP both ways, and the caller's RTCP (muxed, or sent here
/// because the answer's `a=rtcp` names this port). Latched like the audio.
pub struct VideoPort {
    socket: UdpSocket,
    offered: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    latched: bool,
    rtcp_latched: bool,
    signalling_ip: Option<IpAddr>,
    buf: Vec<u8>,
}

impl VideoPort {
    pub fn new(socket: UdpSocket, video: &Video, signalling_ip: Option<IpAddr>) -> VideoPort {
        VideoPort {
            socket,
            offered: video.leg().remote,
            remote: video.leg().remote,
            rtcp: video.leg().rtcp,
            rtcp_mux: video.leg().rtcp_mux,
            latched: false,
            rtcp_latched: false,
            signalling_ip,
            buf: vec![0; 2048],
        }
    }

    pub fn local_port(&self) -> Option<u16> {
        self.socket.local_addr().ok().map(|a| a.port())
    }

    fn send(&self, packet: &[u8], rtcp: bool) {
        if let Some(to) = if rtcp { self.rtcp } else { self.remote } {
            let _ = self.socket.try_send_to(packet, to);
        }
    }

    /// The next datagram, into `video` if it comes from the caller. Cancel-safe.
    async fn receive(&mut self, video: &mut Video) {
        let Ok((n, from)) = self.socket.recv_from(&mut self.buf).await else {
            return;
        };
        let allowed = self.remote == Some(from)
            || self.offered.is_some_and(|o| o.ip() == from.ip())
            || Some(from.ip()) == self.signalling_ip;
        if !allowed {
            video.stats.ignored += 1;
            return;
        }
        let data = &self.buf[..n];
        let rtp = n >= 2 && !(192..=223).contains(&data[1]);
        if !video.on_leg_datagram(Instant::now(), data) {
            return;
        }
        // Symmetric RTP and RTCP (RFC 4961): the caller's video and its keyframe
        // requests go where they come from (a caller behind NAT is reached there).
        if rtp && !self.latched {
            self.latched = true;
            self.remote = Some(from);
            if self.rtcp_mux {
                self.rtcp = Some(from);
            }
        } else if !rtp && !self.rtcp_latched {
            self.rtcp_latched = true;
            self.rtcp = Some(from);
        }
    }
}

/// A call's video, when its leg has one: the sans-IO core and its port.
pub struct CallVideo {
    pub video: Video,
    pub port: VideoPort,
    /// Keyframe requests for the caller by SIP INFO (`picture_fast_update`): the
    /// SIP side sends them in the call's dialog.
    pub fast_update: mpsc::Sender<()>,
    /// The caller asked for a keyframe by SIP INFO.
    pub caller_asks: std::sync::Arc<tokio::sync::Notify>,
}

impl Leg {
    pub fn new(socket: UdpSocket, call: &Call, signalling_ip: Option<IpAddr>) -> Leg {
        Leg {
            socket,
            offered: call.leg().remote,
            remote: call.leg().remote,
            latched: false,
            signalling_ip,
            buf: vec![0; 2048],
        }
    }

    fn send(&self, packet: &[u8]) {
        if let Some(to) = self.remote {
            let _ = self.socket.try_send_to(packet, to);
        }
    }

    /// The next datagram, into `call` if it is the caller's. Cancel-safe.
    async fn receive(&mut self, call: &mut Call) {
        let Ok((n, from)) = self.socket.recv_from(&mut self.buf).await else {
            return;
        };
        let data = &self.buf[..n];
        let may_latch = self.offered.is_some_and(|o| o.ip() == from.ip())
            || Some(from.ip()) == self.signalling_ip;
        if self.latched && self.remote == Some(from) {
            call.on_leg_datagram(Instant::now(), data);
        } else if !self.latched && may_latch {
            let taken = call.stats.leg_packets + call.stats.dtmf_packets;
            call.on_leg_datagram(Instant::now(), data);
            if call.stats.leg_packets + call.stats.dtmf_packets > taken {
                self.latched = true;
                self.remote = Some(from);
            }
        } else {
            call.stats.leg_ignored += 1;
        }
    }
}

/// Longest wait for a PIN's first key, and between keys.
const PIN_WAIT: Duration = Duration::from_secs(15);
const KEY_WAIT: Duration = Duration::from_secs(4);

/// What came of a PIN prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum Keyed {
    /// The keys up to `#` (or up to a pause of [`KEY_WAIT`] after the last one).
    Pin(String),
    /// Nothing within [`PIN_WAIT`].
    Nothing,
    /// The SIP side ended the call meanwhile (`hangup` fired).
    Hangup(Hangup),
}

/// The caller keys in a PIN while hearing the prompt, by RFC 4733 events or SIP INFO
/// (`info_keys`).
pub async fn collect_pin(
    call: &mut Call,
    leg: &mut Leg,
    hangup: &mut oneshot::Receiver<Hangup>,
    info_keys: &mut mpsc::Receiver<char>,
) -> Keyed {
    call.set_prompt(true);
    let mut keys = String::new();
    let mut until = Instant::now() + PIN_WAIT;
    let pin = loop {
        let now = Instant::now();
        if now >= until {
            break if keys.is_empty() {
                Keyed::Nothing
            } else {
                Keyed::Pin(keys)
            };
        }
        call.handle_timeout(now);
        let mut wake = until;
        loop {
            match call.poll_output() {
                Output::Leg(p) => leg.send(&p),
                Output::Digit('#') if !keys.is_empty() => return finish(call, Keyed::Pin(keys)),
                Output::Digit(d) if d.is_ascii_digit() && keys.len() < 32 => {
                    keys.push(d);
                    until = now + KEY_WAIT;
                }
                Output::Digit(_) | Output::Room { .. } => {}
                Output::Timeout(t) => {
                    wake = wake.min(t);
                    break;
                }
            }
        }
        tokio::select! {
            _ = leg.receive(call) => {}
            Some(k) = info_keys.recv() => call.on_key(k),
            h = &mut *hangup => break Keyed::Hangup(h.unwrap_or(Hangup::Caller)),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    };
    finish(call, pin)
}

fn finish(call: &mut Call, keyed: Keyed) -> Keyed {
    call.set_prompt(false);
    keyed
}

/// A call's media: its audio core, its RTP port, its video.
pub struct Media {
    pub call: Call,
    pub leg: Leg,
    pub video: Option<CallVideo>,
    /// New SDES keys of the far end's, from its re-INVITEs.
    pub rekeys: mpsc::Receiver<crate::sdp::Rekey>,
}

/// Run the call until one side ends it: `leg` carries its RTP (and `video` its
/// video), `hangup` fires when the SIP side is over.
pub async fn run(
    media: Media,
    mut peer: RoomPeer,
    mut hangup: oneshot::Receiver<Hangup>,
    mut timer: Option<(SessionTimer, watch::Receiver<u32>)>,
    metrics: &Metrics,
) -> (Ended, CallStats, VideoStats) {
    let Media {
        mut call,
        mut leg,
        mut video,
        rekeys,
    } = media;
    if let Err(end) = steer(&mut peer, &mut video, Instant::now()).await {
        peer.leave().await;
        return (end, call.stats, VideoStats::default());
    }
    let mut rekeys = Some(rekeys);
    let ended = loop {
        let now = Instant::now();
        let sent = call.stats.leg_sent;
        call.handle_timeout(now);
        let mixed = call.stats.leg_sent - sent;
        if mixed > 0 {
            let took = now.elapsed().as_secs_f64() / mixed as f64;
            metrics.mix_duration.observe(took);
        }
        let mut wake = now + Duration::from_secs(1);
        loop {
            match call.poll_output() {
                Output::Leg(p) => leg.send(&p),
                Output::Room {
                    opus,
                    level,
                    samples,
                } => peer.send_opus(now, opus, level, samples),
                // Keys pressed once in the room are not the room's business.
                Output::Digit(_) => {}
                Output::Timeout(t) => {
                    wake = wake.min(t);
                    break;
                }
            }
        }
        let polled = peer.poll(
            |source, opus| call.on_room_audio(now, source, opus),
            |source, codec, frame, rtp_time| {
                if let Some(v) = video.as_mut() {
                    v.video.on_room_frame(now, source, codec, frame, rtp_time);
                }
            },
        );
        match polled {
            Ok(t) => wake = wake.min(t),
            Err(e) => break Ended::Failed(e),
        }
        let mut relayer = false;
        // What the video wrote to the room peer leaves on its next poll: go round at
        // once, not at the next 20 ms tick (a frame held that long is late).
        let mut wrote = false;
        if let Some(v) = video.as_mut() {
            if peer.take_keyframe_request() {
                v.video.room_wants_keyframe(now);
            }
            v.video.handle_timeout(now);
            while let Some(o) = v.video.poll_output() {
                match o {
                    VideoOutput::Leg(p) => v.port.send(&p, false),
                    VideoOutput::LegRtcp(p) => v.port.send(&p, true),
                    VideoOutput::Room { frame, rtp_time } => {
                        peer.send_video(now, v.video.leg().codec, frame, rtp_time);
                        wrote = true;
                    }
                    VideoOutput::SourceKeyframe(s) => {
                        peer.request_keyframe(s);
                        wrote = true;
                    }
                    // One at a time: a request already on its way will do.
                    VideoOutput::CallerKeyframe => {
                        let _ = v.fast_update.try_send(());
                    }
                    VideoOutput::Steer => relayer = true,
                }
            }
            if let Some(t) = v.video.next_timeout() {
                wake = wake.min(t);
            }
        }
        // Another source to choose, or the node to tell what the leg shows now.
        if relayer {
            if let Err(end) = steer(&mut peer, &mut video, now).await {
                break end;
            }
        }
        let wake = if wrote { now } else { wake.max(now) };
        let expiry = timer.as_ref().map(|(t, _)| t.deadline());
        let asks = video.as_ref().map(|v| v.caller_asks.clone());
        tokio::select! {
            _ = leg.receive(&mut call) => {}
            _ = video_received(&mut video) => {}
            _ = caller_asks(asks.as_deref()) => {
                if let Some(v) = video.as_mut() {
                    v.video.caller_wants_keyframe(Instant::now());
                }
            }
            w = peer.wait(wake) => if let Woke::Signal(m) = w {
                if let Err(end) = peer.on_signal(m).await {
                    break end;
                }
                if let Err(end) = steer(&mut peer, &mut video, Instant::now()).await {
                    break end;
                }
            },
            h = &mut hangup => break match h {
                Ok(Hangup::Closing) => Ended::Closing,
                _ => Ended::Hangup,
            },
            // Session timers (RFC 4028): refreshed (with the interval the refresh
            // asked), or over.
            seconds = refreshed(&mut timer) => {
                if let Some((t, _)) = timer.as_mut() {
                    t.refreshed(Instant::now(), seconds);
                }
            }
            _ = expired(expiry) => break Ended::Expired,
            rekey = rekeyed(&mut rekeys) => {
                if let Some(k) = rekey.audio {
                    if let Err(e) = call.rekey(k) {
                        break Ended::Failed(e);
                    }
                }
                if let (Some(k), Some(v)) = (rekey.video, video.as_mut()) {
                    if let Err(e) = v.video.rekey(k) {
                        break Ended::Failed(e);
                    }
                }
            }
        }
    };
    peer.leave().await;
    let video = video.map(|v| v.video.stats).unwrap_or_default();
    (ended, call.stats, video)
}

/// The next datagram on the video port (never without video).
async fn video_received(video: &mut Option<CallVideo>) {
    match video {
        Some(v) => v.port.receive(&mut v.video).await,
        None => std::future::pending().await,
    }
}

/// The caller asked for a keyframe by SIP INFO (never without video).
async fn caller_asks(asks: Option<&tokio::sync::Notify>) {
    match asks {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// After the room changed (tracks, speaker): which video the leg shows, and the
/// node told to send only that one.
async fn steer(
    peer: &mut RoomPeer,
    video: &mut Option<CallVideo>,
    now: Instant,
) -> Result<(), Ended> {
    let Some(v) = video.as_mut() else {
        return Ok(());
    };
    let mut videos = peer.videos();
    // Never a source in another codec (no transcoding).
    videos.retain(|c| v.video.suitable(c.source, now));
    for gone in [v.video.shown(), v.video.wanted()].into_iter().flatten() {
        if !videos.iter().any(|c| c.source == gone) {
            v.video.forget(gone);
        }
    }
    let current = v.video.wanted().or(v.video.shown());
    if let Some(s) = video::pick(&videos, peer.speaker(), current) {
        v.video.show(now, s);
    }
    let on: Vec<u32> = [v.video.shown(), v.video.wanted()]
        .into_iter()
        .flatten()
        .collect();
    peer.prefer(&on, v.video.max_layer()).await
}

/// New keys of the far end's (never once the SIP side let go of the call).
async fn rekeyed(rekeys: &mut Option<mpsc::Receiver<crate::sdp::Rekey>>) -> crate::sdp::Rekey {
    if let Some(r) = rekeys {
        if let Some(k) = r.recv().await {
            return k;
        }
        *rekeys = None;
    }
    std::future::pending().await
}

/// A refresh came: the interval it asked (never without a timer, nor once the SIP
/// side let go of the call).
async fn refreshed(timer: &mut Option<(SessionTimer, watch::Receiver<u32>)>) -> u32 {
    if let Some((_, r)) = timer {
        if r.changed().await.is_ok() {
            return *r.borrow_and_update();
        }
    }
    std::future::pending().await
}

/// The session ran out unrefreshed (never without a timer).
async fn expired(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
