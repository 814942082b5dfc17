//! H.264 on the leg (RFC 6184, packetization-mode 1: single NAL units, STAP-A and
//! FU-A), with `rtc-rtp`'s payloader and depacketizer (the `rtc` crates' sibling of
//! `rtc-srtp`): Annex B frames both ways, as str0m takes and gives them on the room's
//! side. What is written here is what a room system needs beyond them: each IDR goes
//! out with the SPS and PPS in front of it (cached from the stream when the IDR came
//! without them), so a decoder that joins at any keyframe can start.

use bytes::Bytes;
use rtc_rtp::codec::h264::{H264Packet, H264Payloader};
use rtc_rtp::packetizer::{Depacketizer, Payloader};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// The NAL units of an Annex B frame (start codes of 3 or 4 bytes), without them.
pub fn nal_units(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = frame;
    std::iter::from_fn(move || {
        let start = find_start(rest)?;
        let body = &rest[start..];
        let end = find_code(body).unwrap_or(body.len());
        let nal = &body[..end];
        rest = &body[end..];
        // A 4-byte start code's leading zero belongs to no NAL unit.
        Some(nal.strip_suffix(&[0]).unwrap_or(nal))
    })
    .filter(|n| !n.is_empty())
}

/// Where the first start code begins.
fn find_code(b: &[u8]) -> Option<usize> {
    b.windows(3).position(|w| w == [0, 0, 1])
}

/// Where the first NAL unit after a start code begins.
fn find_start(b: &[u8]) -> Option<usize> {
    find_code(b).map(|i| i + 3)
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The `profile_idc` of the frame's SPS, if it has one (66: Baseline; 77: Main;
/// 100: High).
pub fn profile(frame: &[u8]) -> Option<u8> {
    nal_units(frame)
        .find(|n| nal_type(n) == NAL_SPS)
        .and_then(|n| n.get(1).copied())
}

/// Whether an Annex B frame starts a decodable picture: an IDR (or its SPS).
pub fn is_keyframe(frame: &[u8]) -> bool {
    nal_units(frame).any(|n| matches!(nal_type(n), NAL_IDR | NAL_SPS))
}

const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Whether an RTP payload opens a frame: a STAP-A (parameter sets go first), a
/// parameter set, delimiter or SEI alone, or the start of a non-IDR slice. An IDR
/// slice alone is not taken for a start: its SPS and PPS may be in packets before it.
pub fn packet_starts_frame(payload: &[u8]) -> bool {
    match nal_type(payload) {
        STAP_A => true,
        FU_A => payload
            .get(1)
            .is_some_and(|h| h & 0x80 != 0 && h & 0x1f != NAL_IDR),
        t => (1..=23).contains(&t) && t != NAL_IDR && t != NAL_PPS,
    }
}

/// Whether an RTP payload carries (part of) an IDR or an SPS: its frame is a keyframe.
pub fn packet_has_keyframe(payload: &[u8]) -> bool {
    let key = |t: u8| matches!(t, NAL_IDR | NAL_SPS);
    match nal_type(payload) {
        STAP_A => {
            let mut rest = payload.get(1..).unwrap_or_default();
            while rest.len() > 2 {
                let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(nal) = rest.get(2..2 + len) else {
                    return false;
                };
                if key(nal_type(nal)) {
                    return true;
                }
                rest = &rest[2 + len..];
            }
            false
        }
        FU_A => payload.get(1).is_some_and(|h| key(h & 0x1f)),
        t => key(t),
    }
}

/// Whether a STAP-A's units all fit in it: `rtc-rtp` reads a unit's length past the
/// end of a packet cut after one unit's last byte (a panic, from anyone's datagram).
fn stap_a_fits(payload: &[u8]) -> bool {
    let mut at = 1;
    while at < payload.len() {
        let Some(len) = payload.get(at..at + 2) else {
            return false;
        };
        at += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
    }
    at == payload.len()
}

/// The room's H.264 for the leg: IDRs completed with the stream's SPS and PPS, then
/// cut into RTP payloads.
#[derive(Default)]
pub struct Packetizer {
    payloader: H264Payloader,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl Packetizer {
    /// The payloads of one Annex B frame, each at most `mtu` bytes.
    pub fn payloads(&mut self, frame: &[u8], mtu: usize) -> Vec<Bytes> {
        let (mut has_sps, mut has_pps, mut idr) = (false, false, false);
        for n in nal_units(frame) {
            match nal_type(n) {
                NAL_SPS => {
                    has_sps = true;
                    self.sps = Some(n.to_vec());
                }
                NAL_PPS => {
                    has_pps = true;
                    self.pps = Some(n.to_vec());
                }
                NAL_IDR => idr = true,
                _ => {}
            }
        }
        let mut whole = Vec::new();
        if idr && !(has_sps && has_pps) {
            if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
                for n in [sps, pps] {
                    whole.extend_from_slice(&[0, 0, 0, 1]);
                    whole.extend_from_slice(n);
                }
            }
        }
        whole.extend_from_slice(frame);
        self.payloader
            .payload(mtu, &Bytes::from(whole))
            .unwrap_or_default()
    }
}

/// A caller's H.264 packets of one frame put back together, as Annex B.
#[derive(Default)]
pub struct Assembler {
    depacketizer: H264Packet,
    frame: Vec<u8>,
    /// Payload bytes taken since the frame began: `rtc-rtp` keeps an unfinished FU-A
    /// in a buffer of its own, which a sender that never ends one would grow forever.
    taken: usize,
}

/// Most payload bytes one frame may take (a 1080p keyframe is a few hundred kB).
pub const MAX_FRAME: usize = 1 << 20;

impl Assembler {
    /// A new frame begins: what was half put together is dropped.
    pub fn restart(&mut self) {
        self.depacketizer = H264Packet::default();
        self.frame.clear();
        self.taken = 0;
    }

    /// One packet's payload; `false` when it cannot be read (the frame is broken) or
    /// the frame grew past [`MAX_FRAME`].
    pub fn push(&mut self, payload: &[u8]) -> bool {
        self.taken += payload.len();
        if self.taken > MAX_FRAME {
            return false;
        }
        if nal_type(payload) == STAP_A && !stap_a_fits(payload) {
            return false;
        }
        match self
            .depacketizer
            .depacketize(&Bytes::copy_from_slice(payload))
        {
            Ok(b) => {
                self.frame.extend_from_slice(&b);
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    pub fn is_keyframe(&self) -> bool {
        is_keyframe(&self.frame)
    }

    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    }

    #[test]
    fn nal_units_and_keyframes_are_found() {
        let frame = annexb(&[&[0x67, 1, 2], &[0x68, 3], &[0x65, 9, 9, 9]]);
        let types: Vec<u8> = nal_units(&frame).map(nal_type).collect();
        assert_eq!(types, [7, 8, 5]);
        assert!(is_keyframe(&frame));
        assert_eq!(profile(&frame), Some(1));
        assert_eq!(profile(&annexb(&[&[0x67, 0x42, 0xe0, 0x1f]])), Some(66));
        assert_eq!(profile(&annexb(&[&[0x65, 0x42]])), None, "no SPS");
        assert_eq!(profile(&annexb(&[&[0x67, 100, 0, 31]])), Some(100));
        // Three-byte start codes too; a delta frame is none.
        let delta = [0, 0, 1, 0x41, 7, 7];
        assert_eq!(nal_units(&delta).count(), 1);
        assert!(!is_keyframe(&delta));
        assert!(!is_keyframe(&[]) && !is_keyframe(&[0, 0, 0]));
    }

    #[test]
    fn an_idr_goes_out_with_sps_and_pps_and_comes_back_whole() {
        let mut p = Packetizer::default();
        let (sps, pps) = (&[0x67, 0x42, 0xe0, 0x1f][..], &[0x68, 0xce, 0x3c][..]);
        let big: Vec<u8> = [0x65]
            .into_iter()
            .chain((0..3000).map(|i| i as u8 | 1))
            .collect();
        let first = annexb(&[sps, pps, &big]);
        let mut a = Assembler::default();
        for payload in p.payloads(&first, 1100) {
            assert!(payload.len() <= 1100);
            assert!(a.push(&payload));
        }
        assert_eq!(a.take(), first);
        // A later IDR without them gets the cached ones in front.
        let bare = annexb(&[&big]);
        let payloads = p.payloads(&bare, 1100);
        assert_eq!(payloads[0][0] & 0x1f, 24, "a STAP-A of SPS and PPS first");
        a.restart();
        for payload in &payloads {
            assert!(a.push(payload));
        }
        assert_eq!(a.take(), first);
        // A delta frame goes as it is.
        let delta = annexb(&[&[0x41, 5, 5]]);
        assert_eq!(p.payloads(&delta, 1100).len(), 1);
    }

    #[test]
    fn a_broken_payload_is_refused() {
        let mut a = Assembler::default();
        assert!(!a.push(&[]));
        assert!(!a.push(&[24, 0, 9, 1]), "a STAP-A longer than its packet");
        assert!(!a.push(&[30, 1, 2]), "a NAL type outside mode 1");
        assert!(!a.push(&[24, 0, 1, 5, 0]), "a unit's length cut short");
        assert!(a.push(&[24, 0, 1, 0x67, 0, 2, 0x68, 1]));
    }

    #[test]
    fn an_fu_a_that_never_ends_is_cut_off() {
        let mut a = Assembler::default();
        let mut fragment = vec![0x7c, 0x85];
        fragment.extend_from_slice(&[7; 1100]);
        assert!(a.push(&fragment));
        fragment[1] = 0x05;
        let taken = (0..2000).take_while(|_| a.push(&fragment)).count();
        assert!(taken < 1000, "{taken} fragments taken");
        a.restart();
        assert!(a.push(&fragment), "a new frame starts afresh");
    }
}
