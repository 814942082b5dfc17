//! DTLS for the node's peers, on OpenSSL. str0m's own DTLS (dimpl) asks for ECDSA
//! client certificates only, and GStreamer's webrtcbin, FreeSWITCH and Asterisk
//! present RSA ones: they could not connect. This provider takes a peer's
//! certificate of any type (str0m checks it against the fingerprint of the peer's
//! SDP, from the `PeerCert` output); everything else (SRTP, hashes, STUN's HMAC,
//! the node's own ECDSA certificate) stays on str0m's aws-lc provider.
//!
//! The DTLS association runs over datagram queues (`Datagrams`): str0m hands in
//! what arrives and polls out what to send, as with its own DTLS. Only the handshake
//! and data channels go through it; media (SRTP) never does.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openssl::pkey::PKey;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::X509;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, KeyingMaterial,
    ProtocolVersion, SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// How often a handshake in progress is given the time (OpenSSL retransmits a lost
/// flight when its own timer, 1 s doubling, has run out).
const HANDSHAKE_TICK: Duration = Duration::from_millis(50);
/// SRTP protection profiles offered and taken, best first.
const SRTP_PROFILES: &str = "SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80";
/// DTLS 1.2 suites with forward secrecy; the node's certificate is ECDSA, a client's
/// may be ECDSA or RSA (its suites for when the node is the client).
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
    ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:\
    ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA";

/// The crypto provider of the node's peers: str0m's aws-lc provider with this DTLS.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                dtls_provider: &OPENSSL_DTLS,
                ..str0m::crypto::from_feature_flags()
            })
        })
        .clone()
}

static OPENSSL_DTLS: OpensslDtls = OpensslDtls {
    context: Mutex::new(None),
};

/// Makes DTLS associations on one OpenSSL context per certificate (the node has
/// one): a join costs an `Ssl`, not a context.
#[derive(Debug)]
struct OpensslDtls {
    /// The certificate the context was made with, and the context.
    context: Mutex<Option<(Vec<u8>, SslContext)>>,
}

impl OpensslDtls {
    fn context(&self, cert: &DtlsCert) -> Result<SslContext, openssl::error::ErrorStack> {
        let mut held = self.context.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((der, ctx)) = held.as_ref() {
            if *der == cert.certificate {
                return Ok(ctx.clone());
            }
        }
        let mut b = SslContext::builder(SslMethod::dtls())?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        let certificate = X509::from_der(&cert.certificate)?;
        let key = PKey::private_key_from_der(&cert.private_key)?;
        b.set_certificate(&certificate)?;
        b.set_private_key(&key)?;
        b.check_private_key()?;
        b.set_cipher_list(CIPHERS)?;
        b.set_tlsext_use_srtp(SRTP_PROFILES)?;
        // Ask for the peer's certificate and take any: what proves the peer is its
        // certificate's fingerprint in the SDP, which str0m compares.
        b.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            |_, _| true,
        );
        // The MTU is str0m's (set per association), not the "socket's". No
        // renegotiation (its keys would never reach str0m) and no session resumption
        // (each association has its own keys, verified by fingerprint).
        b.set_options(
            SslOptions::NO_QUERY_MTU | SslOptions::NO_RENEGOTIATION | SslOptions::NO_TICKET,
        );
        b.set_session_cache_mode(openssl::ssl::SslSessionCacheMode::OFF);
        let ctx = b.build();
        *held = Some((cert.certificate.clone(), ctx.clone()));
        Ok(ctx)
    }
}

impl DtlsProvider for OpensslDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        _version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let context = self
            .context(cert)
            .map_err(|e| CryptoError::Other(format!("DTLS context: {e}")))?;
        Ok(Box::new(Association {
            context,
            mtu: mtu.unwrap_or(1150),
            stream: None,
            active: false,
            phase: Phase::Idle,
            events: VecDeque::new(),
            now,
        }))
    }
}

/// Datagrams held for OpenSSL to read, at most: a handshake flight is a few; a peer
/// sending more than OpenSSL takes loses the rest, as on a full socket.
const MAX_INCOMING: usize = 32;
/// The largest record read out for str0m (its buffer is smaller: see poll_output).
const READ_BUF: usize = 16 << 10;

/// The datagrams between OpenSSL and str0m: one `read` is one received datagram,
/// one `write` one datagram to send.
#[derive(Debug, Default)]
struct Datagrams {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started (`set_active` not called).
    Idle,
    Handshaking,
    Connected,
    /// Failed or closed: nothing more comes in or goes out.
    Done,
}

/// What the association has to tell str0m, in order.
#[derive(Debug)]
enum Told {
    PeerCert(Vec<u8>),
    Keys(KeyingMaterial, SrtpProfile),
    Connected,
    Data(Vec<u8>),
    CloseNotify,
}

#[derive(Debug)]
struct Association {
    context: SslContext,
    mtu: usize,
    /// Behind a mutex only because str0m wants its DTLS `Sync`; one thread uses it.
    stream: Option<Mutex<SslStream<Datagrams>>>,
    active: bool,
    phase: Phase,
    events: VecDeque<Told>,
    now: Instant,
}

impl Association {
    fn start(&mut self) -> Result<(), openssl::error::ErrorStack> {
        let mut ssl = Ssl::new(&self.context)?;
        ssl.set_mtu(self.mtu as u32)?;
        if self.active {
            ssl.set_connect_state();
        } else {
            ssl.set_accept_state();
        }
        self.stream = Some(Mutex::new(SslStream::new(ssl, Datagrams::default())?));
        self.phase = Phase::Handshaking;
        Ok(())
    }

    /// Datagrams waiting to be polled out (a close_notify, the last flight).
    fn pending_out(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_ref()
                .outgoing
                .len()
        })
    }

    /// Move the handshake on, or read what arrived once connected.
    fn drive(&mut self) -> Result<(), DtlsImplError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let stream = stream.get_mut().unwrap_or_else(|e| e.into_inner());
        if self.phase == Phase::Handshaking {
            match stream.do_handshake() {
                Ok(()) => {
                    self.phase = Phase::Connected;
                    match connected(stream) {
                        Ok(told) => self.events.extend(told),
                        Err(why) => {
                            tracing::debug!("DTLS: {why}");
                            self.phase = Phase::Done;
                            return Err(DtlsImplError::ConnectionClosed);
                        }
                    }
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {}
                Err(e) => {
                    tracing::debug!("DTLS handshake failed: {e}");
                    self.phase = Phase::Done;
                    return Err(DtlsImplError::ConnectionClosed);
                }
            }
        }
        if self.phase == Phase::Connected {
            let mut buf = vec![0u8; READ_BUF];
            loop {
                match stream.ssl_read(&mut buf) {
                    Ok(n) => self.events.push_back(Told::Data(buf[..n].to_vec())),
                    // Nothing more (a record that fails its check is dropped by
                    // OpenSSL, as DTLS does, and reads as nothing).
                    Err(e) if e.code() == ErrorCode::WANT_READ => break,
                    Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                        self.phase = Phase::Done;
                        self.events.push_back(Told::CloseNotify);
                        break;
                    }
                    // A fatal alert or protocol error: the association is over.
                    Err(e) => {
                        tracing::debug!("DTLS failed after connecting: {e}");
                        self.phase = Phase::Done;
                        let io = stream.get_mut();
                        io.incoming.clear();
                        return Err(DtlsImplError::ConnectionClosed);
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a finished handshake gives str0m: the peer's certificate (for its
/// fingerprint check), the SRTP keys and profile, then the news.
fn connected(stream: &SslStream<Datagrams>) -> Result<Vec<Told>, String> {
    let ssl = stream.ssl();
    let cert = ssl
        .peer_certificate()
        .ok_or("the peer sent no certificate")?
        .to_der()
        .map_err(|e| e.to_string())?;
    let profile = ssl
        .selected_srtp_profile()
        .ok_or("no SRTP profile negotiated (use_srtp)")?;
    // Keys and salts of both directions (RFC 5764 §4.2).
    let (profile, len) = match profile.name() {
        "SRTP_AES128_CM_SHA1_80" => (SrtpProfile::AES128_CM_SHA1_80, 2 * (16 + 14)),
        "SRTP_AEAD_AES_128_GCM" => (SrtpProfile::AEAD_AES_128_GCM, 2 * (16 + 12)),
        "SRTP_AEAD_AES_256_GCM" => (SrtpProfile::AEAD_AES_256_GCM, 2 * (32 + 12)),
        other => return Err(format!("SRTP profile {other} not supported")),
    };
    let mut km = vec![0u8; len];
    ssl.export_keying_material(&mut km, "EXTRACTOR-dtls_srtp", None)
        .map_err(|e| e.to_string())?;
    Ok(vec![
        Told::PeerCert(cert),
        Told::Keys(KeyingMaterial::new(&km), profile),
        Told::Connected,
    ])
}

impl DtlsInstance for Association {
    fn set_active(&mut self, active: bool) {
        self.active = active;
        if self.phase != Phase::Idle {
            return;
        }
        if let Err(e) = self.start() {
            tracing::warn!("DTLS set-up failed: {e}");
            self.phase = Phase::Done;
            return;
        }
        // The client speaks first.
        let _ = self.drive();
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        // str0m starts the client role with an empty packet: nothing to read (to
        // OpenSSL an empty read is the end of the stream).
        if packet.is_empty() || matches!(self.phase, Phase::Idle | Phase::Done) {
            return Ok(());
        }
        if let Some(stream) = self.stream.as_mut() {
            let stream = stream.get_mut().unwrap_or_else(|e| e.into_inner());
            let incoming = &mut stream.get_mut().incoming;
            if incoming.len() >= MAX_INCOMING {
                return Ok(());
            }
            incoming.push_back(packet.to_vec());
        }
        self.drive()
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(stream) = self.stream.as_mut() {
            let stream = stream.get_mut().unwrap_or_else(|e| e.into_inner());
            let out = &mut stream.get_mut().outgoing;
            if let Some(d) = out.front() {
                if d.len() > buf.len() {
                    return DtlsOutput::BufferTooSmall { needed: d.len() };
                }
                let d = out.pop_front().expect("checked");
                buf[..d.len()].copy_from_slice(&d);
                return DtlsOutput::Packet(&buf[..d.len()]);
            }
        }
        match self.events.front() {
            Some(Told::PeerCert(der)) if der.len() > buf.len() => {
                return DtlsOutput::BufferTooSmall { needed: der.len() };
            }
            // str0m's buffer is its largest datagram: application data (SCTP) larger
            // than that is no packet it could take. Dropped, never cut in two.
            Some(Told::Data(d)) if d.len() > buf.len() => {
                tracing::debug!(len = d.len(), "DTLS application record too large: dropped");
                self.events.pop_front();
                return self.poll_output(buf);
            }
            _ => {}
        }
        match self.events.pop_front() {
            Some(Told::PeerCert(der)) => {
                buf[..der.len()].copy_from_slice(&der);
                DtlsOutput::PeerCert(&buf[..der.len()])
            }
            Some(Told::Data(d)) => {
                buf[..d.len()].copy_from_slice(&d);
                DtlsOutput::ApplicationData(&buf[..d.len()])
            }
            Some(Told::Keys(km, profile)) => DtlsOutput::KeyingMaterial(km, profile),
            Some(Told::Connected) => DtlsOutput::Connected,
            Some(Told::CloseNotify) => DtlsOutput::CloseNotify,
            None => DtlsOutput::Timeout(match self.phase {
                Phase::Handshaking => self.now + HANDSHAKE_TICK,
                // Nothing is due: a long way off.
                _ => self.now + Duration::from_secs(3600),
            }),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.now = self.now.max(now);
        if self.phase == Phase::Handshaking {
            // OpenSSL looks at its retransmission timer as it tries to read.
            return self.drive();
        }
        Ok(())
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        if self.phase != Phase::Connected || data.is_empty() {
            return Ok(0);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        let stream = stream.get_mut().unwrap_or_else(|e| e.into_inner());
        match stream.ssl_write(data) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(0),
            Err(e) => {
                tracing::debug!("DTLS write failed: {e}");
                Err(DtlsImplError::ConnectionClosed)
            }
        }
    }

    fn is_active(&self) -> bool {
        self.active
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        (self.phase == Phase::Connected).then_some(ProtocolVersion::DTLS1_2)
    }

    fn is_closing(&self) -> bool {
        self.phase == Phase::Done && self.pending_out() > 0
    }

    fn is_closed(&self) -> bool {
        self.phase == Phase::Done && self.pending_out() == 0
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        if self.phase == Phase::Connected {
            if let Some(stream) = self.stream.as_mut() {
                let stream = stream.get_mut().unwrap_or_else(|e| e.into_inner());
                let _ = stream.shutdown();
            }
        }
        self.phase = Phase::Done;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::rsa::Rsa;
    use openssl::x509::X509Name;

    /// A self-signed RSA-2048 certificate, as GStreamer's webrtcbin makes one.
    fn rsa_cert() -> DtlsCert {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_text("CN", "webrtcbin").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        DtlsCert {
            certificate: b.build().to_der().unwrap(),
            private_key: key.private_key_to_der().unwrap(),
        }
    }

    fn node_cert() -> DtlsCert {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .unwrap()
    }

    /// What one side said: packets sent, and what it told (certificate, keys).
    #[derive(Default)]
    struct Heard {
        packets: Vec<Vec<u8>>,
        peer_cert: Option<Vec<u8>>,
        keys: Option<(Vec<u8>, SrtpProfile)>,
        connected: bool,
        data: Vec<Vec<u8>>,
        /// What was told, in order.
        order: Vec<&'static str>,
    }

    fn poll(d: &mut dyn DtlsInstance) -> Heard {
        let mut h = Heard::default();
        let mut buf = vec![0u8; 4096];
        loop {
            match d.poll_output(&mut buf) {
                DtlsOutput::Packet(p) => h.packets.push(p.to_vec()),
                DtlsOutput::PeerCert(c) => {
                    h.order.push("cert");
                    h.peer_cert = Some(c.to_vec())
                }
                DtlsOutput::KeyingMaterial(km, p) => {
                    h.order.push("keys");
                    h.keys = Some((km.to_vec(), p))
                }
                DtlsOutput::Connected => {
                    h.order.push("connected");
                    h.connected = true
                }
                DtlsOutput::ApplicationData(d) => h.data.push(d.to_vec()),
                DtlsOutput::Timeout(_) => return h,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Hand packets across until both sides went quiet; `drop_first` of the
    /// server's flights are lost on the way. What each side told, merged.
    fn handshake(
        client: &mut dyn DtlsInstance,
        server: &mut dyn DtlsInstance,
        mut drop_first: usize,
    ) -> (Heard, Heard) {
        let (mut c_all, mut s_all) = (Heard::default(), Heard::default());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let c = poll(client);
            let s = poll(server);
            let quiet = c.packets.is_empty() && s.packets.is_empty();
            for p in &c.packets {
                server.handle_packet(p).unwrap();
            }
            if !s.packets.is_empty() && drop_first > 0 {
                drop_first -= 1;
            } else {
                for p in &s.packets {
                    client.handle_packet(p).unwrap();
                }
            }
            for (all, h) in [(&mut c_all, c), (&mut s_all, s)] {
                all.peer_cert = all.peer_cert.take().or(h.peer_cert);
                all.keys = all.keys.take().or(h.keys);
                all.connected |= h.connected;
                all.data.extend(h.data);
                all.order.extend(h.order);
            }
            if quiet && c_all.connected && s_all.connected {
                break;
            }
            if quiet {
                // Waiting for a retransmission: OpenSSL's timer is the wall clock's.
                std::thread::sleep(Duration::from_millis(50));
                let now = Instant::now();
                client.handle_timeout(now).unwrap();
                server.handle_timeout(now).unwrap();
            }
        }
        (c_all, s_all)
    }

    fn new(cert: &DtlsCert, provider: &dyn DtlsProvider, active: bool) -> Box<dyn DtlsInstance> {
        let mut d = provider
            .new_dtls(cert, Instant::now(), DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        d.set_active(active);
        // As str0m does: a timeout before anything arrives (dimpl sets itself up
        // there), and the client role started with an empty packet.
        d.handle_timeout(Instant::now()).unwrap();
        if active {
            d.handle_packet(&[]).unwrap();
        }
        d
    }

    #[test]
    fn an_rsa_client_connects_and_both_sides_get_the_same_keys() {
        let (client_cert, server_cert) = (rsa_cert(), node_cert());
        let mut client = new(&client_cert, &OPENSSL_DTLS, true);
        let mut server = new(&server_cert, &OPENSSL_DTLS, false);
        let (c, s) = handshake(client.as_mut(), server.as_mut(), 0);
        assert!(c.connected && s.connected);
        // The certificate first (str0m refuses a wrong fingerprint before any key
        // is used), then the keys, then the news.
        assert_eq!(s.order, ["cert", "keys", "connected"]);
        assert_eq!(c.order, ["cert", "keys", "connected"]);
        // Each side hands str0m the other's certificate, for its fingerprint check.
        assert_eq!(s.peer_cert.as_deref(), Some(&client_cert.certificate[..]));
        assert_eq!(c.peer_cert.as_deref(), Some(&server_cert.certificate[..]));
        let (ck, cp) = c.keys.expect("client keys");
        let (sk, sp) = s.keys.expect("server keys");
        assert_eq!((ck.len(), cp), (sk.len(), sp));
        assert_eq!(ck, sk, "both ends derive the same SRTP keying material");
        assert_eq!(sp, SrtpProfile::AEAD_AES_256_GCM);
        assert_eq!(server.protocol_version(), Some(ProtocolVersion::DTLS1_2));
        // Application data (data channels) goes both ways.
        assert_eq!(client.send_application_data(b"hello").unwrap(), 5);
        for p in poll(client.as_mut()).packets {
            server.handle_packet(&p).unwrap();
        }
        assert_eq!(poll(server.as_mut()).data, vec![b"hello".to_vec()]);
    }

    /// The reason for this module: str0m's own DTLS as the server (the node answers
    /// as DTLS server) refuses the RSA client that OpenSSL takes.
    #[test]
    fn str0m_own_dtls_refuses_the_rsa_client() {
        let (client_cert, server_cert) = (rsa_cert(), node_cert());
        let theirs = str0m::crypto::from_feature_flags().dtls_provider;
        let mut client = new(&client_cert, &OPENSSL_DTLS, true);
        let mut server = new(&server_cert, theirs, false);
        let mut buf = vec![0u8; 4096];
        let mut refused = false;
        for _ in 0..20 {
            let c = poll(client.as_mut());
            for p in &c.packets {
                refused |= server.handle_packet(p).is_err();
            }
            loop {
                match server.poll_output(&mut buf) {
                    DtlsOutput::Packet(p) => {
                        let _ = client.handle_packet(p);
                    }
                    DtlsOutput::Connected => panic!("str0m's DTLS took an RSA client"),
                    DtlsOutput::Timeout(_) => break,
                    _ => {}
                }
            }
            if refused {
                break;
            }
        }
        assert!(refused, "str0m's own DTLS refuses RSA client certificates");
    }

    /// The node as the DTLS client (a peer whose SDP says `a=setup:passive`), with
    /// str0m's own DTLS as the server: it connects with the node's ECDSA certificate
    /// (and so the refusal above is about RSA, not about OpenSSL).
    #[test]
    fn as_the_client_it_connects_to_str0m_own_dtls() {
        let (client_cert, server_cert) = (node_cert(), node_cert());
        let theirs = str0m::crypto::from_feature_flags().dtls_provider;
        let mut client = new(&client_cert, &OPENSSL_DTLS, true);
        let mut server = new(&server_cert, theirs, false);
        let (c, s) = handshake(client.as_mut(), server.as_mut(), 0);
        assert!(c.connected && s.connected, "the node as client connects");
        assert_eq!(c.keys.map(|k| k.0), s.keys.map(|k| k.0));
    }

    /// The peer's close_notify ends the association (str0m hears of it), and
    /// nothing is taken or sent after it.
    #[test]
    fn a_close_notify_ends_it() {
        let (client_cert, server_cert) = (rsa_cert(), node_cert());
        let mut client = new(&client_cert, &OPENSSL_DTLS, true);
        let mut server = new(&server_cert, &OPENSSL_DTLS, false);
        let (c, s) = handshake(client.as_mut(), server.as_mut(), 0);
        assert!(c.connected && s.connected);
        client.close().unwrap();
        let packets = poll(client.as_mut()).packets;
        assert!(!packets.is_empty(), "close_notify sent");
        assert!(client.is_closed());
        for p in &packets {
            server.handle_packet(p).unwrap();
        }
        let mut buf = vec![0u8; 2000];
        let mut closed = false;
        loop {
            match server.poll_output(&mut buf) {
                DtlsOutput::CloseNotify => closed = true,
                DtlsOutput::Timeout(_) => break,
                _ => {}
            }
        }
        assert!(closed, "the server heard close_notify");
        // Nothing is taken any more.
        assert!(server.handle_packet(&packets[0]).is_ok());
        assert_eq!(server.send_application_data(b"late").unwrap(), 0);
    }

    /// The server's flight (ServerHello, Certificate, ServerKeyExchange,
    /// CertificateRequest, ServerHelloDone: five records) leaves in one datagram, as
    /// OpenSSL writes it: on a lossy path each lost datagram of a flight costs a
    /// retransmission timeout (1 s, doubling).
    #[test]
    fn a_flight_leaves_in_as_few_datagrams_as_fit() {
        let theirs = str0m::crypto::from_feature_flags().dtls_provider;
        let mut client = new(&node_cert(), theirs, true);
        let mut server = new(&node_cert(), &OPENSSL_DTLS, false);
        let hello = poll(client.as_mut()).packets;
        assert_eq!(hello.len(), 1, "one ClientHello");
        server.handle_packet(&hello[0]).unwrap();
        let flight = poll(server.as_mut()).packets;
        assert_eq!(
            flight.len(),
            1,
            "sizes {:?}",
            flight.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        assert!(flight[0].len() <= 1150);
    }

    /// A lost flight is sent again (OpenSSL's retransmission timer, 1 s).
    #[test]
    fn a_lost_flight_is_sent_again() {
        let (client_cert, server_cert) = (node_cert(), node_cert());
        let theirs = str0m::crypto::from_feature_flags().dtls_provider;
        // The node's side is OpenSSL; the client str0m's own, as browsers'.
        let mut client = new(&client_cert, theirs, true);
        let mut server = new(&server_cert, &OPENSSL_DTLS, false);
        let (c, s) = handshake(client.as_mut(), server.as_mut(), 1);
        assert!(
            c.connected && s.connected,
            "connected despite the lost flight"
        );
        assert_eq!(c.keys.map(|k| k.0), s.keys.map(|k| k.0));
    }
}
