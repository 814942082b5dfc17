//! The SIP gateway's cost per call leg: 20 ms of one call's media through its sans-IO
//! core (`gateway::call::Call`): the caller's packet in (decoded, encoded to Opus for
//! the room, or passed through for an Opus leg) and the room's three voices in
//! (decoded at the leg's rate), mixed and encoded in the leg's codec out. Time per
//! 20 ms of a call = CPU share of one core per leg; 20 ms divided by it = legs a core
//! carries (the SFU's packet path is not in it: the leg's room peer is one more
//! participant there).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway::call::{Call, Output};
use gateway::sdp::{choose, Policy};

const POLICY: Policy = Policy {
    allow_plain_rtp: true,
};

fn offer(pt: &str, rtpmap: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP {pt} 101\r\n{rtpmap}a=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// A 20 ms frame of a tone at `rate`, frame `i`.
fn tone(freq: f64, rate: u32, i: u64) -> Vec<i16> {
    let n = rate as u64 / 50;
    (0..n)
        .map(|k| {
            let t = (i * n + k) as f64 / rate as f64;
            (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

fn opus_frames(freq: f64, frames: u64) -> Vec<Vec<u8>> {
    let mut e = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .expect("opus encoder");
    (0..frames)
        .map(|i| {
            let mut b = [0u8; 1500];
            let n = e.encode(&tone(freq, 48_000, i), &mut b).expect("encode");
            b[..n].to_vec()
        })
        .collect()
}

/// The caller's RTP packets for `frames` frames: G.711 A-law, G.722, or Opus.
fn leg_packets(codec: &str, frames: u64) -> Vec<Vec<u8>> {
    use audio_codec::Encoder as _;
    let mut g722 = audio_codec::g722::G722Encoder::new();
    let opus = opus_frames(440.0, frames);
    (0..frames)
        .map(|i| {
            let (pt, payload): (u8, Vec<u8>) = match codec {
                "pcma" => (
                    8,
                    tone(440.0, 8000, i)
                        .iter()
                        .map(|&x| gateway::g711::alaw_encode(x))
                        .collect(),
                ),
                "g722" => {
                    let mut b = [0u8; 160];
                    let n = g722
                        .encode_into(&tone(440.0, 16_000, i), &mut b)
                        .expect("G.722");
                    (9, b[..n].to_vec())
                }
                _ => (96, opus[i as usize].clone()),
            };
            // 20 ms on the RTP clock: 8 kHz for G.711 and G.722, 48 kHz for Opus.
            let step = if pt == 96 { 960 } else { 160 };
            let (seq, ts) = (i as u16, (i * step) as u32);
            let mut p = vec![0x80, pt, (seq >> 8) as u8, seq as u8];
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&7u32.to_be_bytes());
            p.extend_from_slice(&payload);
            p
        })
        .collect()
}

fn legs(c: &mut Criterion) {
    const FRAMES: u64 = 500;
    let voices: Vec<Vec<Vec<u8>>> = [660.0, 880.0, 1100.0]
        .iter()
        .map(|&f| opus_frames(f, FRAMES))
        .collect();
    let mut group = c.benchmark_group("sip_leg_20ms");
    for (name, pt, rtpmap) in [
        ("pcma", "8", ""),
        ("g722", "9", "a=rtpmap:9 G722/8000\r\n"),
        ("opus", "96", "a=rtpmap:96 opus/48000/2\r\n"),
    ] {
        let leg = choose(&offer(pt, rtpmap), POLICY).expect("a valid offer");
        let mut packets = leg_packets(name, FRAMES);
        let step: u64 = if name == "opus" { 960 } else { 160 };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            let t0 = Instant::now();
            let mut call = Call::new(leg.clone(), 1, t0).expect("call");
            let mut i = 0u64;
            b.iter(|| {
                let k = (i % FRAMES) as usize;
                let now = t0 + Duration::from_millis(20) * i as u32;
                // Numbered on from the run's count: the payloads repeat, the stream
                // does not (a restart would be dropped as late).
                let p = &mut packets[k];
                p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                p[4..8].copy_from_slice(&((i * step) as u32).to_be_bytes());
                call.on_leg_datagram(now, p);
                for (source, v) in voices.iter().enumerate() {
                    call.on_room_audio(now, source as u32, &v[k]);
                }
                call.handle_timeout(now);
                let mut out = 0;
                loop {
                    match call.poll_output() {
                        Output::Timeout(_) => break,
                        _ => out += 1,
                    }
                }
                i += 1;
                out
            });
        });
    }
    group.finish();
}

criterion_group!(benches, legs);
criterion_main!(benches);
