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
//! never buffered without end), bytes read per turn, time to name a participant
//! and time idle.

pub mod framing;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::metrics::ShardMetrics;
use framing::{Deframer, TcpOut};

/// Connections a shard holds at once; more are refused (closed at accept).
const MAX_CONNECTIONS: usize = 4096;
/// Bytes queued to one connection before its packets are dropped: about half a
/// second of a 2 Mbit/s subscriber's media.
const MAX_QUEUED: usize = 128 << 10;
/// Bytes read from one connection per turn before others get theirs.
const READ_BUDGET: usize = 64 << 10;
/// A connection must name one of the shard's participants (its first packet a
/// STUN check to one) at once, and then keep talking (ICE consent every 5 s).
const INTRODUCE_WITHIN: Duration = Duration::from_secs(10);
const IDLE_AFTER: Duration = Duration::from_secs(30);

/// Why a connection was closed (the `reason` label of `sfu_ice_tcp_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    Eof,
    Error,
    Unknown,
    Idle,
    Limit,
    Left,
}

impl Close {
    pub const ALL: [Close; 6] = [
        Close::Eof,
        Close::Error,
        Close::Unknown,
        Close::Idle,
        Close::Limit,
        Close::Left,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Close::Eof => "eof",
            Close::Error => "error",
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
    /// Connections that may hold unread bytes (an event came, or the read budget
    /// ran out first: the edge-triggered poll will not say so again).
    readable: Vec<usize>,
    is_readable: Vec<bool>,
    /// Connections with bytes queued to write.
    writing: Vec<usize>,
    is_writing: Vec<bool>,
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
            listeners,
            listener_tokens,
            conn_tokens,
            conns: Vec::new(),
            free: Vec::new(),
            by_remote: HashMap::new(),
            readable: Vec::new(),
            is_readable: Vec::new(),
            writing: Vec::new(),
            is_writing: Vec::new(),
            scratch: vec![0; READ_BUDGET].into_boxed_slice(),
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
        loop {
            let (mut stream, remote) = match self.listeners[listener].accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken.
                    tracing::debug!("ice-tcp accept: {e}");
                    return;
                }
            };
            if self.by_remote.len() >= MAX_CONNECTIONS {
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
            if let Some(old) = self.by_remote.insert(remote, slot) {
                // The same address again: the client's side of the old connection
                // is gone (its port is reused), so ours is dead too.
                self.close_slot(registry, old, Close::Eof);
            }
            self.metrics.tcp_connections.inc();
            mark(&mut self.readable, &mut self.is_readable, slot);
        }
    }

    /// Read what the readable connections hold, up to a budget each, and hand each
    /// packet to `deliver(listener, remote, packet)`, which says whether it reached
    /// a participant. A connection whose packet reached none is closed: it is not
    /// a client of this shard (or its participant left).
    pub fn read(
        &mut self,
        registry: &Registry,
        now: Instant,
        mut deliver: impl FnMut(usize, SocketAddr, &[u8]) -> bool,
    ) {
        let mut slots = std::mem::take(&mut self.readable);
        let mut i = 0;
        while i < slots.len() {
            let slot = slots[i];
            let mut fate = None;
            let mut drained = false;
            if let Some(c) = self.conns[slot].as_mut() {
                let mut read = 0;
                while read < READ_BUDGET {
                    match c.stream.read(&mut self.scratch[..READ_BUDGET - read]) {
                        Ok(0) => {
                            fate = Some(Close::Eof);
                            break;
                        }
                        Ok(n) => {
                            read += n;
                            c.last_rx = now;
                            let (listener, remote) = (c.listener, c.remote);
                            let metrics = &self.metrics;
                            let introduced = &mut c.introduced;
                            let ok = c.rx.push(&self.scratch[..n], |p| {
                                metrics.tcp_packets_received.inc();
                                let known = deliver(listener, remote, p);
                                *introduced |= known;
                                known
                            });
                            if !ok {
                                fate = Some(Close::Unknown);
                                break;
                            }
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
            } else {
                drained = true;
            }
            if let Some(why) = fate {
                self.close_slot(registry, slot, why);
                drained = true;
            }
            if drained {
                self.is_readable[slot] = false;
                slots.swap_remove(i);
            } else {
                i += 1;
            }
        }
        // Keep what stayed readable, with anything marked meanwhile.
        slots.append(&mut self.readable);
        self.readable = slots;
    }

    /// Frame the turn's packets onto their connections and write what can go now.
    pub fn send(&mut self, registry: &Registry, out: &TcpOut) {
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
        self.write(registry);
    }

    fn write(&mut self, registry: &Registry) {
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

    /// Close connections that never named a participant, or went quiet.
    pub fn housekeeping(&mut self, registry: &Registry, now: Instant) {
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
        self.free.push(slot);
        self.metrics.tcp_connections.dec();
        self.metrics.tcp_closed[why as usize].inc();
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn mark(list: &mut Vec<usize>, flags: &mut Vec<bool>, slot: usize) {
    if flags.len() <= slot {
        flags.resize(slot + 1, false);
    }
    if !flags[slot] {
        flags[slot] = true;
        list.push(slot);
    }
}
