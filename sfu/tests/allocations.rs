//! Zero allocations per forwarded packet on our side of the packet path, proved with a
//! counting global allocator: the routing core (layer choice, keyframe gating, seq/ts
//! rewriting, active-speaker levels) while the allocator moves subscribers between
//! layers, and the batched UDP queue (datagrams in by `recvmmsg`, out by GSO) on real
//! loopback sockets.
//!
//! str0m's own share (one `Vec` per `Transmit`, one per received `RtpPacket`) is
//! measured by the `str0m_path` benchmark and recorded in benches/RESULTS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use sfu::core::{
    Action, Codec, Forward, Kind, PacketIn, ParticipantId, Picture, Room, RoomEvent, Sink, TrackId,
    TrackSource,
};
use udpbatch::{BatchSocket, RxBatch, TxQueue};

struct Counting;

thread_local! {
    /// Only the measuring thread's allocations count (tests run side by side): both
    /// the switch and the tally are per thread, so one test's window never picks up
    /// another's allocations.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn tally() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
    }
}

#[allow(unsafe_code)] // a GlobalAlloc is unsafe by definition; this one only counts
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        tally();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        tally();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.with(Cell::get) - before)
}

const VIDEO: TrackId = TrackId(1);
const AUDIO: TrackId = TrackId(2);
const SUBSCRIBERS: u64 = 10;

#[test]
fn routing_core_forwards_without_allocating() {
    let mut room = Room::new();
    let mut actions: Vec<Action> = Vec::with_capacity(256);
    let mut out: Vec<Forward> = Vec::with_capacity(256);
    let start = Instant::now();
    let publisher = ParticipantId(0);
    room.add_participant(publisher, true, &mut actions);
    for s in 1..=SUBSCRIBERS {
        room.add_participant(ParticipantId(s), true, &mut actions);
    }
    room.publish(
        VIDEO,
        publisher,
        (Kind::Video, TrackSource::Camera),
        Codec::Vp8,
        90_000,
        3,
        &mut actions,
    );
    room.publish(
        AUDIO,
        publisher,
        (Kind::Audio, TrackSource::Camera),
        Codec::Opus,
        48_000,
        1,
        &mut actions,
    );
    for s in 1..=SUBSCRIBERS {
        for (slot, track) in [VIDEO, AUDIO].into_iter().enumerate() {
            let sink = Sink {
                peer: s as u32,
                slot: slot as u32,
            };
            room.subscription_ready(start, ParticipantId(s), track, sink, None, &mut actions);
        }
    }

    // 20 s of simulcast video (30/15/7.5 fps, keyframes every second) and 20 ms audio.
    // Each subscriber's estimate swings between "top layer" and "bottom layer" every
    // 4 s, so the allocator switches layers throughout.
    let mut seq = [0u64; 3];
    let mut audio_seq = 0u64;
    let mut packets = 0u64;
    let mut forwarded = 0u64;
    let mut switches = 0u64;
    let mut measured_allocations = 0u64;
    let mut measured_packets = 0u64;
    let step = Duration::from_millis(5);
    for tick in 0..4000u32 {
        let now = start + step * tick;
        let t_ms = tick as u64 * 5;
        let warm = t_ms >= 2000;
        if t_ms.is_multiple_of(500) {
            for s in 1..=SUBSCRIBERS {
                let high = (t_ms / 4000 + s).is_multiple_of(2);
                room.set_estimate(ParticipantId(s), if high { 3_000_000 } else { 300_000 });
            }
            actions.clear();
            room.tick(now, &mut actions);
            switches += actions
                .iter()
                .filter(|a| matches!(a, Action::Event(RoomEvent::LayerChanged { .. })))
                .count() as u64;
        }
        let mut batch: [Option<PacketIn>; 4] = [None, None, None, None];
        if t_ms.is_multiple_of(20) {
            audio_seq += 1;
            batch[3] = Some(PacketIn {
                layer: 0,
                ssrc: 50,
                seq: audio_seq,
                ts: (audio_seq as u32).wrapping_mul(960),
                marker: false,
                keyframe: false,
                payload_len: 80,
                audio_level: Some(30),
                picture: None,
            });
        }
        for layer in 0..3u8 {
            // Layer l sends a frame every 135/65/35 ms, as 2/3/4 packets 5 ms apart.
            let period = [135u64, 65, 35][layer as usize];
            let per_frame = 2 + layer as u64;
            let phase = t_ms % period;
            if phase >= per_frame * 5 {
                continue;
            }
            let index = phase / 5;
            let frame = t_ms / period;
            seq[layer as usize] += 1;
            batch[layer as usize] = Some(PacketIn {
                layer,
                ssrc: 100 + layer as u32,
                seq: seq[layer as usize],
                ts: (frame as u32).wrapping_mul(3000),
                marker: index == per_frame - 1,
                keyframe: index == 0 && (t_ms % 1000) < period,
                payload_len: 1100,
                audio_level: None,
                picture: Some(Picture {
                    id: frame as u16 & 0x7fff,
                    tl0: Some(frame as u8),
                }),
            });
        }
        for pkt in batch.iter().flatten() {
            let track = if pkt.audio_level.is_some() {
                AUDIO
            } else {
                VIDEO
            };
            out.clear();
            actions.clear();
            let (_, n) = count(|| room.on_packet(now, track, pkt, &mut out, &mut actions));
            packets += 1;
            forwarded += out.len() as u64;
            switches += actions
                .iter()
                .filter(|a| matches!(a, Action::Event(RoomEvent::LayerChanged { .. })))
                .count() as u64;
            if warm {
                measured_allocations += n;
                measured_packets += 1;
            }
        }
    }
    assert!(
        measured_packets > 3_000,
        "{measured_packets} packets measured"
    );
    assert!(
        forwarded > packets * 2,
        "forwarding happened: {forwarded} of {packets}"
    );
    assert!(
        switches >= 2 * SUBSCRIBERS,
        "the allocator switched layers: {switches}"
    );
    assert_eq!(
        measured_allocations, 0,
        "allocations in {measured_packets} routed packets"
    );
}

#[test]
fn batched_udp_queue_sends_and_receives_without_allocating() {
    let tx_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rx_socks: Vec<_> = (0..4)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let tx_io = BatchSocket::new(&tx_sock).unwrap();
    let rx_io: Vec<_> = rx_socks
        .iter()
        .map(|s| BatchSocket::new(s).unwrap())
        .collect();
    let dests: Vec<_> = rx_socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut queue = TxQueue::with_capacity(256);
    let mut rx = RxBatch::default();
    let payload = [7u8; 1100];

    let turn = |queue: &mut TxQueue, rx: &mut RxBatch| -> (u64, u64) {
        // One loop turn: a frame of 4 packets to each of 4 subscribers, then read all.
        for _ in 0..4 {
            for d in &dests {
                queue.push(*d, &payload);
            }
        }
        let sent = queue.flush(&tx_io, &tx_sock).datagrams;
        let mut got = 0;
        for (i, s) in rx_socks.iter().enumerate() {
            while let Ok(_n) = rx.recv(&rx_io[i], s) {
                got += rx.datagrams().count() as u64;
            }
        }
        (sent, got)
    };
    for _ in 0..10 {
        turn(&mut queue, &mut rx); // warm up
    }
    let mut sent = 0;
    let mut received = 0;
    let ((), allocations) = count(|| {
        for _ in 0..500 {
            let (s, r) = turn(&mut queue, &mut rx);
            sent += s;
            received += r;
        }
    });
    assert_eq!(sent, 500 * 16);
    // Loopback delivers synchronously; allow for a datagram still in flight.
    assert!(received >= sent - 16, "received {received} of {sent}");
    assert_eq!(allocations, 0, "allocations for {sent} datagrams");
}
