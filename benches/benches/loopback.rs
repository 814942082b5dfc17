//! Forwarding over loopback, end to end: a running media node (one shard) between a
//! publisher and N subscribers (view-only joins, like WHEP players), all the `client`
//! crate's str0m peers, real UDP sockets, ICE, DTLS, SRTP. The publisher writes 1,000-byte Opus packets as fast
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
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::media::{with_padding, Clock, OpusFrames, Probe};
use client::peer::{Peer, PeerSetup};
use client::stats::{Measure, StreamKind};
use client::Env;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu::core::ParticipantId;
use sfu::{JoinKind, Node, NodeConfig};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};

/// Packets written before the subscribers must catch up (a frame or two).
const BURST: u64 = 8;

/// A client crate peer on a plain loopback socket.
struct Client {
    peer: Peer,
    socket: UdpSocket,
    measure: Measure,
}

impl Client {
    /// A publisher of audio alone, or a viewer.
    fn new(env: &Env) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let setup = PeerSetup {
            layers: 0,
            ..PeerSetup::of(env)
        };
        let now = Instant::now();
        Client {
            peer: Peer::with_setup(env, setup, addr, now).unwrap(),
            socket,
            measure: Measure::new(now),
        }
    }

    /// Join the node with `offer`, apply its answer.
    fn join(
        &mut self,
        node: &Node,
        (offer, pending): (SdpOffer, SdpPendingOffer),
        kind: JoinKind,
        name: &str,
    ) {
        let id: ParticipantId = node.allocate_participant();
        let joined = node
            .add_participant_as(id, "bench", name, &offer.to_sdp_string(), kind)
            .expect("the node accepts the offer");
        let answer = SdpAnswer::from_sdp_string(&joined.answer).unwrap();
        self.peer
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .unwrap();
    }

    /// Audio packets received (each carries a probe).
    fn received(&self) -> u64 {
        let audio = self.peer.received().filter(|r| r.kind == StreamKind::Audio);
        audio.map(|r| r.frames).sum()
    }

    /// Read what arrived, give the peer its turn, send what it wrote.
    fn turn(&mut self, env: &Env, buf: &mut [u8]) {
        let now = Instant::now();
        let measure = &mut self.measure;
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    let data = &buf[..n];
                    let _ = self
                        .peer
                        .handle_datagram(env, now, now, from, data, measure);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let _ = self.peer.turn(env, measure, now);
        let tx = self.peer.transmits();
        for (to, d) in tx.iter() {
            let _ = self.socket.send_to(d, to);
        }
        tx.clear();
    }
}

struct Room {
    _node: Node,
    env: Env,
    publisher: Client,
    subscribers: Vec<Client>,
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
        let env = Env::new("", OpusFrames::new().unwrap(), Clock(Instant::now()));
        let mut publisher = Client::new(&env);
        let (offer, pending, mids) = publisher.peer.publishing_offer().unwrap();
        publisher.join(&node, (offer, pending), JoinKind::Full, "publisher");
        let mid = mids.audio.expect("an audio m-line");
        let subs: Vec<Client> = (0..subscribers)
            .map(|i| {
                let mut c = Client::new(&env);
                let offer = c.peer.viewing_offer().unwrap();
                c.join(&node, offer, JoinKind::ViewOnly, &format!("s{i}"));
                c
            })
            .collect();
        let pt = publisher
            .peer
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == str0m::format::Codec::Opus)
            .unwrap()
            .pt();
        // A 1,000-byte Opus packet whose padding carries a probe, so that the
        // subscribers count it.
        let probe = Probe {
            sender: 1,
            layer: 0,
            seq: 0,
            sent_us: 0,
        };
        let payload = with_padding(&[0x78; 1000 - client::media::PROBE_LEN - 2], &probe);
        let mut room = Room {
            _node: node,
            env,
            publisher,
            subscribers: subs,
            ssrc: Ssrc::from(0),
            pt,
            seq: 0,
            payload: payload.into(),
            buf: vec![0; 2048],
        };
        // Connect everyone.
        let end = Instant::now() + Duration::from_secs(10);
        while !(room.publisher.peer.rtc.is_connected()
            && room.subscribers.iter().all(|s| s.peer.rtc.is_connected()))
        {
            assert!(Instant::now() < end, "peers did not connect");
            room.pump();
        }
        room.ssrc = room
            .publisher
            .peer
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
        while room.subscribers.iter().any(|s| s.received() == 0) {
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
        self.publisher.turn(&self.env, &mut self.buf);
        for s in &mut self.subscribers {
            s.turn(&self.env, &mut self.buf);
        }
    }

    fn write(&mut self) {
        self.seq += 1;
        let payload = &self.payload;
        let now = Instant::now();
        let mut api = self.publisher.peer.rtc.direct_api();
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
        let targets: Vec<u64> = self.subscribers.iter().map(|s| s.received() + n).collect();
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
                .any(|(s, w)| s.received() < *w)
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
