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
use std::time::{Instant, SystemTime};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::tls::{TlsConfig, TlsListenerConnection};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::admission::{source_ip, PinAttempts, SourceNote, Target};
use crate::answering::{Answering, Answers, CallerOffer};
use crate::digest::{Check, Digest};
use crate::metrics::Metrics;
use crate::outbound::{DialOut, Dialer};
use crate::room::{Hangup, RoomApi};
use crate::sdp;
use crate::timer::Negotiation;

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
    /// Trust anchors (PEM) for the far ends' certificates of calls placed over TLS
    /// (`sips:` dial-out); without them, none is placed.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Whether calls over UDP and TCP may carry plain RTP (calls over TLS never do).
    pub allow_plain_rtp: bool,
    /// Networks whose calls need no room PIN (a hospital's own SBC or PBX).
    pub trust: Vec<ipnet::IpNet>,
    /// A trunk that authenticates with a password instead (`--sip-auth-user`).
    pub digest: Option<Arc<Digest>>,
    /// A registrar the gateway registers a number with (`--sip-register`).
    pub register: Option<crate::register::Register>,
}

/// A trunk's settings from a command line, checked: the digest it authenticates with
/// (`--sip-auth-user`, `--sip-auth-password`) and the number the gateway registers
/// with it (`--sip-register`, `--sip-register-password`, `--sip-register-expires`).
pub fn trunk_options(
    auth: (Option<&str>, Option<&str>),
    register: (Option<&str>, Option<String>, u32),
) -> Result<(Option<Arc<Digest>>, Option<crate::register::Register>), String> {
    let digest = match auth {
        (Some(user), Some(password)) => Some(Arc::new(Digest::new(user, password)?)),
        _ => None,
    };
    let register = match register {
        (Some(aor), password, expires) => {
            Some(crate::register::Register::new(aor, password, expires)?)
        }
        _ => None,
    };
    Ok((digest, register))
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

/// The trust anchors for calls placed over TLS, read and checked (PEM, at least one
/// certificate).
fn tls_ca(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(path).map_err(|e| format!("TLS CA file {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(pem)
}

/// A TLS certificate chain and its key, PEM.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The most calls at once; beyond it INVITEs get 486 Busy Here.
pub const MAX_CALLS: usize = 500;

/// How long a stopping gateway waits for its calls to say goodbye (a BYE each, their
/// rooms left) before its transports close.
pub const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A gateway serving SIP ([`spawn`]).
pub struct Serving {
    /// Where it listens (UDP and TCP; TLS on the next port).
    pub addr: SocketAddr,
    /// Ends once the gateway has stopped: its calls ended (each caller sent a BYE, or
    /// a 503 before an answer; at most [`CLOSE_WAIT`]) and its transports closed.
    pub stopped: tokio::task::JoinHandle<()>,
    /// Places calls from rooms (dial-out).
    pub dialer: Dialer,
}

/// Serve SIP until `stop` is cancelled, counting in `metrics`. Returns once bound;
/// the gateway runs in the background. Once `stop` is cancelled it takes no new
/// calls (503) and ends the ones it carries before closing.
pub async fn spawn(
    config: SipConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<Serving, String> {
    // The transports outlive `stop` by the calls' goodbyes.
    let cancel = CancellationToken::new();
    let transport = TransportLayer::new(cancel.clone());
    let udp = UdpConnection::create_connection(config.bind, None, Some(cancel.child_token()))
        .await
        .map_err(|e| format!("SIP over UDP on {}: {e}", config.bind))?;
    let bound = udp.get_addr().get_socketaddr().map_err(|e| e.to_string())?;
    // Calls placed from here name the port really bound (`--sip HOST:0`).
    let mut config = config;
    config.bind = bound;
    transport.add_transport(udp.into());
    let tcp = TcpListenerConnection::new(bound, None)
        .await
        .map_err(|e| format!("SIP over TCP on {bound}: {e}"))?;
    transport.add_transport(tcp.into());
    if config.tls.is_some() || config.tls_ca.is_some() {
        // rustls's process-wide provider: ring, as quinn's (the first call wins).
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    // Calls placed over TLS check the far end's certificate against these anchors
    // (and its name: the URI's host).
    if let Some(path) = &config.tls_ca {
        transport.set_tls_config(TlsConfig {
            ca_certs: Some(tls_ca(path)?),
            ..TlsConfig::default()
        });
    }
    if let Some(files) = &config.tls {
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
        closing: false,
        running: 0,
    };
    let inner = endpoint.inner.clone();
    let registering = gw.config.register.clone().map(|r| {
        let registered = gw.metrics.registered.clone();
        tokio::spawn(crate::register::keep(
            inner.clone(),
            r,
            registered,
            stop.clone(),
        ))
    });
    let (dialer, dials) = mpsc::channel(crate::outbound::DIALS_QUEUED);
    // Calls placed over TLS need the anchors, and a listener of its own for the far
    // end's requests in them.
    let dials_over_tls = gw.config.tls_ca.is_some() && gw.config.tls.is_some();
    let stopped = tokio::spawn(async move {
        let stopping = stop.clone();
        tokio::select! {
            r = inner.serve() => if let Err(e) = r {
                tracing::warn!("SIP endpoint stopped: {e}");
            },
            _ = gw.run(incoming, dials, stop) => {}
        }
        if let Some(task) = registering {
            // Its binding removed while the transports are still up.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
        }
        if stopping.is_cancelled() {
            // The last calls' final responses (a 503 is queued, not awaited) go out.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        cancel.cancel();
    });
    Ok(Serving {
        addr: bound,
        stopped,
        dialer: Dialer {
            queue: dialer,
            tls: dials_over_tls,
        },
    })
}

struct Gateway {
    config: SipConfig,
    dialogs: Arc<DialogLayer>,
    metrics: Arc<Metrics>,
    /// Each call's line from the SIP side, by dialog id.
    calls: HashMap<String, CallLine>,
    answers: Answers,
    pin_attempts: Arc<PinAttempts>,
    next_session: AtomicU64,
    /// Stopping: no new calls, and the loop ends once `running` is 0.
    closing: bool,
    /// Calls whose task has not ended yet.
    running: usize,
}

/// What the SIP side tells a call while it runs: that it is over, and the keys the
/// caller pressed in SIP INFO requests.
pub(crate) struct CallLine {
    pub(crate) hangup: oneshot::Sender<Hangup>,
    pub(crate) keys: mpsc::Sender<char>,
    /// The caller asked for a keyframe of what it sees (SIP INFO, RFC 5168).
    pub(crate) fast_update: Arc<tokio::sync::Notify>,
    /// A re-INVITE or UPDATE refreshed the call (its session timer starts over, for
    /// this many seconds).
    pub(crate) refreshed: watch::Sender<u32>,
    /// A re-INVITE or UPDATE carried new SDES keys of the far end's.
    pub(crate) rekeys: mpsc::Sender<sdp::Rekey>,
}

/// Re-keyings waiting for a call (one re-INVITE each).
pub(crate) const REKEYS_QUEUED: usize = 4;

/// A request's `Session-Expires` value.
fn session_expires(headers: &rsipstack::sip::Headers) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::SessionExpires(v) => Some(v.value().to_owned()),
        _ => None,
    })
}

/// What the INVITE asks of session timers (RFC 4028).
fn session_timer(tx: &Transaction) -> Negotiation {
    let headers = &tx.original.headers;
    let min_se = headers.iter().find_map(|h| match h {
        Header::MinSE(v) => Some(v.value().to_owned()),
        _ => None,
    });
    let supports = headers.iter().any(|h| match h {
        Header::Supported(v) => v
            .value()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("timer")),
        Header::Require(v) => v
            .value()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("timer")),
        _ => false,
    });
    let asked = session_expires(headers);
    crate::timer::negotiate(asked.as_deref(), min_se.as_deref(), supports)
}

/// Tells the gateway's loop that a call's task ended, however it ended (a panic
/// included): the loop counts the calls it waits for when stopping, and forgets the
/// call's line and answers by the id it carries.
pub(crate) struct Done(mpsc::UnboundedSender<String>, Option<String>);

impl Done {
    /// The call has a dialog now: it is forgotten by its id.
    pub(crate) fn rename(&mut self, id: &str) {
        self.1 = Some(id.to_owned());
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(id) = self.1.take() {
            let _ = self.0.send(id);
        }
    }
}

/// Keys a call has not taken yet: more are dropped (a PIN is at most 16 digits).
const KEYS_QUEUED: usize = 32;

impl Gateway {
    async fn run(
        mut self,
        mut incoming: rsipstack::transaction::TransactionReceiver,
        mut dials: mpsc::Receiver<DialOut>,
        stop: CancellationToken,
    ) {
        let (state_tx, mut states) = self.dialogs.new_dialog_state_channel();
        let (done_tx, mut done) = mpsc::unbounded_channel::<String>();
        let (lines_tx, mut lines) = mpsc::unbounded_channel::<(String, CallLine)>();
        // Dialogs over lately: a dial-out's line may come after its dialog ended.
        let mut ended: std::collections::VecDeque<String> = Default::default();
        let mut deadline = tokio::time::Instant::now();
        // Nothing in this loop waits on the network: every reply goes out from a task
        // of its own, so that one peer that does not read its TCP socket holds up
        // nothing but its own replies.
        loop {
            if self.closing && self.running == 0 {
                return;
            }
            tokio::select! {
                _ = stop.cancelled(), if !self.closing => {
                    self.closing = true;
                    deadline = tokio::time::Instant::now() + CLOSE_WAIT;
                    tracing::info!(calls = self.running, "SIP gateway stopping: ending its calls");
                    for (_, line) in self.calls.drain() {
                        let _ = line.hangup.send(Hangup::Closing);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if self.closing => {
                    tracing::warn!(calls = self.running, "SIP gateway stopped with calls not yet ended");
                    return;
                }
                tx = incoming.recv() => {
                    let Some(tx) = tx else { return };
                    self.on_transaction(tx, &state_tx, &done_tx);
                }
                s = states.recv() => {
                    let Some(s) = s else { return };
                    if let DialogState::Terminated(id, _) = &s {
                        if ended.len() >= 64 {
                            ended.pop_front();
                        }
                        ended.push_back(id.to_string());
                    }
                    self.on_dialog_state(s);
                }
                Some(d) = dials.recv() => {
                    self.on_dial(d, (&state_tx, &done_tx, &lines_tx), stop.clone());
                }
                Some((id, line)) = lines.recv() => {
                    if ended.contains(&id) {
                        let _ = line.hangup.send(Hangup::Caller);
                    } else if self.closing {
                        let _ = line.hangup.send(Hangup::Closing);
                    } else {
                        self.calls.insert(id, line);
                    }
                }
                id = done.recv() => {
                    if let Some(id) = id {
                        self.running -= 1;
                        self.calls.remove(&id);
                        self.answers.lock().expect("answers").remove(&id);
                    }
                }
            }
        }
    }

    /// A room calls out: placed from a task of its own, counted with the calls.
    fn on_dial(
        &mut self,
        dial: DialOut,
        (states, done, lines): (
            &rsipstack::dialog::dialog::DialogStateSender,
            &mpsc::UnboundedSender<String>,
            &mpsc::UnboundedSender<(String, CallLine)>,
        ),
        stop: CancellationToken,
    ) {
        if self.closing || self.running >= MAX_CALLS {
            self.metrics.result("refused");
            tracing::info!("dial-out refused: the gateway is stopping or full");
            return;
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let placing = crate::outbound::Placing {
            dial,
            config: self.config.clone(),
            dialogs: self.dialogs.clone(),
            states: states.clone(),
            metrics: self.metrics.clone(),
            session,
            lines: lines.clone(),
            answers: self.answers.clone(),
            stop,
            done: Done(done.clone(), Some(format!("dial-out {session}"))),
        };
        self.running += 1;
        tokio::spawn(placing.run());
    }

    fn on_dialog_state(&mut self, s: DialogState) {
        match s {
            DialogState::Terminated(id, reason) => {
                tracing::debug!(%id, ?reason, "dialog over");
                if let Some(line) = self.calls.remove(&id.to_string()) {
                    let _ = line.hangup.send(Hangup::Caller);
                }
                self.dialogs.remove_dialog(&id);
            }
            // A re-INVITE or UPDATE (session refresh, hold): answered with the call's
            // answer as it stands (a new version of it); the leg's media stays as
            // negotiated. An UPDATE without an offer gets a plain 200.
            DialogState::Updated(id, req, handle) => {
                // A refresh: the call's session timer starts over, with the interval
                // the refresh asks if it names one, and the answer says it (RFC 4028).
                let asked =
                    crate::timer::refresh_interval(session_expires(&req.headers).as_deref());
                // New SDES keys in its offer (the far end re-keys): the call's media
                // takes them; the answer keeps the gateway's own.
                let reoffer = std::str::from_utf8(&req.body).unwrap_or("");
                let (answer, timer, rekey) = self
                    .answers
                    .lock()
                    .expect("answers")
                    .get_mut(&id.to_string())
                    .map_or((None, None, sdp::Rekey::default()), |a| {
                        let rekey = a.rekeyed(reoffer);
                        (Some(a.next()), a.refresh(asked), rekey)
                    });
                if let Some(line) = self.calls.get(&id.to_string()) {
                    if let Some(seconds) = timer {
                        let _ = line.refreshed.send(seconds);
                    }
                    if !rekey.is_empty() {
                        tracing::info!("the far end re-keyed its SRTP");
                        let _ = line.rekeys.try_send(rekey);
                    }
                }
                let mut headers = crate::answering::timer_headers(timer);
                tokio::spawn(async move {
                    let offered = !req.body.is_empty();
                    let _ = match answer {
                        Some(sdp) if offered || req.method == Method::Invite => {
                            headers.push(Header::ContentType("application/sdp".into()));
                            let body = Some(sdp.into_bytes());
                            handle.respond(StatusCode::OK, Some(headers), body).await
                        }
                        _ if !headers.is_empty() => {
                            handle.respond(StatusCode::OK, Some(headers), None).await
                        }
                        _ => handle.reply(StatusCode::OK).await,
                    };
                });
            }
            // INFO: a key pressed (dtmf-relay) goes to the call, and so does a
            // request for a keyframe (picture_fast_update); others are taken.
            DialogState::Info(id, req, handle) => {
                let content_type = req.headers.iter().find_map(|h| match h {
                    Header::ContentType(ct) => Some(ct.value().to_owned()),
                    _ => None,
                });
                if let (Some(ct), Some(line)) = (content_type, self.calls.get(&id.to_string())) {
                    if let Some(k) = crate::keys::from_info(&ct, &req.body) {
                        let _ = line.keys.try_send(k);
                    } else if crate::keys::is_picture_fast_update(&ct, &req.body) {
                        line.fast_update.notify_one();
                    }
                }
                tokio::spawn(async move {
                    let _ = handle.reply(StatusCode::OK).await;
                });
            }
            // OPTIONS keepalives inside the call.
            DialogState::Options(_, _, handle) => {
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
        if self.closing {
            tracing::info!("INVITE refused: the gateway is stopping");
            return refuse(tx, StatusCode::ServiceUnavailable, None);
        }
        let timer = session_timer(&tx);
        if timer == Negotiation::TooSmall {
            tracing::info!("INVITE refused: its session interval is under 90 s");
            self.metrics.result("refused");
            let min_se = vec![Header::MinSE(crate::timer::MIN_SE.to_string().into())];
            let mut tx = tx;
            tokio::spawn(async move {
                let code = StatusCode::SessionIntervalTooSmall;
                let _ = tx.reply_with(code, min_se, None).await;
            });
            return;
        }
        let Some(target) = Target::of(&tx) else {
            tracing::info!("INVITE refused: no room, or not a room name, in the request URI");
            return refuse(tx, StatusCode::NotFound, None);
        };
        let source = source_ip(&tx);
        let mut trusted =
            source.is_some_and(|ip| self.config.trust.iter().any(|n| n.contains(&ip)));
        if let Some(digest) = self.config.digest.as_ref().filter(|_| !trusted) {
            let check = digest.check(&tx.original, source, SystemTime::now());
            // Wrong answers count against their address, as wrong PINs do: a password
            // is not to be guessed one INVITE at a time.
            let locked_out = || match source {
                Some(ip) => self.pin_attempts.begin(ip, Instant::now()).is_none(),
                None => false,
            };
            if check != Check::NotTrunk && locked_out() {
                tracing::info!("INVITE refused: too many wrong answers from its address");
                return refuse(tx, StatusCode::Forbidden, None);
            }
            match check {
                Check::NotTrunk => {}
                Check::Valid => trusted = true,
                Check::Challenge { stale } => {
                    // A step of the trunk's call, not a refusal: it asks again.
                    tracing::debug!("INVITE challenged: the trunk authenticates");
                    let challenge = vec![digest.challenge(SystemTime::now(), source, stale)];
                    let mut tx = tx;
                    tokio::spawn(async move {
                        let _ = tx
                            .reply_with(StatusCode::Unauthorized, challenge, None)
                            .await;
                    });
                    return;
                }
                Check::Wrong => {
                    if let Some(attempt) =
                        source.and_then(|ip| self.pin_attempts.begin(ip, Instant::now()))
                    {
                        attempt.failed();
                    }
                    tracing::info!("INVITE refused: the trunk's credentials are wrong");
                    return refuse(tx, StatusCode::Forbidden, None);
                }
            }
        }
        // A caller who needs a PIN (outside dev mode the node asks it of every
        // untrusted call) makes an attempt, limited per address. A node in dev mode
        // asks no PIN: nothing to limit (a load test's callers share one address).
        let dev = matches!(self.config.api.tokens, crate::room::Tokens::Dev);
        let attempt = match source.filter(|_| !trusted && !dev) {
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
        let over_tls = tx
            .connection
            .as_ref()
            .is_some_and(|c| c.transport() == rsipstack::sip::Transport::Tls);
        let policy = sdp::Policy {
            allow_plain_rtp: self.config.allow_plain_rtp && !over_tls,
        };
        // A delayed offer: the gateway offers in its 200 (SRTP where plain RTP may
        // not be), the answer comes in the ACK.
        let audio = match std::str::from_utf8(&tx.original.body) {
            Ok(s) if s.trim().is_empty() => CallerOffer::Delayed {
                encrypted: !policy.allow_plain_rtp,
            },
            Ok(offer) => match sdp::choose(offer, policy) {
                Ok(a) => CallerOffer::Sdp(Box::new(a)),
                Err(r) => {
                    tracing::info!(warning = r.warning, "INVITE refused: {}", r.text);
                    let warning = Some((r.warning, r.text.as_str()));
                    return refuse(tx, StatusCode::NotAcceptableHere, warning);
                }
            },
            Err(_) => {
                tracing::info!("INVITE refused: its body is not text");
                return refuse(tx, StatusCode::BadRequest, None);
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
        let (keys_tx, keys) = mpsc::channel(KEYS_QUEUED);
        let (refreshed_tx, refreshed) = watch::channel(0);
        let (rekeys_tx, rekeys) = mpsc::channel(REKEYS_QUEUED);
        let fast_update = Arc::new(tokio::sync::Notify::new());
        let line = CallLine {
            hangup: hangup_tx,
            keys: keys_tx,
            fast_update: fast_update.clone(),
            refreshed: refreshed_tx,
            rekeys: rekeys_tx,
        };
        self.calls.insert(id.clone(), line);
        // A caller can key in a PIN if it sends RFC 4733 events or SIP INFO.
        let info_keys = tx.original.headers.iter().any(|h| {
            matches!(h, Header::Allow(_)) && h.to_string().to_ascii_uppercase().contains("INFO")
        });
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
            info_keys,
            timer: match timer {
                Negotiation::On(seconds) => Some(seconds),
                _ => None,
            },
            refreshed,
            rekeys,
            fast_update,
        };
        let done = Done(done.clone(), Some(id));
        self.running += 1;
        tokio::spawn(async move {
            call.run(hangup, keys).await;
            drop(done);
        });
    }
}
