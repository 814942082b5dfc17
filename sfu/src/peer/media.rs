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

pub(super) fn map_pt(rtc: &Rtc, mid: Mid, spec: &CodecSpec) -> Option<u8> {
    let media = rtc.media(mid)?;
    let remote = media.remote_pts();
    rtc.codec_config()
        .params()
        .iter()
        .filter(|p| remote.contains(&p.pt()))
        .find(|p| same_codec(&p.spec(), spec))
        .map(|p| *p.pt())
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
