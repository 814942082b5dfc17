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
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::call::Call;
use crate::driver::{self, Ended, RoomApi, RoomPeer};
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
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transport)
        .with_user_agent("knudepunkt")
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
    next_session: AtomicU64,
}

impl Gateway {
    async fn run(mut self, mut incoming: rsipstack::transaction::TransactionReceiver) {
        let (state_tx, mut states) = self.dialogs.new_dialog_state_channel();
        let (done_tx, mut done) = mpsc::unbounded_channel::<String>();
        loop {
            tokio::select! {
                tx = incoming.recv() => {
                    let Some(tx) = tx else { return };
                    self.on_transaction(tx, &state_tx, &done_tx).await;
                }
                s = states.recv() => {
                    let Some(s) = s else { return };
                    if let DialogState::Terminated(id, reason) = s {
                        tracing::debug!(%id, ?reason, "dialog over");
                        if let Some(h) = self.calls.remove(&id.to_string()) {
                            let _ = h.send(());
                        }
                        self.dialogs.remove_dialog(&id);
                    }
                }
                id = done.recv() => {
                    if let Some(id) = id {
                        self.calls.remove(&id);
                    }
                }
            }
        }
    }

    async fn on_transaction(
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
        match tx.original.method {
            Method::Invite => self.on_invite(tx, state_tx, done).await,
            Method::Options => {
                let _ = tx.reply(StatusCode::OK).await;
            }
            Method::Ack => {} // for a final response already sent: nothing to do
            Method::Bye | Method::Cancel | Method::Info | Method::Update | Method::PRack => {
                let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
            }
            _ => {
                let _ = tx.reply(StatusCode::MethodNotAllowed).await;
            }
        }
    }

    async fn on_invite(
        &mut self,
        mut tx: Transaction,
        state_tx: &rsipstack::dialog::dialog::DialogStateSender,
        done: &mpsc::UnboundedSender<String>,
    ) {
        let metrics = self.metrics.clone();
        let refused = || metrics.result("refused");
        let Some(target) = Target::of(&tx) else {
            refused();
            tracing::info!("INVITE refused: no room in the request URI");
            let _ = tx.reply(StatusCode::NotFound).await;
            return;
        };
        if self.calls.len() >= MAX_CALLS {
            refused();
            tracing::warn!(
                calls = self.calls.len(),
                "INVITE refused: the gateway is full"
            );
            let _ = tx.reply(StatusCode::BusyHere).await;
            return;
        }
        let offer = match std::str::from_utf8(&tx.original.body) {
            Ok(s) if !s.trim().is_empty() => s.to_owned(),
            Ok(_) => {
                refused();
                tracing::info!("INVITE refused: no offer (a delayed offer is not served yet)");
                let warning =
                    r#"399 knudepunkt "an INVITE without an SDP offer is not served yet""#;
                let _ = tx
                    .reply_with(
                        StatusCode::NotAcceptableHere,
                        vec![Header::Warning(warning.into())],
                        None,
                    )
                    .await;
                return;
            }
            Err(_) => {
                refused();
                tracing::info!("INVITE refused: its body is not text");
                let _ = tx.reply(StatusCode::BadRequest).await;
                return;
            }
        };
        let audio = match sdp::choose(&offer) {
            Ok(a) => a,
            Err(r) => {
                refused();
                tracing::info!(warning = r.warning, "INVITE refused: {}", r.text);
                let text = r.text.replace('"', "'");
                let warning = format!("{} knudepunkt \"{text}\"", r.warning);
                let _ = tx
                    .reply_with(
                        StatusCode::NotAcceptableHere,
                        vec![Header::Warning(warning.into())],
                        None,
                    )
                    .await;
                return;
            }
        };
        let dialog =
            match self
                .dialogs
                .get_or_create_server_invite(&tx, state_tx.clone(), None, None)
            {
                Ok(d) => d,
                Err(e) => {
                    refused();
                    tracing::info!("INVITE refused: {e}");
                    let _ = tx.reply(StatusCode::BadRequest).await;
                    return;
                }
            };
        let id = dialog.id().to_string();
        let (hangup_tx, hangup) = oneshot::channel();
        self.calls.insert(id.clone(), hangup_tx);
        let mut handling = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = handling.handle(&mut tx).await {
                tracing::debug!("INVITE transaction: {e}");
            }
        });
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let call = Answering {
            dialog,
            target,
            audio,
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            session,
        };
        let done = done.clone();
        tokio::spawn(async move {
            call.run(hangup).await;
            let _ = done.send(id);
        });
    }
}

/// Who the caller wants: the room (the request URI's user part) and a PIN, if dialled
/// as `ROOM*PIN`; and how the caller is shown in the room.
struct Target {
    room: String,
    #[allow(dead_code)] // PIN admission is the next step (issue 10, point 2)
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
        if room.is_empty() {
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
    target: Target,
    audio: sdp::LegAudio,
    config: SipConfig,
    metrics: Arc<Metrics>,
    session: u64,
}

impl Answering {
    async fn run(self, hangup: oneshot::Receiver<()>) {
        let Answering {
            dialog,
            target,
            audio,
            config,
            metrics,
            session,
        } = self;
        let _ = dialog.ringing(None, None);
        let leg = match UdpSocket::bind(SocketAddr::new(config.media_ip, 0)).await {
            Ok(s) => s,
            Err(e) => {
                metrics.result("failed");
                tracing::warn!("no RTP port for a call: {e}");
                let _ = dialog.reject(Some(StatusCode::ServiceUnavailable), None);
                return;
            }
        };
        let local = match leg.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let joined = match RoomPeer::join(&config.api, &target.room, &target.identity).await {
            Ok(j) => j,
            Err(e) => {
                metrics.result("refused");
                tracing::info!("call refused: the room could not be joined");
                tracing::debug!(room = target.room, "join failed: {e}");
                let code = if e.contains("refused") {
                    StatusCode::NotFound
                } else {
                    StatusCode::ServiceUnavailable
                };
                let _ = dialog.reject(Some(code), None);
                return;
            }
        };
        let ssrc = rand::random();
        let call = match Call::new(audio.clone(), ssrc, Instant::now()) {
            Ok(c) => c,
            Err(e) => {
                metrics.result("failed");
                tracing::warn!("call set-up failed: {e}");
                let _ = dialog.reject(Some(StatusCode::ServerInternalError), None);
                return;
            }
        };
        let answer = audio.answer(local, session, 1);
        let sdp_type = Header::ContentType("application/sdp".into());
        if dialog
            .accept(Some(vec![sdp_type]), Some(answer.into_bytes()))
            .is_err()
        {
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
