//! Benchmarks live in `benches/benches/`; run them with `cargo bench -p benches`.
//! What several of them share is here.

/// Two str0m peers connected in memory: datagrams handed across, no sockets.
pub mod in_memory {
    use std::net::SocketAddr;
    use std::time::Instant;

    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Input, Output, Rtc, RtcConfig};

    /// A client `Rtc` as the load generator's (RTP mode, Opus, VP8; str0m's own
    /// DTLS), with a host candidate at `addr`.
    pub fn client_rtc(addr: SocketAddr, now: Instant) -> Rtc {
        let mut client = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        client.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        client
    }

    /// Hand `from`'s datagrams to `to`: whether anything moved.
    pub fn relay(
        from: &mut Rtc,
        to: &mut Rtc,
        src: SocketAddr,
        dst: SocketAddr,
        now: Instant,
    ) -> bool {
        let mut moved = false;
        while let Ok(out) = from.poll_output() {
            match out {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    moved = true;
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: src,
                            destination: dst,
                            contents: (&t.contents[..]).try_into().unwrap(),
                        },
                    );
                    to.handle_input(input).unwrap();
                }
                Output::Event(_) => {}
            }
        }
        moved
    }

    /// Hand datagrams across both ways until neither side has anything to say.
    pub fn pump(a: &mut Rtc, b: &mut Rtc, a_addr: SocketAddr, b_addr: SocketAddr, now: Instant) {
        while relay(a, b, a_addr, b_addr, now) | relay(b, a, b_addr, a_addr, now) {}
    }
}
