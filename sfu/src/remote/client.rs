//! The media node's side: connect to the signalling node, prove the secret,
//! register, send heartbeats and events, and execute requests on the local node.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::wire::{
    read_frame, write_frame, Challenge, Heartbeat, Hello, Register, Request, Response,
};
use super::{auth, tls};
use crate::control::{ControlError, NodeEvent};
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
    let binding = auth::channel_binding(&conn)?;
    let (mut ctl_send, mut ctl_recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let nonce = auth::nonce();
    write_frame(
        &mut ctl_send,
        &Hello {
            name: cfg.name.clone(),
            nonce: nonce.clone(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let challenge: Challenge = read_frame(&mut ctl_recv)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("signalling closed during the handshake")?;
    if !auth::verify(&cfg.secret, "signalling", &nonce, &binding, &challenge.mac) {
        return Err("the signalling node could not prove the shared secret: refusing it".into());
    }
    let stats = node.stats();
    write_frame(
        &mut ctl_send,
        &Register {
            mac: auth::proof(&cfg.secret, "node", &challenge.nonce, &binding),
            shards: stats.shards,
            capacity: cfg.capacity,
            shard_addrs: stats.shard_addrs,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    match read_frame::<Response>(&mut ctl_recv)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(Response::Done) => {}
        Some(Response::Error(e)) => return Err(format!("registration refused: {e}")),
        other => return Err(format!("unexpected registration reply: {other:?}")),
    }
    tracing::info!(signalling = %cfg.signalling, name = cfg.name, "registered with the signalling node");
    let mut ev_send = conn.open_uni().await.map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), node.load().packets_received);
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                write_frame(&mut ev_send, &ev).await.map_err(|e| e.to_string())?;
            }
            _ = tick.tick() => {
                let load = node.load();
                let now = Instant::now();
                let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
                let pps = load.packets_received.saturating_sub(last.1) as f64 / secs;
                last = (now, load.packets_received);
                let hb = Heartbeat {
                    participants: load.participants,
                    rooms: load.rooms,
                    packets_per_second: pps,
                    busy_ratio: load.busy_ratio,
                };
                write_frame(&mut ctl_send, &hb).await.map_err(|e| e.to_string())?;
            }
            bi = conn.accept_bi() => {
                let (send, recv) = bi.map_err(|e| e.to_string())?;
                tokio::spawn(handle(node.clone(), send, recv));
            }
        }
    }
}

/// One request, one response.
async fn handle(node: Node, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let response = match read_frame::<Request>(&mut recv).await {
        Ok(Some(req)) => tokio::task::spawn_blocking(move || execute(&node, req))
            .await
            .unwrap_or(Response::Error(ControlError::ShuttingDown)),
        Ok(None) => return,
        Err(e) => {
            tracing::info!("bad control request: {e}");
            Response::Error(ControlError::Unavailable(format!("bad request: {e}")))
        }
    };
    let _ = write_frame(&mut send, &response).await;
    let _ = send.finish();
}

fn execute(node: &Node, req: Request) -> Response {
    let done = |r: Result<(), ControlError>| match r {
        Ok(()) => Response::Done,
        Err(e) => Response::Error(e),
    };
    match req {
        Request::AddParticipant {
            participant,
            room,
            identity,
            offer,
            kind,
        } => match node.add_participant_as(participant, &room, &identity, &offer, kind) {
            Ok(j) => Response::Joined { answer: j.answer },
            Err(e) => Response::Error(e),
        },
        Request::Answer { participant, sdp } => done(node.answer(participant, &sdp)),
        Request::RemoveParticipant { participant } => done(node.remove_participant(participant)),
        Request::SetPreference {
            participant,
            track,
            pref,
        } => done(node.set_preference(participant, track, pref)),
        Request::CloseRoom { room } => done(node.close_room(&room)),
        Request::RoomStats { room } => match node.room_stats(&room) {
            Ok(s) => Response::RoomStats(s.figures),
            Err(e) => Response::Error(e),
        },
    }
}
