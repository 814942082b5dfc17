//! ICE-TCP (RFC 6544): for clients whose network blocks UDP, each shard also
//! listens on TCP, announced as a passive host candidate beside its UDP one. A
//! client connects, and its STUN checks, DTLS and SRTP then come and go framed on
//! the connection (RFC 4571, [`framing`]). str0m takes them as it takes datagrams
//! (`Protocol::Tcp`), and answers by the connection's remote address: to the
//! worker a connection is one more path to a peer.
//!
//! [`TcpConns`] is the shard's I/O for it: accept, read and cut into packets, queue
//! and write, close. Bounded everywhere: connections per shard, bytes queued per
//! connection (media that cannot leave is dropped, as on a congested UDP path,
//! never buffered without end), frame length, packets read per turn, connections
//! per address, time to name a participant and time idle. A connection closed here
//! is reported ([`TcpConns::closed`]) so that the worker forgets it as a path.

pub mod framing;

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::metrics::ShardMetrics;
use framing::{Deframer, Frame, TcpOut};

/// Connections a shard holds at once, and from one IP address (many clients may
/// share one behind NAT; one host must not take them all); more are refused
/// (closed at accept).
const MAX_CONNECTIONS: usize = 4096;
const MAX_PER_IP: u32 = 256;
/// Bytes queued to one connection before its packets are dropped: about half a
/// second of a 2 Mbit/s subscriber's media.
const MAX_QUEUED: usize = 128 << 10;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 16 << 10;
/// Packets taken from one connection per turn, and from all of them, before the
/// turn goes on (as UDP's read budget): a connection that has more stays readable.
const CONN_BUDGET: usize = 64;
const TURN_BUDGET: usize = 1024;
/// A connection must name one of the shard's participants (its first packet a
/// STUN check to one) at once, and then keep talking (ICE consent every 5 s).
const INTRODUCE_WITHIN: Duration = Duration::from_secs(10);
const IDLE_AFTER: Duration = Duration::from_secs(30);

/// Why a connection was closed (the `reason` label of `sfu_ice_tcp_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    Eof,
    Error,
    Malformed,
    Unknown,
    Idle,
    Limit,
    Left,
}

impl Close {
    pub const ALL: [Close; 7] = [
        Close::Eof,
        Close::Error,
        Close::Malformed,
        Close::Unknown,
        Close::Idle,
        Close::Limit,
        Close::Left,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Close::Eof => "eof",
            Close::Error => "error",
            Close::Malformed => "malformed",
            Close::Unknown => "unknown",
            Close::Idle => "idle",
            Close::Limit => "limit",
            Close::Left => "left",
        }
    }
}

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    /// The listener (so the local candidate) it came in on.
    listener: usize,
    rx: Deframer,
    /// Framed bytes to write; `tx[sent..]` are still to go.
    tx: Vec<u8>,
    sent: usize,
    /// A packet of it reached a participant.
    introduced: bool,
    opened: Instant,
    last_rx: Instant,
}

/// A shard's ICE-TCP listeners and connections.
pub struct TcpConns {
    listeners: Vec<TcpListener>,
    /// Token of the first listener; connections' tokens start at `conn_tokens`.
    listener_tokens: usize,
    conn_tokens: usize,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_remote: HashMap<SocketAddr, usize>,
    per_ip: HashMap<IpAddr, u32>,
    /// Connections that may hold unread bytes (an event came, or the read budget
    /// ran out first: the edge-triggered poll will not say so again), in turn.
    readable: VecDeque<usize>,
    is_readable: Vec<bool>,
    /// Connections with bytes queued to write.
    writing: Vec<usize>,
    is_writing: Vec<bool>,
    /// Listeners whose accept failed for lack of resources (descriptors): tried
    /// again at housekeeping, as the edge-triggered poll will not tell again.
    accept_again: Vec<bool>,
    /// Remote addresses of connections closed here (not for a leaving participant):
    /// the worker forgets them as paths of their peers.
    closed: Vec<SocketAddr>,
    /// What each read takes from the kernel (complete frames go on from here).
    scratch: Box<[u8]>,
    metrics: ShardMetrics,
}

impl TcpConns {
    /// Listeners get tokens from `listener_tokens` on, connections from
    /// `conn_tokens` on (above every other token of the shard's poll).
    pub fn new(
        listeners: Vec<TcpListener>,
        listener_tokens: usize,
        conn_tokens: usize,
        metrics: ShardMetrics,
    ) -> Self {
        TcpConns {
            accept_again: vec![false; listeners.len()],
            listeners,
            listener_tokens,
            conn_tokens,
            conns: Vec::new(),
            free: Vec::new(),
            by_remote: HashMap::new(),
            per_ip: HashMap::new(),
            readable: VecDeque::new(),
            is_readable: Vec::new(),
            writing: Vec::new(),
            is_writing: Vec::new(),
            closed: Vec::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            metrics,
        }
    }

    pub fn register(&mut self, registry: &Registry) -> std::io::Result<()> {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            registry.register(l, Token(self.listener_tokens + i), Interest::READABLE)?;
        }
        Ok(())
    }

    /// A poll event for one of ours: false when the token is not.
    pub fn event(&mut self, registry: &Registry, now: Instant, ev: &mio::event::Event) -> bool {
        let t = ev.token().0;
        if t >= self.conn_tokens {
            let slot = t - self.conn_tokens;
            if self.conns.get(slot).is_some_and(|c| c.is_some()) {
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    mark(&mut self.readable, &mut self.is_readable, slot);
                }
                if ev.is_writable() {
                    mark(&mut self.writing, &mut self.is_writing, slot);
                }
            }
            return true;
        }
        if t >= self.listener_tokens && t < self.listener_tokens + self.listeners.len() {
            self.accept(registry, now, t - self.listener_tokens);
            return true;
        }
        false
    }

    /// Whether some connection may hold bytes not yet read.
    pub fn has_unread(&self) -> bool {
        !self.readable.is_empty()
    }

    fn accept(&mut self, registry: &Registry, now: Instant, listener: usize) {
        self.accept_again[listener] = false;
        loop {
            let (mut stream, remote) = match self.listeners[listener].accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Reset by the client before it was taken: the next one.
                Err(e)
                    if e.kind() == ErrorKind::Interrupted
                        || e.kind() == ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) => {
                    // Out of descriptors: the backlog waits for housekeeping.
                    tracing::warn!("ICE-TCP accept failed: {e}");
                    self.accept_again[listener] = true;
                    return;
                }
            };
            let from_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
            if self.by_remote.len() >= MAX_CONNECTIONS || from_ip >= MAX_PER_IP {
                self.metrics.tcp_closed[Close::Limit as usize].inc();
                continue;
            }
            // Media: no Nagle delay.
            let _ = stream.set_nodelay(true);
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if let Err(e) = registry.register(
                &mut stream,
                Token(self.conn_tokens + slot),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::debug!("ice-tcp register: {e}");
                self.free.push(slot);
                continue;
            }
            self.conns[slot] = Some(Conn {
                stream,
                remote,
                listener,
                rx: Deframer::default(),
                tx: Vec::new(),
                sent: 0,
                introduced: false,
                opened: now,
                last_rx: now,
            });
            *self.per_ip.entry(remote.ip()).or_default() += 1;
            if let Some(old) = self.by_remote.insert(remote, slot) {
                // The same address again: the client's side of the old connection
                // is gone (its port is reused), so ours is dead too.
                self.close_slot(registry, old, Close::Eof);
            }
            self.metrics.tcp_connections.inc();
            mark(&mut self.readable, &mut self.is_readable, slot);
        }
    }

    /// Read what the readable connections hold, up to a budget each and in all,
    /// and hand each packet to `deliver(listener, remote, packet)`, which says
    /// whether it reached a participant. A connection whose first packet is not
    /// STUN is not a WebRTC client's: closed. One that names no participant is let
    /// be until its time to introduce itself runs out (its participant may be
    /// joining this very turn); once introduced, a packet that reaches no one is
    /// dropped, as a bad datagram would be.
    pub fn read(
        &mut self,
        registry: &Registry,
        now: Instant,
        mut deliver: impl FnMut(usize, SocketAddr, &[u8]) -> bool,
    ) {
        let mut budget = TURN_BUDGET;
        for _ in 0..self.readable.len() {
            if budget == 0 {
                break;
            }
            let Some(slot) = self.readable.pop_front() else {
                break;
            };
            let Some(c) = self.conns[slot].as_mut() else {
                self.is_readable[slot] = false;
                continue;
            };
            let mut taken = 0;
            let mut fate = None;
            let mut drained = false;
            loop {
                match c.rx.next_frame() {
                    Frame::Packet(p) => {
                        taken += 1;
                        self.metrics.tcp_packets_received.inc();
                        if deliver(c.listener, c.remote, p) {
                            c.introduced = true;
                        } else if !c.introduced && !framing::is_stun(p) {
                            fate = Some(Close::Unknown);
                            break;
                        }
                        if taken >= CONN_BUDGET.min(budget) {
                            break;
                        }
                        continue;
                    }
                    Frame::TooLong => {
                        fate = Some(Close::Malformed);
                        break;
                    }
                    Frame::Incomplete => {}
                }
                match c.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        fate = Some(Close::Eof);
                        break;
                    }
                    Ok(n) => {
                        c.rx.push(&self.scratch[..n]);
                        c.last_rx = now;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        fate = Some(Close::Error);
                        break;
                    }
                }
            }
            c.rx.settle();
            budget -= taken.min(budget);
            if let Some(why) = fate {
                self.close_slot(registry, slot, why);
            }
            if fate.is_some() || drained {
                self.is_readable[slot] = false;
            } else {
                // Its budget ran out first: after the others, next turn.
                self.readable.push_back(slot);
            }
        }
    }

    /// Frame the turn's packets onto their connections and write what can go now.
    pub fn send(&mut self, out: &TcpOut) {
        for (remote, packet) in out.iter() {
            let Some(&slot) = self.by_remote.get(&remote) else {
                // Its connection closed: as a datagram to a gone client.
                continue;
            };
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if c.tx.len() - c.sent + 2 + packet.len() > MAX_QUEUED {
                self.metrics.tcp_send_dropped.inc();
                continue;
            }
            c.tx.extend_from_slice(&framing::header(packet.len()));
            c.tx.extend_from_slice(packet);
            self.metrics.tcp_packets_sent.inc();
            mark(&mut self.writing, &mut self.is_writing, slot);
        }
    }

    /// Write what the connections have queued, as far as their sockets take it; the
    /// rest goes when a connection says it is writable again. Every turn.
    pub fn write(&mut self, registry: &Registry) {
        if self.writing.is_empty() {
            return;
        }
        let slots = std::mem::take(&mut self.writing);
        for &slot in &slots {
            self.is_writing[slot] = false;
            let mut failed = false;
            if let Some(c) = self.conns[slot].as_mut() {
                while c.sent < c.tx.len() {
                    match c.stream.write(&c.tx[c.sent..]) {
                        Ok(0) => {
                            failed = true;
                            break;
                        }
                        Ok(n) => c.sent += n,
                        // The writable event will bring it back.
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                if c.sent == c.tx.len() {
                    c.tx.clear();
                    c.sent = 0;
                } else if c.sent > MAX_QUEUED {
                    // Keep the queue's memory bounded: move the rest to the front.
                    c.tx.drain(..c.sent);
                    c.sent = 0;
                }
            }
            if failed {
                self.close_slot(registry, slot, Close::Error);
            }
        }
        // Nothing marks a connection while writing: give the list back, emptied.
        let mut slots = slots;
        slots.clear();
        self.writing = slots;
    }

    /// The participant on `remote` left: close its connection.
    pub fn close(&mut self, registry: &Registry, remote: SocketAddr) {
        if let Some(&slot) = self.by_remote.get(&remote) {
            self.close_slot(registry, slot, Close::Left);
        }
    }

    /// Close connections that never named a participant, or went quiet; take the
    /// connections a listener could not accept before.
    pub fn housekeeping(&mut self, registry: &Registry, now: Instant) {
        for listener in 0..self.listeners.len() {
            if self.accept_again[listener] {
                self.accept(registry, now, listener);
            }
        }
        for slot in 0..self.conns.len() {
            let Some(c) = &self.conns[slot] else { continue };
            if !c.introduced && now.saturating_duration_since(c.opened) > INTRODUCE_WITHIN {
                self.close_slot(registry, slot, Close::Unknown);
            } else if now.saturating_duration_since(c.last_rx) > IDLE_AFTER {
                self.close_slot(registry, slot, Close::Idle);
            }
        }
    }

    fn close_slot(&mut self, registry: &Registry, slot: usize, why: Close) {
        let Some(mut c) = self.conns[slot].take() else {
            return;
        };
        let _ = registry.deregister(&mut c.stream);
        if self.by_remote.get(&c.remote) == Some(&slot) {
            self.by_remote.remove(&c.remote);
        }
        // The worker forgets it as a path (a new connection from the same address,
        // which replaced this one, introduces itself again).
        if why != Close::Left {
            self.closed.push(c.remote);
        }
        if let Some(n) = self.per_ip.get_mut(&c.remote.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.remote.ip());
            }
        }
        self.free.push(slot);
        self.metrics.tcp_connections.dec();
        self.metrics.tcp_closed[why as usize].inc();
    }

    /// Remote addresses of the connections closed here since the last call (not
    /// those closed for a leaving participant).
    pub fn closed(&mut self) -> &mut Vec<SocketAddr> {
        &mut self.closed
    }
}

/// Put `slot` on a work list (readable or writing) once: its flag says it is there.
fn mark(list: &mut impl Extend<usize>, flags: &mut Vec<bool>, slot: usize) {
    if flags.len() <= slot {
        flags.resize(slot + 1, false);
    }
    if !flags[slot] {
        flags[slot] = true;
        list.extend([slot]);
    }
}
