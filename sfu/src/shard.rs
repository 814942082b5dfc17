//! The I/O driver: one OS thread per shard, owning its UDP socket, its peers and their
//! rooms. Nothing here is shared with other threads but the command channel, the event
//! channel and the metrics atomics: no locks on the packet path.
//!
//! The loop: wait (epoll via mio) for datagrams, a command, or the earliest timer;
//! read the ready datagrams a batch per `recvmmsg` (GRO on); demux each by source
//! address (STUN username for new addresses); feed it to the peer's `Rtc` and drain
//! `poll_output` until `Timeout` (str0m's rule); route `RtpPacket`s through the room
//! core; write the forwards into the subscribers' `Rtc`s and drain those too. What the
//! turn wrote is sent at its end, per destination (GSO), by `udpbatch::TxQueue`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use str0m::bwe::{Bitrate, BweKind};
use str0m::ice::StunMessage;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Event, IceConnectionState, Input, Output};
use tokio::sync::mpsc;

use crate::control::{Command, ControlError, NewPeer, NodeEvent};
use crate::core::keyframe::is_keyframe_start;
use crate::core::{Action, Forward, Kind, PacketIn, ParticipantId, Room, RoomEvent, Sink, TrackId};
use crate::metrics::{Metrics, ShardMetrics};
use crate::peer::{self, JoinKind, Negotiation, Peer};
use crate::placement::Placement;
use udpbatch::{BatchSocket, RxBatch, TxQueue};

pub const SOCKET: Token = Token(0);
pub const WAKER: Token = Token(1);

/// A peer that has not connected within this time is removed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A loop turn longer than this is logged: it delayed the shard's packets.
const SLOW_TURN: Duration = Duration::from_millis(20);
/// How long a peer may stay ICE-disconnected before it is removed.
const ICE_GRACE: Duration = Duration::from_secs(10);
/// How often rooms get their periodic work and peers their health check.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Datagrams read per wakeup before timers and commands get their turn.
const READ_BUDGET: usize = 512;
/// Due str0m timeouts handled within one drain before the rest wait for the timer heap
/// (a frame's worth of packets, with room to spare; bounds one peer's share of a turn).
const RELEASE_BUDGET: usize = 64;

pub struct ShardShared {
    pub participants: AtomicUsize,
    pub rooms: AtomicUsize,
}

pub struct Shard {
    index: usize,
    socket: UdpSocket,
    io: BatchSocket,
    /// Datagrams written this loop turn, sent together at its end.
    tx: TxQueue,
    local_addr: SocketAddr,
    poll: Poll,
    commands: Receiver<Command>,
    events: mpsc::Sender<NodeEvent>,
    metrics: ShardMetrics,
    node_metrics: Arc<Metrics>,
    shared: Arc<ShardShared>,
    track_ids: Arc<AtomicU64>,
    placement: Arc<Mutex<Placement>>,

    peers: Vec<Option<Peer>>,
    free: Vec<u32>,
    by_participant: HashMap<ParticipantId, u32>,
    by_addr: HashMap<SocketAddr, u32>,
    by_ufrag: HashMap<String, u32>,
    rooms: HashMap<Arc<str>, Room>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    timer_at: Vec<Option<Instant>>,

    // Scratch, reused so that the packet path does not allocate once warm.
    queue: VecDeque<(u32, Event)>,
    forwards: Vec<Forward>,
    actions: Vec<Action>,
    negotiate: Vec<u32>,
    remove: Vec<(u32, &'static str)>,
    next_housekeeping: Instant,
    busy_since: Instant,
    busy: Duration,
    shutdown: bool,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        socket: UdpSocket,
        poll: Poll,
        commands: Receiver<Command>,
        events: mpsc::Sender<NodeEvent>,
        node_metrics: Arc<Metrics>,
        shared: Arc<ShardShared>,
        track_ids: Arc<AtomicU64>,
        placement: Arc<Mutex<Placement>>,
    ) -> std::io::Result<Self> {
        let local_addr = socket.local_addr()?;
        let io = BatchSocket::new(&socket)?;
        let metrics = node_metrics.shard(index);
        node_metrics.set_offload(index, io.offload());
        let now = Instant::now();
        Ok(Shard {
            index,
            socket,
            io,
            tx: TxQueue::with_capacity(1024),
            local_addr,
            poll,
            commands,
            events,
            metrics,
            node_metrics,
            shared,
            track_ids,
            placement,
            peers: Vec::new(),
            free: Vec::new(),
            by_participant: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            rooms: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_at: Vec::new(),
            queue: VecDeque::with_capacity(1024),
            forwards: Vec::with_capacity(256),
            actions: Vec::with_capacity(64),
            negotiate: Vec::new(),
            remove: Vec::new(),
            next_housekeeping: now,
            busy_since: now,
            busy: Duration::ZERO,
            shutdown: false,
        })
    }

    pub fn run(mut self) {
        self.poll
            .registry()
            .register(&mut self.socket, SOCKET, Interest::READABLE)
            .expect("register shard socket");
        let mut events = Events::with_capacity(16);
        let mut rx = RxBatch::default();
        let mut window_start = Instant::now();
        let mut more = false;
        while !self.shutdown {
            let now = Instant::now();
            let deadline = if more {
                now
            } else {
                self.next_deadline().max(now)
            };
            let wait_start = Instant::now();
            if let Err(e) = self.poll.poll(&mut events, Some(deadline - now)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(shard = self.index, "poll failed: {e}");
                }
            }
            let woke = Instant::now();
            self.busy += wait_start.saturating_duration_since(self.busy_since);
            self.busy_since = woke;

            more = self.read_datagrams(&mut rx);
            let t1 = Instant::now();
            self.handle_commands();
            let t2 = Instant::now();
            self.handle_timers(t2);
            let sent = self.flush();
            let t3 = Instant::now();
            if sent {
                self.metrics
                    .turn
                    .observe(t3.saturating_duration_since(woke).as_secs_f64());
            }
            // A slow turn delays every packet of the shard: say so (rarely, by nature).
            if t3.saturating_duration_since(woke) > SLOW_TURN {
                tracing::warn!(
                    shard = self.index,
                    datagrams_ms = t1.duration_since(woke).as_secs_f64() * 1e3,
                    commands_ms = t2.duration_since(t1).as_secs_f64() * 1e3,
                    timers_ms = t3.duration_since(t2).as_secs_f64() * 1e3,
                    "slow shard turn"
                );
            }

            let elapsed = woke.saturating_duration_since(window_start);
            if elapsed >= Duration::from_secs(1) {
                self.metrics
                    .busy
                    .set(self.busy.as_secs_f64() / elapsed.as_secs_f64());
                self.busy = Duration::ZERO;
                window_start = woke;
            }
        }
        // Leave cleanly: tell every client's connection we are gone.
        for idx in 0..self.peers.len() as u32 {
            self.remove_peer(idx, "");
        }
        self.flush();
    }

    /// Send what this turn wrote: per destination, in order, GSO where sizes allow.
    /// Whether there was anything to send.
    fn flush(&mut self) -> bool {
        if self.tx.is_empty() {
            return false;
        }
        let done = self.tx.flush(&self.io, &self.socket);
        self.metrics.packets_sent.inc_by(done.datagrams);
        self.metrics.bytes_sent.inc_by(done.bytes);
        self.metrics.send_calls.inc_by(done.calls);
        if done.failed > 0 {
            self.metrics.send_failed.inc_by(done.failed);
        }
        true
    }

    fn next_deadline(&self) -> Instant {
        let t = self.next_housekeeping;
        match self.timers.peek() {
            Some(Reverse((at, _))) => t.min(*at),
            None => t,
        }
    }

    /// Read what the socket holds, a batch per call; returns true when the budget ran
    /// out first (more may be waiting, and the edge-triggered poll will not say so again).
    fn read_datagrams(&mut self, rx: &mut RxBatch) -> bool {
        let mut read = 0;
        while read < READ_BUDGET {
            match rx.recv(&self.io, &self.socket) {
                Ok(_) => {
                    self.metrics.recv_calls.inc();
                    let now = Instant::now();
                    for (source, data) in rx.datagrams() {
                        read += 1;
                        self.metrics.packets_received.inc();
                        self.metrics.bytes_received.inc_by(data.len() as u64);
                        self.on_datagram(now, source, data);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.process();
                    return false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors (port unreachable from a gone client) surface here.
                    read += 1;
                    tracing::debug!(shard = self.index, "recv: {e}");
                }
            }
        }
        self.process();
        true
    }

    fn on_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else {
            self.metrics.dropped_rtc_error.inc();
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local_addr,
                contents,
            },
        );
        let idx = match self.by_addr.get(&source) {
            Some(&i) => i,
            None => {
                // A new address must introduce itself with a STUN binding request
                // carrying our ICE username for one of our peers.
                let Some(i) = StunMessage::parse(data)
                    .ok()
                    .and_then(|m| m.split_username().map(|(l, _)| l.to_owned()))
                    .and_then(|l| self.by_ufrag.get(&l).copied())
                else {
                    self.metrics.dropped_unknown_source.inc();
                    return;
                };
                let Some(p) = self.peers[i as usize].as_mut() else {
                    self.metrics.dropped_unknown_source.inc();
                    return;
                };
                if !p.rtc.accepts(&input) {
                    self.metrics.dropped_rejected.inc();
                    return;
                }
                p.addrs.push(source);
                self.by_addr.insert(source, i);
                i
            }
        };
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        if let Err(e) = p.rtc.handle_input(input) {
            self.metrics.dropped_rtc_error.inc();
            tracing::debug!(
                shard = self.index,
                participant = p.participant.0,
                "input: {e}"
            );
        }
        self.drain(idx);
    }

    /// str0m's rule: after every input, poll until `Timeout`.
    ///
    /// str0m's pacer hands out one queued packet per timeout (it asks for an immediate
    /// timeout before the next): a timeout already due is handled here, at once, so
    /// that a frame written to a subscriber leaves in this turn and in one GSO batch,
    /// rather than one packet per loop turn.
    fn drain(&mut self, idx: u32) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        let mut released = 0;
        loop {
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) if released < RELEASE_BUDGET => {
                    let now = Instant::now();
                    if t <= now {
                        released += 1;
                        if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                            tracing::debug!(shard = self.index, "timeout: {e}");
                        }
                        continue;
                    }
                    let slot = &mut self.timer_at[idx as usize];
                    if slot.is_none_or(|at| t < at) {
                        *slot = Some(t);
                        self.timers.push(Reverse((t, idx)));
                    }
                    return;
                }
                Ok(Output::Timeout(t)) => {
                    let slot = &mut self.timer_at[idx as usize];
                    if slot.is_none_or(|at| t < at) {
                        *slot = Some(t);
                        self.timers.push(Reverse((t, idx)));
                    }
                    return;
                }
                Ok(Output::Transmit(t)) => self.tx.push(t.destination, &t.contents),
                Ok(Output::Event(e)) => self.queue.push_back((idx, e)),
                Err(e) => {
                    tracing::info!(
                        shard = self.index,
                        participant = p.participant.0,
                        "rtc failed: {e}"
                    );
                    self.remove.push((idx, "rtc_error"));
                    return;
                }
            }
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, idx))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.timer_at.get(idx as usize).copied().flatten() != Some(at) {
                continue; // superseded by an earlier timer that already fired
            }
            self.timer_at[idx as usize] = None;
            if let Some(p) = self.peers[idx as usize].as_mut() {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(shard = self.index, "timeout: {e}");
                }
                self.drain(idx);
            }
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.housekeeping(now);
        }
        self.process();
    }

    fn housekeeping(&mut self, now: Instant) {
        for (i, p) in self.peers.iter().enumerate() {
            let Some(p) = p else { continue };
            if !p.rtc.is_alive() {
                self.remove.push((i as u32, "closed"));
            } else if p
                .disconnected_at
                .is_some_and(|t| now.saturating_duration_since(t) > ICE_GRACE)
            {
                self.remove.push((i as u32, "ice_disconnected"));
            } else if !p.connected && now.saturating_duration_since(p.joined_at) > CONNECT_TIMEOUT {
                self.remove.push((i as u32, "connect_timeout"));
            }
        }
        let mut paused = 0;
        for room in self.rooms.values_mut() {
            if room.next_tick().is_none_or(|t| now >= t) {
                room.tick(now, &mut self.actions);
            }
            paused += room.paused_videos();
        }
        self.metrics.paused_videos.set(paused as i64);
    }

    /// Work through queued str0m events and core actions until nothing is left.
    fn process(&mut self) {
        loop {
            if let Some((idx, ev)) = self.queue.pop_front() {
                self.on_event(idx, ev);
            } else if !self.actions.is_empty() {
                self.apply_actions();
            } else if let Some(idx) = self.negotiate.pop() {
                self.renegotiate(idx);
            } else if let Some((idx, reason)) = self.remove.pop() {
                self.remove_peer(idx, reason);
            } else {
                break;
            }
        }
    }

    fn on_event(&mut self, idx: u32, ev: Event) {
        let now = Instant::now();
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        match ev {
            Event::RtpPacket(pkt) => self.on_rtp(now, idx, pkt),
            Event::Connected => {
                p.connected = true;
                let waiting: Vec<(usize, TrackId)> = p
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.ready && !s.forwarding)
                    .filter_map(|(i, s)| Some((i, s.track?)))
                    .collect();
                for (slot, track) in waiting {
                    self.bind_slot(now, idx, slot, track);
                }
                let Some(p) = self.peers[idx as usize].as_mut() else {
                    return;
                };
                self.node_metrics
                    .join_duration
                    .observe(now.saturating_duration_since(p.joined_at).as_secs_f64());
                let ev = NodeEvent::Connected {
                    room: p.room.clone(),
                    participant: p.participant,
                };
                self.emit(ev);
            }
            // ICE may recover from Disconnected (a new nomination): give it time.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                p.disconnected_at.get_or_insert(now);
            }
            Event::IceConnectionStateChange(_) => p.disconnected_at = None,
            Event::MediaAdded(m) => {
                let rids = m
                    .simulcast
                    .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l.rid)
                    .collect();
                if p.kind == JoinKind::ViewOnly {
                    // A receive-only m-line of a WHEP offer: a slot for the room's tracks.
                    if m.direction == Direction::SendOnly {
                        let kind = if m.kind == MediaKind::Audio {
                            Kind::Audio
                        } else {
                            Kind::Video
                        };
                        if let Some((slot, track)) = p.add_fixed_slot(m.mid, kind) {
                            self.bind_slot(now, idx, slot, track);
                        }
                    }
                    return;
                }
                let Some((mid, kind, rids)) =
                    peer::published_from_media(m.mid, m.kind, m.direction, rids)
                else {
                    return;
                };
                if p.published.iter().any(|x| x.mid == mid) {
                    return;
                }
                let track = TrackId(self.track_ids.fetch_add(1, Ordering::Relaxed));
                let layers = rids.len().max(1) as u8;
                p.published.push(peer::Published {
                    mid,
                    track,
                    kind,
                    rids,
                });
                let (participant, room) = (p.participant, p.room.clone());
                // The codec is known per packet; the track's codec is what the client
                // listed first for the m-line.
                let codec = p
                    .rtc
                    .media(mid)
                    .and_then(|m| m.remote_pts().first().copied())
                    .and_then(|pt| p.pt_info(*pt))
                    .map_or(crate::core::Codec::Other, |i| i.codec);
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.publish(
                        track,
                        participant,
                        kind,
                        codec,
                        peer::clock_rate(kind),
                        layers,
                        &mut self.actions,
                    );
                }
                let label = if kind == Kind::Audio {
                    "audio"
                } else {
                    "video"
                };
                self.node_metrics.tracks.with_label_values(&[label]).inc();
            }
            Event::KeyframeRequest(req) => {
                match req.kind {
                    KeyframeRequestKind::Pli => self.metrics.pli_received.inc(),
                    KeyframeRequestKind::Fir => self.metrics.fir_received.inc(),
                }
                let Some(slot) = p.slot_of_mid(req.mid) else {
                    return;
                };
                let (track, participant, room) =
                    (p.slots[slot].track, p.participant, p.room.clone());
                if let (Some(r), Some(track)) = (self.rooms.get_mut(&room), track) {
                    r.on_keyframe_request(now, participant, track, &mut self.actions);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                let bps = estimate.as_u64();
                self.node_metrics.bwe_estimate.observe(bps as f64);
                let (participant, room) = (p.participant, p.room.clone());
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.set_estimate(participant, bps);
                }
            }
            Event::MediaEgressStats(s) => {
                // Cumulative per stream; count the growth since the last report.
                let key = (s.mid, s.rid);
                let prev = p.egress_nacks.iter_mut().find(|(k, _)| *k == key);
                let delta = match prev {
                    Some((_, n)) => s.nacks.saturating_sub(std::mem::replace(n, s.nacks)),
                    None => {
                        p.egress_nacks.push((key, s.nacks));
                        s.nacks
                    }
                };
                self.metrics.nacks_received.inc_by(delta);
            }
            Event::MediaIngressStats(s) => {
                let key = (s.mid, s.rid);
                let prev = p.ingress_nacks.iter_mut().find(|(k, _)| *k == key);
                let delta = match prev {
                    Some((_, n)) => s.nacks.saturating_sub(std::mem::replace(n, s.nacks)),
                    None => {
                        p.ingress_nacks.push((key, s.nacks));
                        s.nacks
                    }
                };
                self.metrics.nacks_sent.inc_by(delta);
            }
            Event::Closed => self.remove.push((idx, "closed")),
            _ => {}
        }
    }

    fn on_rtp(&mut self, now: Instant, idx: u32, pkt: RtpPacket) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        let Some((pi, layer)) = p.route(&pkt) else {
            return;
        };
        let Some(pt) = p.pt_info(*pkt.header.payload_type) else {
            return;
        };
        let published = &p.published[pi];
        let (track, kind) = (published.track, published.kind);
        let pin = PacketIn {
            layer,
            ssrc: *pkt.header.ssrc,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            keyframe: kind == Kind::Audio || is_keyframe_start(pt.codec, &pkt.payload),
            payload_len: pkt.payload.len(),
            audio_level: pkt.header.ext_vals.audio_level,
        };
        let Some(room) = self.rooms.get_mut(&*p.room) else {
            return;
        };
        let mut forwards = std::mem::take(&mut self.forwards);
        forwards.clear();
        room.on_packet(now, track, &pin, &mut forwards, &mut self.actions);
        for f in &forwards {
            let Sink { peer, slot } = f.sink;
            let Some(sub) = self.peers.get_mut(peer as usize).and_then(|p| p.as_mut()) else {
                continue;
            };
            if sub.write(slot as usize, &pt, &pkt, f.seq, f.ts, now) {
                self.metrics.forwarded.inc();
                self.drain(peer);
            }
        }
        self.forwards = forwards;
    }

    fn apply_actions(&mut self) {
        let mut actions = std::mem::take(&mut self.actions);
        for a in actions.drain(..) {
            self.apply(a);
        }
        // Keep the capacity; anything pushed meanwhile is handled in the next round.
        actions.append(&mut self.actions);
        self.actions = actions;
    }

    fn peer_of(&self, participant: ParticipantId) -> Option<u32> {
        self.by_participant.get(&participant).copied()
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::RequestKeyframe {
                publisher,
                track,
                layer,
            } => {
                let Some(idx) = self.peer_of(publisher) else {
                    return;
                };
                let Some(p) = self.peers[idx as usize].as_mut() else {
                    return;
                };
                let Some(pubd) = p.published.iter().find(|x| x.track == track) else {
                    return;
                };
                let (mid, rid) = (pubd.mid, pubd.rids.get(layer as usize).copied());
                let mut api = p.rtc.direct_api();
                if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    self.metrics.pli_sent.inc();
                }
                self.drain(idx);
            }
            Action::Subscribe {
                subscriber,
                track,
                kind,
                publisher,
            } => {
                let Some(idx) = self.peer_of(subscriber) else {
                    return;
                };
                let Some(p) = self.peers[idx as usize].as_mut() else {
                    return;
                };
                match p.subscribe(track, kind, publisher) {
                    Some(slot) => self.bind_slot(Instant::now(), idx, slot, track),
                    None => self.negotiate.push(idx),
                }
            }
            Action::Unsubscribe {
                subscriber, track, ..
            } => {
                let Some(idx) = self.peer_of(subscriber) else {
                    return;
                };
                let Some(p) = self.peers[idx as usize].as_mut() else {
                    return;
                };
                match p.unsubscribe(track) {
                    Some((slot, next)) => self.bind_slot(Instant::now(), idx, slot, next),
                    None => self.negotiate.push(idx),
                }
            }
            Action::SetBitrate {
                subscriber,
                min_bps,
                desired_bps,
            } => {
                let Some(idx) = self.peer_of(subscriber) else {
                    return;
                };
                if let Some(p) = self.peers[idx as usize].as_mut() {
                    p.rtc
                        .bwe()
                        .set_bitrate(Bitrate::bps(min_bps), Bitrate::bps(desired_bps));
                    self.drain(idx);
                }
            }
            Action::Event(e) => {
                let Some(room) = self.room_of_event(&e) else {
                    return;
                };
                let ev = match e {
                    RoomEvent::TrackPublished {
                        track,
                        publisher,
                        kind,
                    } => NodeEvent::TrackPublished {
                        room,
                        participant: publisher,
                        track,
                        kind,
                    },
                    RoomEvent::TrackUnpublished { track, publisher } => {
                        NodeEvent::TrackUnpublished {
                            room,
                            participant: publisher,
                            track,
                        }
                    }
                    RoomEvent::LayerChanged {
                        subscriber,
                        track,
                        layer,
                    } => {
                        self.metrics.layer_switches.inc();
                        NodeEvent::LayerChanged {
                            room,
                            subscriber,
                            track,
                            layer,
                        }
                    }
                    RoomEvent::VideoPaused { subscriber, track } => NodeEvent::VideoPaused {
                        room,
                        subscriber,
                        track,
                    },
                    RoomEvent::VideoResumed { subscriber, track } => NodeEvent::VideoResumed {
                        room,
                        subscriber,
                        track,
                    },
                    RoomEvent::ActiveSpeaker { participant } => {
                        NodeEvent::ActiveSpeaker { room, participant }
                    }
                };
                self.emit(ev);
            }
        }
    }

    /// A fixed slot now carries `track`: forward into it, continuing its stream.
    /// Until the subscriber's connection is up (DTLS done), nothing is forwarded to
    /// it: str0m would hold the packets and release them late, all at once. Slots
    /// negotiated before that are bound when `Event::Connected` comes.
    fn bind_slot(&mut self, now: Instant, idx: u32, slot: usize, track: TrackId) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        if !p.connected {
            return;
        }
        p.slots[slot].forwarding = true;
        let (participant, room, resume) = (p.participant, p.room.clone(), p.slots[slot].last_out);
        if let Some(r) = self.rooms.get_mut(&room) {
            let sink = Sink {
                peer: idx,
                slot: slot as u32,
            };
            r.subscription_ready(now, participant, track, sink, resume, &mut self.actions);
        }
    }

    fn room_of_event(&self, e: &RoomEvent) -> Option<Arc<str>> {
        let p = match e {
            RoomEvent::TrackPublished { publisher, .. }
            | RoomEvent::TrackUnpublished { publisher, .. } => *publisher,
            RoomEvent::LayerChanged { subscriber, .. }
            | RoomEvent::VideoPaused { subscriber, .. }
            | RoomEvent::VideoResumed { subscriber, .. } => *subscriber,
            RoomEvent::ActiveSpeaker { participant } => *participant,
        };
        let idx = self.peer_of(p)?;
        self.peers[idx as usize].as_ref().map(|p| p.room.clone())
    }

    fn renegotiate(&mut self, idx: u32) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        if let Negotiation::Offer(sdp) = p.negotiate() {
            let ev = NodeEvent::Offer {
                room: p.room.clone(),
                participant: p.participant,
                sdp,
            };
            self.emit(ev);
        }
        self.drain(idx);
    }

    fn emit(&self, ev: NodeEvent) {
        if self.events.try_send(ev).is_err() {
            self.node_metrics.events_dropped.inc();
            tracing::warn!(
                shard = self.index,
                "control event dropped: consumer lagging"
            );
        }
    }

    fn handle_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::AddPeer(np) => self.add_peer(*np),
                Command::RemovePeer(participant) => {
                    if let Some(idx) = self.peer_of(participant) {
                        self.remove.push((idx, ""));
                    }
                }
                Command::Answer {
                    participant,
                    sdp,
                    reply,
                } => {
                    let r = self.on_answer(participant, &sdp);
                    let _ = reply.send(r);
                }
                Command::SetPreference {
                    participant,
                    track,
                    pref,
                    reply,
                } => {
                    let now = Instant::now();
                    let r = match self
                        .peer_of(participant)
                        .and_then(|i| self.peers[i as usize].as_ref())
                    {
                        None => Err(ControlError::NoSuchParticipant),
                        Some(p) => {
                            let room = p.room.clone();
                            let done = self.rooms.get_mut(&room).is_some_and(|r| {
                                r.set_preference(now, participant, track, pref, &mut self.actions)
                            });
                            if done {
                                Ok(())
                            } else {
                                Err(ControlError::NoSuchTrack)
                            }
                        }
                    };
                    let _ = reply.send(r);
                }
                Command::CloseRoom(room) => {
                    for (i, p) in self.peers.iter().enumerate() {
                        if p.as_ref().is_some_and(|p| p.room == room) {
                            self.remove.push((i as u32, ""));
                        }
                    }
                }
                Command::RoomStats { room, reply } => {
                    let r = self
                        .rooms
                        .get(&room)
                        .map(|r| r.figures())
                        .ok_or(ControlError::NoSuchRoom);
                    let _ = reply.send(r);
                }
                Command::Shutdown => self.shutdown = true,
            }
        }
        self.process();
    }

    fn add_peer(&mut self, np: NewPeer) {
        let now = Instant::now();
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.peers.push(None);
                self.timer_at.push(None);
                (self.peers.len() - 1) as u32
            }
        };
        let NewPeer {
            rtc,
            kind,
            participant,
            identity,
            room,
            local_ufrag,
        } = np;
        self.by_participant.insert(participant, idx);
        self.by_ufrag.insert(local_ufrag.clone(), idx);
        self.peers[idx as usize] = Some(Peer::new(
            rtc,
            kind,
            participant,
            identity.clone(),
            room.clone(),
            local_ufrag,
            now,
        ));
        self.timer_at[idx as usize] = None;
        let r = self.rooms.entry(room.clone()).or_insert_with(|| {
            self.node_metrics.rooms.inc();
            self.shared.rooms.fetch_add(1, Ordering::Relaxed);
            Room::new()
        });
        r.add_participant(
            participant,
            kind != JoinKind::PublishOnly,
            &mut self.actions,
        );
        self.node_metrics.participants.inc();
        self.shared.participants.fetch_add(1, Ordering::Relaxed);
        self.emit(NodeEvent::ParticipantJoined {
            room,
            participant,
            identity,
        });
        // The accepted offer left MediaAdded events in the Rtc: drain them here.
        self.drain(idx);
        self.process();
    }

    fn on_answer(&mut self, participant: ParticipantId, sdp: &str) -> Result<(), ControlError> {
        let now = Instant::now();
        let idx = self
            .peer_of(participant)
            .ok_or(ControlError::NoSuchParticipant)?;
        let p = self.peers[idx as usize]
            .as_mut()
            .ok_or(ControlError::NoSuchParticipant)?;
        let ready = p.accept_answer(sdp);
        // Another round: what queued meanwhile, or what a rejected answer re-queued.
        self.negotiate.push(idx);
        let ready = ready.map_err(ControlError::BadAnswer)?;
        let tracks: Vec<(usize, TrackId)> =
            ready.filter_map(|i| Some((i, p.slots[i].track?))).collect();
        for (slot, track) in tracks {
            self.bind_slot(now, idx, slot, track);
        }
        self.drain(idx);
        Ok(())
    }

    fn remove_peer(&mut self, idx: u32, reason: &'static str) {
        let Some(mut p) = self.peers[idx as usize].take() else {
            return;
        };
        // Let the peer send its goodbye (RTCP BYE, DTLS close_notify).
        p.rtc.disconnect();
        // Flush the goodbye (DTLS close) while we still can.
        while let Ok(out) = p.rtc.poll_output() {
            match out {
                Output::Transmit(t) => self.tx.push(t.destination, &t.contents),
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        self.free.push(idx);
        self.timer_at[idx as usize] = None;
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(p.participant);
        self.by_participant.remove(&p.participant);
        self.by_ufrag.remove(&p.local_ufrag);
        for a in &p.addrs {
            self.by_addr.remove(a);
        }
        self.queue.retain(|(i, _)| *i != idx);
        self.negotiate.retain(|i| *i != idx);
        self.node_metrics.participants.dec();
        self.shared.participants.fetch_sub(1, Ordering::Relaxed);
        for pubd in &p.published {
            let label = if pubd.kind == Kind::Audio {
                "audio"
            } else {
                "video"
            };
            self.node_metrics.tracks.with_label_values(&[label]).dec();
        }
        if let Some(r) = self.rooms.get_mut(&p.room) {
            r.remove_participant(p.participant, &mut self.actions);
            if r.is_empty() {
                self.rooms.remove(&p.room);
                self.node_metrics.rooms.dec();
                self.shared.rooms.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Events of the unpublished tracks need the room name; emit them here.
        let mut pending = std::mem::take(&mut self.actions);
        for a in pending.drain(..) {
            match a {
                Action::Event(RoomEvent::TrackUnpublished { track, publisher }) => {
                    self.emit(NodeEvent::TrackUnpublished {
                        room: p.room.clone(),
                        participant: publisher,
                        track,
                    });
                }
                other => self.actions.push(other),
            }
        }
        if !reason.is_empty() {
            self.node_metrics
                .peer_failures
                .with_label_values(&[reason])
                .inc();
            self.emit(NodeEvent::PeerFailed {
                room: p.room.clone(),
                participant: p.participant,
                reason: reason.to_string(),
            });
        }
        self.emit(NodeEvent::ParticipantLeft {
            room: p.room.clone(),
            participant: p.participant,
        });
    }
}
