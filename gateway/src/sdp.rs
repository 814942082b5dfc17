//! The leg's SDP (RFC 4566, offer/answer RFC 3264): what a caller offers is read with
//! `ezk-sdp-types`, one audio codec is chosen, and the answer is written here. A SIP
//! leg is plain RTP: one port (RTCP on the next, or `a=rtcp`), no ICE, no BUNDLE.
//!
//! What cannot be served is refused with the reason a 488's Warning header carries.

use std::net::{IpAddr, SocketAddr};

use bytesstr::BytesStr;

use crate::srtp::{OfferedKey, Sdes};
use ezk_sdp_types::{
    Direction, MediaDescription, MediaType, RtcpFeedbackKind, SessionDescription, TaggedAddress,
    TransportProtocol,
};

/// The audio codecs a leg may speak, in no order of preference: the caller's order
/// decides (RFC 3264 §6.1: the answerer should follow the offer's preference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegCodec {
    Pcmu,
    Pcma,
    /// Wideband: 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2's quirk).
    G722,
    Opus,
}

impl LegCodec {
    /// Samples a second at the codec's own rate (Opus is coded at 48 kHz).
    pub fn sample_rate(self) -> u32 {
        match self {
            LegCodec::Pcmu | LegCodec::Pcma => 8_000,
            LegCodec::G722 => 16_000,
            LegCodec::Opus => 48_000,
        }
    }

    /// The RTP timestamp clock: G.711 counts samples at 8 kHz, G.722 counts its
    /// 16 kHz samples at 8 kHz (RFC 3551), Opus is 48 kHz at any rate it codes
    /// (RFC 7587). telephone-event runs on the same clock.
    pub fn rtp_clock(self) -> u32 {
        match self {
            LegCodec::Pcmu | LegCodec::Pcma | LegCodec::G722 => 8_000,
            LegCodec::Opus => 48_000,
        }
    }

    fn rtpmap(self) -> &'static str {
        match self {
            LegCodec::Pcmu => "PCMU/8000",
            LegCodec::Pcma => "PCMA/8000",
            LegCodec::G722 => "G722/8000",
            LegCodec::Opus => "opus/48000/2",
        }
    }

    fn from_rtpmap(encoding: &str, clock: u32) -> Option<LegCodec> {
        match (encoding.to_ascii_lowercase().as_str(), clock) {
            ("pcmu", 8000) => Some(LegCodec::Pcmu),
            ("pcma", 8000) => Some(LegCodec::Pcma),
            ("g722", 8000) => Some(LegCodec::G722),
            ("opus", 48000) => Some(LegCodec::Opus),
            _ => None,
        }
    }

    /// RFC 3551's static payload types (offers may omit their rtpmap).
    fn from_static(pt: u8) -> Option<LegCodec> {
        match pt {
            0 => Some(LegCodec::Pcmu),
            8 => Some(LegCodec::Pcma),
            9 => Some(LegCodec::G722),
            _ => None,
        }
    }
}

/// The leg's audio as negotiated: where to send it and in what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegAudio {
    /// The caller's RTP address; `None` while the caller holds the call (port 0 or
    /// `c=0.0.0.0`).
    pub remote: Option<SocketAddr>,
    pub codec: LegCodec,
    pub pt: u8,
    /// RFC 4733 telephone-event at the codec's rate, if offered.
    pub dtmf_pt: Option<u8>,
    /// The direction the answer gives: the offer's, mirrored (RFC 3264 §6.1).
    pub direction: &'static str,
    /// SDES-SRTP keys, when the leg is encrypted.
    pub srtp: Option<Sdes>,
    /// The leg's video, when the caller offered one the gateway takes.
    pub video: Option<LegVideo>,
    /// How many m-lines the offer had, and which one is the audio: the answer has as
    /// many (the others refused with port 0, RFC 3264 §6).
    lines: Vec<(String, String, String)>,
    audio_index: usize,
}

/// A re-offer's new SDES keys for a running leg (the far end re-keys): the audio's
/// and the video's, each `None` where unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rekey {
    pub audio: Option<Sdes>,
    pub video: Option<Sdes>,
}

impl Rekey {
    pub fn is_empty(&self) -> bool {
        self.audio.is_none() && self.video.is_none()
    }
}

/// The video codecs a leg may carry (no transcoding: the room's videos go as they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    /// Constrained Baseline (or Baseline), packetization-mode 1: what room systems send.
    H264,
}

/// The leg's video as negotiated: VP8 or H.264 on one m-line, encrypted when the
/// audio is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegVideo {
    pub codec: VideoCodec,
    /// The caller's video RTP address; `None` while held.
    pub remote: Option<SocketAddr>,
    /// Where the caller takes RTCP: muxed on its RTP port, its `a=rtcp` port, or the
    /// next one (RFC 3550).
    pub rtcp: Option<SocketAddr>,
    pub pt: u8,
    pub srtp: Option<Sdes>,
    pub direction: &'static str,
    /// RTCP and RTP on one port (RFC 5761), as the caller offered.
    pub rtcp_mux: bool,
    /// The caller takes RTCP PLI or FIR (RFC 4585, 5104); else keyframes are asked for
    /// with SIP INFO `picture_fast_update` (RFC 5168).
    pub pli: bool,
    pub fir: bool,
    /// What the caller can receive (`b=TIAS`, else `b=AS`), in kbit/s.
    pub max_kbps: Option<u32>,
    /// The H.264 profile and level the caller offered (`profile-level-id`).
    profile_level: Option<String>,
    /// Every format of the line the gateway could carry, in the caller's order: a
    /// room with one codec takes its own from them ([`LegVideo::fit`]).
    formats: Vec<VideoFormat>,
    index: usize,
}

/// A video format the caller offered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct VideoFormat {
    pt: u8,
    codec: VideoCodec,
    /// H.264's `profile-level-id`.
    profile_level: Option<String>,
    /// RTCP PLI and FIR offered for it (RFC 4585, 5104).
    pli: bool,
    fir: bool,
}

/// Why an offer cannot be served: a 488 with this text in its Warning header (code
/// 305, incompatible media format; 304 when there is no audio at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub warning: u16,
    pub text: String,
}

fn refuse(warning: u16, text: impl Into<String>) -> Refusal {
    Refusal {
        warning,
        text: text.into(),
    }
}

/// Whether a leg may carry plain RTP: on trusted networks (and in dev mode); never
/// when its SIP came over TLS (the keys of an SRTP leg are only as private as its SIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub allow_plain_rtp: bool,
}

/// Read the caller's offer and choose the audio the leg will carry: an encrypted
/// m-line (SDES) before a plain one (room systems offer both, the "dual m-line"
/// form), each in the caller's codec order.
pub fn choose(offer: &str, policy: Policy) -> Result<LegAudio, Refusal> {
    // The parser's error quotes the offer (addresses, SRTP keys): it is logged nowhere
    // and goes into no header.
    let sdp = SessionDescription::parse(&BytesStr::from(offer.to_owned()))
        .map_err(|_| refuse(399, "malformed SDP"))?;
    let mut lines = Vec::new();
    let mut chosen: Option<Chosen> = None;
    let (mut srtp_refused, mut plain_refused) = (false, false);
    for (i, m) in sdp.media_descriptions.iter().enumerate() {
        // A refused line repeats the offer's media and format (RFC 3264 §6).
        let kind = m.media.media_type.to_string();
        let fmt = m.media.fmts.first().map_or("0".into(), |f| f.to_string());
        lines.push((kind, proto_name(&m.media.proto), fmt));
        // A line offered with port 0 is refused already; it stays so.
        let encrypted = chosen.as_ref().is_some_and(|c| c.4.is_some());
        if encrypted || m.media.media_type != MediaType::Audio || m.media.port == 0 {
            continue;
        }
        // SDES keys on an SAVP line, or on an AVP one (best-effort SRTP, RFC 4568 §5.1).
        let srtp = match m.media.proto {
            TransportProtocol::RtpSavp | TransportProtocol::RtpSavpf => {
                match Sdes::choose(&m.crypto) {
                    Some(k) => Some(k),
                    None => {
                        srtp_refused = true;
                        continue;
                    }
                }
            }
            TransportProtocol::RtpAvp | TransportProtocol::RtpAvpf => Sdes::choose(&m.crypto),
            _ => continue,
        };
        if srtp.is_none() && (chosen.is_some() || !policy.allow_plain_rtp) {
            plain_refused |= !policy.allow_plain_rtp;
            continue;
        }
        if let Some(codec) = pick_codec(m) {
            let remote = address(&sdp, m)?;
            let direction = mirrored(m.direction);
            chosen = Some((i, codec, remote, (dtmf(m, codec.0), direction), srtp));
        }
    }
    let Some((audio_index, (codec, pt), remote, (dtmf_pt, direction), srtp)) = chosen else {
        return Err(if plain_refused {
            refuse(
                305,
                "plain RTP is not allowed here: offer SDES-SRTP (RTP/SAVP with a=crypto)",
            )
        } else if srtp_refused {
            refuse(
                305,
                "no SRTP key the gateway takes: AES_CM_128_HMAC_SHA1_80 or _32, \
                 AES_256_CM_HMAC_SHA1_80, one key, no MKI",
            )
        } else if lines.iter().any(|l| l.0 == "audio") {
            refuse(305, "no common audio codec: PCMU, PCMA or opus/48000/2")
        } else {
            refuse(304, "no audio stream offered")
        });
    };
    let video = choose_video(&sdp, policy, srtp.is_some(), audio_index)?;
    Ok(LegAudio {
        remote,
        codec,
        pt,
        dtmf_pt,
        direction,
        srtp,
        video,
        lines,
        audio_index,
    })
}

/// The first video line the gateway takes: VP8, encrypted when the audio is (a
/// leg's video is as private as its voice), plain only where plain RTP is allowed.
/// A video line not taken is refused alone: the call goes on with audio.
fn choose_video(
    sdp: &SessionDescription,
    policy: Policy,
    encrypted: bool,
    audio_index: usize,
) -> Result<Option<LegVideo>, Refusal> {
    for (index, m) in sdp.media_descriptions.iter().enumerate() {
        if index == audio_index || m.media.media_type != MediaType::Video || m.media.port == 0 {
            continue;
        }
        let srtp = match m.media.proto {
            TransportProtocol::RtpSavp | TransportProtocol::RtpSavpf => {
                let Some(k) = Sdes::choose(&m.crypto) else {
                    continue;
                };
                Some(k)
            }
            TransportProtocol::RtpAvp | TransportProtocol::RtpAvpf => Sdes::choose(&m.crypto),
            _ => continue,
        };
        if srtp.is_none() && (encrypted || !policy.allow_plain_rtp) {
            continue;
        }
        let formats = video_formats(m);
        let Some(first) = formats.first().cloned() else {
            continue;
        };
        // A video line it cannot reach is refused alone: the call goes on with audio.
        let Ok(remote) = address(sdp, m) else {
            continue;
        };
        let rtcp = remote.map(|r| match (&m.rtcp, m.rtcp_mux) {
            (_, true) => r,
            (Some(a), false) => SocketAddr::new(r.ip(), a.port),
            (None, false) => SocketAddr::new(r.ip(), r.port().wrapping_add(1)),
        });
        let bandwidth = |kind: &str| {
            m.bandwidth
                .iter()
                .chain(sdp.bandwidth.iter())
                .find(|b| b.type_.eq_ignore_ascii_case(kind))
                .map(|b| b.bandwidth)
        };
        let max_kbps = bandwidth("TIAS")
            .map(|bps| bps / 1000)
            .or_else(|| bandwidth("AS"));
        let mut video = LegVideo {
            codec: first.codec,
            remote,
            rtcp,
            pt: first.pt,
            srtp,
            direction: mirrored(m.direction),
            rtcp_mux: m.rtcp_mux,
            pli: false,
            fir: false,
            max_kbps,
            profile_level: None,
            formats,
            index,
        };
        video.take(&first);
        return Ok(Some(video));
    }
    Ok(None)
}

/// The video formats the gateway carries, in the caller's order: VP8, and H.264 in
/// packetization-mode 1 of the Baseline family (`profile-level-id` 42xxxx, or none:
/// Baseline is its default).
fn video_formats(m: &MediaDescription) -> Vec<VideoFormat> {
    let feedback = |pt: u8, kind: RtcpFeedbackKind| {
        m.rtcp_fb.iter().any(|f| f.pt.matches(pt) && f.kind == kind)
    };
    let format = |pt: u8, codec: VideoCodec, profile_level: Option<String>| VideoFormat {
        pt,
        codec,
        profile_level,
        pli: feedback(pt, RtcpFeedbackKind::NackPli),
        fir: feedback(pt, RtcpFeedbackKind::CcmFir),
    };
    m.media
        .fmts
        .iter()
        .filter_map(|&pt| {
            let r = m
                .rtpmap
                .iter()
                .find(|r| r.payload == pt && r.clock_rate == 90_000)?;
            if r.encoding.eq_ignore_ascii_case("vp8") {
                return Some(format(pt, VideoCodec::Vp8, None));
            }
            if !r.encoding.eq_ignore_ascii_case("h264") {
                return None;
            }
            let params: Vec<(String, String)> = m
                .fmtp
                .iter()
                .filter(|f| f.format == pt)
                .flat_map(|f| f.params.split(';'))
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let param = |k: &str| params.iter().find(|p| p.0 == k).map(|p| p.1.clone());
            if param("packetization-mode").as_deref() != Some("1") {
                return None;
            }
            let profile = param("profile-level-id");
            let baseline = profile
                .as_deref()
                .is_none_or(|p| p.len() == 6 && p.is_ascii() && p[..2].eq_ignore_ascii_case("42"));
            baseline.then(|| format(pt, VideoCodec::H264, profile))
        })
        .collect()
}

/// The answer's direction for an offered one (RFC 3264 §6.1).
fn mirrored(d: Direction) -> &'static str {
    match d {
        Direction::SendOnly => "recvonly",
        Direction::RecvOnly => "sendonly",
        Direction::Inactive => "inactive",
        Direction::SendRecv => "sendrecv",
    }
}

/// An audio m-line taken: its index, codec, address, (telephone-event, direction),
/// and keys.
type Chosen = (
    usize,
    (LegCodec, u8),
    Option<SocketAddr>,
    (Option<u8>, &'static str),
    Option<Sdes>,
);

fn proto_name(p: &TransportProtocol) -> String {
    match p {
        TransportProtocol::RtpAvp => "RTP/AVP".into(),
        TransportProtocol::RtpAvpf => "RTP/AVPF".into(),
        TransportProtocol::RtpSavp => "RTP/SAVP".into(),
        TransportProtocol::RtpSavpf => "RTP/SAVPF".into(),
        TransportProtocol::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP".into(),
        TransportProtocol::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF".into(),
        TransportProtocol::Other(s) => s.to_string(),
        TransportProtocol::Unspecified => "RTP/AVP".into(),
    }
}

/// The first format of the m-line that the gateway speaks, in the caller's order.
fn pick_codec(m: &MediaDescription) -> Option<(LegCodec, u8)> {
    m.media.fmts.iter().find_map(|&pt| {
        let mapped = m.rtpmap.iter().find(|r| r.payload == pt);
        let codec = match mapped {
            Some(r) => LegCodec::from_rtpmap(&r.encoding, r.clock_rate),
            None => LegCodec::from_static(pt),
        }?;
        Some((codec, pt))
    })
}

/// telephone-event at the chosen codec's clock rate.
fn dtmf(m: &MediaDescription, codec: LegCodec) -> Option<u8> {
    m.rtpmap
        .iter()
        .find(|r| {
            r.encoding.eq_ignore_ascii_case("telephone-event")
                && r.clock_rate == codec.rtp_clock()
                && m.media.fmts.contains(&r.payload)
        })
        .map(|r| r.payload)
}

/// Where the caller receives RTP: the m-line's connection, else the session's.
fn address(sdp: &SessionDescription, m: &MediaDescription) -> Result<Option<SocketAddr>, Refusal> {
    let conn = m
        .connection
        .as_ref()
        .or(sdp.connection.as_ref())
        .ok_or_else(|| refuse(399, "no connection address (c=)"))?;
    let ip: IpAddr = match &conn.address {
        TaggedAddress::IP4(ip) => (*ip).into(),
        TaggedAddress::IP6(ip) => (*ip).into(),
        TaggedAddress::IP4FQDN(_) | TaggedAddress::IP6FQDN(_) => {
            return Err(refuse(
                305,
                "a host name as connection address is not served",
            ))
        }
    };
    if m.media.port == 0 || ip.is_unspecified() {
        return Ok(None);
    }
    Ok(Some(SocketAddr::new(ip, m.media.port)))
}

/// The gateway's own offer (a delayed-offer INVITE's 200, a dial-out's INVITE), and
/// the SRTP keys it offered, with which it reads the far end's answer.
pub struct Offer {
    pub sdp: String,
    /// The keys offered on the audio and the video line; `None`: plain RTP.
    keys: Option<(OfferedKey, OfferedKey)>,
}

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Its SDP holds keys: they never reach a log line.
        write!(f, "Offer(encrypted: {})", self.keys.is_some())
    }
}

impl Offer {
    /// Audio with every codec the gateway serves (PCMA, PCMU, G.722, Opus), PCMA first
    /// (what room systems and trunks pick most), and RFC 4733 events on the 8 kHz and
    /// the 48 kHz (Opus) clock; with video on `video_port`: VP8, and H.264 Constrained
    /// Baseline in packetization-mode 1, with RTCP PLI and FIR asked for and its RTCP
    /// on the same port. `encrypted`: RTP/SAVP with an SDES key of its own per line
    /// (where SRTP is required: over TLS, or without `--sip-allow-plain-rtp`);
    /// otherwise plain RTP.
    pub fn new(local: SocketAddr, video_port: Option<u16>, session: u64, encrypted: bool) -> Offer {
        let keys = encrypted.then(|| (OfferedKey::new(), OfferedKey::new()));
        let proto = if encrypted { "RTP/SAVP" } else { "RTP/AVP" };
        let crypto =
            |k: Option<&OfferedKey>| k.map_or(String::new(), |k| format!("a={}\r\n", k.line()));
        let ip = local.ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut sdp = format!(
            "v=0\r\no=knudepunkt {session} 1 IN {family} {ip}\r\ns=knudepunkt\r\n\
             c=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} {proto} 8 0 9 111 101 102\r\n\
             a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:9 G722/8000\r\n\
             a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
             a=rtpmap:102 telephone-event/48000\r\na=fmtp:102 0-16\r\n\
             {audio_key}a=ptime:20\r\na=sendrecv\r\n",
            port = local.port(),
            audio_key = crypto(keys.as_ref().map(|k| &k.0)),
        );
        if let Some(video_port) = video_port {
            sdp.push_str(&format!(
                "m=video {video_port} {proto} 96 97\r\na=rtpmap:96 VP8/90000\r\n\
                 a=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
                 a=rtcp-fb:* nack pli\r\na=rtcp-fb:* ccm fir\r\na=rtcp:{video_port}\r\n\
                 {video_key}a=sendrecv\r\n",
                video_key = crypto(keys.as_ref().map(|k| &k.1)),
            ));
        }
        Offer { sdp, keys }
    }

    /// The far end's answer, read as an offer is ([`choose`]): what the call carries.
    /// An answer to an encrypted offer must be encrypted, with the offered tag and
    /// suite; a video line that is not is dropped (the call goes on with audio).
    pub fn read(&self, answer: &str) -> Result<LegAudio, Refusal> {
        let policy = Policy {
            allow_plain_rtp: self.keys.is_none(),
        };
        let mut leg = choose(answer, policy)?;
        let Some((audio, video)) = &self.keys else {
            // Keys in an answer to a plain offer are nobody's: the far end would
            // encrypt with a key the gateway never had.
            if leg.srtp.is_some() {
                return Err(refuse(
                    305,
                    "the answer encrypts what was offered as plain RTP",
                ));
            }
            if leg.video.as_ref().is_some_and(|v| v.srtp.is_some()) {
                leg.video = None;
            }
            return Ok(leg);
        };
        let not_offered = || refuse(305, "the answer's SRTP key is not for the offered suite");
        let keys = leg.srtp.take().ok_or_else(not_offered)?;
        leg.srtp = Some(keys.answering(audio).ok_or_else(not_offered)?);
        if let Some(v) = leg.video.as_mut() {
            match v.srtp.take().and_then(|k| k.answering(video)) {
                Some(k) => v.srtp = Some(k),
                None => leg.video = None,
            }
        }
        Ok(leg)
    }
}

impl LegAudio {
    /// The keys a re-offer (a re-INVITE's or UPDATE's SDP) changes on this leg's
    /// lines, and the leg with them. A re-offer that does not parse changes none.
    pub fn rekeyed(&mut self, offer: &str) -> Rekey {
        let Ok(sdp) = SessionDescription::parse(&BytesStr::from(offer.to_owned())) else {
            return Rekey::default();
        };
        let crypto = |i: usize| sdp.media_descriptions.get(i).map(|m| &m.crypto[..]);
        let mut rekey = Rekey::default();
        if let (Some(keys), Some(lines)) = (self.srtp.as_mut(), crypto(self.audio_index)) {
            if let Some(new) = keys.rekeyed(lines) {
                *keys = new.clone();
                rekey.audio = Some(new);
            }
        }
        if let Some(v) = self.video.as_mut() {
            if let (Some(keys), Some(lines)) = (v.srtp.as_mut(), crypto(v.index)) {
                if let Some(new) = keys.rekeyed(lines) {
                    *keys = new.clone();
                    rekey.video = Some(new);
                }
            }
        }
        rekey
    }

    /// The answer: the chosen codec (and telephone-event) on the gateway's RTP port
    /// at `local`, VP8 on `video_port` when there is one; every other m-line refused.
    /// `version` goes up with each answer of a dialog (`o=` line, RFC 3264 §8).
    pub fn answer(
        &self,
        local: SocketAddr,
        video_port: Option<u16>,
        session: u64,
        version: u64,
    ) -> String {
        let ip = local.ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut s = format!(
            "v=0\r\no=knudepunkt {session} {version} IN {family} {ip}\r\ns=knudepunkt\r\n\
             c=IN {family} {ip}\r\nt=0 0\r\n"
        );
        for (i, (kind, proto, fmt)) in self.lines.iter().enumerate() {
            let video = self.video.as_ref().filter(|v| v.index == i);
            if let (Some(v), Some(port)) = (video, video_port) {
                v.answer(&mut s, proto, port);
                continue;
            }
            if i != self.audio_index {
                s.push_str(&format!("m={kind} 0 {proto} {fmt}\r\n"));
                continue;
            }
            let pt = self.pt;
            match self.dtmf_pt {
                Some(d) => s.push_str(&format!("m=audio {} {proto} {pt} {d}\r\n", local.port())),
                None => s.push_str(&format!("m=audio {} {proto} {pt}\r\n", local.port())),
            }
            s.push_str(&format!("a=rtpmap:{pt} {}\r\n", self.codec.rtpmap()));
            if self.codec == LegCodec::Opus {
                s.push_str(&format!("a=fmtp:{pt} useinbandfec=1\r\n"));
            }
            if let Some(d) = self.dtmf_pt {
                let rate = self.codec.rtp_clock();
                s.push_str(&format!(
                    "a=rtpmap:{d} telephone-event/{rate}\r\na=fmtp:{d} 0-16\r\n"
                ));
            }
            if let Some(k) = &self.srtp {
                s.push_str(&format!("a={}\r\n", k.answer_line()));
            }
            s.push_str(&format!("a=ptime:20\r\na={}\r\n", self.direction));
        }
        s
    }
}

impl LegVideo {
    /// Carry `codec` (a room's one codec) if the caller offered it; `false` if not.
    pub fn fit(&mut self, codec: VideoCodec) -> bool {
        let Some(f) = self.formats.iter().find(|f| f.codec == codec).cloned() else {
            return false;
        };
        self.take(&f);
        true
    }

    fn take(&mut self, f: &VideoFormat) {
        self.pt = f.pt;
        self.codec = f.codec;
        self.profile_level = f.profile_level.clone();
        self.pli = f.pli;
        self.fir = f.fir;
    }

    fn answer(&self, s: &mut String, proto: &str, port: u16) {
        let pt = self.pt;
        s.push_str(&format!("m=video {port} {proto} {pt}\r\n"));
        match self.codec {
            VideoCodec::Vp8 => s.push_str(&format!("a=rtpmap:{pt} VP8/90000\r\n")),
            VideoCodec::H264 => {
                // The caller's own profile and level: the room's H.264 is passed on
                // as it is, and browsers send Constrained Baseline.
                let level = self.profile_level.as_deref().unwrap_or("42e01f");
                s.push_str(&format!(
                    "a=rtpmap:{pt} H264/90000\r\n\
                     a=fmtp:{pt} profile-level-id={level};packetization-mode=1\r\n"
                ));
            }
        }
        if self.pli {
            s.push_str(&format!("a=rtcp-fb:{pt} nack pli\r\n"));
        }
        if self.fir {
            s.push_str(&format!("a=rtcp-fb:{pt} ccm fir\r\n"));
        }
        // The caller's RTCP (its keyframe requests) comes to the RTP port: muxed when
        // it offered so, else by naming that port as the RTCP one (RFC 3605).
        if self.rtcp_mux {
            s.push_str("a=rtcp-mux\r\n");
        } else {
            s.push_str(&format!("a=rtcp:{port}\r\n"));
        }
        if let Some(k) = &self.srtp {
            s.push_str(&format!("a={}\r\n", k.answer_line()));
        }
        s.push_str(&format!("a={}\r\n", self.direction));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Policy = Policy {
        allow_plain_rtp: true,
    };
    const SRTP_ONLY: Policy = Policy {
        allow_plain_rtp: false,
    };
    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    const BARESIP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 10000 RTP/AVP 96 8 0 101\r\na=rtpmap:96 opus/48000/2\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n\
        m=video 10002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n";

    #[test]
    fn the_gateways_offer_and_the_answer_to_it() {
        let local: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let offer = Offer::new(local, None, 7, false).sdp;
        // What it offers, it can read: as a caller's offer, PCMA first.
        let a = choose(&offer, PLAIN).unwrap();
        assert_eq!((a.codec, a.pt, a.dtmf_pt), (LegCodec::Pcma, 8, Some(101)));
        assert_eq!(a.remote, Some(local));
        // An Opus answer keeps its keys: telephone-event on the 48 kHz clock.
        let opus_first = offer.replace("RTP/AVP 8 0 9 111", "RTP/AVP 111 8 0 9");
        let a = choose(&opus_first, PLAIN).unwrap();
        assert_eq!((a.codec, a.pt, a.dtmf_pt), (LegCodec::Opus, 111, Some(102)));
        // A room system's answer picks one codec: the leg takes it.
        let answer = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\n\
            t=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
            a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let a = choose(answer, PLAIN).unwrap();
        assert_eq!((a.codec, a.pt, a.dtmf_pt), (LegCodec::Pcmu, 0, Some(101)));
        assert_eq!(a.remote, Some("10.0.0.9:20000".parse().unwrap()));
    }

    #[test]
    fn the_callers_first_known_codec_is_chosen() {
        let a = choose(BARESIP, PLAIN).unwrap();
        assert_eq!(a.codec, LegCodec::Opus);
        assert_eq!(a.pt, 96);
        // telephone-event is at 8 kHz: not for Opus.
        assert_eq!(a.dtmf_pt, None);
        assert_eq!(a.remote, Some("127.0.0.1:10000".parse().unwrap()));
        let pcma = BARESIP.replace("96 8 0 101", "8 0 101");
        let a = choose(&pcma, PLAIN).unwrap();
        assert_eq!((a.codec, a.pt, a.dtmf_pt), (LegCodec::Pcma, 8, Some(101)));
    }

    #[test]
    fn the_answer_keeps_every_m_line_and_refuses_the_rest() {
        let a = choose(&BARESIP.replace("96 8 0 101", "0 101"), PLAIN).unwrap();
        let ans = a.answer("127.0.0.1:4000".parse().unwrap(), None, 7, 1);
        assert!(ans.contains("m=audio 4000 RTP/AVP 0 101\r\n"), "{ans}");
        assert!(ans.contains("a=rtpmap:0 PCMU/8000\r\n"), "{ans}");
        assert!(ans.contains("m=video 0 RTP/AVP 100\r\n"), "{ans}");
        // The answer parses as SDP itself.
        let back = SessionDescription::parse(&BytesStr::from(ans)).unwrap();
        assert_eq!(back.media_descriptions.len(), 2);
    }

    #[test]
    fn what_cannot_be_served_says_why() {
        let g729 = BARESIP
            .replace("96 8 0 101", "18")
            .replace("a=rtpmap:96", "a=x:96");
        assert_eq!(choose(&g729, PLAIN).unwrap_err().warning, 305);
        let srtp = BARESIP.replace("RTP/AVP 96", "RTP/SAVP 96");
        assert!(choose(&srtp, PLAIN)
            .unwrap_err()
            .text
            .contains("no SRTP key"));
        assert!(choose(BARESIP, SRTP_ONLY)
            .unwrap_err()
            .text
            .contains("plain RTP is not allowed"));
        let video_only = "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\n\
            t=0 0\r\nm=video 10002 RTP/AVP 100\r\n";
        assert_eq!(choose(video_only, PLAIN).unwrap_err().warning, 304);
        assert_eq!(choose("v=0\r\nnonsense", PLAIN).unwrap_err().warning, 399);
        assert_eq!(choose("", PLAIN).unwrap_err().warning, 399);
    }

    #[test]
    fn the_answer_mirrors_direction_and_keeps_refused_lines_refused() {
        let held = BARESIP.replace("a=sendrecv", "a=sendonly");
        let a = choose(&held, PLAIN).unwrap();
        let ans = a.answer("127.0.0.1:4000".parse().unwrap(), None, 7, 2);
        assert!(ans.contains("a=recvonly\r\n"), "{ans}");
        // An audio line offered with port 0 is not the one answered.
        let two = BARESIP.replace("m=video 10002 RTP/AVP 100", "m=audio 10004 RTP/AVP 0");
        let two = two.replacen("m=audio 10000", "m=audio 0", 1);
        let a = choose(&two, PLAIN).unwrap();
        let ans = a.answer("127.0.0.1:4000".parse().unwrap(), None, 7, 2);
        assert!(ans.contains("m=audio 0 RTP/AVP 96\r\n"), "{ans}");
        assert!(ans.contains("m=audio 4000 RTP/AVP 0\r\n"), "{ans}");
        // A text line is refused as text.
        let text = BARESIP.replace("m=video 10002 RTP/AVP 100", "m=text 10002 RTP/AVP 100");
        let ans =
            choose(&text, PLAIN)
                .unwrap()
                .answer("127.0.0.1:4000".parse().unwrap(), None, 7, 2);
        assert!(ans.contains("m=text 0 RTP/AVP 100\r\n"), "{ans}");
    }

    #[test]
    fn a_malformed_offer_is_refused_in_one_line() {
        let bad = BARESIP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 \u{1}bad host\r\nx");
        let r = choose(&bad, PLAIN).unwrap_err();
        assert_eq!(r.text, "malformed SDP");
    }

    #[test]
    fn an_encrypted_line_is_taken_before_a_plain_one() {
        // The dual m-line form: SAVP with keys, then the same audio plain.
        let dual = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 8\r\n\
             m=audio 4002 RTP/SAVP 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
        );
        for policy in [PLAIN, SRTP_ONLY] {
            let a = choose(&dual, policy).unwrap();
            assert_eq!(a.remote, Some("127.0.0.1:4002".parse().unwrap()));
            let ans = a.answer("127.0.0.1:5000".parse().unwrap(), None, 1, 1);
            assert!(ans.contains("m=audio 0 RTP/AVP 8\r\n"), "{ans}");
            assert!(ans.contains("m=audio 5000 RTP/SAVP 8\r\n"), "{ans}");
            assert!(
                ans.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
                "{ans}"
            );
        }
        // Keys on an AVP line are used too.
        let avp = dual.replace("RTP/SAVP", "RTP/AVP");
        assert!(choose(&avp, SRTP_ONLY).unwrap().srtp.is_some());
    }

    #[test]
    fn a_vp8_video_line_is_taken_and_answered() {
        let offer = BARESIP.replace(
            "a=rtpmap:100 VP8/90000\r\n",
            "a=rtpmap:100 VP8/90000\r\na=rtcp-fb:* nack pli\r\nb=TIAS:512000\r\n",
        );
        let a = choose(&offer, PLAIN).unwrap();
        let v = a.video.clone().expect("the video line");
        assert_eq!((v.pt, v.pli, v.fir, v.rtcp_mux), (100, true, false, false));
        assert_eq!(v.remote, Some("127.0.0.1:10002".parse().unwrap()));
        assert_eq!(v.rtcp, Some("127.0.0.1:10003".parse().unwrap()));
        assert_eq!(v.max_kbps, Some(512));
        let ans = a.answer("127.0.0.1:4000".parse().unwrap(), Some(4002), 7, 1);
        assert!(
            ans.contains("m=video 4002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n"),
            "{ans}"
        );
        assert!(
            ans.contains("a=rtcp-fb:100 nack pli\r\na=rtcp:4002\r\n"),
            "{ans}"
        );
        // Without a video port (none could be bound), the line is refused.
        let ans = a.answer("127.0.0.1:4000".parse().unwrap(), None, 7, 1);
        assert!(ans.contains("m=video 0 RTP/AVP 100\r\n"), "{ans}");
        // Muxed RTCP stays muxed; H.264 alone is not taken (yet): audio only.
        let mux = BARESIP.replace(
            "a=rtpmap:100 VP8/90000",
            "a=rtpmap:100 VP8/90000\r\na=rtcp-mux",
        );
        let v = choose(&mux, PLAIN).unwrap().video.unwrap();
        assert_eq!(v.rtcp, v.remote);
        let h264 = BARESIP.replace("VP8/90000", "H264/90000");
        assert_eq!(
            choose(&h264, PLAIN).unwrap().video,
            None,
            "mode 0 is not served"
        );
    }

    #[test]
    fn h264_in_mode_1_of_the_baseline_family_is_taken() {
        let offer = BARESIP.replace(
            "m=video 10002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n",
            "m=video 10002 RTP/AVP 97 98 99\r\na=rtpmap:97 H264/90000\r\n\
             a=fmtp:97 profile-level-id=640c1f;packetization-mode=1\r\n\
             a=rtpmap:98 H264/90000\r\na=fmtp:98 packetization-mode=1; profile-level-id=42801F\r\n\
             a=rtpmap:99 VP8/90000\r\n",
        );
        let a = choose(&offer, PLAIN).unwrap();
        let v = a.video.clone().unwrap();
        assert_eq!(
            (v.codec, v.pt),
            (VideoCodec::H264, 98),
            "High profile skipped"
        );
        let ans = a.answer("127.0.0.1:4000".parse().unwrap(), Some(4002), 7, 1);
        assert!(
            ans.contains("a=rtpmap:98 H264/90000\r\na=fmtp:98 profile-level-id=42801F;packetization-mode=1\r\n"),
            "{ans}"
        );
        let vp8_first = offer.replace("RTP/AVP 97 98 99", "RTP/AVP 99 98");
        let mut v = choose(&vp8_first, PLAIN).unwrap().video.unwrap();
        assert_eq!((v.codec, v.pt), (VideoCodec::Vp8, 99));
        // An H.264 room takes the caller's H.264; a VP8-only caller cannot fit it.
        assert!(v.fit(VideoCodec::H264));
        assert_eq!((v.codec, v.pt), (VideoCodec::H264, 98));
        let mut vp8_only = choose(BARESIP, PLAIN).unwrap().video.unwrap();
        assert!(!vp8_only.fit(VideoCodec::H264));
        assert_eq!(vp8_only.codec, VideoCodec::Vp8);
        // RTCP feedback is the fitted format's own.
        let fb = vp8_first.replace(
            "a=rtpmap:99 VP8/90000\r\n",
            "a=rtpmap:99 VP8/90000\r\na=rtcp-fb:99 nack pli\r\n",
        );
        let mut v = choose(&fb, PLAIN).unwrap().video.unwrap();
        assert!(v.pli);
        assert!(v.fit(VideoCodec::H264));
        assert!(!v.pli, "none offered for H.264");
        // A video line with a host name is refused alone.
        let named = offer.replace(
            "m=video 10002 RTP/AVP 97 98 99\r\n",
            "m=video 10002 RTP/AVP 97 98 99\r\nc=IN IP4 cam.example\r\n",
        );
        let a = choose(&named, PLAIN).unwrap();
        assert_eq!(a.video, None);
    }

    #[test]
    fn an_encrypted_calls_video_is_encrypted_too() {
        let srtp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n\
             m=video 4002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n"
        );
        // Plain video beside encrypted audio: refused, the call goes on without it.
        let a = choose(&srtp, PLAIN).unwrap();
        assert_eq!(a.video, None);
        let ans = a.answer("127.0.0.1:5000".parse().unwrap(), Some(5002), 1, 1);
        assert!(ans.contains("m=video 0 RTP/AVP 100\r\n"), "{ans}");
        // With keys of its own it is taken, and answered with a key of ours.
        let keyed = srtp.replace(
            "m=video 4002 RTP/AVP 100\r\n",
            &format!(
                "m=video 4002 RTP/SAVP 100\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
            ),
        );
        let a = choose(&keyed, SRTP_ONLY).unwrap();
        assert!(a.video.as_ref().unwrap().srtp.is_some());
        let ans = a.answer("127.0.0.1:5000".parse().unwrap(), Some(5002), 1, 1);
        assert_eq!(
            ans.matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
                .count(),
            2,
            "{ans}"
        );
    }

    #[test]
    fn a_held_call_has_no_remote() {
        let held = BARESIP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        assert_eq!(choose(&held, PLAIN).unwrap().remote, None);
    }

    /// The far end's answer to `offer`: PCMA, with `key_line` on an SAVP line when
    /// given, video refused.
    fn answer_to(key_line: Option<&str>) -> String {
        let (proto, key) = match key_line {
            Some(k) => ("RTP/SAVP", format!("a={k}\r\n")),
            None => ("RTP/AVP", String::new()),
        };
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 {proto} 8\r\na=rtpmap:8 PCMA/8000\r\n{key}a=sendrecv\r\n\
             m=video 0 {proto} 96\r\n"
        )
    }

    #[test]
    fn the_gateways_own_offer_is_encrypted_where_srtp_is_required() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let plain = Offer::new(local, Some(5002), 7, false);
        assert!(plain
            .sdp
            .contains("m=audio 5000 RTP/AVP 8 0 9 111 101 102\r\n"));
        assert!(plain.sdp.contains("m=video 5002 RTP/AVP 96 97\r\n"));
        assert!(!plain.sdp.contains("crypto"));
        let secret = Offer::new(local, Some(5002), 7, true);
        assert!(secret
            .sdp
            .contains("m=audio 5000 RTP/SAVP 8 0 9 111 101 102\r\n"));
        assert!(secret.sdp.contains("m=video 5002 RTP/SAVP 96 97\r\n"));
        assert_eq!(
            secret
                .sdp
                .matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
                .count(),
            2
        );
        assert!(
            !format!("{secret:?}").contains("inline:"),
            "keys never reach a log"
        );

        // The far end reads the offer as the gateway reads a caller's, and answers.
        let far = choose(&secret.sdp, SRTP_ONLY).unwrap();
        let far_keys = far.srtp.clone().unwrap();
        let leg = secret
            .read(&answer_to(Some(&far_keys.answer_line())))
            .unwrap();
        assert_eq!(leg.codec, LegCodec::Pcma);
        // What the gateway sends, the far end opens; and the other way round.
        let (mut ours, mut theirs) = (
            leg.srtp.unwrap().contexts().unwrap(),
            far_keys.contexts().unwrap(),
        );
        let mut rtp = Vec::new();
        crate::rtp::write(&mut rtp, 8, false, 1, 160, 9, &[0xd5; 160]);
        assert_eq!(theirs.unprotect(&ours.protect(&rtp).unwrap()).unwrap(), rtp);
        assert_eq!(ours.unprotect(&theirs.protect(&rtp).unwrap()).unwrap(), rtp);

        // A plain answer to an encrypted offer, and an encrypted one to a plain
        // offer, carry no call.
        assert!(secret.read(&answer_to(None)).is_err());
        assert!(plain
            .read(&answer_to(Some(&far_keys.answer_line())))
            .is_err());
        assert!(plain.read(&answer_to(None)).unwrap().srtp.is_none());
        // Nor does a key for a suite that was not offered.
        let other = far_keys
            .answer_line()
            .replace("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32");
        let refused = secret.read(&answer_to(Some(&other))).unwrap_err();
        assert!(refused.text.contains("offered suite"), "{}", refused.text);
    }
    #[test]
    fn a_re_offer_with_a_new_key_re_keys_the_leg() {
        let key2 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";
        let offer = |key: &str| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
            )
        };
        let mut leg = choose(&offer(KEY), SRTP_ONLY).unwrap();
        let before = leg.srtp.clone().unwrap();
        // The same key again (a session refresh): nothing changes.
        assert!(leg.rekeyed(&offer(KEY)).is_empty());
        assert!(leg.rekeyed("not sdp").is_empty());
        // A new key: the leg takes it; the gateway's own key stays.
        let rekey = leg.rekeyed(&offer(key2));
        let new = rekey.audio.expect("the audio re-keyed");
        assert_eq!(leg.srtp.as_ref(), Some(&new));
        assert_ne!(new, before);
        assert_eq!(
            new.answer_line(),
            before.answer_line(),
            "our key is unchanged"
        );
        assert!(rekey.video.is_none());
        // The far end numbers its lines as it likes (a call the gateway offered into
        // starts with the gateway's tag): the answer takes the re-offer's.
        let renumbered = leg.rekeyed(&offer(key2).replace("a=crypto:1 ", "a=crypto:7 "));
        let line = renumbered.audio.expect("the tag changed").answer_line();
        assert!(
            line.starts_with("crypto:7 AES_CM_128_HMAC_SHA1_80 "),
            "{line}"
        );
        // What the far end seals with its new key now opens; with the old, no more.
        let mut gateway = before.contexts().unwrap();
        gateway.rekey(new.clone()).unwrap();
        let mut rtp = Vec::new();
        crate::rtp::write(&mut rtp, 8, false, 1, 160, 5, &[0xd5; 160]);
        let mut far_old = before.swapped().contexts().unwrap();
        assert!(gateway.unprotect(&far_old.protect(&rtp).unwrap()).is_none());
        let mut far_new = new.swapped().contexts().unwrap();
        assert_eq!(
            gateway.unprotect(&far_new.protect(&rtp).unwrap()).unwrap(),
            rtp
        );
    }
}
