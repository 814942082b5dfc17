//! str0m's share of a forwarded packet, in memory (no sockets): the node-side `Rtc`
//! configured as the media node configures it (ICE-lite, RTP mode, BWE, TWCC, NACK),
//! connected to a client `Rtc` by handing datagrams across.
//!
//! - `str0m_write`: `write_rtp` on the subscriber's stream + `poll_output` until
//!   `Timeout`: one SRTP datagram out (what each subscriber of a packet costs).
//! - `str0m_read`: `handle_input` of one SRTP datagram from a publisher + `poll_output`
//!   until `Timeout`: one `RtpPacket` event (what each received packet costs).
//! - `drain/per_packet` and `drain/per_turn`: one loop turn of the media node for one
//!   subscriber with several slots (a 4-packet frame to each), time moving on as it
//!   does, str0m's pacer gate (a timeout 1 µs after each released packet) handled as
//!   the worker handles it. `per_packet` drains after every write (the shard before
//!   the worker); `per_turn` gives the subscriber one timeout at the end of the turn
//!   (the worker). The client gets the datagrams and answers (TWCC, receiver reports,
//!   ICE), outside the timing, so BWE runs as in the node.
//!
//! A counting allocator reports allocations per packet for both (printed once): the
//! part of the packet path we cannot make allocation-free from outside str0m.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use str0m::bwe::Bitrate;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)] // a GlobalAlloc is unsafe by definition; this one only counts
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NODE: &str = "127.0.0.1:20000";
const CLIENT: &str = "127.0.0.1:40000";

struct Pair {
    node: Rtc,
    client: Rtc,
    now: Instant,
    /// The node's send stream to the client, and the client's to the node.
    node_tx: Ssrc,
    client_tx: Ssrc,
    client_mid: Mid,
    /// The node's send streams on every slot (m-line) toward the client.
    node_slots: Vec<Ssrc>,
}

fn node_rtc(now: Instant) -> Rtc {
    RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .enable_bwe(Some(Bitrate::kbps(1000)))
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now)
}

/// Hand datagrams across both ways until neither side has anything to say.
fn pump(node: &mut Rtc, client: &mut Rtc, now: Instant) {
    benches::in_memory::pump(
        node,
        client,
        NODE.parse().unwrap(),
        CLIENT.parse().unwrap(),
        now,
    );
}

fn connect() -> Pair {
    connect_with_slots(1)
}

/// A pair whose client receives on `slots` video m-lines (the first also sends).
fn connect_with_slots(slots: usize) -> Pair {
    let mut now = Instant::now();
    let mut node = node_rtc(now);
    node.add_local_candidate(Candidate::host(NODE.parse().unwrap(), "udp").unwrap());
    let mut client = benches::in_memory::client_rtc(CLIENT.parse().unwrap(), now);
    let mut api = client.sdp_api();
    let client_mid = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let mut mids = vec![client_mid];
    for _ in 1..slots {
        mids.push(api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
    }
    let (offer, pending) = api.apply().unwrap();
    let answer = node.sdp_api().accept_offer(offer).unwrap();
    client.sdp_api().accept_answer(pending, answer).unwrap();
    for _ in 0..200 {
        pump(&mut node, &mut client, now);
        if node.is_connected() && client.is_connected() {
            break;
        }
        now += Duration::from_millis(10);
        node.handle_input(Input::Timeout(now)).unwrap();
        client.handle_input(Input::Timeout(now)).unwrap();
    }
    assert!(
        node.is_connected() && client.is_connected(),
        "no connection"
    );
    let node_slots: Vec<Ssrc> = mids
        .iter()
        .map(|mid| {
            node.direct_api()
                .stream_tx_by_mid(*mid, None)
                .map(|tx| {
                    tx.set_unpaced(true);
                    tx.ssrc()
                })
                .expect("node send stream")
        })
        .collect();
    let node_tx = node_slots[0];
    let client_tx = client
        .direct_api()
        .stream_tx_by_mid(client_mid, None)
        .map(|tx| {
            tx.set_unpaced(true);
            tx.ssrc()
        })
        .expect("client send stream");
    Pair {
        node,
        client,
        now,
        node_tx,
        client_tx,
        client_mid,
        node_slots,
    }
}

/// What the worker does for a touched peer: one timeout stamps what was written; then
/// poll, handling the pacer's 1 µs gate at once (time moves on by it). Datagrams go to
/// `out`. Returns the time the peer's clock reached.
fn release(rtc: &mut Rtc, now: Instant, out: &mut udpbatch::TxQueue) -> Instant {
    let gate = Duration::from_micros(1);
    let mut at = now;
    loop {
        rtc.handle_input(Input::Timeout(at)).unwrap();
        loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) if t <= at + gate => {
                    at = at.max(t);
                    break;
                }
                Output::Timeout(_) => return at,
                Output::Transmit(t) => out.push(t.destination, &t.contents),
                Output::Event(_) => {}
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Drain {
    PerPacket,
    PerTurn,
}

const FRAME_PACKETS: u64 = 4;

/// One turn of the node for this subscriber: a frame to each slot, drained as `drain`
/// says. The packets written.
fn forward_turn(
    p: &mut Pair,
    drain: Drain,
    seq: &mut u64,
    payload: &std::sync::Arc<[u8]>,
    out: &mut udpbatch::TxQueue,
) -> u64 {
    let mut at = p.now;
    let mut written = 0;
    for i in 0..p.node_slots.len() {
        *seq += 1;
        for k in 0..FRAME_PACKETS {
            write(
                &mut p.node,
                p.node_slots[i],
                *seq * FRAME_PACKETS + k,
                at,
                payload,
            );
            written += 1;
            if let Drain::PerPacket = drain {
                at = release(&mut p.node, at, out);
            }
        }
    }
    if let Drain::PerTurn = drain {
        at = release(&mut p.node, at, out);
    }
    p.now = p.now.max(at);
    written
}

/// Carry a turn's datagrams to the client and its answers back (untimed): keeps ICE,
/// TWCC and the receiver reports going as in a real session.
fn deliver(p: &mut Pair, out: &mut udpbatch::TxQueue) {
    let (n, c): (SocketAddr, SocketAddr) = (NODE.parse().unwrap(), CLIENT.parse().unwrap());
    for (_, bytes) in out.iter() {
        let input = Input::Receive(
            p.now,
            Receive {
                proto: Protocol::Udp,
                source: n,
                destination: c,
                contents: bytes.try_into().unwrap(),
            },
        );
        p.client.handle_input(input).unwrap();
    }
    out.clear();
    p.client.handle_input(Input::Timeout(p.now)).unwrap();
    benches::in_memory::relay(&mut p.client, &mut p.node, c, n, p.now);
}

fn drain_patterns(c: &mut Criterion) {
    const SLOTS: usize = 4;
    let payload: std::sync::Arc<[u8]> = vec![0x10; 1100].into();
    let mut group = c.benchmark_group("drain");
    group.throughput(Throughput::Elements(SLOTS as u64 * FRAME_PACKETS));
    for (name, drain) in [
        ("per_packet", Drain::PerPacket),
        ("per_turn", Drain::PerTurn),
    ] {
        let mut p = connect_with_slots(SLOTS);
        let mut seq = 0u64;
        let mut out = udpbatch::TxQueue::with_capacity(64);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    // A turn a millisecond: str0m's timers (NACK, TWCC, BWE) run.
                    p.now += Duration::from_millis(1);
                    let start = Instant::now();
                    let written = forward_turn(&mut p, drain, &mut seq, &payload, &mut out);
                    took += start.elapsed();
                    assert_eq!(written, SLOTS as u64 * FRAME_PACKETS);
                    assert!(!out.is_empty(), "the turn sent nothing");
                    deliver(&mut p, &mut out);
                }
                took
            })
        });
    }
    group.finish();
}

fn vp8_pt(rtc: &Rtc) -> str0m::media::Pt {
    rtc.codec_config()
        .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
        .unwrap()
        .pt()
}

fn write(rtc: &mut Rtc, ssrc: Ssrc, seq: u64, now: Instant, payload: &std::sync::Arc<[u8]>) {
    let pt = vp8_pt(rtc);
    let mut api = rtc.direct_api();
    let tx = api.stream_tx(&ssrc).unwrap();
    tx.write_rtp(
        RtpWrite::new(pt, seq.into(), (seq as u32) * 3000, now, payload.clone())
            .marker(true)
            .ext_vals(ExtensionValues::default())
            .nackable(true),
    );
}

/// Write one packet on the node and drain it: the datagrams produced.
fn node_send(p: &mut Pair, seq: u64, payload: &std::sync::Arc<[u8]>) -> u64 {
    write(&mut p.node, p.node_tx, seq, p.now, payload);
    // str0m queues a write until time is next handed in (as the shard does once per
    // turn for every peer it wrote to).
    // With BWE on, str0m's pacer releases one packet per timeout: this is the cost
    // the shard pays per forwarded packet (it handles due timeouts in the drain).
    p.node.handle_input(Input::Timeout(p.now)).unwrap();
    let mut sent = 0;
    while let Ok(out) = p.node.poll_output() {
        match out {
            Output::Timeout(_) => break,
            Output::Transmit(_) => sent += 1,
            Output::Event(_) => {}
        }
    }
    sent
}

/// SRTP datagrams from the client, made ahead (untimed).
fn client_datagrams(p: &mut Pair, first_seq: u64, n: u64) -> Vec<Vec<u8>> {
    let payload: std::sync::Arc<[u8]> = vec![0x10; 1100].into();
    let mut out = Vec::with_capacity(n as usize);
    let _ = p.client_mid;
    for seq in first_seq..first_seq + n {
        write(&mut p.client, p.client_tx, seq, p.now, &payload);
        p.client.handle_input(Input::Timeout(p.now)).unwrap();
        while let Ok(o) = p.client.poll_output() {
            match o {
                Output::Timeout(_) => break,
                Output::Transmit(t) if t.contents.len() > 1000 => out.push(t.contents.to_vec()),
                _ => {}
            }
        }
    }
    out
}

/// Feed one datagram to the node and drain it: the RTP packets it yielded.
fn node_receive(p: &mut Pair, datagram: &[u8]) -> u64 {
    let input = Input::Receive(
        p.now,
        Receive {
            proto: Protocol::Udp,
            source: CLIENT.parse().unwrap(),
            destination: NODE.parse().unwrap(),
            contents: datagram.try_into().unwrap(),
        },
    );
    p.node.handle_input(input).unwrap();
    let mut got = 0;
    while let Ok(out) = p.node.poll_output() {
        match out {
            Output::Timeout(_) => break,
            Output::Event(Event::RtpPacket(_)) => got += 1,
            _ => {}
        }
    }
    got
}

fn allocations_per_packet(p: &mut Pair, seq: &mut u64) -> (f64, f64) {
    let payload: std::sync::Arc<[u8]> = vec![0x10; 1100].into();
    const N: u64 = 2_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut sent = 0;
    for _ in 0..N {
        *seq += 1;
        sent += node_send(p, *seq, &payload);
    }
    let write = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / sent as f64;
    let datagrams = client_datagrams(p, *seq, N);
    *seq += N;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut got = 0;
    for d in &datagrams {
        got += node_receive(p, d);
    }
    let read = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / got.max(1) as f64;
    (write, read)
}

fn str0m_path(c: &mut Criterion) {
    let mut p = connect();
    let mut seq = 1u64;
    let (write_allocs, read_allocs) = allocations_per_packet(&mut p, &mut seq);
    println!("str0m allocations per packet: write {write_allocs:.2}, read {read_allocs:.2}");

    let payload: std::sync::Arc<[u8]> = vec![0x10; 1100].into();
    let mut group = c.benchmark_group("str0m");
    group.throughput(Throughput::Elements(1));
    group.bench_function("write", |b| {
        b.iter(|| {
            seq += 1;
            // Move time on now and then, as the shard does, so str0m's timers run.
            if seq.is_multiple_of(64) {
                p.now += Duration::from_millis(5);
                p.node.handle_input(Input::Timeout(p.now)).unwrap();
            }
            assert!(node_send(&mut p, seq, &payload) >= 1);
        })
    });
    // A fresh pair: the write benchmark ran simulated minutes without the client's
    // ICE keepalives, enough for the node to give the pair up.
    let mut p = connect();
    let mut seq = 1u64;
    group.bench_function("read", |b| {
        b.iter_custom(|iters| {
            let datagrams = client_datagrams(&mut p, seq, iters);
            seq += iters;
            let start = Instant::now();
            let mut got = 0;
            for d in &datagrams {
                got += node_receive(&mut p, d);
            }
            let took = start.elapsed();
            assert_eq!(got, iters, "{} datagrams made", datagrams.len());
            took
        })
    });
    group.finish();
}

criterion_group!(benches, str0m_path, drain_patterns);
criterion_main!(benches);
