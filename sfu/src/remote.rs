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
}

/// Serve the signalling node for as long as the process runs, reconnecting when
/// the connection drops. When it drops, the node lets every participant go: the
/// signalling node has told their clients to rejoin, possibly elsewhere.
pub async fn run(node: Node, mut events: mpsc::Receiver<NodeEvent>, cfg: RemoteConfig) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        match session(&node, &mut events, &cfg).await {
            Ok(()) => tracing::warn!("signalling closed the control connection"),
            Err(e) => tracing::warn!("control connection to {}: {e}", cfg.signalling),
        }
        for room in node.rooms() {
            let _ = node.close_room(&room);
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(250);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        // What the closed rooms reported belongs to the lost session, not the next.
        while events.try_recv().is_ok() {}
    }
}

async fn session(
    node: &Node,
    events: &mut mpsc::Receiver<NodeEvent>,
    cfg: &RemoteConfig,
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
    let mut control_stream = handshake::register(&conn, &cfg.secret, &offer).await?;
    tracing::info!(signalling = %cfg.signalling, name = cfg.name, "registered with the signalling node");
    let mut ev_send = conn.open_uni().await.map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
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
