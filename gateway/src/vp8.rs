//! VP8 over RTP (RFC 7741) on the leg: a frame cut into packets behind a payload
//! descriptor, and packets read back into frames (the caller's, and the room's in
//! [`crate::frames`]); str0m's packetizer cuts the frames the room peer sends.

/// Payload bytes a packet carries at most: with the RTP header, the descriptor and an
/// SRTP tag it stays well under a 1280-byte path MTU.
pub const MAX_PAYLOAD: usize = 1100;

/// The payload descriptor the gateway writes: X=1 with a 15-bit PictureID, S set on
/// a frame's first packet, partition 0 (RFC 7741 §4.2). The PictureID lets a receiver
/// tell a lost frame from a late one across the gateway's source switches.
pub fn descriptor(first: bool, picture_id: u16) -> [u8; 4] {
    let pid = picture_id & 0x7fff;
    [
        0x80 | if first { 0x10 } else { 0 },
        0x80,
        0x80 | (pid >> 8) as u8,
        pid as u8,
    ]
}

/// One packet's VP8 payload, its descriptor read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The first packet of a frame (S=1, partition 0).
    pub start: bool,
    /// A keyframe begins here (only seen on a frame's first packet).
    pub keyframe: bool,
    pub data: &'a [u8],
}

/// Read a VP8 RTP payload's descriptor; `None` when it is cut short.
pub fn fragment(payload: &[u8]) -> Option<Fragment<'_>> {
    let first = *payload.first()?;
    let mut at = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M).
            at += if *payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID, Y, KEYIDX
        }
    }
    let data = payload.get(at..)?;
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    // The VP8 frame header's P bit (RFC 6386 §9.1): 0 on a keyframe.
    let keyframe = start && data.first().is_some_and(|b| b & 0x01 == 0);
    Some(Fragment {
        start,
        keyframe,
        data,
    })
}

/// Whether a whole VP8 frame is a keyframe.
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        for (first, pid) in [(true, 0u16), (false, 0x7fff), (true, 0x1234)] {
            let mut p = descriptor(first, pid).to_vec();
            p.extend_from_slice(&[0x10, 0x02, 0x00]);
            let f = fragment(&p).unwrap();
            assert_eq!(f.start, first);
            assert_eq!(f.keyframe, first, "P=0 on a first packet: a keyframe");
            assert_eq!(f.data, &[0x10, 0x02, 0x00]);
        }
    }

    #[test]
    fn every_descriptor_form_is_read() {
        // Minimal: no extension.
        let f = fragment(&[0x10, 0x31]).unwrap();
        assert!(f.start && !f.keyframe);
        assert_eq!(f.data, &[0x31]);
        // A 7-bit PictureID, TL0PICIDX and TID/KEYIDX (what libwebrtc sends).
        let f = fragment(&[0x90, 0xe0, 0x05, 0x07, 0x40, 0x00, 0xaa]).unwrap();
        assert!(f.start && f.keyframe);
        assert_eq!(f.data, &[0x00, 0xaa]);
        // Partition 1 is no frame's start.
        let f = fragment(&[0x11, 0x00]).unwrap();
        assert!(!f.start);
        // Cut short anywhere: refused, never read past the end.
        for cut in [&[][..], &[0x80], &[0x80, 0x80], &[0x80, 0x80, 0x80]] {
            assert_eq!(fragment(cut), None, "{cut:?}");
        }
    }
}
