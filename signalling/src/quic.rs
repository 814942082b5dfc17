//! Media nodes register here over QUIC: prove the shared secret, register, send
//! heartbeats and events; a node that stops answering is lost and its clients are
//! told to rejoin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sfu::remote::wire::{read_frame, write_frame, Challenge, Heartbeat, Hello, Register, Response};
use sfu::remote::{auth, tls};
use sfu::{ControlError, NodeEvent};

use crate::cluster::{Backend, Remote};
use crate::messages::ServerMsg;
use crate::state::AppState;

/// A node silent for this long (no heartbeat, connection gone) is lost.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn endpoint(addr: std::net::SocketAddr) -> Result<quinn::Endpoint, String> {
    quinn::Endpoint::server(tls::server_config()?, addr).map_err(|e| e.to_string())
}

pub async fn serve(endpoint: quinn::Endpoint, secret: Vec<u8>, state: Arc<AppState>) {
    let secret: Arc<[u8]> = secret.into();
    while let Some(incoming) = endpoint.accept().await {
        let (secret, state) = (secret.clone(), state.clone());
        tokio::spawn(async move {
            let from = incoming.remote_address();
            if let Err(e) = node_session(incoming, &secret, &state).await {
                tracing::warn!(%from, "media node session: {e}");
            }
        });
    }
}

async fn node_session(
    incoming: quinn::Incoming,
    secret: &[u8],
    state: &Arc<AppState>,
) -> Result<(), String> {
    let conn = incoming.await.map_err(|e| e.to_string())?;
    let handshake = async {
        let binding = auth::channel_binding(&conn)?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let hello: Hello = read_frame(&mut recv)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("node closed during the handshake")?;
        let nonce = auth::nonce();
        let mac = auth::proof(secret, "signalling", &hello.nonce, &binding);
        write_frame(
            &mut send,
            &Challenge {
                nonce: nonce.clone(),
                mac,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let reg: Register = read_frame(&mut recv)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("node closed during the handshake")?;
        if !auth::verify(secret, "node", &nonce, &binding, &reg.mac) {
            let refusal = Response::Error(ControlError::Unavailable("bad node secret".into()));
            let _ = write_frame(&mut send, &refusal).await;
            let _ = send.finish();
            tokio::time::sleep(Duration::from_millis(100)).await;
            conn.close(1u32.into(), b"bad secret");
            return Err(format!(
                "node {:?} failed to prove the shared secret",
                hello.name
            ));
        }
        write_frame(&mut send, &Response::Done)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((hello, reg, send, recv))
    };
    let registered = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "handshake timed out".to_owned())
        .and_then(|r| r);
    // A node that does not complete the handshake (wrong secret on either side,
    // or garbage) is refused and counted.
    let (hello, reg, _send, mut recv) =
        registered.inspect_err(|_| state.metrics.media_nodes_refused.inc())?;
    let entry = state.cluster.add_node(
        hello.name.clone(),
        reg.capacity.max(1),
        Backend::Remote(Remote {
            conn: conn.clone(),
            shard_addrs: reg.shard_addrs.clone(),
            load: Default::default(),
            last_seen: std::sync::Mutex::new(Instant::now()),
        }),
    );
    state.update_node_gauges();
    tracing::info!(node = hello.name, shards = reg.shards, capacity = reg.capacity, addrs = ?reg.shard_addrs, "media node registered");

    // Events arrive on one unidirectional stream.
    let events_conn = conn.clone();
    let events_state = state.clone();
    let events = tokio::spawn(async move {
        let Ok(mut uni) = events_conn.accept_uni().await else {
            return;
        };
        while let Ok(Some(ev)) = read_frame::<NodeEvent>(&mut uni).await {
            events_state.on_node_event(ev);
        }
    });

    // Heartbeats keep the node alive.
    loop {
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, read_frame::<Heartbeat>(&mut recv)).await {
            Ok(Ok(Some(hb))) => {
                if let Backend::Remote(r) = &entry.backend {
                    *r.load.lock().unwrap_or_else(|e| e.into_inner()) = hb;
                    *r.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::warn!(node = hello.name, "control stream: {e}");
                break;
            }
            Err(_) => {
                tracing::warn!(node = hello.name, "no heartbeat for {HEARTBEAT_TIMEOUT:?}");
                break;
            }
        }
    }
    events.abort();
    conn.close(0u32.into(), b"lost");
    let gone = state.cluster.node_lost(entry.id);
    state.metrics.media_nodes_lost.inc();
    state.update_node_gauges();
    tracing::warn!(
        node = hello.name,
        participants = gone.len(),
        "media node lost; its participants rejoin"
    );
    for p in gone {
        state.hub.send_to(
            p,
            ServerMsg::Failed {
                reason: format!("media node {} lost", hello.name),
            },
        );
    }
    Ok(())
}
