//! What a join costs the node's DTLS, in memory (no sockets): a client `Rtc` (str0m's
//! own DTLS, as the load generator's clients) offers, the node's `Rtc` (configured as
//! the media node configures it, `sfu::node::rtc_config`) answers, and the two are
//! pumped until both are connected (ICE, the DTLS handshake, SRTP keys). Twice: with
//! the node's DTLS on OpenSSL (`sfu::dtls`, which takes RSA peers: the product) and
//! on str0m's own (dimpl, ECDSA peers only: the baseline). Joins per second per core
//! is the inverse of the time per join (client side included, the same for both).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use str0m::ice::IceCreds;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Input, Rtc};

const NODE: &str = "127.0.0.1:20000";
const CLIENT: &str = "127.0.0.1:40000";

/// One join: offer, answer, handshake; returns once both sides are connected.
fn join(cert: &str0m::config::DtlsCert, provider: &Arc<str0m::crypto::CryptoProvider>) {
    let (node_addr, client_addr): (SocketAddr, SocketAddr) =
        (NODE.parse().unwrap(), CLIENT.parse().unwrap());
    let mut now = Instant::now();
    let mut node = sfu::node::rtc_config(cert, IceCreds::new(), control::RoomVideo::Any)
        .set_crypto_provider(provider.clone())
        .build(now);
    node.add_local_candidate(Candidate::host(node_addr, "udp").unwrap());
    let mut client = benches::in_memory::client_rtc(client_addr, now);
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let answer = node.sdp_api().accept_offer(offer).unwrap();
    client.sdp_api().accept_answer(pending, answer).unwrap();
    for _ in 0..200 {
        benches::in_memory::pump(&mut node, &mut client, node_addr, client_addr, now);
        if connected(&node) && connected(&client) {
            return;
        }
        now += Duration::from_millis(10);
        node.handle_input(Input::Timeout(now)).unwrap();
        client.handle_input(Input::Timeout(now)).unwrap();
    }
    panic!("no connection");
}

fn connected(rtc: &Rtc) -> bool {
    rtc.is_connected()
}

fn joins(c: &mut Criterion) {
    sfu::node::install_crypto();
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .expect("a certificate");
    let mut group = c.benchmark_group("join");
    group.sample_size(30);
    for (name, provider) in [
        ("openssl_dtls", sfu::dtls::crypto_provider()),
        ("str0m_dtls", Arc::new(str0m::crypto::from_feature_flags())),
    ] {
        group.bench_function(name, |b| b.iter(|| join(&cert, &provider)));
    }
    group.finish();
}

criterion_group!(benches, joins);
criterion_main!(benches);
