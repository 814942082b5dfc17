//! The I/O driver of one shard: an OS thread that owns the shard's UDP sockets (one,
//! or one per address family), its ICE-TCP listeners and connections ([`TcpConns`])
//! and its [`Worker`], and does nothing but I/O around it. Nothing here is shared with
//! other threads but the command channel, the event channel and the metrics
//! atomics: no locks on the packet path.
//!
//! The loop: wait (epoll via mio) for datagrams, a command, or the worker's deadline;
//! read the ready datagrams a batch per `recvmmsg` (GRO on) into the worker; hand it
//! the commands and the time; send what the turn wrote, per destination (GSO), by
//! `udpbatch`, and framed on ICE-TCP connections; pass its events to the control
//! plane.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use tokio::sync::mpsc;

use crate::backlog::{Backlog, Fate};
use crate::command::Command;
use crate::metrics::{Metrics, ShardMetrics};
use crate::tcp::TcpConns;
use crate::worker::{Worker, WorkerContext};
use control::NodeEvent;
use std::sync::Arc;
use udpbatch::{BatchSocket, RxBatch};

pub const WAKER: Token = Token(0);
/// The shard's sockets are `Token(SOCKETS + i)` (at most one per address family),
/// its ICE-TCP listeners `Token(LISTENERS + i)`, its connections `Token(CONNS + i)`.
pub const SOCKETS: usize = 1;
const LISTENERS: usize = 3;
const CONNS: usize = 8;

/// A loop turn longer than this is logged: it delayed the shard's packets.
const SLOW_TURN: Duration = Duration::from_millis(20);
/// Datagrams read per wakeup before timers and commands get their turn.
const READ_BUDGET: usize = 512;

pub struct Shard {
    index: usize,
    /// In the worker's order of local addresses.
    sockets: Vec<(UdpSocket, BatchSocket)>,
    /// Per socket: it may hold datagrams (its event came, or its read budget ran out
    /// before it was drained: the edge-triggered poll will not say so again).
    readable: Vec<bool>,
    tcp: TcpConns,
    next_tcp_housekeeping: Instant,
    poll: Poll,
    commands: Receiver<Command>,
    events: mpsc::Sender<NodeEvent>,
    metrics: ShardMetrics,
    node_metrics: Arc<Metrics>,
    worker: Worker,
    busy_since: Instant,
    busy: Duration,
    /// Events held for a lagging control plane.
    backlog: Backlog,
}

impl Shard {
    /// `sockets` and `listeners`: each with the address it is announced at (its host
    /// candidate).
    pub fn new(
        ctx: WorkerContext,
        sockets: Vec<(UdpSocket, SocketAddr)>,
        listeners: Vec<(TcpListener, SocketAddr)>,
        poll: Poll,
        commands: Receiver<Command>,
        events: mpsc::Sender<NodeEvent>,
    ) -> std::io::Result<Self> {
        let mut locals = Vec::new();
        let mut with_io = Vec::new();
        for (socket, announced) in sockets {
            // str0m takes a check only when it is addressed to a candidate: the
            // announced address, not the bound one (a wildcard, or behind NAT).
            locals.push(announced);
            let io = BatchSocket::new(&socket)?;
            with_io.push((socket, io));
        }
        let index = ctx.index;
        let node_metrics = ctx.metrics.clone();
        let metrics = node_metrics.shard(index);
        node_metrics.set_offload(index, with_io[0].1.offload());
        let now = Instant::now();
        let (listeners, tcp_locals): (Vec<_>, Vec<_>) = listeners.into_iter().unzip();
        Ok(Shard {
            index,
            readable: vec![true; with_io.len()],
            sockets: with_io,
            tcp: TcpConns::new(listeners, LISTENERS, CONNS, metrics.clone()),
            next_tcp_housekeeping: now,
            poll,
            commands,
            events,
            metrics,
            node_metrics,
            worker: Worker::new(ctx, locals, tcp_locals, now),
            busy_since: now,
            busy: Duration::ZERO,
            backlog: Backlog::default(),
        })
    }

    pub fn run(mut self) {
        for (i, (socket, _)) in self.sockets.iter_mut().enumerate() {
            self.poll
                .registry()
                .register(socket, Token(SOCKETS + i), Interest::READABLE)
                .expect("register shard socket");
        }
        self.tcp
            .register(self.poll.registry())
            .expect("register ICE-TCP listeners");
        let mut events = Events::with_capacity(16);
        let mut rx = RxBatch::default();
        let mut window_start = Instant::now();
        while !self.worker.is_shut_down() {
            let now = Instant::now();
            let more = self.readable.iter().any(|r| *r) || self.tcp.has_unread();
            let deadline = if more {
                now
            } else {
                self.worker.poll_timeout().max(now)
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
            for ev in events.iter() {
                if self.tcp.event(self.poll.registry(), woke, ev) {
                    continue;
                }
                if let Some(r) = ev
                    .token()
                    .0
                    .checked_sub(SOCKETS)
                    .and_then(|i| self.readable.get_mut(i))
                {
                    *r = true;
                }
            }

            // Connections replaced by a new one from the same address: forgotten
            // before the new one's packets are read.
            self.forget_closed_tcp();
            self.read_datagrams(&mut rx);
            self.read_tcp();
            self.worker.end_batch(Instant::now());
            let t1 = Instant::now();
            while let Ok(cmd) = self.commands.try_recv() {
                self.worker.handle_command(Instant::now(), cmd);
            }
            let t2 = Instant::now();
            self.worker.handle_timeout(t2);
            if t2 >= self.next_tcp_housekeeping {
                self.next_tcp_housekeeping = t2 + Duration::from_secs(1);
                self.tcp.housekeeping(self.poll.registry(), t2);
            }
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
        self.worker.close(Instant::now());
        self.flush();
    }

    /// Send what this turn wrote (per destination, in order, GSO where sizes allow)
    /// and pass on the turn's events. Whether there was anything to send.
    fn flush(&mut self) -> bool {
        // Bounded: a control plane that cannot keep up never stalls the shard's
        // packets; what carries state waits for it (`backlog`), the rest is dropped.
        let events = &self.events;
        let mut send = |ev| match events.try_send(ev) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(ev)) => Err(ev),
            // The control plane is gone (shutting down): nothing to keep.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        };
        self.backlog.drain(&mut send);
        let mut overflow = Vec::new();
        while let Some(ev) = self.worker.poll_event() {
            match self.backlog.push(ev, &mut send) {
                Fate::Sent | Fate::Held => {}
                Fate::Dropped => {
                    self.node_metrics.events_dropped.inc();
                }
                Fate::Overflow(p) => {
                    self.node_metrics.events_dropped.inc();
                    overflow.push(p);
                }
            }
        }
        if !overflow.is_empty() {
            tracing::warn!(
                shard = self.index,
                participants = overflow.len(),
                held = self.backlog.len(),
                "control plane lagging: participants let go"
            );
            for p in overflow {
                self.worker.let_go(p, "control_lagging");
            }
        }
        let mut sent = false;
        let tcp = self.worker.tcp_transmits();
        if !tcp.is_empty() {
            sent = true;
            self.tcp.send(tcp);
            tcp.clear();
        }
        self.tcp.write(self.poll.registry());
        // After the last packets to them were written (a leaving peer's included).
        for remote in self.worker.tcp_gone().drain(..) {
            self.tcp.close(self.poll.registry(), remote);
        }
        // What closed this turn (read, housekeeping, a failed write): no path now.
        self.forget_closed_tcp();
        for (tx, (socket, io)) in self.worker.transmits().iter_mut().zip(&self.sockets) {
            if tx.is_empty() {
                continue;
            }
            sent = true;
            let done = tx.flush(io, socket);
            self.metrics.packets_sent.inc_by(done.datagrams);
            self.metrics.bytes_sent.inc_by(done.bytes);
            self.metrics.send_calls.inc_by(done.calls);
            if done.failed > 0 {
                self.metrics.send_failed.inc_by(done.failed);
            }
            if done.gso_refused {
                // Its datagrams went one by one; the socket sends without GSO from now on.
                self.metrics.gso_refused.inc();
                self.node_metrics.set_offload(self.index, io.offload());
                tracing::warn!(
                    shard = self.index,
                    "the kernel refused a GSO send (EIO): GSO off"
                );
            }
        }
        sent
    }

    /// Read what the readable sockets hold, a batch per call, up to a budget per
    /// socket; one whose budget ran out first stays readable.
    fn read_datagrams(&mut self, rx: &mut RxBatch) {
        for ((socket, io), readable) in self.sockets.iter().zip(&mut self.readable) {
            if !*readable {
                continue;
            }
            let mut read = 0;
            loop {
                if read >= READ_BUDGET {
                    break;
                }
                match rx.recv(io, socket) {
                    Ok(_) => {
                        self.metrics.recv_calls.inc();
                        let now = Instant::now();
                        for (source, data) in rx.datagrams() {
                            read += 1;
                            self.worker.handle_datagram(now, source, data);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        *readable = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // ICMP errors (port unreachable from a gone client) surface here.
                        read += 1;
                        tracing::debug!(shard = self.index, "recv: {e}");
                    }
                }
            }
        }
    }

    /// ICE-TCP connections the driver closed are no paths of their peers any more.
    fn forget_closed_tcp(&mut self) {
        for remote in self.tcp.closed().drain(..) {
            self.worker.tcp_closed(remote);
        }
    }

    /// Read the ICE-TCP connections that hold bytes; a connection whose packets
    /// reach no peer of this shard is closed.
    fn read_tcp(&mut self) {
        if !self.tcp.has_unread() {
            return;
        }
        let worker = &mut self.worker;
        let now = Instant::now();
        self.tcp
            .read(self.poll.registry(), now, |listener, source, packet| {
                worker.handle_tcp_packet(now, listener, source, packet)
            });
    }
}
