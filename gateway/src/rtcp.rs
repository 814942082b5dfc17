//! The RTCP a caller sends about the leg's video (RFC 3550, 4585, 5104), read for what
//! the gateway acts on: keyframe requests (PLI, FIR), the loss it reports for our
//! stream (receiver report blocks), and the bitrate it asks for (TMMBR); and the
//! keyframe requests the gateway writes.

/// What one compound RTCP packet says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Feedback {
    /// A PLI or FIR.
    pub keyframe: bool,
    /// The fraction of our packets lost since the caller's last report, out of 256.
    pub fraction_lost: Option<u8>,
    /// The most the caller asks us to send (TMMBR), in bit/s.
    pub max_bitrate: Option<u64>,
}

const SR: u8 = 200;
const RR: u8 = 201;
const RTPFB: u8 = 205;
const PSFB: u8 = 206;

/// Read a compound packet for what concerns `ours` (our SSRC on the leg). What is cut
/// short ends the reading; nothing is read past the end.
pub fn read(mut rtcp: &[u8], ours: u32) -> Feedback {
    let mut f = Feedback::default();
    while rtcp.len() >= 4 {
        let len = (u16::from_be_bytes([rtcp[2], rtcp[3]]) as usize + 1) * 4;
        let Some(packet) = rtcp.get(..len) else {
            break;
        };
        let count = usize::from(packet[0] & 0x1f);
        match packet[1] {
            // Report blocks after the sender's SSRC (and an SR's 20 bytes of sender info).
            SR | RR => {
                let start = if packet[1] == SR { 28 } else { 8 };
                let blocks = packet.get(start..).unwrap_or_default();
                for block in blocks.chunks_exact(24).take(count) {
                    if u32::from_be_bytes([block[0], block[1], block[2], block[3]]) == ours {
                        f.fraction_lost = Some(block[4]);
                    }
                }
            }
            PSFB if matches!(count, 1 | 4) => f.keyframe = true,
            // TMMBR: FCI entries of SSRC, then 6 bits of exponent, 17 of mantissa.
            RTPFB if count == 3 => {
                let entries = packet.get(12..).unwrap_or_default();
                for e in entries.chunks_exact(8) {
                    if u32::from_be_bytes([e[0], e[1], e[2], e[3]]) != ours {
                        continue;
                    }
                    let word = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                    let exp = word >> 26;
                    let mantissa = u64::from((word >> 9) & 0x1_ffff);
                    let bps = u128::from(mantissa) << exp;
                    f.max_bitrate = Some(u64::try_from(bps).unwrap_or(u64::MAX));
                }
            }
            _ => {}
        }
        rtcp = &rtcp[len..];
    }
    f
}

/// RTCP PLI (RFC 4585 §6.3.1): from `sender` about `media`.
pub fn pli(sender: u32, media: u32) -> Vec<u8> {
    let mut p = vec![0x81, PSFB, 0, 2];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p
}

/// RTCP FIR (RFC 5104 §4.3.1), with its command sequence number.
pub fn fir(sender: u32, media: u32, seq: u8) -> Vec<u8> {
    let mut p = vec![0x84, PSFB, 0, 4];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p.extend_from_slice(&[seq, 0, 0, 0]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RR from `sender` with one block about `about`, `lost` of 256 lost.
    fn rr(about: u32, lost: u8) -> Vec<u8> {
        let mut p = vec![0x81, RR, 0, 7];
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(&about.to_be_bytes());
        p.extend_from_slice(&[lost, 0, 0, 3]);
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn tmmbr(about: u32, exp: u32, mantissa: u32) -> Vec<u8> {
        let mut p = vec![0x83, RTPFB, 0, 4];
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&about.to_be_bytes());
        p.extend_from_slice(&((exp << 26) | (mantissa << 9) | 40).to_be_bytes());
        p
    }

    #[test]
    fn reports_requests_and_limits_are_read_for_our_stream() {
        assert_eq!(read(&rr(7, 51), 7).fraction_lost, Some(51));
        assert_eq!(read(&rr(8, 51), 7).fraction_lost, None, "another stream's");
        // A compound packet: the RR, then a PLI, then a TMMBR of 300 kbit/s.
        let mut compound = rr(7, 3);
        compound.extend(pli(9, 7));
        compound.extend(tmmbr(7, 2, 75_000));
        let f = read(&compound, 7);
        assert_eq!(
            f,
            Feedback {
                keyframe: true,
                fraction_lost: Some(3),
                max_bitrate: Some(300_000)
            }
        );
        assert!(read(&fir(9, 7, 1), 7).keyframe);
        // An SR's blocks come after its sender info.
        let mut sr = vec![0x81, SR, 0, 12];
        sr.extend_from_slice(&9u32.to_be_bytes());
        sr.extend_from_slice(&[0; 20]);
        sr.extend_from_slice(&rr(7, 99)[8..]);
        assert_eq!(read(&sr, 7).fraction_lost, Some(99));
    }

    #[test]
    fn what_is_cut_short_is_not_read() {
        let whole = rr(7, 51);
        for cut in 0..whole.len() {
            assert_eq!(read(&whole[..cut], 7).fraction_lost, None, "{cut}");
        }
        // A count larger than the blocks there are, a huge exponent.
        let mut lying = rr(7, 51);
        lying[0] = 0x9f;
        assert_eq!(read(&lying, 7).fraction_lost, Some(51));
        assert_eq!(read(&tmmbr(7, 63, 0x1_ffff), 7).max_bitrate, Some(u64::MAX));
    }
}
