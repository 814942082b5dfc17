//! The SIP side: an `rsipstack` endpoint on UDP and TCP. An INVITE to `sip:ROOM@host`
//! (or `sip:ROOM*PIN@host`) becomes a call: its offer is read, the room joined as a
//! participant, and the call answered; BYE and CANCEL end it, and a room that ends
//! ends the call with a BYE. OPTIONS outside a dialog is answered 200 (keepalives,
//! trunk health checks).
//!
//! Room names, callers and addresses are never logged above DEBUG (DESIGN §8).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::tls::{TlsConfig, TlsListenerConnection};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::call::Call;
use crate::driver::{self, CallClaims, Ended, JoinFailure, Leg, RoomApi, RoomPeer};
use crate::metrics::Metrics;
use crate::sdp;

/// What the gateway listens on and where it sends calls.
#[derive(Clone)]
pub struct SipConfig {
    /// SIP over UDP and TCP on this address.
    pub bind: SocketAddr,
    /// The address legs' RTP sockets bind to and answers name; the SIP address's IP
    /// when it is a specific one.
    pub media_ip: IpAddr,
    pub api: RoomApi,
    /// SIP over TLS too, on the next port up (5061 for 5060): PEM certificate chain
    /// and private key.
    pub tls: Option<TlsFiles>,
    /// Whether calls over UDP and TCP may carry plain RTP (calls over TLS never do).
    pub allow_plain_rtp: bool,
    /// Networks whose calls need no room PIN (a hospital's own SBC or PBX).
    pub trust: Vec<ipnet::IpNet>,
}

/// PIN attempts one address may have going or failed in [`PIN_FAILURE_WINDOW`];
/// beyond, its INVITEs get 403 until the oldest failure ages out (the node limits
/// each room, and each room and address, too).
pub const PIN_FAILURES_PER_ADDRESS: usize = 5;
pub const PIN_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Untrusted callers' PIN attempts by source address: failures lately, and those
/// still going (counted too, so that parallel INVITEs cannot all try at once).
#[derive(Default)]
struct PinAttempts(std::sync::Mutex<AttemptBook>);

#[derive(Default)]
struct AttemptBook {
    failures: HashMap<IpAddr, std::collections::VecDeque<Instant>>,
    going: HashMap<IpAddr, usize>,
}

impl PinAttempts {
    fn book(&self) -> std::sync::MutexGuard<'_, AttemptBook> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An attempt from `ip` may start now: it counts until it is dropped.
    fn begin(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<Attempt> {
        let mut b = self.book();
        b.failures.retain(|_, q| {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= PIN_FAILURE_WINDOW)
            {
                q.pop_front();
            }
            !q.is_empty()
        });
        let failed = b.failures.get(&ip).map_or(0, |q| q.len());
        let going = b.going.get(&ip).copied().unwrap_or(0);
        if failed + going >= PIN_FAILURES_PER_ADDRESS {
            return None;
        }
        *b.going.entry(ip).or_default() += 1;
        Some(Attempt {
            book: self.clone(),
            ip,
        })
    }
}

/// One caller's PIN attempts under way; while it lives it counts as going, and each
/// wrong PIN counts as a failure of its address.
struct Attempt {
    book: Arc<PinAttempts>,
    ip: IpAddr,
}

impl Attempt {
    fn failed(&self) {
        let mut b = self.book.book();
        b.failures
            .entry(self.ip)
            .or_default()
            .push_back(Instant::now());
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut b = self.book.book();
        if let Some(n) = b.going.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                b.going.remove(&self.ip);
            }
        }
    }
}

/// The certificate chain and key, read and checked as rsipstack will take them (it
/// would only warn, in the background): PEM, the key PKCS#8 or PKCS#1, and the key
/// the certificate's.
fn tls_files(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("TLS file {}: {e}", p.display()))
    };
    let (cert_pem, key_pem) = (read(&files.cert)?, read(&files.key)?);
    let what = |p: &std::path::Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| what(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| what(&files.key, &e))?;
    if !matches!(key, PrivateKeyDer::Pkcs8(_) | PrivateKeyDer::Pkcs1(_)) {
        return Err(format!(
            "{}: the key must be PKCS#8 or PKCS#1 PEM (convert an EC key with \
             `openssl pkcs8 -topk8 -nocrypt`)",
            files.key.display()
        ));
    }
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| what(&files.key, &e))?;
    rustls::sign::CertifiedKey::new(certs, signer)
        .keys_match()
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    Ok((cert_pem, key_pem))
}

/// A TLS certificate chain and its key, PEM.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The most calls at once; beyond it INVITEs get 486 Busy Here.
pub const MAX_CALLS: usize = 500;

/// Serve SIP until `stop` is cancelled, counting in `metrics`. Returns the address
/// once bound; the gateway runs in the background.
pub async fn spawn(
    config: SipConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<SocketAddr, String> {
    let cancel = stop.child_token();
    let transport = TransportLayer::new(cancel.clone());
    let udp = UdpConnection::create_connection(config.bind, None, Some(cancel.child_token()))
        .await
        .map_err(|e| format!("SIP over UDP on {}: {e}", config.bind))?;
    let bound = udp.get_addr().get_socketaddr().map_err(|e| e.to_string())?;
    transport.add_transport(udp.into());
    let tcp = TcpListenerConnection::new(bound, None)
        .await
        .map_err(|e| format!("SIP over TCP on {bound}: {e}"))?;
    transport.add_transport(tcp.into());
    if let Some(files) = &config.tls {
        // rustls's process-wide provider: ring, as quinn's (the first call wins).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (cert, key) = tls_files(files)?;
        let port = bound
            .port()
            .checked_add(1)
            .ok_or("no port above the SIP port for TLS")?;
        let tls_addr = SocketAddr::new(bound.ip(), port);
        // rsipstack binds the listener in the background and only warns when it
        // cannot: bind it once here, so that a port in use stops the start.
        drop(
            std::net::TcpListener::bind(tls_addr)
                .map_err(|e| format!("SIP over TLS on {tls_addr}: {e}"))?,
        );
        let tls = TlsListenerConnection::new(
            tls_addr,
            None,
            TlsConfig {
                cert: Some(cert),
                key: Some(key),
                ..TlsConfig::default()
            },
        )
        .await
        .map_err(|e| format!("SIP over TLS on {tls_addr}: {e}"))?;
        transport.add_transport(tls.into());
    }
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transport)
        .with_user_agent("knudepunkt")
        .with_inspector(Box::new(SourceNote))
        .build();
    let incoming = endpoint
        .incoming_transactions()
        .map_err(|e| e.to_string())?;
    let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let gw = Gateway {
        config,
        dialogs,
        metrics,
        calls: HashMap::new(),
        answers: Answers::default(),
        pin_attempts: Arc::default(),
        next_session: AtomicU64::new(1),
    };
    let inner = endpoint.inner.clone();
    tokio::spawn(async move {
        tokio::select! {
            r = inner.serve() => if let Err(e) = r {
                tracing::warn!("SIP endpoint stopped: {e}");
            },
            _ = gw.run(incoming) => {}
            _ = cancel.cancelled() => {}
        }
    });
    Ok(bound)
}

struct Gateway {
    config: SipConfig,
    dialogs: Arc<DialogLayer>,
    metrics: Arc<Metrics>,
    /// Each call's hang-up signal, by dialog id.
    calls: HashMap<String, oneshot::Sender<()>>,
    answers: Answers,
    pin_attempts: Arc<PinAttempts>,
    next_session: AtomicU64,
}

impl Gateway {
    async fn run(mut self, mut incoming: rsipstack::transaction::TransactionReceiver) {
        let (state_tx, mut states) = self.dialogs.new_dialog_state_channel();
        let (done_tx, mut done) = mpsc::unbounded_channel::<String>();
        // Nothing in this loop waits on the network: every reply goes out from a task
        // of its own, so that one peer that does not read its TCP socket holds up
        // nothing but its own replies.
        loop {
            tokio::select! {
                tx = incoming.recv() => {
                    let Some(tx) = tx else { return };
                    self.on_transaction(tx, &state_tx, &done_tx);
                }
                s = states.recv() => {
                    let Some(s) = s else { return };
                    self.on_dialog_state(s);
                }
                id = done.recv() => {
                    if let Some(id) = id {
                        self.calls.remove(&id);
                        self.answers.lock().expect("answers").remove(&id);
                    }
                }
            }
        }
    }

    fn on_dialog_state(&mut self, s: DialogState) {
        match s {
            DialogState::Terminated(id, reason) => {
                tracing::debug!(%id, ?reason, "dialog over");
                if let Some(h) = self.calls.remove(&id.to_string()) {
                    let _ = h.send(());
                }
                self.dialogs.remove_dialog(&id);
            }
            // A re-INVITE or UPDATE (session refresh, hold): answered with the call's
            // answer as it stands (a new version of it); the leg's media stays as
            // negotiated. An UPDATE without an offer gets a plain 200.
            DialogState::Updated(id, req, handle) => {
                let answer = self
                    .answers
                    .lock()
                    .expect("answers")
                    .get_mut(&id.to_string())
                    .map(|a| a.next());
                tokio::spawn(async move {
                    let offered = !req.body.is_empty();
                    let _ = match answer {
                        Some(sdp) if offered || req.method == Method::Invite => {
                            let ct = Header::ContentType("application/sdp".into());
                            handle
                                .respond(StatusCode::OK, Some(vec![ct]), Some(sdp.into_bytes()))
                                .await
                        }
                        _ => handle.reply(StatusCode::OK).await,
                    };
                });
            }
            // OPTIONS keepalives inside the call, and INFO (dtmf-relay,
            // picture_fast_update: taken, not acted on yet).
            DialogState::Options(_, _, handle) | DialogState::Info(_, _, handle) => {
                tokio::spawn(async move {
                    let _ = handle.reply(StatusCode::OK).await;
                });
            }
            DialogState::Notify(_, _, handle)
            | DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                tokio::spawn(async move {
                    let _ = handle.reply(StatusCode::NotImplemented).await;
                });
            }
            _ => {}
        }
    }

    fn on_transaction(
        &mut self,
        mut tx: Transaction,
        state_tx: &rsipstack::dialog::dialog::DialogStateSender,
        done: &mpsc::UnboundedSender<String>,
    ) {
        // In-dialog requests (ACK, BYE, re-INVITE, INFO, OPTIONS) go to their dialog.
        if let Some(d) = self.dialogs.match_dialog(&tx) {
            tokio::spawn(async move {
                let mut d = d;
                if let Err(e) = d.handle(&mut tx).await {
                    tracing::debug!("in-dialog request: {e}");
                }
            });
            return;
        }
        let reply = match tx.original.method {
            Method::Invite => return self.on_invite(tx, state_tx, done),
            Method::Ack => return, // for a final response already sent: nothing to do
            Method::Options => StatusCode::OK,
            Method::Bye | Method::Cancel | Method::Info | Method::Update | Method::PRack => {
                StatusCode::CallTransactionDoesNotExist
            }
            _ => StatusCode::MethodNotAllowed,
        };
        tokio::spawn(async move {
            let _ = tx.reply(reply).await;
        });
    }

    fn on_invite(
        &mut self,
        tx: Transaction,
        state_tx: &rsipstack::dialog::dialog::DialogStateSender,
        done: &mpsc::UnboundedSender<String>,
    ) {
        let refuse = |mut tx: Transaction, code: StatusCode, warning: Option<(u16, &str)>| {
            self.metrics.result("refused");
            let headers = warning
                .map(|(w, text)| {
                    let text: String = text
                        .chars()
                        .filter(|c| !c.is_control() && *c != '"')
                        .collect();
                    vec![Header::Warning(format!("{w} knudepunkt \"{text}\"").into())]
                })
                .unwrap_or_default();
            tokio::spawn(async move {
                let _ = tx.reply_with(code, headers, None).await;
            });
        };
        let Some(target) = Target::of(&tx) else {
            tracing::info!("INVITE refused: no room, or not a room name, in the request URI");
            return refuse(tx, StatusCode::NotFound, None);
        };
        let source = source_ip(&tx);
        let trusted = source.is_some_and(|ip| self.config.trust.iter().any(|n| n.contains(&ip)));
        // A caller who needs a PIN (outside dev mode the node asks it of every
        // untrusted call) makes an attempt, limited per address.
        let attempt = match source.filter(|_| !trusted) {
            Some(ip) => match self.pin_attempts.begin(ip, Instant::now()) {
                Some(a) => Some(a),
                None => {
                    tracing::info!("INVITE refused: too many PIN attempts from its address");
                    return refuse(tx, StatusCode::Forbidden, None);
                }
            },
            None => None,
        };
        if self.calls.len() >= MAX_CALLS {
            tracing::warn!(
                calls = self.calls.len(),
                "INVITE refused: the gateway is full"
            );
            return refuse(tx, StatusCode::BusyHere, None);
        }
        let offer = match std::str::from_utf8(&tx.original.body) {
            Ok(s) if !s.trim().is_empty() => s.to_owned(),
            Ok(_) => {
                tracing::info!("INVITE refused: no offer (a delayed offer is not served yet)");
                let why = "an INVITE without an SDP offer is not served yet";
                return refuse(tx, StatusCode::NotAcceptableHere, Some((399, why)));
            }
            Err(_) => {
                tracing::info!("INVITE refused: its body is not text");
                return refuse(tx, StatusCode::BadRequest, None);
            }
        };
        let over_tls = tx
            .connection
            .as_ref()
            .is_some_and(|c| c.transport() == rsipstack::sip::Transport::Tls);
        let policy = sdp::Policy {
            allow_plain_rtp: self.config.allow_plain_rtp && !over_tls,
        };
        let audio = match sdp::choose(&offer, policy) {
            Ok(a) => a,
            Err(r) => {
                tracing::info!(warning = r.warning, "INVITE refused: {}", r.text);
                let warning = Some((r.warning, r.text.as_str()));
                return refuse(tx, StatusCode::NotAcceptableHere, warning);
            }
        };
        let dialog =
            match self
                .dialogs
                .get_or_create_server_invite(&tx, state_tx.clone(), None, None)
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!("INVITE refused: {e}");
                    return refuse(tx, StatusCode::BadRequest, None);
                }
            };
        let id = dialog.id().to_string();
        let (hangup_tx, hangup) = oneshot::channel();
        self.calls.insert(id.clone(), hangup_tx);
        let signalling_ip = source;
        let mut tx = tx;
        let mut handling = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = handling.handle(&mut tx).await {
                tracing::debug!("INVITE transaction: {e}");
            }
        });
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let call = Answering {
            dialog,
            id: id.clone(),
            target,
            audio,
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            answers: self.answers.clone(),
            attempt,
            session,
            signalling_ip,
            trusted,
        };
        let done = done.clone();
        tokio::spawn(async move {
            call.run(hangup).await;
            let _ = done.send(id);
        });
    }
}

/// The header in which the gateway notes where a request really came from: set on
/// every received request by [`SourceNote`] (any copy the sender put there removed
/// first), so that no header a caller writes can make it look trusted.
const SOURCE_HEADER: &str = "X-Knudepunkt-Source";

/// Notes each received request's transport source (see [`SOURCE_HEADER`]).
struct SourceNote;

impl rsipstack::transaction::endpoint::MessageInspector for SourceNote {
    fn before_send(
        &self,
        msg: rsipstack::sip::SipMessage,
        _dest: Option<&rsipstack::transport::SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        msg
    }

    fn after_received(
        &self,
        msg: rsipstack::sip::SipMessage,
        from: Option<&rsipstack::transport::SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        let rsipstack::sip::SipMessage::Request(mut req) = msg else {
            return msg;
        };
        req.headers.retain(
            |h| !matches!(h, Header::Other(name, _) if name.eq_ignore_ascii_case(SOURCE_HEADER)),
        );
        if let Some(ip) = from.and_then(|f| f.get_socketaddr().ok()).map(|a| a.ip()) {
            req.headers
                .push(Header::Other(SOURCE_HEADER.into(), ip.to_string()));
        }
        req.into()
    }
}

/// Where a request came from: the transport's source, as [`SourceNote`] noted it.
fn source_ip(tx: &Transaction) -> Option<IpAddr> {
    tx.original.headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case(SOURCE_HEADER) => {
            value.parse().ok()
        }
        _ => None,
    })
}

/// A call's answer as it was last given, for re-INVITEs: the same media with the
/// `o=` version moved on each time (RFC 3264 §8).
struct Answer {
    audio: sdp::LegAudio,
    local: SocketAddr,
    session: u64,
    version: u64,
}

impl Answer {
    fn next(&mut self) -> String {
        self.version += 1;
        self.audio.answer(self.local, self.session, self.version)
    }
}

type Answers = Arc<std::sync::Mutex<HashMap<String, Answer>>>;

/// Who the caller wants: the room (the request URI's user part) and a PIN, if dialled
/// as `ROOM*PIN`; and how the caller is shown in the room.
struct Target {
    room: String,
    /// Dialled as `ROOM*PIN`.
    pin: Option<String>,
    identity: String,
}

impl Target {
    fn of(tx: &Transaction) -> Option<Target> {
        let user = tx.original.uri.auth.as_ref()?.user.clone();
        let (room, pin) = match user.split_once('*') {
            Some((r, p)) => (r.to_owned(), Some(p.to_owned())),
            None => (user, None),
        };
        // Room names a keypad or a SIP URI can carry: nothing that would need escaping
        // on its way into the signalling node's URLs.
        let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if room.is_empty() || room.len() > 64 || !room.chars().all(fits) {
            return None;
        }
        Some(Target {
            room,
            pin,
            identity: caller_name(tx),
        })
    }
}

/// The caller as others in the room see them: the From display name, else the number
/// masked to its last two digits (a phone number is never shown whole).
fn caller_name(tx: &Transaction) -> String {
    let from = tx
        .original
        .from_header()
        .ok()
        .and_then(|f| rsipstack::sip::typed::From::parse(f.value()).ok());
    let display = from
        .as_ref()
        .and_then(|f| f.display_name.as_deref())
        .map(|d| d.trim_matches('"').trim().to_owned())
        .filter(|d| !d.is_empty() && d.chars().all(|c| !c.is_control()));
    if let Some(d) = display {
        return d.chars().take(64).collect();
    }
    let user = from
        .and_then(|f| f.uri.auth.map(|a| a.user))
        .unwrap_or_default();
    let digits: String = user.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 4 {
        format!("Phone ··{}", &digits[digits.len() - 2..])
    } else {
        "SIP caller".to_owned()
    }
}

/// One INVITE on its way to being a call.
struct Answering {
    dialog: InviteDialog,
    id: String,
    target: Target,
    audio: sdp::LegAudio,
    config: SipConfig,
    metrics: Arc<Metrics>,
    answers: Answers,
    /// Counted against the caller's address until the join is decided.
    attempt: Option<Attempt>,
    session: u64,
    signalling_ip: Option<IpAddr>,
    /// From a `--sip-trust` network: no PIN asked.
    trusted: bool,
}

/// Wrong PINs one call may key in before it is ended.
const PIN_TRIES: u32 = 3;

/// How long a call may take to join its room before the caller gets a 504.
const JOIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

impl Answering {
    async fn run(self, mut hangup: oneshot::Receiver<()>) {
        let Answering {
            dialog,
            id,
            target,
            audio,
            config,
            metrics,
            answers,
            attempt,
            session,
            signalling_ip,
            trusted,
        } = self;
        let _ = dialog.ringing(None, None);
        let bound = UdpSocket::bind(SocketAddr::new(config.media_ip, 0))
            .await
            .and_then(|s| Ok((s.local_addr()?, s)));
        let (local, socket) = match bound {
            Ok(b) => b,
            Err(e) => {
                metrics.result("failed");
                tracing::warn!("no RTP port for a call: {e}");
                let _ = dialog.reject(Some(StatusCode::ServiceUnavailable), None);
                return;
            }
        };
        let mut call = match Call::new(audio.clone(), rand::random(), Instant::now()) {
            Ok(c) => c,
            Err(e) => {
                metrics.result("failed");
                tracing::warn!("call set-up failed: {e}");
                let _ = dialog.reject(Some(StatusCode::ServerInternalError), None);
                return;
            }
        };
        let mut leg = Leg::new(socket, &call, signalling_ip);
        // Answered once: when the caller must key in a PIN first (a lobby), or when
        // the room is joined.
        let mut answered = false;
        let answer = |dialog: &InviteDialog| {
            let sdp = audio.answer(local, session, 1);
            let sdp_type = Header::ContentType("application/sdp".into());
            let ok = dialog
                .accept(Some(vec![sdp_type]), Some(sdp.into_bytes()))
                .is_ok();
            if ok {
                answers.lock().expect("answers").insert(
                    id.clone(),
                    Answer {
                        audio: audio.clone(),
                        local,
                        session,
                        version: 1,
                    },
                );
            }
            ok
        };
        // Ends a call that could not go on: a final response if unanswered, else BYE.
        let end = |dialog: InviteDialog, answered: bool, status: StatusCode| async move {
            if answered {
                let _ = dialog.bye().await;
            } else {
                let _ = dialog.reject(Some(status), None);
            }
        };
        let claims = CallClaims {
            trusted,
            source: signalling_ip,
        };
        let mut pin = target.pin.clone();
        let mut wrong = 0;
        // The join, unless the caller gives up (CANCEL, BYE) or it takes too long; a
        // caller who can key in (telephone-event offered) and needs a PIN gets the
        // prompt and up to three tries.
        let joined = loop {
            let join = RoomPeer::join_call(
                &config.api,
                &target.room,
                &target.identity,
                claims,
                pin.as_deref(),
            );
            let joined = tokio::select! {
                j = tokio::time::timeout(JOIN_DEADLINE, join) => j,
                _ = &mut hangup => {
                    end(dialog, answered, StatusCode::RequestTerminated).await;
                    return;
                }
            };
            let (code, message) = match joined {
                Ok(Ok(j)) => break j,
                Ok(Err(JoinFailure::Refused { code, message })) => (code, message),
                Ok(Err(JoinFailure::Unreachable(why))) => {
                    metrics.result("failed");
                    tracing::warn!("call failed: the room could not be reached");
                    tracing::debug!(room = target.room, "join failed: {why}");
                    end(dialog, answered, StatusCode::ServiceUnavailable).await;
                    return;
                }
                Err(_) => {
                    metrics.result("failed");
                    tracing::warn!("call failed: joining its room took over {JOIN_DEADLINE:?}");
                    end(dialog, answered, StatusCode::ServerTimeOut).await;
                    return;
                }
            };
            if code == "pin_wrong" {
                wrong += 1;
                if let Some(a) = attempt.as_ref() {
                    a.failed();
                }
            }
            let keys = audio.dtmf_pt.is_some();
            let again = matches!(code.as_str(), "pin_required" | "pin_wrong");
            if again && keys && wrong < PIN_TRIES {
                if !answered {
                    if !answer(&dialog) {
                        return;
                    }
                    answered = true;
                }
                match driver::collect_pin(&mut call, &mut leg, &mut hangup).await {
                    Some(p) => {
                        pin = Some(p);
                        continue;
                    }
                    None => {
                        metrics.result("refused");
                        tracing::info!("call refused: no PIN keyed in");
                        end(dialog, answered, StatusCode::Forbidden).await;
                        return;
                    }
                }
            }
            metrics.result("refused");
            tracing::info!(code, "call refused: the room would not take it");
            tracing::debug!(room = target.room, "join refused: {message}");
            let status = match code.as_str() {
                "pin_wrong" | "pin_required" | "pin_locked" | "no_pin" => StatusCode::Forbidden,
                "room_full" | "busy" => StatusCode::BusyHere,
                _ => StatusCode::NotFound,
            };
            end(dialog, answered, status).await;
            return;
        };
        drop(attempt);
        // The caller may have hung up while the room was joined.
        if matches!(dialog.state(), DialogState::Terminated(..)) || hangup.try_recv().is_ok() {
            joined.leave().await;
            return;
        }
        if !answered && !answer(&dialog) {
            joined.leave().await;
            return;
        }
        metrics.result("answered");
        metrics.calls_active.inc();
        let started = Instant::now();
        let (ended, stats) = driver::run(call, leg, joined, hangup, &metrics).await;
        metrics.calls_active.dec();
        let expected = stats.leg_packets + stats.leg_lost;
        if expected > 0 {
            metrics
                .leg_loss_ratio
                .observe(stats.leg_lost as f64 / expected as f64);
            metrics.leg_jitter.observe(stats.leg_jitter_max_s);
        }
        metrics.leg_ignored.inc_by(stats.leg_ignored);
        // A call's end: its RTP figures, never who called or which room.
        tracing::info!(
            codec = ?audio.codec,
            seconds = started.elapsed().as_secs(),
            leg_packets = stats.leg_packets,
            leg_lost = stats.leg_lost,
            leg_jitter_ms = (stats.leg_jitter_max_s * 1000.0).round(),
            leg_sent = stats.leg_sent,
            room_frames = stats.room_frames_in,
            ended = ?ended,
            "call ended"
        );
        if !matches!(ended, Ended::Hangup) {
            if matches!(ended, Ended::Failed(_)) {
                metrics.result("failed");
            }
            let _ = dialog.bye().await;
        }
    }
}
