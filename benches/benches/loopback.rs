//! Forwarding over loopback, end to end: a running media node (one shard) between a
//! str0m publisher and N str0m subscribers (view-only joins, like WHEP players), real
//! UDP sockets, ICE, DTLS, SRTP. The publisher writes 1,000-byte Opus packets as fast
//! as the subscribers take them; a sample is the time until every subscriber has
//! received every packet of the batch. Audio, because the node forwards it whatever
//! the bandwidth estimate (video at this rate would, rightly, be paused by the
//! allocator); the path per packet (SRTP, str0m, routing, batched I/O) is the same.
//!
//! Reported per published packet (`1toN` = N forwards each); the clients' own work
//! (one SRTP seal, N SRTP opens) runs in this thread while the node runs in its shard,
//! so the figure is the pipeline's throughput on this machine, not the node's CPU alone
//! (the capacity benchmark measures that).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu::core::ParticipantId;
use sfu::{JoinKind, Node, NodeConfig};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Packets written before the subscribers must catch up (a frame or two).
const BURST: u64 = 8;

struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    received: u64,
}

impl Peer {
    fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        Peer {
            rtc,
            socket,
            addr,
            received: 0,
        }
    }

    /// Offer one audio m-line, join the node, apply its answer.
    fn join(&mut self, node: &Node, dir: Direction, kind: JoinKind, name: &str) -> Mid {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let id: ParticipantId = node.allocate_participant();
        let joined = node
            .add_participant_as(id, "bench", name, &offer.to_sdp_string(), kind)
            .expect("the node accepts the offer");
        let answer = SdpAnswer::from_sdp_string(&joined.answer).unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        mid
    }

    /// Read what arrived, then drain str0m (handling due timeouts: its pacer hands out
    /// one packet per timeout).
    fn turn(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: self.addr,
                            contents: (&buf[..n]).try_into().unwrap(),
                        },
                    );
                    let _ = self.rtc.handle_input(input);
                    self.drain();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drain();
    }

    fn drain(&mut self) {
        let mut released = 0;
        while let Ok(out) = self.rtc.poll_output() {
            match out {
                Output::Timeout(t) if released < 64 && t <= Instant::now() => {
                    released += 1;
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
                Output::Timeout(_) => return,
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::RtpPacket(_)) => self.received += 1,
                Output::Event(_) => {}
            }
        }
    }
}

struct Room {
    _node: Node,
    publisher: Peer,
    subscribers: Vec<Peer>,
    ssrc: Ssrc,
    pt: Pt,
    seq: u64,
    payload: Arc<[u8]>,
    buf: Vec<u8>,
}

impl Room {
    fn new(subscribers: usize) -> Room {
        let (node, _events) = Node::start(NodeConfig {
            shards: 1,
            ..NodeConfig::default()
        })
        .expect("node starts");
        let mut publisher = Peer::new();
        let mid = publisher.join(&node, Direction::SendOnly, JoinKind::Full, "publisher");
        let subs: Vec<Peer> = (0..subscribers)
            .map(|i| {
                let mut p = Peer::new();
                p.join(
                    &node,
                    Direction::RecvOnly,
                    JoinKind::ViewOnly,
                    &format!("s{i}"),
                );
                p
            })
            .collect();
        let pt = publisher
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == str0m::format::Codec::Opus)
            .unwrap()
            .pt();
        let mut room = Room {
            _node: node,
            publisher,
            subscribers: subs,
            ssrc: Ssrc::from(0),
            pt,
            seq: 0,
            payload: vec![0x5a; 1000].into(),
            buf: vec![0; 2048],
        };
        // Connect everyone.
        let end = Instant::now() + Duration::from_secs(10);
        while !(room.publisher.rtc.is_connected()
            && room.subscribers.iter().all(|s| s.rtc.is_connected()))
        {
            assert!(Instant::now() < end, "peers did not connect");
            room.pump();
        }
        room.ssrc = room
            .publisher
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|tx| {
                tx.set_unpaced(true);
                tx.ssrc()
            })
            .expect("publisher send stream");
        // Until every subscriber's forwarding has started.
        let end = Instant::now() + Duration::from_secs(10);
        while room.subscribers.iter().any(|s| s.received == 0) {
            assert!(Instant::now() < end, "forwarding did not start");
            room.write();
            for _ in 0..5 {
                room.pump();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        room
    }

    fn pump(&mut self) {
        self.publisher.turn(&mut self.buf);
        for s in &mut self.subscribers {
            s.turn(&mut self.buf);
        }
    }

    fn write(&mut self) {
        self.seq += 1;
        let payload = &self.payload;
        let now = Instant::now();
        let mut api = self.publisher.rtc.direct_api();
        let tx = api.stream_tx(&self.ssrc).unwrap();
        tx.write_rtp(
            RtpWrite::new(
                self.pt,
                self.seq.into(),
                (self.seq as u32).wrapping_mul(960),
                now,
                payload.clone(),
            )
            .ext_vals(ExtensionValues::default()),
        );
    }

    /// Publish `n` packets in bursts; returns once every subscriber has them all.
    fn forward(&mut self, n: u64) {
        let targets: Vec<u64> = self.subscribers.iter().map(|s| s.received + n).collect();
        let mut written = 0;
        let end = Instant::now() + Duration::from_secs(30);
        while written < n {
            let burst = BURST.min(n - written);
            for _ in 0..burst {
                self.write();
            }
            written += burst;
            let want: Vec<u64> = targets.iter().map(|t| t - (n - written)).collect();
            while self
                .subscribers
                .iter()
                .zip(&want)
                .any(|(s, w)| s.received < *w)
            {
                assert!(Instant::now() < end, "packets lost on loopback");
                self.pump();
            }
        }
    }
}

fn loopback(c: &mut Criterion) {
    let mut group = c.benchmark_group("loopback_forward");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for subscribers in [1usize, 10] {
        let mut room = Room::new(subscribers);
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("1to{subscribers}")),
            &subscribers,
            |b, _| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    room.forward(iters);
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, loopback);
criterion_main!(benches);
