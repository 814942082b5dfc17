//! G.711 (ITU-T G.711): PCMA (A-law) and PCMU (µ-law), the codecs every phone and
//! room system speaks. Table-driven: the tables are computed at compile time from the
//! reference algorithm (the segment search of the ITU's and Sun's reference code), so
//! a sample costs one lookup each way.

/// A-law code of each 13-bit linear value (`pcm >> 3`, offset by 4096).
static ALAW_ENCODE: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_from_13bit(i as i32 - 4096);
        i += 1;
    }
    t
};

/// µ-law code of each 14-bit linear value (`pcm >> 2`, offset by 8192).
static ULAW_ENCODE: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = ulaw_from_14bit(i as i32 - 8192);
        i += 1;
    }
    t
};

static ALAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_to_linear(i as u8);
        i += 1;
    }
    t
};

static ULAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_to_linear(i as u8);
        i += 1;
    }
    t
};

pub fn alaw_encode(pcm: i16) -> u8 {
    ALAW_ENCODE[((pcm >> 3) as i32 + 4096) as usize]
}

pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

pub fn ulaw_encode(pcm: i16) -> u8 {
    ULAW_ENCODE[((pcm >> 2) as i32 + 8192) as usize]
}

pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Segment end points: A-law on 13-bit magnitudes, µ-law on biased 14-bit ones.
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];

const fn segment(v: i32, ends: &[i32; 8]) -> i32 {
    let mut s = 0;
    while s < 8 {
        if v <= ends[s] {
            return s as i32;
        }
        s += 1;
    }
    8
}

const fn alaw_from_13bit(v: i32) -> u8 {
    let (mask, v) = if v >= 0 { (0xD5, v) } else { (0x55, -v - 1) };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mantissa = if seg < 2 {
        (v >> 1) & 0xF
    } else {
        (v >> seg) & 0xF
    };
    (((seg << 4) | mantissa) ^ mask) as u8
}

/// Largest 14-bit magnitude before the bias (µ-law clips there), and the bias.
const ULAW_CLIP: i32 = 8159;
const ULAW_BIAS: i32 = 0x84;

const fn ulaw_from_14bit(v: i32) -> u8 {
    let (mask, v) = if v < 0 { (0x7F, -v) } else { (0xFF, v) };
    let v = if v > ULAW_CLIP { ULAW_CLIP } else { v } + (ULAW_BIAS >> 2);
    let seg = segment(v, &SEG_UEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    (((seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask) as u8
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let seg = (a & 0x70) >> 4;
    let mut t = (a & 0x0F) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = (!code) as i32;
    let t = (((u & 0x0F) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of G.711 (the ITU's tables; Sun's g711.c gives the same).
    #[test]
    fn reference_values() {
        // Silence.
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
        // Full scale, both signs.
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        // Segment edges: A-law's first two segments share a step of 16 (13-bit: 2).
        assert_eq!(alaw_encode(1000), 0xFA);
        assert_eq!(alaw_decode(0xFA), 1008);
        assert_eq!(ulaw_encode(1000), 0xCE);
        assert_eq!(ulaw_decode(0xCE), 988);
    }

    /// Decoding then encoding gives the code back (every code but µ-law's negative
    /// zero, which decodes to the same 0 as the positive one).
    #[test]
    fn codes_round_trip() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#04x}");
            if c != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "µ-law {c:#04x}");
            }
        }
    }

    /// Quantisation error stays within half the step of the sample's segment (a
    /// sixteenth of its magnitude, plus the smallest step), except where µ-law clips
    /// (beyond ±32124).
    #[test]
    fn error_is_within_the_segment_step() {
        for pcm in i16::MIN..=i16::MAX {
            let p = pcm as i32;
            let a = alaw_decode(alaw_encode(pcm)) as i32;
            assert!((a - p).abs() <= p.abs() / 16 + 8, "A-law {pcm} -> {a}");
            if p.abs() <= 32124 {
                let u = ulaw_decode(ulaw_encode(pcm)) as i32;
                assert!((u - p).abs() <= p.abs() / 16 + 7, "µ-law {pcm} -> {u}");
            }
        }
    }
}
