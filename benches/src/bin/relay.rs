//! The bare UDP relay: the capacity benchmark's baseline for what this machine can move.
//!
//! Same fan-out and batching as the media node, nothing else: no ICE, no DTLS/SRTP, no
//! RTCP, no bandwidth estimation. One thread per shard, each with its own socket and
//! the media node's batched I/O (recvmmsg + GRO in, per-destination GSO out, flushed
//! per loop turn). A client joins a room with a `JOIN <room>` datagram (answered
//! `OK`), leaves with `BYE`; every other datagram from a member is RTP and goes to the
//! room's other members: audio always, video only from the layer the relay forwards
//! (as an SFU forwards one simulcast layer per subscriber). The load generator's
//! plain-RTP clients (`loadtest --target relay://HOST:PORT/SHARDS`) speak this.
//!
//! Layer of a packet: the low two bits of its SSRC (3 = audio), the load generator's
//! convention for plain RTP.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clap::Parser;
use udpbatch::{BatchSocket, RxBatch, TxQueue};

#[derive(Parser, Debug)]
#[command(about = "Bare UDP relay (no crypto): the capacity benchmark's baseline")]
struct Cli {
    /// IP to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// UDP port of the first shard; the others follow.
    #[arg(long, default_value_t = 30000)]
    port: u16,
    /// Shards (threads, one socket each).
    #[arg(long, default_value_t = 2)]
    shards: u16,
    /// The video layer forwarded to subscribers (0-2).
    #[arg(long, default_value_t = 2)]
    layer: u8,
}

/// Room names are at most this long, and a shard holds at most this many rooms: a
/// flood of joins cannot grow the relay without bound.
const MAX_ROOM_NAME: usize = 64;
const MAX_ROOMS: usize = 1 << 16;
/// A member silent this long is dropped (a client that vanished without BYE).
const IDLE: Duration = Duration::from_secs(10);

struct Member {
    room: usize,
    last_heard: Instant,
}

#[derive(Default)]
struct Relay {
    members: HashMap<SocketAddr, Member>,
    room_ids: HashMap<Box<[u8]>, usize>,
    rooms: Vec<Vec<SocketAddr>>,
    forwarded: u64,
}

impl Relay {
    fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        layer: u8,
        tx: &mut TxQueue,
    ) {
        if let Some(room) = data.strip_prefix(b"JOIN ") {
            self.leave(from);
            let next = self.rooms.len();
            if room.is_empty() || room.len() > MAX_ROOM_NAME || next >= MAX_ROOMS {
                tx.push(from, b"NO");
                return;
            }
            let id = *self.room_ids.entry(room.into()).or_insert(next);
            if id == next {
                self.rooms.push(Vec::new());
            }
            self.rooms[id].push(from);
            self.members.insert(
                from,
                Member {
                    room: id,
                    last_heard: now,
                },
            );
            tx.push(from, b"OK");
            return;
        }
        if data == b"BYE" {
            self.leave(from);
            return;
        }
        let Some(m) = self.members.get_mut(&from) else {
            return;
        };
        m.last_heard = now;
        if data.len() < 12 || data[0] >> 6 != 2 {
            return; // keepalive or not RTP
        }
        let ssrc_layer = data[11] & 3;
        if ssrc_layer != 3 && ssrc_layer != layer {
            return;
        }
        for to in &self.rooms[m.room] {
            if *to != from {
                tx.push(*to, data);
                self.forwarded += 1;
            }
        }
    }

    fn leave(&mut self, who: SocketAddr) {
        if let Some(m) = self.members.remove(&who) {
            self.rooms[m.room].retain(|a| *a != who);
        }
    }

    fn expire(&mut self, now: Instant) {
        let gone: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_heard) > IDLE)
            .map(|(a, _)| *a)
            .collect();
        for a in gone {
            self.leave(a);
        }
    }
}

fn shard(socket: UdpSocket, layer: u8) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let mut socket = mio::net::UdpSocket::from_std(socket);
    let io = BatchSocket::new(&socket)?;
    let mut poll = mio::Poll::new()?;
    poll.registry()
        .register(&mut socket, mio::Token(0), mio::Interest::READABLE)?;
    let mut events = mio::Events::with_capacity(4);
    let mut rx = RxBatch::default();
    let mut tx = TxQueue::with_capacity(1024);
    let mut relay = Relay::default();
    let mut next_sweep = Instant::now() + IDLE;
    loop {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Edge-triggered: read until the socket is empty, sending after each batch.
        loop {
            match rx.recv(&io, &socket) {
                Ok(_) => {
                    let now = Instant::now();
                    for (from, data) in rx.datagrams() {
                        relay.on_datagram(now, from, data, layer, &mut tx);
                    }
                    tx.flush(&io, &socket);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => eprintln!("relay: recv: {e}"),
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            relay.expire(now);
            next_sweep = now + IDLE;
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.layer > 2 || cli.shards == 0 {
        eprintln!("error: --layer must be 0-2 and --shards at least 1");
        return std::process::ExitCode::from(2);
    }
    let mut threads = Vec::new();
    for i in 0..cli.shards {
        let addr = SocketAddr::new(cli.bind, cli.port + i);
        let socket = match bind(addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot bind {addr}: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let layer = cli.layer;
        threads.push(std::thread::spawn(move || shard(socket, layer)));
    }
    println!(
        "relay: {} shard(s) on {}:{}-{}, forwarding video layer {}",
        cli.shards,
        cli.bind,
        cli.port,
        cli.port + cli.shards - 1,
        cli.layer
    );
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("relay: shard failed: {e}");
            return std::process::ExitCode::from(1);
        }
    }
    std::process::ExitCode::SUCCESS
}

/// A socket with the media node's buffer sizes (bursts of keyframes).
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn rtp(layer: u8) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4 | layer];
        p.extend_from_slice(&[0; 100]);
        p
    }

    #[test]
    fn forwards_audio_and_the_chosen_layer_to_the_other_members() {
        let now = Instant::now();
        let mut relay = Relay::default();
        let mut tx = TxQueue::with_capacity(16);
        for p in [1, 2, 3] {
            relay.on_datagram(now, addr(p), b"JOIN a", 2, &mut tx);
        }
        relay.on_datagram(now, addr(9), b"JOIN b", 2, &mut tx);
        relay.forwarded = 0;
        relay.on_datagram(now, addr(1), &rtp(3), 2, &mut tx); // audio
        relay.on_datagram(now, addr(1), &rtp(2), 2, &mut tx); // top layer
        relay.on_datagram(now, addr(1), &rtp(0), 2, &mut tx); // not forwarded
        relay.on_datagram(now, addr(7), &rtp(3), 2, &mut tx); // not a member
        assert_eq!(relay.forwarded, 4);
        relay.on_datagram(now, addr(2), b"BYE", 2, &mut tx);
        relay.on_datagram(now, addr(1), &rtp(3), 2, &mut tx);
        assert_eq!(relay.forwarded, 5);
        relay.expire(now + IDLE + Duration::from_secs(1));
        assert!(relay.members.is_empty());
        // Oversized or empty room names are refused, not stored.
        let long = [b"JOIN ".as_slice(), &[b'x'; 65]].concat();
        relay.on_datagram(now, addr(5), &long, 2, &mut tx);
        relay.on_datagram(now, addr(5), b"JOIN ", 2, &mut tx);
        assert!(relay.members.is_empty());
        assert_eq!(relay.rooms.len(), 2);
    }
}
