//! A shard's worker, sans-IO: the peers and rooms of one shard as a plain state
//! machine, after quinn-proto's `Endpoint`. Datagrams, commands and time go in;
//! datagrams to send ([`Worker::transmits`]), node events ([`Worker::poll_event`])
//! and the next deadline ([`Worker::poll_timeout`]) come out. It owns no socket,
//! reads no clock and starts no thread: the driver (`crate::shard`) does that, and
//! tests drive it in memory with simulated time.
//!
//! Inside, one turn goes: demux a datagram to its peer ([`demux`]); feed the peer's
//! `Rtc` and drain `poll_output` until `Timeout` (str0m's rule); turn str0m events
//! into the core's inputs ([`rtc_events`]); carry out the core's actions on the
//! peers ([`actions`]); wake peers whose timeouts came ([`timers`]); serve the
//! control plane ([`commands`]), including joins and teardown.

mod actions;
mod commands;
mod demux;
mod rtc_events;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Event, Input, Output};
use udpbatch::TxQueue;

use crate::core::{Action, Forward, ParticipantId, Room};
use crate::metrics::{Metrics, ShardMetrics};
use crate::peer::Peer;
use crate::placement::ShardPlacement;
use crate::tcp::framing::TcpOut;
use control::NodeEvent;
pub use demux::Remote;
use demux::{Demux, Route};
use timers::Timers;

/// A peer that has not connected within this time is removed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a peer may stay ICE-disconnected before it is removed.
const ICE_GRACE: Duration = Duration::from_secs(10);
/// How often rooms get their periodic work and peers their health check.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Pacer timeouts handled in one release before the rest wait for the next turn
/// (a turn's worth of packets for one subscriber, with room to spare; bounds one
/// peer's share of a turn).
const RELEASE_BUDGET: usize = 128;
/// str0m's LeakyBucket pacer asks for a timeout one microsecond ahead after every
/// packet it releases; a timeout that close counts as due, and time moves on by it.
/// Nothing later may: handling other timeouts early (even by 100 µs) compresses the
/// send times of BWE probes and the estimator then underestimates the path (seen
/// under load: estimates halved, subscribers paused).
const PACER_GATE: Duration = Duration::from_micros(1);

/// Figures a shard shares with the control plane (placement reads them).
#[derive(Debug, Default)]
pub struct ShardShared {
    pub participants: AtomicUsize,
    pub rooms: AtomicUsize,
}

/// What a worker shares with the rest of the node. None of it is touched per packet
/// but the metrics' atomics.
#[derive(Clone)]
pub struct WorkerContext {
    pub index: usize,
    pub metrics: Arc<Metrics>,
    pub shared: Arc<ShardShared>,
    /// Track ids are unique across the node's shards.
    pub track_ids: Arc<AtomicU64>,
    /// The node's registry of who is where; a removed peer releases its place.
    pub placement: Arc<Mutex<ShardPlacement>>,
    /// How long an offer may go unanswered before its participant is failed.
    pub offer_give_up: Duration,
}

pub struct Worker {
    index: usize,
    /// The local addresses, and what is to be sent from each.
    sockets: Sockets,
    metrics: ShardMetrics,
    node_metrics: Arc<Metrics>,
    shared: Arc<ShardShared>,
    track_ids: Arc<AtomicU64>,
    placement: Arc<Mutex<ShardPlacement>>,
    offer_give_up: Duration,
    /// The latest time given to the worker (never goes back).
    now: Instant,

    events: VecDeque<NodeEvent>,

    peers: Vec<Option<Peer>>,
    free: Vec<u32>,
    by_participant: HashMap<ParticipantId, u32>,
    demux: Demux,
    rooms: HashMap<Arc<str>, Room>,
    timers: Timers,

    // Work queued within a turn; reused so the packet path does not allocate once warm.
    queue: VecDeque<(u32, Event)>,
    forwards: Vec<Forward>,
    actions: Vec<Action>,
    negotiate: Vec<u32>,
    remove: Vec<(u32, &'static str)>,
    /// Peers to give a timeout and a drain before the turn ends, each once.
    touched: Vec<u32>,
    is_touched: Vec<bool>,
    next_housekeeping: Instant,
    shutdown: bool,
}

/// The shard's addresses as announced (one, or one per address family, a UDP socket
/// each, and as many ICE-TCP listeners) and the packets written since the driver
/// last sent them.
struct Sockets {
    locals: Vec<SocketAddr>,
    tx: Vec<TxQueue>,
    tcp_locals: Vec<SocketAddr>,
    tcp: TcpOut,
    /// ICE-TCP sources of peers removed: the driver closes their connections.
    tcp_gone: Vec<SocketAddr>,
}

impl Sockets {
    /// The socket of `remote`'s family: a client's checks reach the candidate of its
    /// own family, and its datagrams must come back from that address.
    fn of(&self, remote: SocketAddr) -> usize {
        self.locals
            .iter()
            .position(|l| l.is_ipv6() == remote.is_ipv6())
            .unwrap_or(0)
    }

    fn local_for(&self, remote: SocketAddr) -> SocketAddr {
        self.locals[self.of(remote)]
    }

    fn send(&mut self, t: &Transmit) {
        if t.proto == Protocol::Tcp {
            self.tcp.push(t.destination, &t.contents);
        } else {
            let i = self.of(t.destination);
            self.tx[i].push(t.destination, &t.contents);
        }
    }
}

impl Worker {
    /// `locals`: the shard's UDP addresses, `tcp_locals` its ICE-TCP ones, each as
    /// announced (its host candidate: str0m takes a packet only when it is addressed
    /// to one).
    pub fn new(
        ctx: WorkerContext,
        locals: Vec<SocketAddr>,
        tcp_locals: Vec<SocketAddr>,
        now: Instant,
    ) -> Self {
        assert!(!locals.is_empty(), "a worker needs a local address");
        Worker {
            index: ctx.index,
            sockets: Sockets {
                tx: locals
                    .iter()
                    .map(|_| TxQueue::with_capacity(1024))
                    .collect(),
                locals,
                tcp_locals,
                tcp: TcpOut::default(),
                tcp_gone: Vec::new(),
            },
            metrics: ctx.metrics.shard(ctx.index),
            node_metrics: ctx.metrics,
            shared: ctx.shared,
            track_ids: ctx.track_ids,
            placement: ctx.placement,
            offer_give_up: ctx.offer_give_up,
            now,
            events: VecDeque::with_capacity(64),
            peers: Vec::new(),
            free: Vec::new(),
            by_participant: HashMap::new(),
            demux: Demux::default(),
            rooms: HashMap::new(),
            timers: Timers::default(),
            queue: VecDeque::with_capacity(1024),
            forwards: Vec::with_capacity(256),
            actions: Vec::with_capacity(64),
            negotiate: Vec::new(),
            remove: Vec::new(),
            touched: Vec::with_capacity(256),
            is_touched: Vec::new(),
            next_housekeeping: now,
            shutdown: false,
        }
    }

    /// Time only moves forward, whatever the caller's clock does.
    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// A datagram arrived. What it causes is worked through by [`Worker::end_batch`],
    /// once per batch of datagrams.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.metrics.packets_received.inc();
        self.metrics.bytes_received.inc_by(data.len() as u64);
        let destination = self.sockets.local_for(source);
        self.receive(now, Protocol::Udp, source, destination, data);
    }

    /// A packet arrived on an ICE-TCP connection from `source` to the shard's
    /// `listener`-th TCP address. Whether it reached a peer: a connection whose
    /// packets reach none is not for this shard (the driver closes it).
    pub fn handle_tcp_packet(
        &mut self,
        now: Instant,
        listener: usize,
        source: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(&destination) = self.sockets.tcp_locals.get(listener) else {
            return false;
        };
        self.receive(now, Protocol::Tcp, source, destination, data)
    }

    fn receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let now = self.advance(now);
        let Ok(contents) = data.try_into() else {
            self.metrics.dropped_rtc_error.inc();
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        let idx = match self.demux.route((proto, source), data) {
            Route::Known(i) => i,
            Route::Introduces(i) => {
                let Some(p) = self.peers.get_mut(i as usize).and_then(|p| p.as_mut()) else {
                    self.metrics.dropped_unknown_source.inc();
                    return false;
                };
                if !p.rtc().accepts(&input) {
                    self.metrics.dropped_rejected.inc();
                    return false;
                }
                p.learn_addr((proto, source));
                self.demux.learn((proto, source), i);
                i
            }
            Route::Unknown => {
                self.metrics.dropped_unknown_source.inc();
                return false;
            }
        };
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return false;
        };
        if let Err(e) = p.rtc().handle_input(input) {
            self.metrics.dropped_rtc_error.inc();
            tracing::debug!(
                shard = self.index,
                participant = p.participant().0,
                "input: {e}"
            );
        }
        self.drain(idx);
        true
    }

    /// The end of a batch of datagrams: route what they brought.
    pub fn end_batch(&mut self, now: Instant) {
        self.advance(now);
        self.process();
    }

    /// Wake the peers whose timeouts came, and do the periodic work when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        while let Some(idx) = self.timers.pop_due(now) {
            self.touch(idx);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.housekeeping(now);
        }
        self.process();
    }

    /// When the worker next needs [`Worker::handle_timeout`].
    pub fn poll_timeout(&self) -> Instant {
        let t = self.next_housekeeping;
        self.timers.next().map_or(t, |at| t.min(at))
    }

    /// Datagrams to send, per local address (in the order given to `new`), in the
    /// order written per destination. The driver sends and empties them at the end
    /// of each turn.
    pub fn transmits(&mut self) -> &mut [TxQueue] {
        &mut self.sockets.tx
    }

    /// Packets to send on ICE-TCP connections, by remote address; the driver
    /// sends and clears them at the end of each turn, as [`Worker::transmits`].
    pub fn tcp_transmits(&mut self) -> &mut TcpOut {
        &mut self.sockets.tcp
    }

    /// The driver closed the ICE-TCP connection from `remote` (ended, failed, idle):
    /// it is no path of its peer any more. A new connection from the same address
    /// must introduce itself again.
    pub fn tcp_closed(&mut self, remote: SocketAddr) {
        if let Some(idx) = self.demux.forget((Protocol::Tcp, remote)) {
            if let Some(p) = self.peers.get_mut(idx as usize).and_then(|p| p.as_mut()) {
                p.forget_addr((Protocol::Tcp, remote));
            }
        }
    }

    /// ICE-TCP connections whose participant left: the driver closes them.
    pub fn tcp_gone(&mut self) -> &mut Vec<SocketAddr> {
        &mut self.sockets.tcp_gone
    }

    /// The next event for the control plane.
    /// Remove a participant at the next turn, failed with `reason` (its client hears
    /// `failed` and joins again).
    pub fn let_go(&mut self, participant: ParticipantId, reason: &'static str) {
        if let Some(idx) = self.peer_of(participant) {
            self.remove.push((idx, reason));
        }
    }

    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// A `Shutdown` command came: the driver should [`Worker::close`] and stop.
    pub fn is_shut_down(&self) -> bool {
        self.shutdown
    }

    /// Leave cleanly: tell every client's connection we are gone.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        for idx in 0..self.peers.len() as u32 {
            self.remove_peer(idx, "");
        }
    }

    /// str0m's rule: after every input, poll until `Timeout`. A timeout that is due
    /// is not handled here but at the end of the turn ([`Worker::release`]), once
    /// for everything the turn did to this peer.
    fn drain(&mut self, idx: u32) {
        match self.poll_until_timeout(idx) {
            Some(t) if t <= self.now + PACER_GATE => self.touch(idx),
            Some(t) => self.timers.schedule(idx, t),
            None => {}
        }
    }

    /// This peer needs a timeout and a drain before the turn ends: packets were
    /// written to it, its API was used, or its timer came.
    fn touch(&mut self, idx: u32) {
        mark(&mut self.touched, &mut self.is_touched, idx);
    }

    /// The end-of-turn work of one touched peer: one `handle_timeout` stamps and
    /// queues for sending everything written to it this turn; then drain.
    ///
    /// str0m's LeakyBucket pacer hands out one packet per poll and then asks for a
    /// timeout a microsecond later: those are handled here at once (the worker's
    /// clock moves on by that microsecond), so that a frame written to a subscriber
    /// leaves in this turn and in one GSO batch, not one packet per loop turn.
    fn release(&mut self, idx: u32) {
        let mut at = self.now;
        let mut released = 0;
        while let Some(p) = self.peers[idx as usize].as_mut() {
            if let Err(e) = p.rtc().handle_input(Input::Timeout(at)) {
                tracing::debug!(shard = self.index, "timeout: {e}");
            }
            let Some(t) = self.poll_until_timeout(idx) else {
                break;
            };
            if released < RELEASE_BUDGET && t <= at + PACER_GATE {
                released += 1;
                at = at.max(t);
                continue;
            }
            // Later; or, with the budget spent, the rest of this peer's packets go in
            // the next turn.
            self.timers.schedule(idx, t);
            break;
        }
        self.now = self.now.max(at);
    }

    /// Poll a peer's `Rtc` until it asks for a timeout (returned): datagrams go to
    /// the send batch, events to the queue. `None` when the peer is gone or failed
    /// (then queued for removal).
    fn poll_until_timeout(&mut self, idx: u32) -> Option<Instant> {
        let p = self.peers[idx as usize].as_mut()?;
        loop {
            match p.rtc().poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => self.sockets.send(&t),
                Ok(Output::Event(e)) => self.queue.push_back((idx, e)),
                Err(e) => {
                    tracing::info!(
                        shard = self.index,
                        participant = p.participant().0,
                        "rtc failed: {e}"
                    );
                    self.remove.push((idx, "rtc_error"));
                    return None;
                }
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        for (i, p) in self.peers.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            // What its receiver reports said lately, for the meeting's record.
            if let Some((loss_mean, loss_max, loss_figures, jitter)) = p.quality.take(now) {
                self.events.push_back(NodeEvent::Quality {
                    room: p.room().clone(),
                    participant: p.participant(),
                    loss_mean_permille: loss_mean,
                    loss_max_permille: loss_max,
                    loss_figures,
                    jitter_max_ms: jitter,
                });
            }
            if !p.rtc_ref().is_alive() {
                self.remove.push((i as u32, "closed"));
            } else if let Some(why) = p.expired(now, CONNECT_TIMEOUT, ICE_GRACE, self.offer_give_up)
            {
                self.remove.push((i as u32, why));
            } else if let Some((sdp, tracks)) = p.offer_to_resend(now) {
                // Lost on its way, or missed by a client that reconnected: again.
                self.events.push_back(NodeEvent::Offer {
                    room: p.room().clone(),
                    participant: p.participant(),
                    sdp,
                    tracks,
                });
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

    /// Work through queued str0m events, core actions and touched peers until
    /// nothing is left.
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
            } else if let Some(idx) = self.touched.pop() {
                self.is_touched[idx as usize] = false;
                self.release(idx);
            } else {
                break;
            }
        }
    }

    fn peer_of(&self, participant: ParticipantId) -> Option<u32> {
        self.by_participant.get(&participant).copied()
    }

    /// A participant's peer, with its index, if it is still here.
    fn peer_mut(&mut self, participant: ParticipantId) -> Option<(u32, &mut Peer)> {
        let idx = self.peer_of(participant)?;
        Some((idx, self.peers[idx as usize].as_mut()?))
    }

    /// Events go out in order; the driver hands them to the control plane.
    fn emit(&mut self, ev: NodeEvent) {
        self.events.push_back(ev);
    }
}

/// The `kind` label of the tracks gauge.
fn kind_label(kind: crate::core::Kind) -> &'static str {
    match kind {
        crate::core::Kind::Audio => "audio",
        crate::core::Kind::Video => "video",
    }
}

/// Add `idx` to a set kept as a list plus flags (no hashing, no allocation once warm).
fn mark(list: &mut Vec<u32>, flags: &mut Vec<bool>, idx: u32) {
    let i = idx as usize;
    if i >= flags.len() {
        flags.resize(i + 1, false);
    }
    if !flags[i] {
        flags[i] = true;
        list.push(idx);
    }
}
