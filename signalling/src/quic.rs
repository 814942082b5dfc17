//! Media nodes register here over QUIC: prove the shared secret, register, send
//! heartbeats and events; a node that stops answering is lost and its clients are
//! told to rejoin.

use std::sync::Arc;
use std::time::Duration;

use control::handshake;
use control::remote::RemoteNode;
use control::wire::read_frame;
use control::{tls, NodeEvent, NodeLoad};

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
    // A node that does not complete the handshake (wrong secret on either side,
    // or garbage) is refused and counted.
    let handshake::Registered {
        hello,
        register: reg,
        stream: mut control_stream,
    } = handshake::accept(&conn, secret, HANDSHAKE_TIMEOUT)
        .await
        .inspect_err(|_| state.metrics.media_nodes_refused.inc())?;
    let remote = Arc::new(RemoteNode::new(conn.clone()));
    let entry = state
        .cluster
        .add_node(hello.name.clone(), reg.capacity.max(1), remote.clone());
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

    // Heartbeats (the node's load, every second) keep the node alive.
    loop {
        let heartbeat = read_frame::<NodeLoad>(&mut control_stream.recv);
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, heartbeat).await {
            Ok(Ok(Some(load))) => remote.set_load(load),
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
    state
        .hub
        .fail(&gone, &format!("media node {} lost", hello.name));
    Ok(())
}
