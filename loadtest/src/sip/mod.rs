//! SIP legs in a run (`--sip ADDR --sip-share P`): that share of the participants dial
//! into their meeting's room through the SIP gateway as plain-RTP room systems would,
//! instead of joining over WebRTC. A leg sends PCMA audio (a tone; louder for the
//! meeting's speaker) and one VP8 video of the load model's middle layer carrying the
//! usual probes, so the room's participants judge its video as any other. What the
//! leg receives is judged as [`heard`] says: the mix by continuity and level, the
//! picture by the video thresholds.
//!
//! - [`call`]: the SIP dialog (INVITE, ACK, in-dialog requests answered, BYE).
//! - [`heard`]: the mix and the picture, measured.

pub mod call;
pub mod heard;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audio_codec::pcma::PcmaEncoder;
use audio_codec::Encoder;
use rand::Rng;
use str0m::unversioned::{Packetizer, Vp8Packetizer};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use udpbatch::{BatchSocket, TxQueue};

use client::media::{vp8_frame, Probe};
use client::sendlog::{self, Outbox};
use client::slots::{self, Slots};
use client::stats::{Measure, FREEZE_GAP_US};
use client::udp::RX;
use client::{Env, ParticipantResult};

use call::{Dialog, Incoming};
use heard::{Heard, MIX, SILENCE_DBFS};

const AUDIO_PT: u8 = 8;
/// RTP payload bytes per video packet (a room system keeps under the MTU too).
const PAYLOAD_MTU: usize = 1_080;

/// Which participants of a run are SIP legs, and where they call.
#[derive(Debug)]
pub struct SipShare {
    /// The gateway's SIP address (UDP).
    pub gateway: SocketAddr,
    /// Percent of participants that are SIP legs.
    pub share_pct: f64,
    /// Participants placed so far, and of them SIP legs.
    placed: AtomicU64,
    legs: AtomicU64,
}

impl SipShare {
    pub fn new(gateway: SocketAddr, share_pct: f64) -> Self {
        SipShare {
            gateway,
            share_pct,
            placed: AtomicU64::new(0),
            legs: AtomicU64::new(0),
        }
    }

    /// Whether the next participant is a SIP leg: the share is kept exactly over the
    /// run (participant n is one when the share's running count passes a whole number).
    pub fn take(&self) -> bool {
        let n = self.placed.fetch_add(1, Ordering::Relaxed) as f64;
        let p = self.share_pct / 100.0;
        let leg = ((n + 1.0) * p).floor() > (n * p).floor();
        if leg {
            self.legs.fetch_add(1, Ordering::Relaxed);
        }
        leg
    }

    /// SIP legs placed so far.
    pub fn legs(&self) -> u64 {
        self.legs.load(Ordering::Relaxed)
    }
}

/// A second of PCMA, 20 ms frames of a tone at `amplitude`, encoded once per leg.
fn tone(amplitude: f64) -> Vec<[u8; 160]> {
    let mut enc = PcmaEncoder::new();
    (0..50)
        .map(|f| {
            let pcm: [i16; 160] = std::array::from_fn(|i| {
                let t = (f * 160 + i) as f64 / 8000.0;
                ((t * 2.0 * std::f64::consts::PI * 440.0).sin() * amplitude) as i16
            });
            let mut out = [0u8; 160];
            let _ = enc.encode_into(&pcm, &mut out);
            out
        })
        .collect()
}

/// Take part in `room` as SIP leg `id` through the gateway until `deadline`.
pub async fn participant(
    env: Arc<Env>,
    gateway: SocketAddr,
    room: String,
    id: u32,
    deadline: Instant,
    loud: bool,
) -> ParticipantResult {
    let mut result = ParticipantResult::new(&room, id);
    result.sip = true;
    let mut measure = Measure::new(Instant::now());
    let mut heard = Heard::default();
    if let Err(e) = run(
        &env,
        gateway,
        &room,
        id,
        deadline,
        loud,
        &mut measure,
        &mut heard,
    )
    .await
    {
        result.error = Some(e);
    }
    result.close(&env, deadline, &measure);
    for s in result.streams.iter_mut().filter(|s| s.sender == MIX) {
        // A mix is made, not forwarded: it has no forwarding delay to judge.
        s.delay_p50_ms = 0.0;
        s.delay_p99_ms = 0.0;
    }
    if result.error.is_none() {
        result.error = leg_failure(&result, &heard);
    }
    result
}

/// Switches of the picture a leg may see: to the meeting's speaker once it is known
/// (the first video shown may be another's), and one spare. More means the picture
/// flapped, and a switch starts a new run of frames, whose loss between runs is not
/// counted: judged here instead.
const MAX_SWITCHES: u32 = 2;

/// Why what the leg got fails, if it does: its picture flapped; its mix was silence or
/// stalled (continuity; the mix's loss and jitter are judged with every stream's).
fn leg_failure(result: &ParticipantResult, heard: &Heard) -> Option<String> {
    if heard.switches > MAX_SWITCHES {
        return Some(format!(
            "the picture switched sender {} times (the meeting's speaker is fixed; at most {MAX_SWITCHES})",
            heard.switches
        ));
    }
    let mix = result.streams.iter().find(|s| s.sender == MIX)?;
    let level = heard.level_dbfs().unwrap_or(f64::NEG_INFINITY);
    if level < SILENCE_DBFS {
        return Some(format!(
            "the room's mix was silence ({level:.0} dBFS < {SILENCE_DBFS} dBFS)"
        ));
    }
    let stall_ms = FREEZE_GAP_US as f64 / 1000.0;
    (mix.max_gap_ms > stall_ms).then(|| {
        format!(
            "the room's mix stalled for {:.0} ms at {:.1} s",
            mix.max_gap_ms, mix.max_gap_at_s
        )
    })
}

async fn bind(env: &Env) -> Result<(UdpSocket, BatchSocket), String> {
    let socket = client::udp::udp_socket(SocketAddr::new(env.bind_ip, 0))
        .map_err(|e| format!("udp bind: {e}"))?;
    let io = BatchSocket::new(&socket).map_err(|e| format!("udp: {e}"))?;
    Ok((socket, io))
}

/// Read every datagram waiting on `socket`, with its arrival stamp on the run's clock.
fn drain(env: &Env, socket: &UdpSocket, mut each: impl FnMut(&[u8], u64)) -> Result<(), String> {
    RX.with_borrow_mut(|rx| loop {
        match socket.try_io(Interest::READABLE, || rx.recv(socket)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(format!("udp: {e}")),
        }
        for (_, data, arrived) in rx.datagrams() {
            let c = &env.counters;
            c.packets_in.fetch_add(1, Ordering::Relaxed);
            c.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
            if env.impair.drop_pct > 0.0
                && rand::rng().random::<f64>() * 100.0 < env.impair.drop_pct
            {
                continue;
            }
            each(data, env.clock.us(arrived));
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn run(
    env: &Env,
    gateway: SocketAddr,
    room: &str,
    id: u32,
    deadline: Instant,
    loud: bool,
    measure: &mut Measure,
    heard: &mut Heard,
) -> Result<(), String> {
    let (audio, audio_io) = bind(env).await?;
    let (video, video_io) = bind(env).await?;
    let sip = UdpSocket::bind(SocketAddr::new(env.bind_ip, 0))
        .await
        .map_err(|e| format!("sip bind: {e}"))?;
    let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
    let offer = call::offer(env.bind_ip, port(&audio), port(&video));
    let (mut dialog, answer) = Dialog::invite(sip, gateway, room, id, offer, deadline).await?;
    let media = (&audio, &audio_io, &video, &video_io);
    let r = talk(
        env,
        &mut dialog,
        answer,
        media,
        id,
        deadline,
        loud,
        measure,
        heard,
    )
    .await;
    if r != Err(HUNG_UP.to_owned()) {
        // However the leg ended, its call ends: a call left up would hold its seat
        // in the room (the leg asks for no session timer).
        dialog.bye().await;
    }
    r
}

const HUNG_UP: &str = "the gateway hung up";

/// The call's media until `deadline`: what is due sent, what comes measured.
#[allow(clippy::too_many_arguments)]
async fn talk(
    env: &Env,
    dialog: &mut Dialog,
    answer: call::Answer,
    (audio, audio_io, video, video_io): (&UdpSocket, &BatchSocket, &UdpSocket, &BatchSocket),
    id: u32,
    deadline: Instant,
    loud: bool,
    measure: &mut Measure,
    heard: &mut Heard,
) -> Result<(), String> {
    let Some((video_to, video_pt)) = answer.video else {
        return Err("the gateway refused the leg's video".into());
    };
    // The meeting's speaker loud; the others quiet (the gateway takes the level from
    // the audio itself), yet well above silence in the mix others hear.
    let tone = tone(if loud { 10_000.0 } else { 300.0 });
    // One video, the load model's middle layer (a room system sends one stream).
    let layer = env.layers.len().min(2) - 1;
    let profile = env.layers[layer];
    let mut vp8 = Vp8Packetizer::default();
    let mut tx_audio = TxQueue::with_capacity(4);
    let mut tx_video = TxQueue::with_capacity(64);
    let jitter = Duration::from_millis(rand::rng().random_range(0..20));
    let now = Instant::now();
    let mut audio_slots = Slots::new(now + jitter, Duration::from_millis(20));
    let mut video_slots = Slots::for_layer(&env.layers, layer, now + jitter);
    let mut next_key = now + env.keyframe_interval;
    let mut key_wanted = true;
    let (mut seq_audio, mut seq_video) = (0u32, 0u32);
    let mut rtp_seq = [rand::random::<u16>() >> 1, rand::random::<u16>() >> 1];
    let (ssrc_audio, ssrc_video) = (rand::random::<u32>(), rand::random::<u32>());
    let mut outbox = Outbox::new(&env.send_log, id);
    let mut last_turn = Instant::now();
    let mut sip_buf = vec![0u8; 65_535];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let wake = deadline.min(audio_slots.next()).min(video_slots.next());
        let mut sip_in = None;
        tokio::select! {
            r = dialog.socket().recv_from(&mut sip_buf) => {
                sip_in = Some(r.map_err(|e| format!("sip socket: {e}"))?.0);
            }
            r = audio.readable() => {
                r.map_err(|e| format!("udp: {e}"))?;
                drain(env, audio, |data, now_us| {
                    env.counters.media_packets_in.fetch_add(1, Ordering::Relaxed);
                    heard.audio(data, now_us, measure);
                })?;
            }
            r = video.readable() => {
                r.map_err(|e| format!("udp: {e}"))?;
                drain(env, video, |data, now_us| {
                    if !heard::is_rtcp(data) {
                        env.counters.media_packets_in.fetch_add(1, Ordering::Relaxed);
                    }
                    key_wanted |= heard.video(env, data, now_us, measure);
                })?;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if let Some(n) = sip_in {
            match dialog.on_datagram(&sip_buf[..n]).await? {
                Incoming::HungUp => return Err(HUNG_UP.into()),
                Incoming::Keyframe => key_wanted = true,
                Incoming::Nothing => {}
            }
        }

        // Send what is due: PCMA every 20 ms, the video layer at its rate.
        let now = Instant::now();
        client::env::count_turn(env, &mut last_turn, now);
        let sent_us = env.clock.us(now);
        let (c, skip) = (&env.counters, env.skip_every);
        if slots::take_counted(&mut audio_slots, now, c, skip) {
            let frame = &tone[seq_audio as usize % tone.len()];
            crate::plain::push_rtp(
                &mut tx_audio,
                answer.audio,
                AUDIO_PT,
                &mut rtp_seq[0],
                seq_audio.wrapping_mul(160),
                ssrc_audio,
                false,
                frame,
            );
            seq_audio += 1;
        }
        if now >= next_key {
            next_key = now + env.keyframe_interval;
            key_wanted = true;
        }
        if slots::take_counted(&mut video_slots, now, c, skip) {
            let key = std::mem::take(&mut key_wanted);
            let probe = Probe {
                sender: id,
                layer: layer as u8,
                seq: seq_video,
                sent_us,
            };
            outbox.wrote(sendlog::lane(false, layer as u8), seq_video);
            seq_video += 1;
            let size = profile.frame_bytes() * if key { 3 } else { 1 };
            let frame = vp8_frame(key, 320 << layer, 180 << layer, &probe, size);
            let packets = vp8.packetize(PAYLOAD_MTU, &frame).unwrap_or_default();
            let ts = (sent_us * 9 / 100) as u32;
            for (n, payload) in packets.iter().enumerate() {
                crate::plain::push_rtp(
                    &mut tx_video,
                    video_to,
                    video_pt,
                    &mut rtp_seq[1],
                    ts,
                    ssrc_video,
                    n + 1 == packets.len(),
                    payload,
                );
            }
        }
        outbox.sending(now, &env.counters.frames_sent_late);
        let sent =
            tx_audio.flush(audio_io, audio).datagrams + tx_video.flush(video_io, video).datagrams;
        env.counters.packets_out.fetch_add(sent, Ordering::Relaxed);
    }
}
