//! Plain RTP on the leg (RFC 3550): the header read from what a caller sends, and
//! written on what the gateway sends. A SIP leg has no SRTP here and no header
//! extensions the gateway needs; RTCP (on the next port or muxed) is told apart by its
//! packet type and not read yet.

/// One received RTP packet, borrowed from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpIn<'a> {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Why a datagram is not an RTP packet the leg takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRtp {
    Short,
    Version,
    /// RTCP (RFC 5761 §4: packet types 192-223 where an RTP payload type would be).
    Rtcp,
    Padding,
}

pub fn parse(data: &[u8]) -> Result<RtpIn<'_>, NotRtp> {
    if data.len() < 12 {
        return Err(NotRtp::Short);
    }
    if data[0] >> 6 != 2 {
        return Err(NotRtp::Version);
    }
    if (192..=223).contains(&data[1]) {
        return Err(NotRtp::Rtcp);
    }
    let csrcs = (data[0] & 0x0f) as usize;
    let mut start = 12 + 4 * csrcs;
    if data[0] & 0x10 != 0 {
        // Header extension: 4 bytes of profile and length, then length words.
        let ext = data.get(start..start + 4).ok_or(NotRtp::Short)?;
        start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = data.len();
    if data[0] & 0x20 != 0 {
        let pad = *data.last().ok_or(NotRtp::Short)? as usize;
        if pad == 0 || pad > end {
            return Err(NotRtp::Padding);
        }
        end -= pad;
    }
    if start > end {
        return Err(NotRtp::Short);
    }
    Ok(RtpIn {
        pt: data[1] & 0x7f,
        marker: data[1] & 0x80 != 0,
        seq: u16::from_be_bytes([data[2], data[3]]),
        ts: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        payload: &data[start..end],
    })
}

/// Write a 12-byte header and `payload` into `out` (cleared first).
pub fn write(
    out: &mut Vec<u8>,
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.clear();
    out.push(0x80);
    out.push((pt & 0x7f) | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = Vec::new();
        write(&mut b, 8, true, 65535, 160, 0xdead_beef, &[1, 2, 3]);
        let p = parse(&b).unwrap();
        assert_eq!(
            p,
            RtpIn {
                pt: 8,
                marker: true,
                seq: 65535,
                ts: 160,
                ssrc: 0xdead_beef,
                payload: &[1, 2, 3]
            }
        );
    }

    #[test]
    fn csrcs_extensions_and_padding_are_skipped() {
        let mut b = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 7, 7, 7, 7]); // extension, one word
        b.extend_from_slice(&[5, 6, 0, 2]); // payload 5 6, two bytes of padding
        let p = parse(&b).unwrap();
        assert_eq!(p.payload, &[5, 6]);
    }

    #[test]
    fn what_is_not_rtp_is_refused() {
        assert_eq!(parse(&[0x80; 4]), Err(NotRtp::Short));
        assert_eq!(parse(&[0x40; 12]), Err(NotRtp::Version));
        let mut rr = [0u8; 12];
        rr[0] = 0x80;
        rr[1] = 201;
        assert_eq!(parse(&rr), Err(NotRtp::Rtcp));
        // Padding longer than the packet, an extension past the end.
        let mut p = [0u8; 12];
        p[0] = 0xa0;
        p[11] = 200;
        assert_eq!(parse(&p), Err(NotRtp::Padding));
        let mut x = [0u8; 16];
        x[0] = 0x90;
        x[14] = 0xff;
        x[15] = 0xff;
        assert_eq!(parse(&x), Err(NotRtp::Short));
    }
}
