//! Datagrams into one shard's worker, through its sans-IO path: from a stranger, and
//! from an address that introduced itself with a valid STUN binding request for a
//! joined participant, so that the bytes reach that participant's `Rtc` (STUN, DTLS,
//! SRTP and RTCP parsing) and the worker's handling of what comes out. And the same
//! for one ICE-TCP connection's byte stream (`ice_tcp`), cut into packets by the
//! shard's deframer.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use control::{JoinKind, ParticipantId};
use sfu::command::{Command, NewPeer};
use sfu::metrics::Metrics;
use sfu::placement::ShardPlacement;
use sfu::tcp::framing::Frame;
use sfu::worker::{Worker, WorkerContext};
use str0m::config::DtlsCert;
use str0m::ice::{StunMessage, TransId};
use str0m::media::{Direction, MediaKind};

const NODE: &str = "127.0.0.1:20000";
const INTRODUCED: &str = "10.0.0.1:5000";
const STRANGER: &str = "10.0.0.2:5000";

/// The node's DTLS certificate, made once (it costs milliseconds).
pub(crate) fn cert() -> &'static DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        sfu::node::install_crypto();
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("a DTLS certificate")
    })
}

/// The input is a sequence of datagrams, each a 2-byte big-endian length (its top bit
/// set: from the stranger) and that many bytes; the time advances 5 ms between them.
pub fn datagram(data: &[u8]) {
    let mut now = Instant::now();
    let Some((mut worker, introduce, _)) = joined(now) else {
        return;
    };
    let introduced: SocketAddr = INTRODUCED.parse().expect("an address");
    let stranger: SocketAddr = STRANGER.parse().expect("an address");
    worker.handle_datagram(now, introduced, &introduce);
    worker.end_batch(now);
    let mut rest = data;
    while rest.len() >= 2 {
        let head = u16::from_be_bytes([rest[0], rest[1]]);
        let len = ((head & 0x7fff) as usize).min(rest.len() - 2);
        let from = if head & 0x8000 != 0 {
            stranger
        } else {
            introduced
        };
        worker.handle_datagram(now, from, &rest[2..2 + len]);
        worker.end_batch(now);
        rest = &rest[2 + len..];
        now += Duration::from_millis(5);
        worker.handle_timeout(now);
        // What the worker sends goes nowhere; its events are dropped.
        worker.transmits().iter_mut().for_each(|tx| tx.clear());
        while worker.poll_event().is_some() {}
    }
}

/// The input is one ICE-TCP connection's byte stream (RFC 4571 frames), read in
/// pieces of the size its first byte gives (1 to 256 bytes), cut into packets by
/// the shard's deframer and handed to the worker as the connection's; a binding
/// request has introduced the connection first. The time advances 5 ms a piece.
pub fn ice_tcp(data: &[u8]) {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let Some((mut worker, introduce, _)) = joined(now) else {
        return;
    };
    let conn: SocketAddr = INTRODUCED.parse().expect("an address");
    worker.handle_tcp_packet(now, 0, conn, &introduce);
    worker.end_batch(now);
    let mut rx = sfu::tcp::framing::Deframer::default();
    for bytes in stream.chunks(piece as usize + 1) {
        rx.push(bytes);
        loop {
            match rx.next_frame() {
                Frame::Packet(p) => {
                    worker.handle_tcp_packet(now, 0, conn, p);
                }
                Frame::Incomplete => break,
                // The driver closes such a connection.
                Frame::TooLong => return,
            }
        }
        worker.end_batch(now);
        now += Duration::from_millis(5);
        worker.handle_timeout(now);
        worker.transmits().iter_mut().for_each(|tx| tx.clear());
        worker.tcp_transmits().clear();
        worker.tcp_gone().clear();
        while worker.poll_event().is_some() {}
    }
}

/// A worker with one participant joined, and a binding request that introduces an
/// address for it (valid integrity: the node's ICE password is in its answer).
fn joined(now: Instant) -> Option<(Worker, Vec<u8>, Arc<Metrics>)> {
    let mut client = str0m::RtcConfig::new().set_rtp_mode(true).build(now);
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply()?;
    let offer = offer.to_sdp_string();
    let client_ufrag = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))?
        .trim()
        .to_owned();
    let offer = sfu::peer::parse_offer(&offer).ok()?;
    let node_addr: SocketAddr = NODE.parse().expect("an address");
    let (rtc, answer, local_ufrag) = sfu::node::answer_offer(
        now,
        cert(),
        &sfu::HostCandidates {
            udp: vec![node_addr],
            tcp: vec![node_addr],
        },
        offer,
        control::RoomVideo::Any,
    )
    .ok()?;
    let pwd = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-pwd:"))?
        .trim()
        .to_owned();

    let placement = Arc::new(Mutex::new(ShardPlacement::default()));
    let participant = ParticipantId(1);
    placement
        .lock()
        .expect("a fresh lock")
        .reserve(participant, "room", 10, || 0)
        .ok()?;
    let metrics = Arc::new(Metrics::new());
    let ctx = WorkerContext {
        index: 0,
        metrics: metrics.clone(),
        shared: Default::default(),
        track_ids: Arc::new(AtomicU64::new(1)),
        placement,
        offer_give_up: sfu::peer::OFFER_GIVE_UP,
    };
    let mut worker = Worker::new(ctx, vec![node_addr], vec![node_addr], now);
    let peer = NewPeer {
        rtc,
        kind: JoinKind::Full,
        participant,
        identity: "fuzz".into(),
        room: "room".into(),
        local_ufrag: local_ufrag.clone(),
        screen: None,
    };
    worker.handle_command(now, Command::AddPeer(Box::new(peer)));

    let username = format!("{local_ufrag}:{client_ufrag}");
    let request = StunMessage::binding_request(&username, TransId::new(), true, 7, 1000, true);
    let mut buf = vec![0u8; 1500];
    let hmac = str0m::crypto::from_feature_flags().sha1_hmac_provider;
    let n = request
        .to_bytes(Some(pwd.as_bytes()), &mut buf, |key, payloads| {
            hmac.sha1_hmac(key, payloads)
        })
        .ok()?;
    buf.truncate(n);
    Some((worker, buf, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness is worth its name only if its datagrams reach the peer's `Rtc`:
    /// the introduction is accepted, and what follows from that address is the
    /// `Rtc`'s to judge, not dropped as from an unknown source.
    #[test]
    fn the_introduced_address_reaches_the_peer() {
        let now = Instant::now();
        let (mut worker, introduce, metrics) = joined(now).expect("a joined worker");
        let from: SocketAddr = INTRODUCED.parse().unwrap();
        worker.handle_datagram(now, from, &introduce);
        worker.handle_datagram(now, from, &[0x80, 0x60, 0, 1, 0, 0]);
        worker.handle_datagram(now, STRANGER.parse().unwrap(), &[0x80, 0x60, 0, 1]);
        let text = metrics.render();
        let count = |reason: &str| {
            text.lines()
                .find(|l| l.starts_with("sfu_datagrams_dropped_total") && l.contains(reason))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        assert_eq!(count("\"rejected\""), 0, "{text}");
        assert_eq!(
            count("\"unknown_source\""),
            1,
            "only the stranger's: the introduced address's garbage went on to its Rtc"
        );
    }
}
