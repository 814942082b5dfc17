//! What a SIP leg hears and sees, measured (sans-IO: datagrams and arrival times in).
//!
//! - The room's audio reaches the leg as one mix (PCMA): no probe survives mixing, so
//!   it is measured as a stream of its own ([`MIX`]): continuity from its RTP sequence
//!   numbers (loss) and timestamps (jitter, RFC 3550; the "send time" of a packet is
//!   its timestamp on the first packet's arrival clock, since a mix is made, not
//!   forwarded, and has no delay to measure) and its level (it must not be silence).
//! - The room's video reaches it as one picture ([`PICTURE`]): the active speaker's,
//!   switched by the gateway. Its frames keep their senders' probes, so forwarding
//!   delay and loss are measured as for any video; a switch to another sender starts
//!   a new run of sequence numbers (not loss), and a freeze across a switch counts.
//! - RTCP on the video port (rtcp-mux) may ask for a keyframe (PLI, FIR).

use audio_codec::pcma::PcmaDecoder;
use audio_codec::Decoder;
use client::frames::FrameAssembler;
use client::media::{Probe, VideoCodec};
use client::sendlog::{self, Senders};
use client::stats::{Measure, StreamKind, StreamStats};
use client::Env;

/// The sender a SIP leg's mix is measured under (participant ids are below 2^31).
pub const MIX: u32 = u32::MAX - 1;
/// The sender a SIP leg's picture is measured under.
pub const PICTURE: u32 = u32::MAX;
/// A mix quieter than this over the call is silence (dBFS).
pub const SILENCE_DBFS: f64 = -50.0;

/// RTP sequence numbers extended past their 16 bits.
#[derive(Default)]
struct Extended {
    last: Option<u64>,
}

impl Extended {
    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.last {
            None => (1 << 16) | seq as u64,
            Some(last) => {
                let delta = seq.wrapping_sub(last as u16) as i16 as i64;
                (last as i64 + delta).max(0) as u64
            }
        };
        self.last = Some(self.last.map_or(ext, |l| l.max(ext)));
        ext
    }
}

/// The leg's receiver: the mix, the picture, keyframe requests.
pub struct Heard {
    audio_seq: Extended,
    /// The first mix packet's extended sequence number, RTP timestamp and arrival.
    audio_origin: Option<(u64, u32, u64)>,
    pcma: PcmaDecoder,
    sum_squares: f64,
    samples: u64,
    video_seq: Extended,
    picture: FrameAssembler,
    shown: Option<u32>,
    /// Times the picture changed sender.
    pub switches: u32,
    senders: Senders,
}

impl Default for Heard {
    fn default() -> Self {
        Heard {
            audio_seq: Extended::default(),
            audio_origin: None,
            pcma: PcmaDecoder::new(),
            sum_squares: 0.0,
            samples: 0,
            video_seq: Extended::default(),
            picture: FrameAssembler::new(VideoCodec::Vp8),
            shown: None,
            switches: 0,
            senders: Senders::default(),
        }
    }
}

/// An RTP packet's sequence number, timestamp, marker and payload.
fn rtp(data: &[u8]) -> Option<(u16, u32, bool, &[u8])> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let csrcs = (data[0] & 0x0f) as usize * 4;
    let mut at = 12 + csrcs;
    if data[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]) as usize;
        at += 4 + words * 4;
    }
    let mut end = data.len();
    if data[0] & 0x20 != 0 {
        end = end.checked_sub(*data.last()? as usize)?;
    }
    let payload = data.get(at..end)?;
    let seq = u16::from_be_bytes([data[2], data[3]]);
    let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    Some((seq, ts, data[1] & 0x80 != 0, payload))
}

/// Whether a datagram is RTCP (RFC 5761: payload types 64-95 with the marker bit).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && (192..=223).contains(&data[1])
}

/// Whether an RTCP compound packet asks for a keyframe (PLI or FIR).
pub fn wants_keyframe(data: &[u8]) -> bool {
    let mut at = 0;
    while at + 4 <= data.len() {
        let (fmt, pt) = (data[at] & 0x1f, data[at + 1]);
        if pt == 206 && (fmt == 1 || fmt == 4) {
            return true;
        }
        at += (u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize + 1) * 4;
    }
    false
}

impl Heard {
    /// A mix packet (PCMA) that arrived at `now_us` on the probes' clock.
    pub fn audio(&mut self, data: &[u8], now_us: u64, measure: &mut Measure) {
        let Some((seq, ts, _, payload)) = rtp(data) else {
            return;
        };
        let ext = self.audio_seq.extend(seq);
        let (seq0, ts0, t0) = *self.audio_origin.get_or_insert((ext, ts, now_us));
        let mut pcm = [0i16; 2048];
        let n = self.pcma.decode_into(payload, &mut pcm).unwrap_or(0);
        for &s in &pcm[..n] {
            self.sum_squares += s as f64 * s as f64;
        }
        self.samples += n as u64;
        // 8 kHz: 125 µs a sample.
        let sent_us = t0 + ts.wrapping_sub(ts0) as u64 * 125;
        let probe = Probe {
            sender: MIX,
            layer: 0,
            seq: ext.saturating_sub(seq0) as u32,
            sent_us,
        };
        let now = std::time::Instant::now();
        measure.on_frame(StreamKind::Audio, &probe, false, now, now_us);
    }

    /// A video datagram (RTP of the picture, or RTCP): whether it asks for a keyframe.
    pub fn video(&mut self, env: &Env, data: &[u8], now_us: u64, measure: &mut Measure) -> bool {
        if is_rtcp(data) {
            return wants_keyframe(data);
        }
        let Some((seq, ts, marker, payload)) = rtp(data) else {
            return false;
        };
        let ext = self.video_seq.extend(seq);
        let Some(done) = self.picture.push(ext, ts, marker, payload) else {
            return false;
        };
        let Some(mut probe) = done.probe else {
            return false;
        };
        let lane = sendlog::lane(false, probe.layer);
        probe.sent_us += self
            .senders
            .lag_us(&env.send_log, probe.sender, lane, probe.seq);
        let sender = probe.sender;
        let stream = measure
            .streams
            .entry((PICTURE, StreamKind::Video))
            .or_insert_with(|| StreamStats::new(StreamKind::Video, PICTURE));
        if self.shown != Some(sender) {
            if self.shown.is_some() {
                self.switches += 1;
            }
            self.shown = Some(sender);
            stream.restart_run();
        }
        stream.on_frame(&probe, done.recovered, now_us);
        if measure.join_ms.is_none() {
            let since = std::time::Instant::now().saturating_duration_since(measure.started);
            measure.join_ms = Some(since.as_secs_f64() * 1000.0);
        }
        false
    }

    /// The mix's level over the call, dBFS (`None` before any of it came).
    pub fn level_dbfs(&self) -> Option<f64> {
        (self.samples > 0).then(|| {
            let rms = (self.sum_squares / self.samples as f64).sqrt().max(1.0);
            20.0 * (rms / 32768.0).log10()
        })
    }
}

#[cfg(test)]
mod tests;
