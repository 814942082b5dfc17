use std::time::Instant;

use audio_codec::pcma::PcmaEncoder;
use audio_codec::Encoder;
use client::media::{vp8_frame, Clock, OpusFrames, Probe};
use client::stats::{Measure, StreamKind};
use str0m::unversioned::{Packetizer, Vp8Packetizer};

use super::*;

fn packet(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn pcma(amplitude: f64) -> Vec<u8> {
    let pcm: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * 0.3).sin() * amplitude) as i16)
        .collect();
    let mut out = [0u8; 160];
    let n = PcmaEncoder::new().encode_into(&pcm, &mut out).unwrap();
    out[..n].to_vec()
}

fn env() -> Env {
    Env::new(
        "http://127.0.0.1:1",
        OpusFrames::new().unwrap(),
        Clock(Instant::now()),
    )
}

#[test]
fn the_mix_is_judged_by_its_level_and_its_sequence() {
    let mut measure = Measure::new(Instant::now());
    let mut heard = Heard::default();
    let voice = pcma(8_000.0);
    for i in 0..50u16 {
        if i == 20 {
            continue; // one packet lost
        }
        let p = packet(8, 65_530u16.wrapping_add(i), i as u32 * 160, false, &voice);
        heard.audio(&p, 1_000_000 + i as u64 * 20_000, &mut measure);
    }
    let level = heard.level_dbfs().unwrap();
    assert!(level > -20.0 && level < -10.0, "{level}");
    let mix = measure.streams[&(MIX, StreamKind::Audio)].finish(2_000_000);
    assert_eq!(mix.frames, 49);
    assert!((mix.loss_pct - 2.0).abs() < 0.01, "{}", mix.loss_pct);
    // Sent on the gateway's clock and received on time: no jitter.
    assert!(mix.jitter_p99_ms < 0.01, "{}", mix.jitter_p99_ms);

    // A-law's silence (0xd5) is silence.
    let mut quiet = Heard::default();
    quiet.audio(&packet(8, 1, 0, false, &[0xd5; 160]), 0, &mut measure);
    assert!(quiet.level_dbfs().unwrap() < SILENCE_DBFS);
}

#[test]
fn the_picture_is_one_stream_across_a_switch_of_speaker() {
    let env = env();
    let mut measure = Measure::new(Instant::now());
    let mut heard = Heard::default();
    let mut vp8 = Vp8Packetizer::default();
    let mut seq = 100u16;
    // Speaker 7's frames 500.., then speaker 9's frames 20..: one SSRC, sequence
    // numbers continuous (the gateway rewrites them), the probes' numbers not.
    for (n, (sender, frame_seq)) in (0..10u32)
        .map(|i| (7, 500 + i))
        .chain((0..10u32).map(|i| (9, 20 + i)))
        .enumerate()
    {
        let probe = Probe {
            sender,
            layer: 1,
            seq: frame_seq,
            sent_us: n as u64 * 66_000,
        };
        let frame = vp8_frame(n % 10 == 0, 640, 360, &probe, 3_000);
        let parts = vp8.packetize(1_080, &frame).unwrap();
        for (i, part) in parts.iter().enumerate() {
            let p = packet(96, seq, n as u32 * 6_000, i + 1 == parts.len(), part);
            seq = seq.wrapping_add(1);
            assert!(!heard.video(&env, &p, n as u64 * 66_000 + 2_000, &mut measure));
        }
    }
    assert_eq!(heard.switches, 1);
    let picture = measure.streams[&(PICTURE, StreamKind::Video)].finish(20 * 66_000);
    assert_eq!(picture.frames, 20);
    assert_eq!(picture.loss_pct, 0.0);
    assert!(
        (picture.delay_p99_ms - 2.0).abs() < 0.1,
        "{}",
        picture.delay_p99_ms
    );
    assert!(measure.join_ms.is_some());
}

#[test]
fn rtcp_on_the_video_port_asks_for_keyframes() {
    let env = env();
    let mut measure = Measure::new(Instant::now());
    let mut heard = Heard::default();
    // A receiver report (no blocks), then a PLI: one compound packet.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
    let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
    let fir = [
        0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0,
    ];
    assert!(!heard.video(&env, &rr, 0, &mut measure));
    assert!(heard.video(&env, &[&rr[..], &pli[..]].concat(), 0, &mut measure));
    assert!(heard.video(&env, &fir, 0, &mut measure));
    // A truncated length field ends the walk, never reads past the packet.
    assert!(!heard.video(&env, &[0x80, 201, 0xff, 0xff, 0, 0, 0, 1], 0, &mut measure));
    assert!(measure.streams.is_empty());
}
