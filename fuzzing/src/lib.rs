//! The fuzz targets: each takes arbitrary bytes and hands them to the product the way
//! its input arrives from outside, and must never panic. They are plain functions so
//! that `cargo test` replays every seed and every input that once crashed one
//! (`tests/replay.rs`, from `seeds/` and `regressions/`), on the stable toolchain;
//! `fuzz/` drives them with libFuzzer (`scripts/fuzz.sh`).
//!
//! | target | input | where it comes from |
//! |---|---|---|
//! | `client_message` | a WebSocket message | any browser (`signalling::messages`); a SIP gateway of its own (`signalling::gateways`) |
//! | `control_frame` | a control-protocol message | a media node or the signalling node over QUIC (`control::wire`) |
//! | `token` | a bearer token (HS256 and EdDSA nodes, join and resume), and a token public key file | any HTTP or WebSocket caller; the operator's `--token-public-key` (`signalling::token`) |
//! | `forwarded` | forwarding headers | a proxy, or anyone posing as one (`signalling::caller`) |
//! | `sdp` | an SDP offer or answer | a joining client, as the media node parses and answers it |
//! | `datagram` | UDP datagrams | anyone who can reach a shard's port, through the worker's sans-IO path |
//! | `ice_tcp` | an ICE-TCP connection's bytes | anyone who can reach a shard's TCP port, through the deframer and the worker |
//! | `sip` | a SIP message | anyone who can reach the gateway's SIP port: rsipstack's parser, then the offer in its body as the gateway reads it |
//! | `config` | a `--config` file | an operator's TOML, turned into flags as the signalling node does (`settings`), then parsed by clap |
//! | `leg_rtp` | datagrams on a call's RTP and video ports | anyone who can reach them: the call's sans-IO core, for each of its codecs, and its video (VP8 RTP, RTCP; the same bytes as the room's frames) |

mod datagram;

use std::net::SocketAddr;

pub use datagram::{datagram, ice_tcp};

/// A `--config` file, turned into flags for a command with every kind of flag the
/// signalling node has (a value, a list, a switch, one with an environment
/// variable), and those flags parsed.
pub fn config(data: &[u8]) {
    use clap::{Arg, ArgAction, Command};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cmd = Command::new("node")
        .arg(
            Arg::new("http")
                .long("http")
                .value_parser(clap::value_parser!(SocketAddr)),
        )
        .arg(Arg::new("secret").long("secret").env("FUZZ_NODE_SECRET"))
        .arg(
            Arg::new("shards")
                .long("shards")
                .value_parser(clap::value_parser!(u16)),
        )
        .arg(
            Arg::new("udp_bind")
                .long("udp-bind")
                .action(ArgAction::Append),
        )
        .arg(Arg::new("plain").long("plain").action(ArgAction::SetTrue))
        .arg(Arg::new("config").long("config"));
    let given = [std::ffi::OsString::from("--shards"), "2".into()];
    if let Ok(flags) = settings::args_from_toml(&cmd, text, &given, |_| false) {
        let argv = std::iter::once("node".to_owned()).chain(flags);
        if let Ok(m) = cmd.clone().try_get_matches_from(argv) {
            let _ = settings::print(&cmd, &m, &[]);
        }
    }
}

/// A WebSocket text message, as a session parses it.
pub fn client_message(data: &[u8]) {
    let _ = serde_json::from_slice::<signalling::messages::ClientMsg>(data);
    // A SIP gateway's answer to a dial-out, on `/api/sip/dials`.
    let _ = serde_json::from_slice::<signalling::gateways::DialAnswer>(data);
}

/// A frame body of the control protocol, as either end parses it.
pub fn control_frame(data: &[u8]) {
    let _ = serde_json::from_slice::<control::Request>(data);
    let _ = serde_json::from_slice::<control::Reply>(data);
    let _ = serde_json::from_slice::<control::NodeEvent>(data);
    let _ = serde_json::from_slice::<control::NodeLoad>(data);
    let _ = serde_json::from_slice::<control::wire::Hello>(data);
    let _ = serde_json::from_slice::<control::wire::Register>(data);
    let _ = serde_json::from_slice::<Result<control::wire::Welcome, control::ControlError>>(data);
}

/// The public key of the EdDSA node the `token` target verifies with (also a seed,
/// `seeds/token/eddsa.pub`); its private half, which minted `seeds/token/eddsa.jwt`
/// (valid until 2036), is a published test key (`signalling::token::ed25519`'s tests):
/// never use this pair for anything else.
const FUZZ_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEArnXBJuIr+3PwpaXTNccf0a27hmVQbEzn1S/h2MKLNEI=
-----END PUBLIC KEY-----
";

/// A bearer token, as an HS256 node and an EdDSA node verify it (as a join token and
/// as a resume token); and the same bytes as a token public key file.
pub fn token(data: &[u8]) {
    use signalling::token::Keys;
    static KEYS: std::sync::OnceLock<[Keys; 2]> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let (iss, aud) = (Some("issuer".to_owned()), Some("audience".to_owned()));
        let shared = Keys::new(b"fuzzing secret of no importance at all");
        let public = Keys::from_public_key(FUZZ_PUBLIC_KEY.as_bytes(), Some(b"node secret"))
            .expect("a good public key");
        [shared, public].map(|k| k.expecting(iss.clone(), aud.clone()))
    });
    if let Ok(text) = std::str::from_utf8(data) {
        for k in keys {
            let _ = k.verify(Some(text), "room");
            let _ = k.verify_resume(text, "room");
        }
    }
    let _ = Keys::from_public_key(data, None);
}

/// Forwarding headers (one value per line: X-Forwarded-For, Forwarded, X-Real-IP)
/// from a trusted proxy, as the signalling node finds the caller.
pub fn forwarded(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut headers = axum::http::HeaderMap::new();
    let names = ["x-forwarded-for", "forwarded", "x-real-ip", "via"];
    for (name, line) in names.iter().cycle().zip(text.lines().take(8)) {
        if let Ok(v) = line.parse() {
            headers.append(*name, v);
        }
    }
    let proxies = signalling::caller::TrustedProxies(vec![
        "127.0.0.0/8".parse().expect("a CIDR"),
        "fd00::/8".parse().expect("a CIDR"),
    ]);
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
    let _ = proxies.caller(peer, &headers);
}

/// An SDP offer as the media node takes it (checked, parsed, answered), and the same
/// text as an answer to one of its renegotiations.
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An H.264 room's answer too: the offer's formats narrowed to one codec.
    for video in [control::RoomVideo::Any, control::RoomVideo::H264] {
        if let Ok(offer) = sfu::peer::parse_offer(text) {
            let addr: SocketAddr = "127.0.0.1:20000".parse().expect("an address");
            let hosts = sfu::HostCandidates::udp(vec![addr]);
            let now = std::time::Instant::now();
            let _ = sfu::node::answer_offer(now, datagram::cert(), &hosts, offer, video);
        }
    }
    let _ = str0m::change::SdpAnswer::from_sdp_string(text);
}

const POLICY: gateway::sdp::Policy = gateway::sdp::Policy {
    allow_plain_rtp: true,
};

/// A SIP message, as the gateway's endpoint parses it; then its body as the offer of
/// an INVITE.
pub fn sip(data: &[u8]) {
    if let Ok(rsipstack::sip::SipMessage::Request(r)) = rsipstack::sip::parser::parse_message(data)
    {
        if let Ok(body) = std::str::from_utf8(&r.body) {
            let _ = gateway::sdp::choose(body, POLICY);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(leg) = gateway::sdp::choose(text, POLICY) {
            let _ = leg.answer(SocketAddr::from(([127, 0, 0, 1], 4000)), Some(4002), 1, 1);
        }
    }
}

/// Datagrams on a call's RTP port (split at each newline byte), through a call of each
/// leg codec; time moves 20 ms between them.
pub fn leg_rtp(data: &[u8]) {
    use std::time::{Duration, Instant};
    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 4000 RTP/AVP PT 101\r\na=rtpmap:96 opus/48000/2\r\n\
        a=rtpmap:101 telephone-event/8000\r\n";
    for pt in ["8", "0", "9", "96"] {
        let leg = gateway::sdp::choose(&OFFER.replace("PT", pt), POLICY).expect("a valid offer");
        let t0 = Instant::now();
        let Ok(mut call) = gateway::call::Call::new(leg, 1, t0) else {
            return;
        };
        let mut now = t0;
        for d in data.split(|&b| b == b'\n').take(64) {
            call.on_leg_datagram(now, d);
            call.on_room_audio(now, d.first().copied().unwrap_or(0) as u32 % 4, d);
            now += Duration::from_millis(20);
            call.handle_timeout(now);
            while !matches!(call.poll_output(), gateway::call::Output::Timeout(_)) {}
        }
    }
    // The same datagrams on a video port (VP8 RTP, RTCP), and as the room's frames.
    for codec in ["VP8/90000", "H264/90000\r\na=fmtp:100 packetization-mode=1"] {
        let offer = format!("{OFFER}m=video 4002 RTP/AVP 100\r\na=rtpmap:100 {codec}\r\n");
        video_datagrams(&offer.replace("PT", "8"), data);
    }
}

fn video_datagrams(offer: &str, data: &[u8]) {
    use std::time::{Duration, Instant};
    let leg = gateway::sdp::choose(offer, POLICY).expect("a valid offer");
    let Ok(mut video) = gateway::video::Video::new(leg.video.expect("video"), 1) else {
        return;
    };
    let t0 = Instant::now();
    let mut now = t0;
    for d in data.split(|&b| b == b'\n').take(64) {
        video.on_leg_datagram(now, d);
        let source = d.first().copied().unwrap_or(0) as u32 % 3;
        let codec = if d.len() % 7 == 0 {
            gateway::sdp::VideoCodec::H264
        } else {
            gateway::sdp::VideoCodec::Vp8
        };
        video.on_room_frame(now, source, codec, d, d.len() as u32 * 3000);
        if d.len() % 5 == 0 {
            video.show(now, source);
            video.room_wants_keyframe(now);
        }
        now += Duration::from_millis(33);
        video.handle_timeout(now);
        while video.poll_output().is_some() {}
    }
}
