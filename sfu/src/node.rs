//! The media node and its control API: shards, room placement, joins.
//!
//! `Node` is what the signalling node drives, in-process or over QUIC. It builds each
//! participant's `Rtc` and answers its offer on the caller's thread (the expensive
//! part of a join stays off the packet shards), then hands the connection to the shard
//! that hosts the room. A room lives on one shard.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use str0m::bwe::Bitrate;
use str0m::config::DtlsCert;
use str0m::ice::IceCreds;
use str0m::net::TcpType;
use str0m::{Candidate, RtcConfig};
use tokio::sync::mpsc;

use crate::command::{Command, NewPeer, RoomStats};
use crate::core::{ParticipantId, Preference, TrackId};
use crate::metrics::Metrics;
use crate::peer::{parse_offer, JoinKind};
use crate::placement::ShardPlacement;
use crate::shard::{Shard, WAKER};
use crate::worker::{ShardShared, WorkerContext};
use control::{ControlError, JoinMedia, NodeEvent, NodeLoad, RoomVideo};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Packet shards (OS threads); 0 means one per core.
    pub shards: usize,
    /// Addresses the shards' UDP sockets bind to: one, or one IPv4 and one IPv6
    /// address (each shard binds a socket to each, and announces a host candidate
    /// for each; datagrams to a client leave by the socket of its family, so from
    /// the address its checks went to).
    pub bind_ips: Vec<IpAddr>,
    /// UDP port of the first shard; the others follow. 0 picks free ports.
    pub port: u16,
    /// ICE-TCP (RFC 6544) for clients whose network blocks UDP: each shard also
    /// listens on TCP at each bind address and announces a passive TCP host
    /// candidate (at lower priority than UDP: a client takes TCP only when UDP fails).
    pub ice_tcp: bool,
    /// TCP port of the first shard's listener; the others follow. `None`: the UDP
    /// port's numbers (TCP ports are apart from UDP ones). 0 picks free ports.
    pub tcp_port: Option<u16>,
    /// Addresses clients reach the node at, when they are not the bind addresses
    /// (NAT, Kubernetes): each is announced in place of the bind address of its
    /// family.
    pub announce_ips: Vec<IpAddr>,
    /// Participants allowed in one room.
    pub max_room_size: usize,
    /// Capacity of the event channel to the control plane.
    pub event_capacity: usize,
    /// How long a renegotiation offer may go unanswered (re-sent every 10 s) before
    /// its participant is failed.
    pub offer_give_up: Duration,
}

impl NodeConfig {
    /// One bind address, or one of each family; announced addresses at most one of
    /// each family, each of a family bound.
    pub fn check(&self) -> Result<(), String> {
        let v6 = |ips: &[IpAddr]| ips.iter().filter(|ip| ip.is_ipv6()).count();
        let (b6, b4) = (v6(&self.bind_ips), self.bind_ips.len() - v6(&self.bind_ips));
        if self.bind_ips.is_empty() || b6 > 1 || b4 > 1 {
            return Err(format!(
                "bind addresses: one, or one IPv4 and one IPv6 address (got {:?})",
                self.bind_ips
            ));
        }
        let (a6, a4) = (
            v6(&self.announce_ips),
            self.announce_ips.len() - v6(&self.announce_ips),
        );
        if a6 > b6 || a4 > b4 {
            return Err(format!(
                "announce addresses: at most one per bound address family (bound {:?}, announce {:?})",
                self.bind_ips, self.announce_ips
            ));
        }
        Ok(())
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            shards: 0,
            bind_ips: vec![IpAddr::from([127, 0, 0, 1])],
            port: 0,
            ice_tcp: true,
            tcp_port: None,
            announce_ips: Vec::new(),
            max_room_size: 100,
            event_capacity: 65_536,
            offer_give_up: crate::peer::OFFER_GIVE_UP,
        }
    }
}

/// Where clients reach a shard: its host candidates, UDP and ICE-TCP, one of each
/// per bind address, as announced.
#[derive(Clone, Debug, Default)]
pub struct HostCandidates {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
}

impl HostCandidates {
    /// UDP candidates alone.
    pub fn udp(udp: Vec<SocketAddr>) -> Self {
        HostCandidates {
            udp,
            tcp: Vec::new(),
        }
    }
}

struct ShardHandle {
    commands: Sender<Command>,
    waker: Arc<mio::Waker>,
    announce: HostCandidates,
    shared: Arc<ShardShared>,
    metrics: crate::metrics::ShardMetrics,
}

impl ShardHandle {
    fn send(&self, cmd: Command) -> Result<(), ControlError> {
        // Bounded: a shard that cannot keep up pushes back on the control plane
        // (joins wait) instead of growing a queue without limit.
        self.commands
            .send_timeout(cmd, Duration::from_secs(5))
            .map_err(|_| ControlError::ShuttingDown)?;
        let _ = self.waker.wake();
        Ok(())
    }
}

struct Inner {
    config: NodeConfig,
    shards: Vec<ShardHandle>,
    placement: Arc<Mutex<ShardPlacement>>,
    next_participant: AtomicU64,
    cert: DtlsCert,
    metrics: Arc<Metrics>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
    /// Draining: the signalling node places no new rooms here (see [`Node::drain`]).
    draining: AtomicBool,
    /// The previous load reading: when, datagrams received by then, the rate it gave.
    last_load: Mutex<(Instant, u64, f64)>,
}

/// Handle to a running media node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// The answer to a join.
#[derive(Clone, Debug)]
pub struct Joined {
    pub participant: ParticipantId,
    pub answer: String,
}

impl Node {
    /// Start the shards. Events arrive on the returned receiver; keep draining it.
    pub fn start(mut config: NodeConfig) -> std::io::Result<(Node, mpsc::Receiver<NodeEvent>)> {
        install_crypto();
        config.check().map_err(std::io::Error::other)?;
        if config.shards == 0 {
            config.shards = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        let metrics = Arc::new(Metrics::new());
        let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(16));
        let track_ids = Arc::new(AtomicU64::new(1));
        let placement = Arc::new(Mutex::new(ShardPlacement::default()));
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| {
                std::io::Error::other("crypto provider cannot make a DTLS certificate")
            })?;
        let mut shards = Vec::new();
        let mut threads = Vec::new();
        for i in 0..config.shards {
            let port = if config.port == 0 {
                0
            } else {
                config.port + i as u16
            };
            let tcp_port = match config.tcp_port {
                None => port,
                Some(0) => 0,
                Some(p) => p + i as u16,
            };
            let mut sockets = Vec::new();
            let mut listeners = Vec::new();
            let mut announce = HostCandidates::default();
            for &ip in &config.bind_ips {
                let public_ip = |local: SocketAddr| {
                    let ip = config
                        .announce_ips
                        .iter()
                        .find(|a| a.is_ipv6() == local.is_ipv6())
                        .copied()
                        .unwrap_or(local.ip());
                    SocketAddr::new(ip, local.port())
                };
                let std_socket = udp_socket(SocketAddr::new(ip, port), SOCKET_BUFFER)?;
                let local = std_socket.local_addr()?;
                let public = public_ip(local);
                announce.udp.push(public);
                tracing::info!(shard = i, %local, announce = %public, "shard listening");
                sockets.push((mio::net::UdpSocket::from_std(std_socket), public));
                if config.ice_tcp {
                    let listener = tcp_listener(SocketAddr::new(ip, tcp_port))?;
                    let local = listener.local_addr()?;
                    let public = public_ip(local);
                    announce.tcp.push(public);
                    tracing::info!(shard = i, %local, announce = %public, "shard listening on ICE-TCP");
                    listeners.push(listener);
                }
            }
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = bounded(1024);
            let shared = Arc::new(ShardShared {
                participants: AtomicUsize::new(0),
                rooms: AtomicUsize::new(0),
            });
            let ctx = WorkerContext {
                index: i,
                metrics: metrics.clone(),
                shared: shared.clone(),
                track_ids: track_ids.clone(),
                placement: placement.clone(),
                offer_give_up: config.offer_give_up,
            };
            let listeners = listeners.into_iter().zip(announce.tcp.clone()).collect();
            let shard = Shard::new(ctx, sockets, listeners, poll, rx, ev_tx.clone())?;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("shard-{i}"))
                    .spawn(move || shard.run())?,
            );
            shards.push(ShardHandle {
                commands: tx,
                waker,
                announce,
                shared,
                metrics: metrics.shard(i),
            });
        }
        let inner = Inner {
            config,
            shards,
            placement,
            next_participant: AtomicU64::new(1),
            cert,
            metrics,
            threads: Mutex::new(threads),
            stopped: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            last_load: Mutex::new((Instant::now(), 0, 0.0)),
        };
        Ok((
            Node {
                inner: Arc::new(inner),
            },
            ev_rx,
        ))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Join `room` with an SDP offer; returns the answer. Creates the room on first
    /// join. Blocking for about a millisecond (DTLS setup): call it from a blocking
    /// context in async code.
    pub fn add_participant(
        &self,
        room: &str,
        identity: &str,
        offer: &str,
    ) -> Result<Joined, ControlError> {
        let id = self.allocate_participant();
        self.add_participant_as(id, room, identity, offer, JoinKind::Full)
    }

    /// A fresh participant id, for callers that must be ready for the participant's
    /// events (the first renegotiation offer follows the answer at once) before the
    /// join returns. Taken from the top half of the id space: the signalling node
    /// counts its own from 1, and the two never meet (a reused id is refused anyway).
    pub fn allocate_participant(&self) -> ParticipantId {
        let n = self.inner.next_participant.fetch_add(1, Ordering::Relaxed);
        ParticipantId(NODE_IDS | n)
    }

    /// [`Node::add_participant`] with an id from [`Node::allocate_participant`] and
    /// a way of taking part (WebSocket client, WHIP publisher, WHEP viewer).
    pub fn add_participant_as(
        &self,
        participant: ParticipantId,
        room: &str,
        identity: &str,
        offer: &str,
        kind: JoinKind,
    ) -> Result<Joined, ControlError> {
        self.add_participant_with(participant, room, identity, offer, JoinMedia::new(kind))
    }

    /// [`Node::add_participant_as`] in a room whose video is `media.video` (its
    /// clients answered with that codec alone), with an m-line kept for a screen
    /// share (`media.screen`).
    pub fn add_participant_with(
        &self,
        participant: ParticipantId,
        room: &str,
        identity: &str,
        offer: &str,
        media: JoinMedia,
    ) -> Result<Joined, ControlError> {
        let offer = parse_offer(offer).map_err(ControlError::BadOffer)?;
        let (room, shard) = self.place(participant, room)?;
        let joined = self.connect(participant, room, shard, identity, offer, media);
        if joined.is_err() {
            self.placement().release(participant);
        }
        joined
    }

    fn connect(
        &self,
        participant: ParticipantId,
        room: Arc<str>,
        shard: usize,
        identity: &str,
        offer: str0m::change::SdpOffer,
        JoinMedia {
            kind,
            video,
            screen,
        }: JoinMedia,
    ) -> Result<Joined, ControlError> {
        let handle = &self.inner.shards[shard];
        let (rtc, answer, local_ufrag) = answer_offer(
            Instant::now(),
            &self.inner.cert,
            &handle.announce,
            offer,
            video,
        )?;
        if kind == JoinKind::Viewer && sends_media(&rtc, &answer) {
            return Err(ControlError::BadOffer(
                "viewers may not publish: offer recvonly m-lines".into(),
            ));
        }
        let screen = match screen {
            Some(mid) => Some(screen_mid(&rtc, &mid).map_err(ControlError::BadOffer)?),
            None => None,
        };
        handle.send(Command::AddPeer(Box::new(NewPeer {
            rtc,
            kind,
            participant,
            identity: identity.into(),
            room,
            local_ufrag,
            screen,
        })))?;
        Ok(Joined {
            participant,
            answer,
        })
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, ShardPlacement> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner
            .placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve the participant's place: the room's shard, or the least loaded shard
    /// for a new room.
    fn place(
        &self,
        participant: ParticipantId,
        room: &str,
    ) -> Result<(Arc<str>, usize), ControlError> {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(ControlError::ShuttingDown);
        }
        let shards = &self.inner.shards;
        let mut placement = self.placement();
        // Draining: late joiners of the meetings here come in, no new meeting starts
        // (the signalling node may not have heard of the drain yet).
        if self.inner.draining.load(Ordering::Relaxed) && placement.room(room).is_none() {
            return Err(ControlError::Unavailable(
                "this media node is draining: no new rooms".into(),
            ));
        }
        placement.reserve(participant, room, self.inner.config.max_room_size, || {
            (0..shards.len())
                .min_by_key(|i| shards[*i].shared.participants.load(Ordering::Relaxed))
                .unwrap_or(0)
        })
    }

    fn shard_of(&self, participant: ParticipantId) -> Result<usize, ControlError> {
        self.placement()
            .shard_of(participant)
            .ok_or(ControlError::NoSuchParticipant)
    }

    /// The client's answer to an [`NodeEvent::Offer`].
    pub fn answer(&self, participant: ParticipantId, sdp: &str) -> Result<(), ControlError> {
        self.ask(participant, |reply| Command::Answer {
            participant,
            sdp: sdp.to_owned(),
            reply,
        })
    }

    /// A command about `participant` to its shard, and the shard's reply.
    fn ask<T>(
        &self,
        participant: ParticipantId,
        command: impl FnOnce(crate::command::ReplyTo<T>) -> Command,
    ) -> Result<T, ControlError> {
        let shard = self.shard_of(participant)?;
        let (tx, rx) = bounded(1);
        self.inner.shards[shard].send(command(tx))?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| ControlError::ShuttingDown)?
    }

    /// The participant starts (`on`) or stops sharing its screen, on the m-line it
    /// kept for it at its join.
    pub fn screen(&self, participant: ParticipantId, on: bool) -> Result<(), ControlError> {
        self.ask(participant, |reply| Command::Screen {
            participant,
            on,
            reply,
        })
    }

    /// A host mutes (`held`) or releases the participant's audio at the node.
    pub fn hold_audio(&self, participant: ParticipantId, held: bool) -> Result<(), ControlError> {
        self.ask(participant, |reply| Command::HoldAudio {
            participant,
            held,
            reply,
        })
    }

    /// Remove a participant; its place is released when its shard has let it go.
    pub fn remove_participant(&self, participant: ParticipantId) -> Result<(), ControlError> {
        let shard = self.shard_of(participant)?;
        self.inner.shards[shard].send(Command::RemovePeer(participant))
    }

    pub fn set_preference(
        &self,
        participant: ParticipantId,
        track: TrackId,
        pref: Preference,
    ) -> Result<(), ControlError> {
        self.ask(participant, |reply| Command::SetPreference {
            participant,
            track,
            pref,
            reply,
        })
    }

    /// Close a room: its shard lets everyone in it go. The command is queued before
    /// the room's placement is forgotten, under the placement's lock, so a join that
    /// places the room anew is queued after it and is not closed out with the others.
    pub fn close_room(&self, room: &str) -> Result<(), ControlError> {
        let mut placement = self.placement();
        let (name, shard) = placement.room(room).ok_or(ControlError::NoSuchRoom)?;
        self.inner.shards[shard].send(Command::CloseRoom(name))?;
        placement.close_room(room);
        Ok(())
    }

    pub fn room_stats(&self, room: &str) -> Result<RoomStats, ControlError> {
        let (name, shard) = self
            .placement()
            .room(room)
            .ok_or(ControlError::NoSuchRoom)?;
        let (tx, rx) = bounded(1);
        self.inner.shards[shard].send(Command::RoomStats {
            room: name.clone(),
            reply: tx,
        })?;
        let figures = rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| ControlError::ShuttingDown)??;
        Ok(RoomStats {
            name: name.to_string(),
            shard,
            figures,
        })
    }

    /// Every participant the node carries, as `NodeEvent::Carrying`: what a
    /// signalling node needs to take the sessions back after it restarted.
    pub fn sessions(&self) -> Result<Vec<NodeEvent>, ControlError> {
        let mut all = Vec::new();
        for shard in self.inner.shards.iter() {
            let (tx, rx) = bounded(1);
            shard.send(Command::Sessions(tx))?;
            let carried = rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| ControlError::ShuttingDown)??;
            all.extend(carried);
        }
        Ok(all)
    }

    pub fn has_room(&self, room: &str) -> bool {
        self.placement().room(room).is_some()
    }

    pub fn rooms(&self) -> Vec<String> {
        self.placement().room_names()
    }

    /// Per shard: the UDP address clients send to.
    pub fn shard_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .shards
            .iter()
            .map(|s| s.announce.udp[0])
            .collect()
    }

    /// Per shard: its host candidates, UDP and ICE-TCP.
    pub fn shard_candidates(&self) -> Vec<HostCandidates> {
        self.inner
            .shards
            .iter()
            .map(|s| s.announce.clone())
            .collect()
    }

    /// What the node carries now. The packet rate is taken over the time since the
    /// previous reading (at least half a second; a quicker reading repeats it).
    pub fn load(&self) -> NodeLoad {
        let (rooms, participants) = self.placement().counts();
        let shards = &self.inner.shards;
        let received: u64 = shards
            .iter()
            .map(|s| s.metrics.packets_received.get())
            .sum();
        let now = Instant::now();
        let mut last = self
            .inner
            .last_load
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let secs = now.saturating_duration_since(last.0).as_secs_f64();
        if secs >= 0.5 {
            *last = (now, received, received.saturating_sub(last.1) as f64 / secs);
        }
        NodeLoad {
            participants,
            rooms,
            packets_per_second: last.2,
            busy_ratio: shards.iter().map(|s| s.metrics.busy.get()).sum::<f64>()
                / shards.len().max(1) as f64,
            draining: self.inner.draining.load(Ordering::Relaxed),
        }
    }

    /// Start draining: the heartbeat says so, and the signalling node places no new
    /// room here; the meetings here go on (late joiners still come in).
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Stop the shards and wait for them.
    pub fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in &self.inner.shards {
            let _ = s.send(Command::Shutdown);
        }
        for t in self.inner.threads.lock().expect("threads lock").drain(..) {
            let _ = t.join();
        }
    }
}

/// How the node's `Rtc`s are made: ICE-lite, RTP mode, BWE on, Opus (with RED), VP8
/// and H.264 (or the room's one codec), DTLS on OpenSSL ([`crate::dtls`]: RSA peers too).
pub fn rtc_config(cert: &DtlsCert, creds: IceCreds, video: RoomVideo) -> RtcConfig {
    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_local_ice_credentials(creds)
        .set_dtls_cert(cert.clone())
        .set_crypto_provider(crate::dtls::crypto_provider())
        .enable_bwe(Some(Bitrate::bps(crate::core::room::DEFAULT_ESTIMATE_BPS)))
        .set_stats_interval(Some(Duration::from_secs(1)))
        .clear_codecs()
        // RED (RFC 2198) where the client offers it: forwarded as RED to subscribers
        // that negotiated it, its primary block alone to the others.
        .enable_opus(true, true)
        .enable_vp8(video != RoomVideo::H264)
        .enable_h264(video == RoomVideo::Any);
    if video == RoomVideo::H264 {
        // A room for room systems: Constrained Baseline and Baseline in
        // packetization-mode 1 alone (what they decode; a browser that prefers
        // High would otherwise send it).
        let codecs = config.codec_config();
        codecs.add_h264(108.into(), Some(109.into()), true, 0x42e01f);
        codecs.add_h264(127.into(), Some(121.into()), true, 0x42001f);
    }
    config
}

/// The node's side of a join: a fresh `Rtc` (ICE-lite, RTP mode, BWE on) that has
/// accepted the client's offer, its SDP answer and its local ICE username fragment.
/// Costs about a millisecond of CPU (DTLS set-up): callers keep it off the shards.
pub fn answer_offer(
    now: Instant,
    cert: &DtlsCert,
    announce: &HostCandidates,
    offer: str0m::change::SdpOffer,
    video: RoomVideo,
) -> Result<(str0m::Rtc, String, String), ControlError> {
    let creds = IceCreds::new();
    let local_ufrag = creds.ufrag.clone();
    let mut rtc = rtc_config(cert, creds, video).build(now);
    let internal =
        |e: str0m::error::IceError| ControlError::BadOffer(format!("internal: candidate: {e}"));
    for &addr in &announce.udp {
        rtc.add_local_candidate(Candidate::host(addr, "udp").map_err(internal)?);
    }
    for &addr in &announce.tcp {
        // Passive: the client connects (RFC 6544); the node never dials out.
        let candidate = Candidate::builder()
            .tcp()
            .host(addr)
            .tcptype(TcpType::Passive)
            .build()
            .map_err(internal)?;
        rtc.add_local_candidate(candidate);
    }
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| ControlError::BadOffer(e.to_string()))?;
    let answer = answer.to_sdp_string();
    // A rejected m-line has port 0 in the answer: refuse offers where all are.
    let accepted = answer.lines().any(|l| {
        let mut f = l.split_whitespace();
        matches!(f.next(), Some("m=audio" | "m=video")) && f.next() != Some("0")
    });
    if !accepted {
        return Err(ControlError::BadOffer(
            "no audio or video m-line with a codec in common (Opus, VP8, H.264)".into(),
        ));
    }
    Ok((rtc, answer, local_ufrag))
}

/// Whether the accepted offer has an m-line the client sends on (as str0m took it:
/// the node's side of it receives).
fn sends_media(rtc: &str0m::Rtc, answer: &str) -> bool {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=mid:"))
        .filter_map(|mid| rtc.media(mid.trim().into()))
        .any(|m| m.direction().is_receiving())
}

/// The m-line a client kept for its screen share: one of its offer's video m-lines
/// that the client sends on.
fn screen_mid(rtc: &str0m::Rtc, mid: &str) -> Result<str0m::media::Mid, String> {
    let valid =
        !mid.is_empty() && mid.len() <= 16 && mid.bytes().all(|b| b.is_ascii_alphanumeric());
    let m = valid.then(|| rtc.media(mid.into())).flatten();
    match m {
        Some(m) if m.kind() == str0m::media::MediaKind::Video && m.direction().is_receiving() => {
            Ok(m.mid())
        }
        _ => Err(format!(
            "screen: {:?} is not a video m-line the offer sends on",
            mid.chars().take(16).collect::<String>()
        )),
    }
}

/// The high bit of ids the node hands out itself (see [`Node::allocate_participant`]).
const NODE_IDS: u64 = 1 << 63;

/// Socket buffers of a shard: a shard carries many participants on one socket, and
/// a burst (keyframes of several publishers) must not overflow the kernel's queue
/// while the thread is briefly descheduled. The kernel caps it at net.core.rmem_max.
const SOCKET_BUFFER: usize = 8 << 20;

/// A non-blocking UDP socket with large buffers (as large as the kernel allows).
pub fn udp_socket(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.set_nonblocking(true)?;
    if addr.is_ipv6() {
        // Only IPv6 here: datagrams from IPv4 clients arrive at the IPv4 socket (a
        // node binds both), or nowhere.
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    let got = s.recv_buffer_size().unwrap_or(0);
    if got < buffer / 4 {
        tracing::warn!(
            %addr,
            wanted = buffer,
            got,
            "small UDP receive buffer: raise net.core.rmem_max to avoid drops under bursts"
        );
    }
    Ok(s.into())
}

/// A non-blocking TCP listener for ICE-TCP (address reuse, as a restarted node must
/// bind again at once; IPv6 alone on an IPv6 address, as the UDP sockets).
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<mio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// str0m needs a process-wide crypto provider; install ours once.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}
