//! A media node on its own machine: connect to the signalling node(s) over QUIC (the
//! protocol is `control::wire`), prove the secret and register, send the load every
//! second and every event, and carry out the requests that arrive. With several
//! signalling nodes (sharing their state in Redis) the node holds a link to each, and
//! [`Links`] says which of them each event is for.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use control::handshake::{self, Offer};
use control::wire::{read_frame, write_frame, Reply};
use control::{tls, ControlError, MediaNode, NodeEvent, Request};
use tokio::sync::{mpsc, Notify};

use crate::links::{LinkId, Links};
use crate::node::Node;

#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// Every signalling node to serve (their `--quic` addresses: IP:PORT, or
    /// HOST:PORT looked up at each connection).
    pub signalling: Vec<String>,
    pub secret: Vec<u8>,
    pub name: String,
    pub capacity: usize,
    /// How long the node keeps its participants without a signalling node: a
    /// restarted one (or another one) takes them back if it registers within it.
    pub grace: Duration,
}

/// What the links share: the routing table, and a bell for each link.
struct Shared {
    links: Mutex<Links>,
    bells: Vec<Notify>,
}

impl Shared {
    fn links(&self) -> MutexGuard<'_, Links> {
        // A panic while holding it leaves plain maps: still usable.
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ring_all(&self) {
        self.bells.iter().for_each(Notify::notify_one);
    }
}

/// Serve the signalling nodes for as long as the process runs, reconnecting when a
/// connection drops. Meanwhile media flows on: the node keeps its participants and
/// hands them to the first signalling node registered (that one again after a
/// restart, or another), as `NodeEvent::Carrying` and then the events held meanwhile,
/// so that their clients resume there. Only when no signalling node took them within
/// the grace period does it let them go: their clients have rejoined elsewhere by then.
pub async fn run(node: Node, mut events: mpsc::Receiver<NodeEvent>, cfg: RemoteConfig) {
    let shared = Arc::new(Shared {
        links: Mutex::new(Links::new(cfg.signalling.len())),
        bells: cfg.signalling.iter().map(|_| Notify::new()).collect(),
    });
    for (link, addr) in cfg.signalling.iter().enumerate() {
        let (node, shared, cfg) = (node.clone(), shared.clone(), cfg.clone());
        tokio::spawn(serve_link(link, addr.clone(), node, shared, cfg));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dropped = 0;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return };
                shared.links().event(ev);
                shared.ring_all();
            }
            _ = tick.tick() => {
                let (expired, now_dropped) = {
                    let mut links = shared.links();
                    (links.expired(Instant::now(), cfg.grace), links.dropped)
                };
                if !expired.is_empty() {
                    tracing::warn!(
                        participants = expired.len(),
                        "no signalling node took the sessions back within {:?}: letting them go",
                        cfg.grace
                    );
                }
                for participant in expired {
                    let _ = node.remove_participant(participant);
                }
                if now_dropped > dropped {
                    tracing::warn!(events = now_dropped - dropped, "events held for a lost signalling node dropped: too many");
                    dropped = now_dropped;
                }
            }
        }
    }
}

/// One signalling node's link, reconnecting for as long as the process runs.
async fn serve_link(
    link: LinkId,
    addr: String,
    node: Node,
    shared: Arc<Shared>,
    cfg: RemoteConfig,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut registered = false;
        match session(link, &addr, &node, &shared, &cfg, &mut registered).await {
            Ok(()) => tracing::warn!(%addr, "signalling closed the control connection"),
            Err(e) => tracing::warn!("control connection to {addr}: {e}"),
        }
        if registered {
            backoff = Duration::from_millis(250);
            // A live link takes its participants at once; without one they wait.
            if let Some(to) = shared.links().down(link, Instant::now()) {
                shared.bells[to].notify_one();
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One control connection, until it drops; `registered` once the signalling node
/// accepted the node.
async fn session(
    link: LinkId,
    name: &str,
    node: &Node,
    shared: &Arc<Shared>,
    cfg: &RemoteConfig,
    registered: &mut bool,
) -> Result<(), String> {
    let addr = tokio::net::lookup_host(name)
        .await
        .map_err(|e| format!("looking up {name}: {e}"))?
        .next()
        .ok_or_else(|| format!("{name} has no address"))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("valid address")
    } else {
        "0.0.0.0:0".parse().expect("valid address")
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(tls::client_config()?);
    let conn = endpoint
        .connect(addr, "knudepunkt-signalling")
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
    let send = |ev: &NodeEvent| {
        // An older signalling node would stop reading at an event it does not know:
        // quality reports go only to one that said it takes them.
        !matches!(ev, NodeEvent::Quality { .. }) || welcome.quality
    };
    let carried = take_over(link, node, shared).await?;
    tracing::info!(signalling = %addr, name = cfg.name, sessions = carried.len(), "registered with the signalling node");
    for ev in carried.iter().filter(|ev| send(ev)) {
        write_frame(&mut ev_send, ev)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shared.bells[link].notified() => {
                // Another link dropped: its participants are this one's now.
                let mut out = if shared.links().orphans() {
                    take_over(link, node, shared).await?
                } else {
                    Vec::new()
                };
                out.extend(shared.links().drain(link));
                for ev in out.iter().filter(|ev| send(ev)) {
                    write_frame(&mut ev_send, ev).await.map_err(|e| e.to_string())?;
                }
            }
            _ = tick.tick() => {
                // The heartbeat: the signalling node counts a silent node lost.
                let load = node.load();
                write_frame(&mut control_stream.send, &load).await.map_err(|e| e.to_string())?;
            }
            bi = conn.accept_bi() => {
                let (send, recv) = bi.map_err(|e| e.to_string())?;
                tokio::spawn(handle(link, node.clone(), shared.clone(), send, recv));
            }
        }
    }
}

/// The link is up: the sessions it takes (its own after a reconnect, or those of a
/// link that dropped) as `NodeEvent::Carrying`, then the events held for them.
async fn take_over(link: LinkId, node: &Node, shared: &Shared) -> Result<Vec<NodeEvent>, String> {
    // The node's sessions first: what happens after this snapshot is among the held
    // events, sent after it (some twice, none lost), and a failure changes nothing.
    let mut snapshot = None;
    if shared.links().orphans() {
        snapshot = Some(sessions(node).await?);
    }
    let takeover = shared.links().up(link);
    if takeover.participants.is_empty() {
        return Ok(takeover.held);
    }
    let mut carried = match snapshot {
        Some(s) => s,
        // A link dropped just now: its sessions as they are (they are this link's).
        None => match sessions(node).await {
            Ok(s) => s,
            Err(e) => {
                shared.links().requeue(link, takeover.held);
                return Err(e);
            }
        },
    };
    carried.retain(|ev| {
        takeover
            .participants
            .binary_search(&ev.participant())
            .is_ok()
    });
    carried.extend(takeover.held);
    Ok(carried)
}

/// Every session the node carries, as `NodeEvent::Carrying`.
async fn sessions(node: &Node) -> Result<Vec<NodeEvent>, String> {
    let node = node.clone();
    tokio::task::spawn_blocking(move || node.sessions())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// One request, one reply.
async fn handle(
    link: LinkId,
    node: Node,
    shared: Arc<Shared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let reply: Reply = match read_frame::<Request>(&mut recv).await {
        Ok(Some(request)) => {
            // Its owner is known before the node's first event of it.
            let joining = shared.links().request(link, &request);
            let reply = node.call(request).await;
            if let (Some(participant), Err(_)) = (joining, &reply) {
                shared.links().refused(participant);
            }
            reply
        }
        Ok(None) => return,
        Err(e) => {
            tracing::info!("bad control request: {e}");
            Err(ControlError::Unavailable(format!("bad request: {e}")))
        }
    };
    let _ = write_frame(&mut send, &reply).await;
    let _ = send.finish();
}
