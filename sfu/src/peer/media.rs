//! What a participant's SDP says about its media, in the node's terms: which m-lines
//! publish (and their simulcast rids, lowest first), payload types mapped between
//! two peers' codec configs, codecs and clock rates; and the checks an offer passes
//! before str0m parses it.

use str0m::change::SdpOffer;
use str0m::format::{Codec as RtcCodec, CodecSpec};
use str0m::media::{Direction, MediaKind, Mid, Rid};
use str0m::Rtc;

use crate::core::{Codec, Kind, MAX_LAYERS};

/// Register what an accepted offer publishes (m-lines the client sends on).
pub fn published_from_media(
    mid: Mid,
    kind: MediaKind,
    dir: Direction,
    rids: Vec<Rid>,
) -> Option<(Mid, Kind, Vec<Rid>)> {
    let sends = matches!(dir, Direction::RecvOnly | Direction::SendRecv);
    if !sends {
        return None;
    }
    let kind = if kind == MediaKind::Audio {
        Kind::Audio
    } else {
        Kind::Video
    };
    Some((mid, kind, order_rids(rids)))
}

/// Order simulcast rids from the lowest layer up. Browsers and encoders use a few
/// naming schemes; we know q/h/f (quarter, half, full), r0/r1/r2, l/m/h and
/// low/mid/high. Unknown names keep their SDP order (which WebRTC defines low first).
pub fn order_rids(mut rids: Vec<Rid>) -> Vec<Rid> {
    fn rank(set: &[String], name: &str) -> Option<usize> {
        const SCHEMES: [[&str; 3]; 4] = [
            ["q", "h", "f"],
            ["r0", "r1", "r2"],
            ["l", "m", "h"],
            ["low", "mid", "high"],
        ];
        let scheme = SCHEMES
            .iter()
            .find(|s| set.iter().all(|n| s.contains(&n.as_str())))?;
        scheme.iter().position(|s| *s == name)
    }
    rids.truncate(MAX_LAYERS);
    let names: Vec<String> = rids.iter().map(|r| r.to_string()).collect();
    if names.iter().all(|n| rank(&names, n).is_some()) {
        rids.sort_by_key(|r| rank(&names, &r.to_string()));
    }
    rids
}

/// A publisher's payload type in a subscriber's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutPt {
    pub pt: u8,
    /// RED for a subscriber without it: send its primary block alone.
    pub unwrap_red: bool,
}

/// The subscriber's payload type for `spec` on m-line `mid`; `red_of` when the
/// publisher's packets are RED around its payload type `red_of`. RED goes on as RED
/// to a subscriber that negotiated it for the same inner payload type (the blocks
/// name it), and unwrapped to the others.
pub(super) fn map_pt(rtc: &Rtc, mid: Mid, spec: &CodecSpec, red_of: Option<u8>) -> Option<OutPt> {
    let media = rtc.media(mid)?;
    let remote = media.remote_pts();
    let p = rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| remote.contains(&p.pt()))
        .find(|p| same_codec(&p.spec(), spec))?;
    let plain = OutPt {
        pt: *p.pt(),
        unwrap_red: red_of.is_some(),
    };
    match (red_of, p.red()) {
        // str0m keeps RED on the params only while the remote side has it too.
        (Some(inner), Some(red)) if inner == *p.pt() => Some(OutPt {
            pt: *red,
            unwrap_red: false,
        }),
        _ => Some(plain),
    }
}

/// RFC 2198: the primary (last) block of a RED payload, after the redundant blocks'
/// 4-byte headers, the primary's 1-byte header and the redundant blocks' data.
/// `None` when it does not parse (at most 32 redundant blocks, as str0m accepts).
pub fn red_primary(payload: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    let mut redundant = 0usize;
    for _ in 0..=32 {
        let b = *payload.get(at)?;
        if b & 0x80 == 0 {
            return payload.get(at + 1 + redundant..);
        }
        let h = payload.get(at..at + 4)?;
        redundant += ((h[2] as usize & 0x03) << 8) | h[3] as usize;
        at += 4;
    }
    None
}

fn same_codec(a: &CodecSpec, b: &CodecSpec) -> bool {
    if a.codec != b.codec || a.clock_rate != b.clock_rate {
        return false;
    }
    if a.codec == RtcCodec::H264 {
        // Profile and packetization mode must agree or the decoder cannot take it.
        return a.format.profile_level_id.map(|p| p >> 8)
            == b.format.profile_level_id.map(|p| p >> 8)
            && a.format.packetization_mode == b.format.packetization_mode;
    }
    true
}

pub fn codec_of(c: RtcCodec) -> Codec {
    match c {
        RtcCodec::Opus => Codec::Opus,
        RtcCodec::Vp8 => Codec::Vp8,
        RtcCodec::H264 => Codec::H264,
        _ => Codec::Other,
    }
}

pub fn clock_rate(kind: Kind) -> u32 {
    match kind {
        Kind::Audio => 48_000,
        Kind::Video => 90_000,
    }
}

/// Parse a client's offer with an error that names what is wrong.
pub fn parse_offer(sdp: &str) -> Result<SdpOffer, String> {
    if sdp.len() > 64 * 1024 {
        return Err(format!(
            "SDP offer too large ({} bytes, limit 65536)",
            sdp.len()
        ));
    }
    if !sdp.starts_with("v=0") {
        return Err("SDP offer must start with \"v=0\"".into());
    }
    if !sdp.contains("\nm=") {
        return Err("SDP offer has no media section (m=)".into());
    }
    SdpOffer::from_sdp_string(sdp).map_err(|e| format!("SDP offer does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::red_primary;
    use str0m::rtp::{RedEncoder, RedundantBlock};

    #[test]
    fn the_primary_block_of_a_red_payload() {
        let block = |ts, payload: &[u8]| RedundantBlock {
            pt: 111,
            timestamp_offset: ts,
            payload: payload.to_vec(),
        };
        let two = RedEncoder::encode(111, b"now", &[block(1920, b"older"), block(960, b"old")]);
        assert_eq!(red_primary(&two), Some(&b"now"[..]));
        let none = RedEncoder::encode(111, b"only", &[]);
        assert_eq!(red_primary(&none), Some(&b"only"[..]));
        // Truncated or endless headers, lengths beyond the payload: no primary.
        assert_eq!(red_primary(&two[..3]), None);
        assert_eq!(red_primary(&[]), None);
        assert_eq!(red_primary(&[0x80 | 111; 200]), None);
        assert_eq!(red_primary(&[0x80 | 111, 0, 0x03, 0xff, 111, 1, 2]), None);
    }
}
