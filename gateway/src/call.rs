//! One call's media, sans-IO: the leg's RTP and the room's Opus frames in, with the
//! time; the leg's RTP and the room's Opus frames out ([`Output`]). Its driver
//! ([`crate::driver`]) owns the sockets and the room's peer connection.
//!
//! - Leg -> room: the leg's audio decoded (G.711, G.722) and encoded to Opus in 20 ms frames
//!   with its RFC 6464 level, so that the caller can become the active speaker; an
//!   Opus leg is passed through as it is. RFC 4733 events are consumed, not published.
//! - Room -> leg: each of the room's voices decoded at the leg's rate into a short
//!   buffer that absorbs the network's jitter, then every 20 ms the loudest
//!   [`mix::VOICES`] mixed and encoded in the leg's codec; silence when no one speaks
//!   (a phone hangs up on a leg that goes quiet).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder as _, Encoder as _};

use crate::g711;
use crate::mix;
use crate::rtp;
use crate::sdp::{LegAudio, LegCodec};
use crate::srtp::LegSrtp;

/// The leg's packet time, and the room's frame time.
pub const FRAME: Duration = Duration::from_millis(20);
/// A voice starts playing once this much of it is buffered ...
const START_DEPTH: Duration = Duration::from_millis(40);
/// ... and is cut back to the start depth beyond this (it drifted or burst).
const MAX_DEPTH: Duration = Duration::from_millis(200);
/// A voice not heard for this long is forgotten (its participant left or muted).
const SOURCE_IDLE: Duration = Duration::from_secs(5);
/// Late or repeated packets in a row after which the leg's numbering is followed anew.
const LATE_RESYNC: u32 = 8;
/// Largest Opus frame: 120 ms at 48 kHz.
const MAX_OPUS_SAMPLES: usize = 5760;
const MAX_OPUS_BYTES: usize = 1500;

/// What the call asks its driver to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// An RTP packet for the leg.
    Leg(Vec<u8>),
    /// An Opus frame for the room, with its level in -dBov and its length in 48 kHz
    /// samples (the RTP clock moves on by that much; 960 for 20 ms).
    Room {
        opus: Vec<u8>,
        level: i8,
        samples: u32,
    },
    /// A key the caller pressed (an RFC 4733 event, or a SIP INFO: [`Call::on_key`]):
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    Digit(char),
    /// Nothing more until this time (or new input).
    Timeout(Instant),
}

/// What the call counted, for its end-of-call log line and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CallStats {
    pub leg_packets: u64,
    /// Sequence numbers skipped by the caller's packets (lost or reordered on the way).
    pub leg_lost: u64,
    /// Datagrams on the RTP port that were not the leg's RTP (wrong type, malformed).
    pub leg_ignored: u64,
    pub dtmf_packets: u64,
    pub leg_sent: u64,
    pub room_frames_in: u64,
    pub room_frames_undecodable: u64,
    /// The highest RFC 3550 interarrival jitter of the caller's RTP, in seconds.
    pub leg_jitter_max_s: f64,
}

enum LegDecoder {
    Pcma,
    Pcmu,
    /// An Opus leg's frames go to the room unchanged; decoded only for their level.
    Opus(opus::Decoder),
    G722(Box<G722Decoder>),
}

/// One of the room's voices.
struct Source {
    id: u32,
    decoder: opus::Decoder,
    samples: VecDeque<i16>,
    playing: bool,
    heard: Instant,
}

pub struct Call {
    leg: LegAudio,
    /// The leg's SRTP, when it is encrypted (SDES).
    srtp: Option<LegSrtp>,
    /// Samples in 20 ms at the leg's rate.
    frame: usize,
    leg_decoder: LegDecoder,
    /// Leg audio to Opus for the room (G.711 legs), at the leg's rate.
    room_encoder: Option<opus::Encoder>,
    /// Room mix to Opus for an Opus leg.
    leg_opus: Option<opus::Encoder>,
    /// A G.722 leg's encoder (the room's mix to the leg).
    leg_g722: Option<Box<G722Encoder>>,
    /// Leg samples not yet a whole frame.
    pending: Vec<i16>,
    last_leg_seq: Option<u16>,
    /// The RTP timestamp of the last RFC 4733 event taken, and whether its end was
    /// seen: an event is sent in many packets (its duration grows, its end is
    /// repeated), all with its timestamp; a start after an end with the same stamp
    /// is the same key pressed again by a sender that replays recorded events.
    last_event: Option<(u32, bool)>,
    /// While on, the leg hears the prompt instead of the room (PIN entry).
    prompting: bool,
    /// Frames since the prompt started: where in its cadence it is.
    prompt_frame: u32,
    leg_ssrc: Option<u32>,
    /// Packets in a row that came as late or duplicate: past a few, the caller's
    /// sender restarted its numbering (a transfer, an unhold) and is followed anew.
    late_in_row: u32,
    /// Arrival and RTP timestamp of the caller's last packet, and the running jitter
    /// estimate (RFC 3550 §6.4.1) in timestamp units.
    last_arrival: Option<(Instant, u32)>,
    jitter: f64,
    sources: Vec<Source>,
    seq: u16,
    ts: u32,
    ssrc: u32,
    next_tick: Instant,
    out: VecDeque<Output>,
    scratch: Vec<i16>,
    mixed: Vec<i16>,
    frames: Vec<Vec<i16>>,
    pub stats: CallStats,
}

fn opus_err(what: &str) -> impl Fn(opus::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Call {
    pub fn new(leg: LegAudio, ssrc: u32, now: Instant) -> Result<Call, String> {
        let rate = leg.codec.sample_rate();
        let frame = (rate / 50) as usize;
        let voip = |rate| {
            let mut e = opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip)
                .map_err(opus_err("opus encoder"))?;
            e.set_bitrate(opus::Bitrate::Bits(32_000))
                .map_err(opus_err("opus bitrate"))?;
            e.set_inband_fec(true).map_err(opus_err("opus fec"))?;
            Ok::<_, String>(e)
        };
        let (leg_decoder, room_encoder, leg_opus) = match leg.codec {
            LegCodec::Pcma => (LegDecoder::Pcma, Some(voip(rate)?), None),
            LegCodec::Pcmu => (LegDecoder::Pcmu, Some(voip(rate)?), None),
            LegCodec::G722 => {
                let d = Box::new(G722Decoder::new());
                (LegDecoder::G722(d), Some(voip(rate)?), None)
            }
            LegCodec::Opus => {
                let d = opus::Decoder::new(rate, opus::Channels::Mono)
                    .map_err(opus_err("opus decoder"))?;
                (LegDecoder::Opus(d), None, Some(voip(rate)?))
            }
        };
        let leg_g722 = (leg.codec == LegCodec::G722).then(|| Box::new(G722Encoder::new()));
        let srtp = leg.srtp.as_ref().map(|k| k.contexts()).transpose()?;
        Ok(Call {
            leg,
            srtp,
            frame,
            leg_decoder,
            room_encoder,
            leg_opus,
            leg_g722,
            pending: Vec::with_capacity(frame * 2),
            last_leg_seq: None,
            last_event: None,
            prompting: false,
            prompt_frame: 0,
            leg_ssrc: None,
            late_in_row: 0,
            last_arrival: None,
            jitter: 0.0,
            sources: Vec::new(),
            seq: rand::random(),
            ts: rand::random(),
            ssrc,
            next_tick: now,
            out: VecDeque::new(),
            scratch: vec![0; MAX_OPUS_SAMPLES],
            mixed: vec![0; frame],
            frames: Vec::new(),
            stats: CallStats::default(),
        })
    }

    pub fn leg(&self) -> &LegAudio {
        &self.leg
    }

    /// The caller re-keyed its audio (a re-INVITE's new SDES key).
    pub fn rekey(&mut self, keys: crate::srtp::Sdes) -> Result<(), String> {
        match self.srtp.as_mut() {
            Some(s) => s.rekey(keys.clone()).map(|()| self.leg.srtp = Some(keys)),
            None => Ok(()),
        }
    }

    /// A datagram on the leg's RTP port, received at `now`.
    pub fn on_leg_datagram(&mut self, now: Instant, data: &[u8]) {
        let plain;
        let data = match self.srtp.as_mut() {
            None => data,
            Some(srtp) => match srtp.unprotect(data) {
                Some(p) => {
                    plain = p;
                    &plain[..]
                }
                None => {
                    // Not the caller's key, a replay, or RTCP on a muxed port.
                    self.stats.leg_ignored += 1;
                    return;
                }
            },
        };
        let Ok(p) = rtp::parse(data) else {
            self.stats.leg_ignored += 1;
            return;
        };
        if Some(p.pt) == self.leg.dtmf_pt {
            self.stats.dtmf_packets += 1;
            // RFC 4733 §2.3: event, E/R/volume, duration. A new timestamp is a new key.
            if let [event, flags, _, _, ..] = *p.payload {
                let end = flags & 0x80 != 0;
                let new = match self.last_event {
                    Some((ts, ended)) => ts != p.ts || (ended && !end),
                    None => true,
                };
                if new {
                    if let Some(d) = digit(event) {
                        self.out.push_back(Output::Digit(d));
                    }
                    self.last_event = Some((p.ts, end));
                } else if end {
                    self.last_event = Some((p.ts, true));
                }
            }
            return;
        }
        if p.pt != self.leg.pt {
            self.stats.leg_ignored += 1;
            return;
        }
        self.stats.leg_packets += 1;
        if self.leg_ssrc != Some(p.ssrc) {
            // A new sender (or the first): its numbering starts here.
            self.leg_ssrc = Some(p.ssrc);
            self.last_leg_seq = None;
            self.last_arrival = None;
        }
        if let Some(last) = self.last_leg_seq {
            let ahead = p.seq.wrapping_sub(last);
            if ahead == 0 || ahead > 0x8000 {
                // A duplicate or a late one: its time has passed. Many in a row mean
                // the numbering jumped back: follow it from this packet on.
                self.late_in_row += 1;
                if self.late_in_row < LATE_RESYNC {
                    return;
                }
            } else {
                self.stats.leg_lost += u64::from(ahead - 1);
            }
        }
        self.late_in_row = 0;
        self.last_leg_seq = Some(p.seq);
        self.update_jitter(now, p.ts);
        match &mut self.leg_decoder {
            LegDecoder::Pcma => {
                self.pending
                    .extend(p.payload.iter().map(|&c| g711::alaw_decode(c)));
            }
            LegDecoder::Pcmu => {
                self.pending
                    .extend(p.payload.iter().map(|&c| g711::ulaw_decode(c)));
            }
            LegDecoder::G722(d) => {
                // Two 16 kHz samples a byte: a 20 ms packet is 160 bytes.
                let Ok(n) = d.decode_into(p.payload, &mut self.scratch) else {
                    self.stats.leg_ignored += 1;
                    return;
                };
                self.pending.extend_from_slice(&self.scratch[..n]);
            }
            LegDecoder::Opus(d) => {
                let Ok(n) = d.decode(p.payload, &mut self.scratch, false) else {
                    self.stats.leg_ignored += 1;
                    return;
                };
                // Decoded at 48 kHz: its sample count is its RTP duration.
                let level = level_of(&self.scratch[..n]);
                self.out.push_back(Output::Room {
                    opus: p.payload.to_vec(),
                    level,
                    samples: n as u32,
                });
                return;
            }
        }
        self.encode_for_room();
    }

    /// RFC 3550 §6.4.1: how much the spacing of arrivals differs from the spacing of
    /// the packets' timestamps, smoothed over 16 packets.
    fn update_jitter(&mut self, now: Instant, ts: u32) {
        let clock = self.leg.codec.rtp_clock() as f64;
        if let Some((then, last_ts)) = self.last_arrival {
            let arrival = now.saturating_duration_since(then).as_secs_f64() * clock;
            let sent = ts.wrapping_sub(last_ts) as i32 as f64;
            self.jitter += ((arrival - sent).abs() - self.jitter) / 16.0;
            let s = self.jitter / clock;
            if s > self.stats.leg_jitter_max_s {
                self.stats.leg_jitter_max_s = s;
            }
        }
        self.last_arrival = Some((now, ts));
    }

    /// Whole 20 ms frames of leg audio, encoded to Opus for the room.
    fn encode_for_room(&mut self) {
        let Some(enc) = self.room_encoder.as_mut() else {
            return;
        };
        // A burst beyond 200 ms is not caught up with: the oldest goes.
        let cap = self.frame * 10;
        if self.pending.len() > cap {
            let extra = self.pending.len() - cap;
            self.pending.drain(..extra);
        }
        let mut buf = [0u8; MAX_OPUS_BYTES];
        while self.pending.len() >= self.frame {
            let pcm = &self.pending[..self.frame];
            let level = level_of(pcm);
            if let Ok(n) = enc.encode(pcm, &mut buf) {
                self.out.push_back(Output::Room {
                    opus: buf[..n].to_vec(),
                    level,
                    samples: 960,
                });
            }
            self.pending.drain(..self.frame);
        }
    }

    /// An Opus frame of the room's voice `source` (one per remote audio track).
    pub fn on_room_audio(&mut self, now: Instant, source: u32, opus: &[u8]) {
        self.stats.room_frames_in += 1;
        let rate = self.leg.codec.sample_rate();
        let i = match self.sources.iter().position(|s| s.id == source) {
            Some(i) => i,
            None => {
                let Ok(decoder) = opus::Decoder::new(rate, opus::Channels::Mono) else {
                    return;
                };
                self.sources.push(Source {
                    id: source,
                    decoder,
                    samples: VecDeque::new(),
                    playing: false,
                    heard: now,
                });
                self.sources.len() - 1
            }
        };
        let s = &mut self.sources[i];
        s.heard = now;
        match s.decoder.decode(opus, &mut self.scratch, false) {
            Ok(n) => s.samples.extend(&self.scratch[..n]),
            Err(_) => self.stats.room_frames_undecodable += 1,
        }
        let per_ms = (rate / 1000) as usize;
        let max = MAX_DEPTH.as_millis() as usize * per_ms;
        if s.samples.len() > max {
            let keep = START_DEPTH.as_millis() as usize * per_ms;
            let extra = s.samples.len() - keep;
            s.samples.drain(..extra);
        }
    }

    /// A key pressed outside the RTP (SIP INFO, `crate::keys`): out as a
    /// [`Output::Digit`] like an RFC 4733 event's.
    pub fn on_key(&mut self, key: char) {
        if matches!(key, '0'..='9' | '*' | '#' | 'A'..='D') {
            self.out.push_back(Output::Digit(key));
        }
    }

    /// Play the prompt to the leg (on: PIN entry) instead of the room's mix.
    pub fn set_prompt(&mut self, on: bool) {
        self.prompting = on;
        self.prompt_frame = 0;
    }

    /// Time passed: every 20 ms a frame of the room's mix goes to the leg.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sources
            .retain(|s| now.saturating_duration_since(s.heard) < SOURCE_IDLE);
        let mut ticks = 0;
        while now >= self.next_tick {
            self.next_tick += FRAME;
            ticks += 1;
            if ticks > 5 {
                // The driver was away for long: do not send a burst to catch up.
                self.next_tick = now + FRAME;
                break;
            }
            self.mix_frame();
        }
    }

    fn mix_frame(&mut self) {
        let frame = self.frame;
        let start = (START_DEPTH.as_millis() as usize) * frame / 20;
        self.frames.clear();
        for s in &mut self.sources {
            if !s.playing && s.samples.len() >= start {
                s.playing = true;
            }
            if !s.playing {
                continue;
            }
            if s.samples.len() < frame {
                // Ran dry: wait for the buffer to fill again.
                s.playing = false;
                continue;
            }
            self.frames.push(s.samples.drain(..frame).collect());
        }
        if self.prompting {
            prompt(
                self.prompt_frame,
                self.leg.codec.sample_rate(),
                &mut self.mixed,
            );
            self.prompt_frame = self.prompt_frame.wrapping_add(1);
        } else {
            let refs: Vec<&[i16]> = self.frames.iter().map(|f| &f[..]).collect();
            mix::mix(&refs, &mut self.mixed);
        }
        let mut payload = [0u8; MAX_OPUS_BYTES];
        let n = match self.leg.codec {
            LegCodec::Pcma => {
                for (o, &x) in payload.iter_mut().zip(&self.mixed) {
                    *o = g711::alaw_encode(x);
                }
                frame
            }
            LegCodec::Pcmu => {
                for (o, &x) in payload.iter_mut().zip(&self.mixed) {
                    *o = g711::ulaw_encode(x);
                }
                frame
            }
            LegCodec::G722 => match self.leg_g722.as_mut() {
                Some(e) => e.encode_into(&self.mixed, &mut payload).unwrap_or(0),
                None => 0,
            },
            LegCodec::Opus => match self.leg_opus.as_mut() {
                Some(e) => e.encode(&self.mixed, &mut payload).unwrap_or(0),
                None => 0,
            },
        };
        if n == 0 {
            return;
        }
        let mut pkt = Vec::with_capacity(12 + n);
        rtp::write(
            &mut pkt,
            self.leg.pt,
            false,
            self.seq,
            self.ts,
            self.ssrc,
            &payload[..n],
        );
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.leg.codec.rtp_clock() / 50);
        if let Some(srtp) = self.srtp.as_mut() {
            match srtp.protect(&pkt) {
                Some(p) => pkt = p,
                None => return,
            }
        }
        self.stats.leg_sent += 1;
        self.out.push_back(Output::Leg(pkt));
    }

    pub fn poll_output(&mut self) -> Output {
        self.out
            .pop_front()
            .unwrap_or(Output::Timeout(self.next_tick))
    }
}

/// The key of an RFC 4733 DTMF event (§3.2: 0-9, then *, #, A-D).
pub fn digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// The PIN prompt, frame `n` of it (20 ms each, at `rate`): two short beeps at
/// 425 Hz, the European dial tone's pitch, every two seconds.
fn prompt(n: u32, rate: u32, out: &mut [i16]) {
    let cycle = n % 100;
    let on = matches!(cycle, 0..=7 | 15..=22);
    let len = out.len() as u64;
    for (i, o) in out.iter_mut().enumerate() {
        *o = if on {
            let t = (n as u64 * len + i as u64) as f64 / rate as f64;
            (6000.0 * (2.0 * std::f64::consts::PI * 425.0 * t).sin()) as i16
        } else {
            0
        };
    }
}

/// RFC 6464's level of a frame: its RMS in -dBov, 0 (loudest) to 127 (silence).
pub fn level_of(pcm: &[i16]) -> i8 {
    if pcm.is_empty() {
        return 127;
    }
    let sum: f64 = pcm.iter().map(|&x| (x as f64) * (x as f64)).sum();
    let rms = (sum / pcm.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as i8
}

#[cfg(test)]
mod tests;
