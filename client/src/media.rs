//! Media that looks like the real thing to an SFU: real Opus frames (from libopus)
//! and VP8 frames with real payload headers (or, with `--codec h264`, H.264 access
//! units in Annex B), sizes per simulcast layer, keyframes on an interval and on request. Every frame carries a probe (sender, layer, sequence,
//! send time) that the receiver reads back; in Opus it rides in the packet's padding,
//! which decoders ignore, so the audio stays valid Opus.

use std::sync::Arc;
use std::time::Instant;

pub const MAGIC: [u8; 4] = *b"KNLT";
/// Probe bytes: magic, sender u32, layer u8, sequence u32, send time u64 (µs).
pub const PROBE_LEN: usize = 4 + 4 + 1 + 4 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub sender: u32,
    pub layer: u8,
    pub seq: u32,
    pub sent_us: u64,
}

impl Probe {
    pub fn bytes(&self) -> [u8; PROBE_LEN] {
        let mut b = [0u8; PROBE_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.sender.to_be_bytes());
        b[8] = self.layer;
        b[9..13].copy_from_slice(&self.seq.to_be_bytes());
        b[13..].copy_from_slice(&self.sent_us.to_be_bytes());
        b
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes());
    }

    pub fn read(b: &[u8]) -> Option<Probe> {
        if b.len() < PROBE_LEN || b[..4] != MAGIC {
            return None;
        }
        Some(Probe {
            sender: u32::from_be_bytes(b[4..8].try_into().ok()?),
            layer: b[8],
            seq: u32::from_be_bytes(b[9..13].try_into().ok()?),
            sent_us: u64::from_be_bytes(b[13..21].try_into().ok()?),
        })
    }

    /// The probe as video carries it: with H.264's emulation prevention (a 03 after
    /// every 00 00 that precedes a byte ≤ 03), as an encoder writes slice data, so that
    /// no start code appears inside an H.264 NAL unit. VP8 carries the same bytes
    /// (its payload is opaque), so that one reader serves both codecs.
    pub fn write_escaped(&self, out: &mut Vec<u8>) {
        let mut zeros = 0;
        for b in self.bytes() {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
    }

    /// Find a video frame's probe (written by `write_escaped`) anywhere in it.
    pub fn find(frame: &[u8]) -> Option<Probe> {
        let at = frame.windows(4).position(|w| w == MAGIC)?;
        let mut raw = [0u8; PROBE_LEN];
        let (mut n, mut zeros) = (0, 0);
        for &b in &frame[at..] {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            raw[n] = b;
            n += 1;
            zeros = if b == 0 { zeros + 1 } else { 0 };
            if n == PROBE_LEN {
                return Probe::read(&raw);
            }
        }
        None
    }
}

/// The video codec the clients publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    Vp8,
    H264,
}

impl std::str::FromStr for VideoCodec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vp8" => Ok(VideoCodec::Vp8),
            "h264" => Ok(VideoCodec::H264),
            _ => Err(format!("unknown video codec {s:?} (vp8 or h264)")),
        }
    }
}

/// One process-wide clock for send and receive times.
#[derive(Clone, Copy, Debug)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_micros() as u64
    }
}

/// A simulcast layer of the video profile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerProfile {
    pub kbps: u32,
    pub fps: f64,
}

impl LayerProfile {
    pub fn frame_bytes(&self) -> usize {
        ((self.kbps as f64 * 1000.0 / 8.0) / self.fps)
            .round()
            .max(PROBE_LEN as f64 + 16.0) as usize
    }
}

/// The load model (ARCHITECTURE.md): ≈150 / 500 / 1,200 kbit/s at 7.5 / 15 / 30 fps.
pub const DEFAULT_LAYERS: [LayerProfile; 3] = [
    LayerProfile {
        kbps: 150,
        fps: 7.5,
    },
    LayerProfile {
        kbps: 500,
        fps: 15.0,
    },
    LayerProfile {
        kbps: 1200,
        fps: 30.0,
    },
];

/// A VP8 frame of `size` bytes: a key frame has P=0 and the key frame start code and
/// dimensions, an inter frame P=1; the probe follows the header, then filler.
pub fn vp8_frame(key: bool, width: u16, height: u16, probe: &Probe, size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(size.max(32));
    if key {
        // frame tag: key frame (bit 0 = 0), version 0, show_frame, partition size.
        f.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
        f.extend_from_slice(&width.to_le_bytes());
        f.extend_from_slice(&height.to_le_bytes());
    } else {
        f.extend_from_slice(&[0x11, 0x02, 0x00]);
    }
    probe.write_escaped(&mut f);
    f.resize(size.max(f.len()), 0x5a);
    f
}

/// An H.264 access unit of `size` bytes in Annex B, Constrained Baseline: a keyframe
/// is SPS, PPS and an IDR slice, an inter frame one non-IDR slice; the probe opens the
/// slice data, then filler.
pub fn h264_frame(key: bool, probe: &Probe, size: usize) -> Vec<u8> {
    const SPS_PPS_IDR: [u8; 21] = [
        0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65,
    ];
    const NON_IDR: [u8; 5] = [0, 0, 0, 1, 0x41];
    let mut f = Vec::with_capacity(size.max(64));
    f.extend_from_slice(if key { &SPS_PPS_IDR[..] } else { &NON_IDR[..] });
    probe.write_escaped(&mut f);
    f.resize(size.max(f.len()), 0x5a);
    f
}

/// A video frame of the codec.
pub fn video_frame(
    codec: VideoCodec,
    key: bool,
    width: u16,
    height: u16,
    probe: &Probe,
    size: usize,
) -> Vec<u8> {
    match codec {
        VideoCodec::Vp8 => vp8_frame(key, width, height, probe, size),
        VideoCodec::H264 => h264_frame(key, probe, size),
    }
}

/// Real Opus frames: a second of 20 ms frames of a tone, encoded once per process
/// by libopus and replayed.
pub struct OpusFrames {
    frames: Vec<Vec<u8>>,
}

impl OpusFrames {
    pub fn new() -> Result<Arc<Self>, String> {
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(|e| format!("opus encoder: {e}"))?;
        enc.set_bitrate(opus::Bitrate::Bits(32_000))
            .map_err(|e| format!("opus bitrate: {e}"))?;
        let mut frames = Vec::new();
        let mut pcm = [0i16; 960];
        let mut out = [0u8; 1500];
        for f in 0..50 {
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (f * 960 + i) as f64 / 48_000.0;
                // A voice-like mix of tones with a slow envelope.
                let env = 0.5 + 0.5 * (t * 3.0).sin();
                *s = ((t * 2.0 * std::f64::consts::PI * 220.0).sin() * 6000.0 * env
                    + (t * 2.0 * std::f64::consts::PI * 660.0).sin() * 2000.0)
                    as i16;
            }
            let n = enc
                .encode(&pcm, &mut out)
                .map_err(|e| format!("opus encode: {e}"))?;
            frames.push(out[..n].to_vec());
        }
        Ok(Arc::new(OpusFrames { frames }))
    }

    /// Frame `i` with the probe in the Opus padding (code 3 packet, one frame).
    pub fn frame(&self, i: usize, probe: &Probe) -> Vec<u8> {
        with_padding(&self.frames[i % self.frames.len()], probe)
    }
}

/// RFC 6716 §3.2.5: turn a one-frame packet into a code 3 packet with padding that
/// carries the probe. Decoders discard padding.
pub fn with_padding(packet: &[u8], probe: &Probe) -> Vec<u8> {
    let toc = packet[0];
    let body = &packet[1..];
    let mut out = Vec::with_capacity(packet.len() + PROBE_LEN + 3);
    out.push((toc & 0xfc) | 3);
    out.push(0x40 | 1); // VBR off, padding on, one frame
    out.push(PROBE_LEN as u8);
    out.extend_from_slice(body);
    probe.write(&mut out);
    out
}

/// The probe of an Opus packet built by [`with_padding`].
pub fn opus_probe(packet: &[u8]) -> Option<Probe> {
    if packet.len() < 3 || packet[0] & 3 != 3 || packet[1] & 0x40 == 0 {
        return None;
    }
    let pad = packet[2] as usize;
    Probe::read(&packet[packet.len().checked_sub(pad)?..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Probe = Probe {
        sender: 7,
        layer: 2,
        seq: 12345,
        sent_us: 987_654_321,
    };

    #[test]
    fn probes_round_trip_in_vp8_and_opus() {
        let key = vp8_frame(true, 1280, 720, &P, 3000);
        assert_eq!(key.len(), 3000);
        assert_eq!(key[0] & 1, 0, "key frame");
        assert_eq!(Probe::find(&key), Some(P));
        let inter = vp8_frame(false, 0, 0, &P, 40);
        assert_eq!(inter[0] & 1, 1);
        assert_eq!(Probe::find(&inter), Some(P));

        let opus = OpusFrames::new().unwrap();
        let pkt = opus.frame(3, &P);
        assert_eq!(opus_probe(&pkt), Some(P));
        // Still valid Opus: libopus decodes it to 20 ms of audio.
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = [0i16; 960];
        assert_eq!(dec.decode(&pkt, &mut pcm, false).unwrap(), 960);
    }

    #[test]
    fn probes_round_trip_in_h264_without_a_start_code_inside_a_nal() {
        // Zero-heavy values: unescaped, they would hold 00 00 01 and 00 00 00 03.
        let zeros = Probe {
            sender: 1,
            layer: 0,
            seq: 0x0000_0100,
            sent_us: 0x0000_0000_0003_0000,
        };
        for probe in [P, zeros] {
            for key in [true, false] {
                let f = h264_frame(key, &probe, 800);
                assert_eq!(f.len(), 800);
                assert_eq!(Probe::find(&f), Some(probe));
                // Start codes only where the NAL units begin: SPS, PPS, IDR or one slice.
                let starts = f.windows(3).filter(|w| *w == [0, 0, 1]).count();
                assert_eq!(starts, if key { 3 } else { 1 });
                let first_nal_type = f[4] & 0x1f;
                assert_eq!(first_nal_type, if key { 7 } else { 1 });
            }
            assert_eq!(
                Probe::find(&vp8_frame(false, 0, 0, &probe, 60)),
                Some(probe)
            );
        }
        let mut escaped = Vec::new();
        zeros.write_escaped(&mut escaped);
        assert!(
            escaped.len() > PROBE_LEN,
            "emulation prevention bytes inserted"
        );
    }

    #[test]
    fn layer_frame_sizes_follow_the_profile() {
        let sizes: Vec<usize> = DEFAULT_LAYERS.iter().map(|l| l.frame_bytes()).collect();
        assert_eq!(sizes, [2500, 4167, 5000]);
    }
}
