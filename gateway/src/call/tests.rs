use std::time::{Duration, Instant};

use super::*;
use crate::sdp::{choose, Policy};
use crate::tone::{share_at, sine};

const PLAIN: Policy = Policy {
    allow_plain_rtp: true,
};

fn pcma_leg() -> LegAudio {
    choose(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        PLAIN,
    )
    .unwrap()
}

/// Everything the call has to say now, its timeout left out.
fn drain(c: &mut Call) -> Vec<Output> {
    let mut v = Vec::new();
    loop {
        match c.poll_output() {
            Output::Timeout(_) => return v,
            o => v.push(o),
        }
    }
}

fn opus_tone(freq: f64, frames: usize) -> Vec<Vec<u8>> {
    let mut e = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    (0..frames)
        .map(|i| {
            let pcm = sine(freq, 48_000, 8000.0, i as u64 * 960, 960);
            let mut b = [0u8; 1500];
            let n = e.encode(&pcm, &mut b).unwrap();
            b[..n].to_vec()
        })
        .collect()
}

#[test]
fn the_callers_voice_reaches_the_room_as_opus_with_its_level() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 1, t0).unwrap();
    let mut pkt = Vec::new();
    let mut room = Vec::new();
    for i in 0..50u16 {
        let pcm = sine(440.0, 8000, 8000.0, i as u64 * 160, 160);
        let g: Vec<u8> = pcm.iter().map(|&x| g711::alaw_encode(x)).collect();
        rtp::write(&mut pkt, 8, false, 100 + i, 160 * i as u32, 9, &g);
        call.on_leg_datagram(t0, &pkt);
        room.extend(drain(&mut call));
    }
    assert_eq!(room.len(), 50, "one Opus frame per 20 ms");
    let mut d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut heard = Vec::new();
    for o in &room {
        let Output::Room {
            opus,
            level,
            samples,
        } = o
        else {
            panic!("{o:?}")
        };
        // 8000/32768 of full scale is -12 dBov peak, -15 as RMS.
        assert!((14..=16).contains(level), "level {level}");
        assert_eq!(*samples, 960);
        let mut pcm = [0i16; 5760];
        let n = d.decode(opus, &mut pcm, false).unwrap();
        assert_eq!(n, 960);
        heard.extend_from_slice(&pcm[..n]);
    }
    // The encoder's first frames are its warm-up.
    let share = share_at(&heard[9600..], 48_000, 440.0);
    assert!(share > 0.8, "440 Hz share {share}");
    assert_eq!(call.stats.leg_packets, 50);
    assert_eq!(call.stats.leg_lost, 0);
}

#[test]
fn the_rooms_voices_reach_the_leg_mixed_every_20_ms() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 77, t0).unwrap();
    let a = opus_tone(660.0, 60);
    let b = opus_tone(1000.0, 60);
    let mut leg = Vec::new();
    for i in 0..60 {
        let now = t0 + FRAME * i as u32;
        call.on_room_audio(now, 1, &a[i]);
        call.on_room_audio(now, 2, &b[i]);
        call.handle_timeout(now);
        leg.extend(drain(&mut call));
    }
    // Silence until two frames are buffered, then the mix: one packet per tick.
    assert_eq!(leg.len(), 60);
    let mut pcm = Vec::new();
    let mut last: Option<(u16, u32)> = None;
    for o in &leg {
        let Output::Leg(p) = o else { panic!("{o:?}") };
        let p = rtp::parse(p).unwrap();
        assert_eq!((p.pt, p.ssrc, p.payload.len()), (8, 77, 160));
        if let Some((seq, ts)) = last {
            assert_eq!(p.seq, seq.wrapping_add(1));
            assert_eq!(p.ts, ts.wrapping_add(160));
        }
        last = Some((p.seq, p.ts));
        pcm.extend(p.payload.iter().map(|&c| g711::alaw_decode(c)));
    }
    let tail = &pcm[pcm.len() - 4000..];
    let (s660, s1000) = (share_at(tail, 8000, 660.0), share_at(tail, 8000, 1000.0));
    assert!(s660 > 0.3 && s1000 > 0.3, "660 Hz {s660}, 1000 Hz {s1000}");
    assert_eq!(call.stats.leg_sent, 60);
}

#[test]
fn a_quiet_room_still_sends_silence_and_a_late_driver_no_burst() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 1, t0).unwrap();
    call.handle_timeout(t0 + Duration::from_millis(50));
    assert_eq!(drain(&mut call).len(), 3, "t0, +20, +40");
    call.handle_timeout(t0 + Duration::from_secs(10));
    assert!(drain(&mut call).len() <= 5);
    let Output::Timeout(next) = call.poll_output() else {
        panic!()
    };
    assert!(next > t0 + Duration::from_secs(10));
}

#[test]
fn dtmf_and_stray_datagrams_are_counted_not_played() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 1, t0).unwrap();
    let mut pkt = Vec::new();
    rtp::write(&mut pkt, 101, true, 1, 0, 9, &[5, 0x0a, 0, 160]);
    call.on_leg_datagram(t0, &pkt);
    call.on_leg_datagram(t0, &[0xff; 40]);
    call.on_leg_datagram(t0, &[]);
    rtp::write(&mut pkt, 0, false, 2, 0, 9, &[0; 160]);
    call.on_leg_datagram(t0, &pkt);
    assert_eq!(drain(&mut call), [Output::Digit('5')]);
    assert_eq!(call.stats.dtmf_packets, 1);
    assert_eq!(call.stats.leg_ignored, 3);
    assert_eq!(call.stats.leg_packets, 0);
}

#[test]
fn lost_leg_packets_are_counted_and_late_ones_dropped() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 1, t0).unwrap();
    let mut pkt = Vec::new();
    for seq in [65534u16, 65535, 2, 1] {
        rtp::write(&mut pkt, 8, false, seq, 0, 9, &[0xd5; 160]);
        call.on_leg_datagram(t0, &pkt);
    }
    assert_eq!(call.stats.leg_lost, 2, "0 and 1 skipped across the wrap");
    assert_eq!(drain(&mut call).len(), 3, "the late one is not played");
}

#[test]
fn jitter_follows_rfc_3550() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 1, t0).unwrap();
    let mut pkt = Vec::new();
    // Packets every 20 ms, on time: no jitter.
    for i in 0..20u16 {
        rtp::write(&mut pkt, 8, false, i, 160 * i as u32, 9, &[0xd5; 160]);
        call.on_leg_datagram(t0 + FRAME * i as u32, &pkt);
    }
    assert!(call.stats.leg_jitter_max_s < 1e-9);
    // One packet 16 ms late: D = 16 ms, J = 1 ms after it; the next one, early by as
    // much, takes J to about 1.9 ms.
    rtp::write(&mut pkt, 8, false, 20, 160 * 20, 9, &[0xd5; 160]);
    call.on_leg_datagram(t0 + FRAME * 20 + Duration::from_millis(16), &pkt);
    rtp::write(&mut pkt, 8, false, 21, 160 * 21, 9, &[0xd5; 160]);
    call.on_leg_datagram(t0 + FRAME * 21, &pkt);
    let j = call.stats.leg_jitter_max_s * 1000.0;
    assert!((j - 1.9375).abs() < 0.01, "{j} ms");
}

#[test]
fn a_sender_that_restarts_its_numbering_is_followed() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 1, t0).unwrap();
    let mut pkt = Vec::new();
    let mut played = 0;
    // A new SSRC starts anew at once; a jump back on the same SSRC after a few.
    for (ssrc, seq) in [(9, 1000u16), (9, 1001), (10, 5), (10, 6)] {
        rtp::write(&mut pkt, 8, false, seq, 0, ssrc, &[0xd5; 160]);
        call.on_leg_datagram(t0, &pkt);
        played += drain(&mut call).len();
    }
    assert_eq!(played, 4);
    assert_eq!(call.stats.leg_lost, 0);
    for seq in 0..20u16 {
        rtp::write(&mut pkt, 8, false, seq, 0, 10, &[0xd5; 160]);
        call.on_leg_datagram(t0, &pkt);
        played += drain(&mut call).len();
    }
    // 0..=6 are late, 7 is the 8th in a row: followed from there, 7..19 played.
    assert_eq!(played, 4 + 13);
}

#[test]
fn an_srtp_leg_is_decrypted_in_and_encrypted_out() {
    let key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
    );
    let leg = choose(
        &offer,
        Policy {
            allow_plain_rtp: false,
        },
    )
    .unwrap();
    // The caller's side: the keys swapped.
    let mut caller = leg.srtp.as_ref().unwrap().swapped().contexts().unwrap();
    let t0 = Instant::now();
    let mut call = Call::new(leg, 5, t0).unwrap();
    let mut pkt = Vec::new();
    rtp::write(&mut pkt, 0, false, 1, 0, 9, &[0xff; 160]);
    // Plain RTP is not taken on an SRTP leg; the caller's SRTP is.
    call.on_leg_datagram(t0, &pkt);
    assert_eq!(call.stats.leg_ignored, 1);
    call.on_leg_datagram(t0, &caller.protect(&pkt).unwrap());
    assert_eq!(call.stats.leg_packets, 1);
    call.handle_timeout(t0);
    let out: Vec<Vec<u8>> = drain(&mut call)
        .into_iter()
        .filter_map(|o| match o {
            Output::Leg(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 12 + 160 + 10);
    let rtp_back = caller.unprotect(&out[0]).expect("the caller decrypts it");
    assert_eq!(rtp::parse(&rtp_back).unwrap().payload.len(), 160);
}

#[test]
fn keys_are_taken_once_each_and_the_prompt_beeps() {
    let t0 = Instant::now();
    let mut call = Call::new(pcma_leg(), 1, t0).unwrap();
    let mut pkt = Vec::new();
    let mut seq = 0u16;
    let mut keys = Vec::new();
    // "4", "2", "#": each sent as three updates and three end packets (RFC 4733
    // §2.5.1.4), all with the event's timestamp.
    for (i, event) in [4u8, 2, 11].into_iter().enumerate() {
        let ts = 1000 + i as u32 * 1600;
        for k in 0..6u16 {
            let end = if k >= 3 { 0x80 } else { 0 };
            let dur = (k + 1) * 160;
            rtp::write(
                &mut pkt,
                101,
                k == 0,
                seq,
                ts,
                9,
                &[event, end | 10, (dur >> 8) as u8, dur as u8],
            );
            seq += 1;
            call.on_leg_datagram(t0, &pkt);
            for o in drain(&mut call) {
                if let Output::Digit(d) = o {
                    keys.push(d);
                }
            }
        }
    }
    assert_eq!(keys, ['4', '2', '#']);
    // The same key replayed with the same stamp (as recorded events are) counts again.
    for k in 0..6u16 {
        let end = if k >= 3 { 0x80 } else { 0 };
        rtp::write(
            &mut pkt,
            101,
            k == 0,
            seq,
            1000 + 2 * 1600,
            9,
            &[11, end | 10, 0, 160],
        );
        seq += 1;
        call.on_leg_datagram(t0, &pkt);
    }
    assert_eq!(drain(&mut call), [Output::Digit('#')]);
    // The prompt: beeps at 425 Hz, then silence, in the leg's codec.
    call.set_prompt(true);
    let mut heard = Vec::new();
    for i in 0..100u32 {
        call.handle_timeout(t0 + FRAME * i);
        for o in drain(&mut call) {
            if let Output::Leg(p) = o {
                let p = rtp::parse(&p).unwrap();
                heard.extend(p.payload.iter().map(|&c| g711::alaw_decode(c)));
            }
        }
    }
    assert_eq!(heard.len(), 100 * 160);
    let beep = &heard[..8 * 160];
    assert!(
        share_at(beep, 8000, 425.0) > 0.8,
        "{}",
        share_at(beep, 8000, 425.0)
    );
    assert!(
        heard[40 * 160..].iter().all(|&x| x.abs() < 16),
        "silence after the beeps"
    );
}

#[test]
fn a_g722_leg_is_wideband_both_ways_on_an_8_khz_clock() {
    let leg = choose(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n",
        PLAIN,
    )
    .unwrap();
    assert_eq!(
        (leg.codec, leg.pt, leg.dtmf_pt),
        (LegCodec::G722, 9, Some(101))
    );
    let t0 = Instant::now();
    let mut call = Call::new(leg, 5, t0).unwrap();
    // The caller: 5 kHz, which only a wideband leg carries (G.711 stops at 4 kHz).
    let mut enc = G722Encoder::new();
    let mut room = Vec::new();
    let mut pkt = Vec::new();
    for i in 0..50u16 {
        let pcm = sine(5000.0, 16_000, 8000.0, i as u64 * 320, 320);
        let mut g = [0u8; 160];
        assert_eq!(enc.encode_into(&pcm, &mut g).unwrap(), 160);
        rtp::write(&mut pkt, 9, false, 300 + i, 160 * i as u32, 9, &g);
        call.on_leg_datagram(t0, &pkt);
        room.extend(drain(&mut call));
    }
    assert_eq!(room.len(), 50, "one Opus frame per 20 ms");
    let mut d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut heard = Vec::new();
    for o in &room {
        let Output::Room { opus, samples, .. } = o else {
            panic!("{o:?}")
        };
        assert_eq!(*samples, 960);
        let mut pcm = [0i16; 5760];
        let n = d.decode(opus, &mut pcm, false).unwrap();
        heard.extend_from_slice(&pcm[..n]);
    }
    let share = share_at(&heard[9600..], 48_000, 5000.0);
    assert!(share > 0.5, "the caller's 5 kHz in the room: share {share}");

    // The room: 6 kHz to the leg, 160 bytes (320 samples) a packet, the timestamp
    // moving 160 a packet (8 kHz clock).
    let tone = opus_tone(6000.0, 60);
    let mut leg_out = Vec::new();
    for (i, frame) in tone.iter().enumerate() {
        let now = t0 + FRAME * i as u32;
        call.on_room_audio(now, 1, frame);
        call.handle_timeout(now);
        leg_out.extend(drain(&mut call));
    }
    let mut dec = G722Decoder::new();
    let mut pcm = Vec::new();
    let mut last_ts = None;
    for o in &leg_out {
        let Output::Leg(p) = o else { panic!("{o:?}") };
        let p = rtp::parse(p).unwrap();
        assert_eq!((p.pt, p.payload.len()), (9, 160));
        if let Some(ts) = last_ts {
            assert_eq!(p.ts, u32::wrapping_add(ts, 160));
        }
        last_ts = Some(p.ts);
        let mut out = [0i16; 320];
        assert_eq!(dec.decode_into(p.payload, &mut out).unwrap(), 320);
        pcm.extend_from_slice(&out);
    }
    let tail = &pcm[pcm.len() - 8000..];
    let share = share_at(tail, 16_000, 6000.0);
    assert!(share > 0.5, "the room's 6 kHz at the leg: share {share}");
}
