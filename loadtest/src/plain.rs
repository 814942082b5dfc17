//! A plain-RTP participant for the bare UDP relay (`--target relay://HOST:PORT/SHARDS`),
//! the capacity benchmark's baseline: the same media profile, probes, measurements
//! and batching as the WebRTC client, without ICE, DTLS, SRTP or RTCP.
//!
//! Wire convention (shared with `benches/src/bin/relay.rs`): `JOIN <room>` answered by
//! `OK`, `BYE` to leave; RTP with PT 111 (Opus) and 96 (VP8), SSRC = id << 2 | layer,
//! audio on layer 3. A video frame is its packets up to the marker bit; a frame with a
//! gap in its sequence numbers is lost (no retransmission here).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use udpbatch::{BatchSocket, TxQueue};

use client::media::{opus_probe, vp8_frame, Probe};
use client::sendlog::{self, Outbox, Senders};
use client::slots::{self, Slots};
use client::stats::{Measure, StreamKind};
use client::udp::RX;
use client::{Env, ParticipantResult};

const AUDIO_PT: u8 = 111;
const VIDEO_PT: u8 = 96;
const AUDIO_LAYER: u32 = 3;
/// Largest RTP payload per packet, as a WebRTC sender keeps under the MTU.
const MAX_PAYLOAD: usize = 1_100;
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The relay's shard port for `room`: rooms spread over shards by name.
pub fn relay_addr(base: SocketAddr, shards: u16, room: &str) -> SocketAddr {
    let h = room
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    SocketAddr::new(base.ip(), base.port() + (h % shards.max(1) as u32) as u16)
}

/// Ask the relay at `addr` to answer a join: the reachability check before a run.
pub async fn check(addr: SocketAddr) -> Result<(), String> {
    let socket = UdpSocket::bind(SocketAddr::new(addr.ip(), 0))
        .await
        .map_err(|e| format!("udp: {e}"))?;
    for _ in 0..10 {
        let _ = socket.send_to(b"JOIN __check", addr).await;
        let mut buf = [0u8; 16];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
        {
            if &buf[..n] == b"OK" {
                let _ = socket.send_to(b"BYE", addr).await;
                return Ok(());
            }
        }
    }
    Err(format!("relay {addr} does not answer JOIN"))
}

struct Rx {
    kind: StreamKind,
    next_seq: Option<u16>,
    frame: Vec<u8>,
    broken: bool,
}

/// Take part in `room` through the relay until `deadline`.
pub async fn participant(
    env: Arc<Env>,
    relay: SocketAddr,
    room: String,
    id: u32,
    deadline: Instant,
) -> ParticipantResult {
    let mut result = ParticipantResult::new(&room, id);
    let mut measure = Measure::new(Instant::now());
    if let Err(e) = run(&env, relay, &room, id, deadline, &mut measure).await {
        result.error = Some(e);
    }
    result.close(&env, deadline, &measure);
    result
}

async fn run(
    env: &Env,
    relay: SocketAddr,
    room: &str,
    id: u32,
    deadline: Instant,
    measure: &mut Measure,
) -> Result<(), String> {
    let started = measure.started;
    // The same socket as the WebRTC clients': buffer sizes and arrival stamps.
    let socket = client::udp::udp_socket(SocketAddr::new(env.bind_ip, 0))
        .map_err(|e| format!("udp bind: {e}"))?;
    let io = BatchSocket::new(&socket).map_err(|e| format!("udp: {e}"))?;
    let join = format!("JOIN {room}");
    let mut buf = [0u8; 64];
    let mut joined = false;
    while !joined && started.elapsed() < JOIN_TIMEOUT {
        socket
            .send_to(join.as_bytes(), relay)
            .await
            .map_err(|e| format!("udp: {e}"))?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(250), socket.recv_from(&mut buf)).await
        {
            joined = &buf[..n] == b"OK";
        }
    }
    if !joined {
        return Err(format!("relay {relay} did not answer the join"));
    }

    let mut tx = TxQueue::with_capacity(64);
    let mut rxs: HashMap<u32, Rx> = HashMap::new();
    let jitter = Duration::from_millis(rand::rng().random_range(0..20));
    let now = Instant::now();
    let mut audio_slots = Slots::new(now + jitter, Duration::from_millis(20));
    let mut video_slots: [Slots; 3] =
        std::array::from_fn(|i| Slots::for_layer(&env.layers, i, now + jitter));
    let mut next_key = now + env.keyframe_interval;
    let mut key_wanted = [true; 3];
    let mut seq_audio = 0u32;
    let mut seq_video = [0u32; 3];
    let mut rtp_seq = [0u16; 4];
    let mut outbox = Outbox::new(&env.send_log, id);
    let mut senders = Senders::default();
    let mut last_turn = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            let _ = socket.send_to(b"BYE", relay).await;
            return Ok(());
        }
        let mut wake = deadline.min(audio_slots.next());
        for t in video_slots.iter().map(Slots::next) {
            wake = wake.min(t);
        }
        tokio::select! {
            r = socket.readable() => {
                r.map_err(|e| format!("udp: {e}"))?;
                RX.with_borrow_mut(|rx| -> Result<(), String> {
                    loop {
                        match socket.try_io(Interest::READABLE, || rx.recv(&socket)) {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                            Err(e) => return Err(format!("udp: {e}")),
                        }
                        for (_, data, arrived) in rx.datagrams() {
                            let now_us = env.clock.us(arrived);
                            env.counters.packets_in.fetch_add(1, Ordering::Relaxed);
                            env.counters.media_packets_in.fetch_add(1, Ordering::Relaxed);
                            env.counters.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                            if env.impair.drop_pct > 0.0
                                && rand::rng().random::<f64>() * 100.0 < env.impair.drop_pct
                            {
                                continue;
                            }
                            if let Some(mut probe) = receive(&mut rxs, data) {
                                let kind = if probe.1 { StreamKind::Audio } else { StreamKind::Video };
                                let p = &mut probe.0;
                                let lane = sendlog::lane(probe.1, p.layer);
                                p.sent_us += senders.lag_us(&env.send_log, p.sender, lane, p.seq);
                                // The bare relay never retransmits.
                                measure.on_frame(kind, &probe.0, false, Instant::now(), now_us);
                            }
                        }
                    }
                })?;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }

        // Send what is due, like the WebRTC client: Opus every 20 ms, three layers.
        let now = Instant::now();
        client::env::count_turn(env, &mut last_turn, now);
        let sent_us = env.clock.us(now);
        let (c, skip) = (&env.counters, env.skip_every);
        if slots::take_counted(&mut audio_slots, now, c, skip) {
            let probe = Probe {
                sender: id,
                layer: 0,
                seq: seq_audio,
                sent_us,
            };
            let frame = env.opus.frame(seq_audio as usize, &probe);
            let ts = seq_audio.wrapping_mul(960);
            outbox.wrote(sendlog::lane(true, 0), seq_audio);
            seq_audio += 1;
            push_rtp(
                &mut tx,
                relay,
                AUDIO_PT,
                &mut rtp_seq[3],
                ts,
                ssrc(id, AUDIO_LAYER),
                true,
                &frame,
            );
        }
        if now >= next_key {
            next_key = now + env.keyframe_interval;
            key_wanted = [true; 3];
        }
        let ts = (sent_us * 9 / 100) as u32;
        for (i, layer) in env.layers.iter().enumerate().take(3) {
            if !slots::take_counted(&mut video_slots[i], now, c, skip) {
                continue;
            }
            let key = std::mem::take(&mut key_wanted[i]);
            let probe = Probe {
                sender: id,
                layer: i as u8,
                seq: seq_video[i],
                sent_us,
            };
            outbox.wrote(sendlog::lane(false, i as u8), seq_video[i]);
            seq_video[i] += 1;
            let size = layer.frame_bytes() * if key { 3 } else { 1 };
            let frame = vp8_frame(key, 320 << i, 180 << i, &probe, size);
            let chunks = frame.len().div_ceil(MAX_PAYLOAD);
            // Equal-sized packets (the last may be shorter), as libwebrtc packetizes.
            let per = frame.len().div_ceil(chunks);
            for (n, part) in frame.chunks(per).enumerate() {
                let last = n + 1 == chunks;
                push_rtp(
                    &mut tx,
                    relay,
                    VIDEO_PT,
                    &mut rtp_seq[i],
                    ts,
                    ssrc(id, i as u32),
                    last,
                    part,
                );
            }
        }
        // As the WebRTC client does: when the batch really left (see `sendlog`).
        outbox.sending(now, &env.counters.frames_sent_late);
        let done = tx.flush(&io, &socket);
        env.counters
            .packets_out
            .fetch_add(done.datagrams, Ordering::Relaxed);
    }
}

fn ssrc(id: u32, layer: u32) -> u32 {
    id << 2 | layer
}

/// Queue one RTP packet (version 2, no extensions) to `to`, advancing `seq`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_rtp(
    tx: &mut TxQueue,
    to: SocketAddr,
    pt: u8,
    seq: &mut u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: &[u8],
) {
    let mut p = [0u8; 12 + MAX_PAYLOAD + 64];
    p[0] = 0x80;
    p[1] = pt | if marker { 0x80 } else { 0 };
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let n = payload.len().min(p.len() - 12);
    p[12..12 + n].copy_from_slice(&payload[..n]);
    *seq = seq.wrapping_add(1);
    tx.push(to, &p[..12 + n]);
}

/// One RTP datagram in; a complete frame's probe out (and whether it was audio).
fn receive(rxs: &mut HashMap<u32, Rx>, data: &[u8]) -> Option<(Probe, bool)> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let marker = data[1] & 0x80 != 0;
    let seq = u16::from_be_bytes([data[2], data[3]]);
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    let payload = &data[12..];
    let audio = ssrc & 3 == AUDIO_LAYER;
    let rx = rxs.entry(ssrc).or_insert_with(|| Rx {
        kind: if audio {
            StreamKind::Audio
        } else {
            StreamKind::Video
        },
        next_seq: None,
        frame: Vec::new(),
        broken: true, // join mid-frame: wait for the next frame's first packet
    });
    if rx.next_seq.is_some_and(|s| s != seq) {
        rx.broken = true; // a packet of this frame is missing
    }
    rx.next_seq = Some(seq.wrapping_add(1));
    if rx.kind == StreamKind::Audio {
        return opus_probe(payload).map(|p| (p, true));
    }
    if !rx.broken {
        rx.frame.extend_from_slice(payload);
    }
    if !marker {
        return None;
    }
    let whole = !rx.broken;
    rx.broken = false;
    let probe = whole.then(|| Probe::find(&rx.frame)).flatten();
    rx.frame.clear();
    probe.map(|p| (p, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, VIDEO_PT | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn frames_reassemble_and_a_gap_loses_the_frame() {
        let probe = Probe {
            sender: 7,
            layer: 2,
            seq: 1,
            sent_us: 5,
        };
        let frame = vp8_frame(false, 1280, 720, &probe, 3000);
        let parts: Vec<&[u8]> = frame.chunks(1000).collect();
        let mut rxs = HashMap::new();
        let s = ssrc(7, 2);
        // The first frame seen starts mid-stream: ignored until the next marker.
        assert_eq!(receive(&mut rxs, &packet(9, s, true, b"tail")), None);
        assert_eq!(receive(&mut rxs, &packet(10, s, false, parts[0])), None);
        assert_eq!(receive(&mut rxs, &packet(11, s, false, parts[1])), None);
        assert_eq!(
            receive(&mut rxs, &packet(12, s, true, parts[2])),
            Some((probe, false))
        );
        // Packet 14 lost: that frame is gone, the next one is whole again.
        assert_eq!(receive(&mut rxs, &packet(13, s, false, parts[0])), None);
        assert_eq!(receive(&mut rxs, &packet(15, s, true, parts[2])), None);
        assert_eq!(receive(&mut rxs, &packet(16, s, false, parts[0])), None);
        assert_eq!(receive(&mut rxs, &packet(17, s, false, parts[1])), None);
        assert!(receive(&mut rxs, &packet(18, s, true, parts[2])).is_some());
    }

    #[test]
    fn rooms_spread_over_relay_shards() {
        let base: SocketAddr = "127.0.0.1:30000".parse().unwrap();
        let ports: std::collections::HashSet<u16> = (0..20)
            .map(|i| relay_addr(base, 2, &format!("room-{i}")).port())
            .collect();
        assert_eq!(ports, [30000, 30001].into_iter().collect());
    }
}
