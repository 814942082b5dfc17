//! A media node on its own machine: connect to the signalling node over QUIC (the
//! protocol is `control::wire`), prove the secret and register, send the load every
//! second and every event, and carry out the requests that arrive.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use control::handshake::{self, Offer};
use control::wire::{read_frame, write_frame, Reply};
use control::{tls, ControlError, MediaNode, NodeEvent, Request};
use tokio::sync::mpsc;

use crate::node::Node;

#[derive(Clone, Debug)]
pub struct RemoteConfig {
    pub signalling: SocketAddr,
    pub secret: Vec<u8>,
    pub name: String,
    pub capacity: usize,
    /// How long the node keeps its participants without a signalling node: a
    /// restarted one takes them back if the node registers again within it.
    pub grace: Duration,
}

/// Serve the signalling node for as long as the process runs, reconnecting when the
/// connection drops. Meanwhile media flows on: the node keeps its participants and,
/// registered again, hands them to the signalling node (`NodeEvent::Carrying`, then
/// the events held meanwhile) so that their clients resume. Only when no signalling
/// node took them back within the grace period does it let them go: their clients
/// have rejoined elsewhere by then.
pub async fn run(node: Node, mut events: mpsc::Receiver<NodeEvent>, cfg: RemoteConfig) {
    let mut backoff = Duration::from_millis(250);
    let mut lost_at: Option<Instant> = None;
    loop {
        let mut registered = false;
        match session(&node, &mut events, &cfg, &mut registered).await {
            Ok(()) => tracing::warn!("signalling closed the control connection"),
            Err(e) => tracing::warn!("control connection to {}: {e}", cfg.signalling),
        }
        if registered {
            // A signalling node had the sessions: losing it starts a grace period.
            backoff = Duration::from_millis(250);
            lost_at = Some(Instant::now());
        }
        let since = *lost_at.get_or_insert_with(Instant::now);
        if since.elapsed() >= cfg.grace {
            let rooms = node.rooms();
            if !rooms.is_empty() {
                tracing::warn!(
                    rooms = rooms.len(),
                    "no signalling node took the sessions back within {:?}: letting them go",
                    cfg.grace
                );
            }
            for room in rooms {
                let _ = node.close_room(&room);
            }
            // What the closed rooms reported belongs to the lost session, not the next.
            while events.try_recv().is_ok() {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One control connection, until it drops; `registered` once the signalling node
/// accepted the node.
async fn session(
    node: &Node,
    events: &mut mpsc::Receiver<NodeEvent>,
    cfg: &RemoteConfig,
    registered: &mut bool,
) -> Result<(), String> {
    let bind: SocketAddr = if cfg.signalling.is_ipv6() {
        "[::]:0".parse().expect("valid address")
    } else {
        "0.0.0.0:0".parse().expect("valid address")
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(tls::client_config()?);
    let conn = endpoint
        .connect(cfg.signalling, "knudepunkt-signalling")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let offer = Offer {
        name: cfg.name.clone(),
        capacity: cfg.capacity,
        shard_addrs: node.shard_addrs(),
    };
    let (mut control_stream, welcome) = handshake::register(&conn, &cfg.secret, &offer).await?;
    *registered = true;
    // A heartbeat at once: gathering the sessions below may take a moment.
    write_frame(&mut control_stream.send, &node.load())
        .await
        .map_err(|e| e.to_string())?;
    let mut ev_send = conn.open_uni().await.map_err(|e| e.to_string())?;
    // The sessions it carries first, then the events held while it was away.
    let node2 = node.clone();
    let carried = tokio::task::spawn_blocking(move || node2.sessions())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!(signalling = %cfg.signalling, name = cfg.name, sessions = carried.len(), "registered with the signalling node");
    for ev in &carried {
        write_frame(&mut ev_send, ev)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                // An older signalling node would stop reading at an event it does not
                // know: quality reports go only to one that said it takes them.
                if matches!(ev, NodeEvent::Quality { .. }) && !welcome.quality {
                    continue;
                }
                write_frame(&mut ev_send, &ev).await.map_err(|e| e.to_string())?;
            }
            _ = tick.tick() => {
                // The heartbeat: the signalling node counts a silent node lost.
                let load = node.load();
                write_frame(&mut control_stream.send, &load).await.map_err(|e| e.to_string())?;
            }
            bi = conn.accept_bi() => {
                let (send, recv) = bi.map_err(|e| e.to_string())?;
                tokio::spawn(handle(node.clone(), send, recv));
            }
        }
    }
}

/// One request, one reply.
async fn handle(node: Node, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let reply: Reply = match read_frame::<Request>(&mut recv).await {
        Ok(Some(request)) => node.call(request).await,
        Ok(None) => return,
        Err(e) => {
            tracing::info!("bad control request: {e}");
            Err(ControlError::Unavailable(format!("bad request: {e}")))
        }
    };
    let _ = write_frame(&mut send, &reply).await;
    let _ = send.finish();
}
