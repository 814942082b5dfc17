//! The routing core alone: packets/s through `Room::on_packet` for 1 -> 1 and 1 -> N
//! fan-out (simulcast video, subscribers on the top layer, steady forwarding).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu::core::{
    Action, Codec, Forward, Kind, PacketIn, ParticipantId, Picture, Room, Sink, TrackId,
    TrackSource,
};

fn room_with(subscribers: u32) -> (Room, Instant) {
    let mut room = Room::new();
    let mut actions = Vec::new();
    let now = Instant::now();
    let publisher = ParticipantId(0);
    room.add_participant(publisher, true, &mut actions);
    for s in 1..=subscribers {
        room.add_participant(ParticipantId(s as u64), true, &mut actions);
    }
    room.publish(
        TrackId(1),
        publisher,
        (Kind::Video, TrackSource::Camera),
        Codec::Vp8,
        90_000,
        3,
        &mut actions,
    );
    for s in 1..=subscribers {
        let sink = Sink { peer: s, slot: 0 };
        room.subscription_ready(
            now,
            ParticipantId(s as u64),
            TrackId(1),
            sink,
            None,
            &mut actions,
        );
    }
    (room, now)
}

fn packet(layer: u8, seq: u64, keyframe: bool) -> PacketIn {
    PacketIn {
        layer,
        ssrc: 100 + layer as u32,
        seq,
        ts: (seq as u32).wrapping_mul(3000),
        marker: true,
        keyframe,
        payload_len: 1100,
        audio_level: None,
        picture: Some(Picture {
            id: seq as u16 & 0x7fff,
            tl0: Some(seq as u8),
        }),
    }
}

fn forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_forward");
    for subscribers in [1u32, 10, 50] {
        let (mut room, mut now) = room_with(subscribers);
        let mut out: Vec<Forward> = Vec::with_capacity(64);
        let mut actions: Vec<Action> = Vec::with_capacity(64);
        // Warm up: keyframes on layer 0 start every subscription.
        room.on_packet(now, TrackId(1), &packet(0, 1, true), &mut out, &mut actions);
        let mut seq = 2u64;
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("1to{subscribers}")),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    out.clear();
                    actions.clear();
                    seq += 1;
                    now += Duration::from_micros(300);
                    room.on_packet(
                        now,
                        TrackId(1),
                        &packet(0, seq, false),
                        &mut out,
                        &mut actions,
                    );
                    assert_eq!(out.len(), subscribers as usize);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
