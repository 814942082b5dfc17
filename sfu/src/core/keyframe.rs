//! Keyframe detection from RTP payloads: where a subscriber may start or switch layers.

use super::Codec;

/// Whether `payload` is the first packet of a keyframe (a point where a decoder can
/// start). Audio codecs and unknown codecs always answer true: any packet is a start.
pub fn is_keyframe_start(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8_keyframe_start(payload),
        Codec::H264 => h264_keyframe_start(payload),
        Codec::Opus | Codec::Other => true,
    }
}

/// RFC 7741 §4.2/§4.3: skip the payload descriptor; the frame is a key frame when the
/// packet starts partition 0 (S=1, PID=0) and the VP8 header's P bit (inverse key
/// frame flag) is 0.
pub fn vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let start_of_partition = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !start_of_partition || pid != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        // X: extension byte with I, L, T, K.
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // I: picture id, 7 or 15 bits (M flag).
            let Some(&p) = payload.get(i) else {
                return false;
            };
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    payload.get(i).is_some_and(|h| h & 0x01 == 0)
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// RFC 6184 (packetization-mode 0 or 1): a keyframe starts with the SPS (browsers send
/// SPS, PPS and IDR together) or, for encoders that do not repeat the SPS, the start of
/// an IDR slice.
pub fn h264_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 & 0x1f {
        NAL_IDR | NAL_SPS => true,
        NAL_STAP_A => {
            let mut i = 1;
            while i + 2 < payload.len() {
                let size = u16::from_be_bytes([payload[i], payload[i + 1]]) as usize;
                let t = payload[i + 2] & 0x1f;
                if t == NAL_IDR || t == NAL_SPS {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        NAL_FU_A => payload
            .get(1)
            .is_some_and(|h| h & 0x80 != 0 && matches!(h & 0x1f, NAL_IDR | NAL_SPS)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_plain_descriptor() {
        // S=1, PID=0, then VP8 header with P=0 (key frame).
        assert!(vp8_keyframe_start(&[0x10, 0x50, 0x2a, 0x00]));
        // P=1: inter frame.
        assert!(!vp8_keyframe_start(&[0x10, 0x51, 0x2a, 0x00]));
        // Not the start of a partition.
        assert!(!vp8_keyframe_start(&[0x00, 0x50]));
        // Start of partition 1, not 0.
        assert!(!vp8_keyframe_start(&[0x11, 0x50]));
    }

    #[test]
    fn vp8_extended_descriptor() {
        // X=1, S=1; I=1 with 15-bit picture id (M=1), L=1, T=1; then key frame header.
        let key = [0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x50, 0x01];
        assert!(vp8_keyframe_start(&key));
        let inter = [0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x51, 0x01];
        assert!(!vp8_keyframe_start(&inter));
        // 7-bit picture id only.
        assert!(vp8_keyframe_start(&[0x90, 0x80, 0x12, 0x00]));
        // Truncated payloads are never key frames.
        assert!(!vp8_keyframe_start(&[0x90, 0x80]));
        assert!(!vp8_keyframe_start(&[]));
    }

    #[test]
    fn h264_nal_forms() {
        assert!(h264_keyframe_start(&[0x65, 0x88])); // single IDR slice
        assert!(h264_keyframe_start(&[0x67, 0x42])); // SPS
        assert!(!h264_keyframe_start(&[0x41, 0x9a])); // non-IDR slice
                                                      // STAP-A with SPS + PPS.
        assert!(h264_keyframe_start(&[
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce
        ]));
        // STAP-A with two non-IDR slices.
        assert!(!h264_keyframe_start(&[
            0x78, 0x00, 0x02, 0x41, 0x9a, 0x00, 0x02, 0x41, 0x9b
        ]));
        // FU-A: start of IDR, middle of IDR, start of non-IDR.
        assert!(h264_keyframe_start(&[0x7c, 0x85, 0x00]));
        assert!(!h264_keyframe_start(&[0x7c, 0x05, 0x00]));
        assert!(!h264_keyframe_start(&[0x7c, 0x81, 0x00]));
        assert!(!h264_keyframe_start(&[]));
    }

    #[test]
    fn audio_always_starts() {
        assert!(is_keyframe_start(Codec::Opus, &[]));
    }
}
