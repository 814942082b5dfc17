//! A gateway of its own (`gateway --signalling URL`) places its signalling node's
//! dial-outs (`POST /api/rooms/{room}/dial` there): it holds a WebSocket at the
//! node's `/api/sip/dials` (with its service token), takes `{"id", "room", "uri"}`,
//! hands each to its [`Dialer`] as the in-process gateway does, and answers `{"id",
//! "status": 202}` or the refusal's status and why. It connects again after a lost
//! connection (a restarting node), waiting longer each time up to 10 s.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::outbound::Dialer;
use crate::room::{RoomApi, Tokens};

/// Longest wait before connecting again.
const MOST_BACKOFF: Duration = Duration::from_secs(10);
/// The node pings every 20 s: a link silent this long is dead (its host gone, a NAT
/// that forgot it), and the gateway connects again.
const SILENT: Duration = Duration::from_secs(60);
/// A connection that lasted this long was a good one: the next try comes soon.
const STEADY: Duration = Duration::from_secs(10);

/// Take the node's dial-outs until `stop`.
pub async fn take(api: RoomApi, dialer: Dialer, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let began = tokio::time::Instant::now();
        let served = tokio::select! {
            s = serve(&api, &dialer) => s,
            _ = stop.cancelled() => return,
        };
        match served {
            // It was connected a while: try again soon (a node that takes the
            // socket and drops it at once gets the growing wait).
            Ok(()) if began.elapsed() >= STEADY => backoff = Duration::from_millis(250),
            Ok(()) => {}
            Err(e) => tracing::warn!("dial-outs from the signalling node: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MOST_BACKOFF);
    }
}

/// One connection, until it closes.
async fn serve(api: &RoomApi, dialer: &Dialer) -> Result<(), String> {
    let mut request = format!("{}/api/sip/dials", api.ws_base)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Tokens::Service(token) = &api.tokens {
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| "a bad token")?;
        request.headers_mut().insert("authorization", bearer);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!("placing the signalling node's dial-outs");
    let (mut out, mut inbound) = ws.split();
    loop {
        let Ok(Some(m)) = tokio::time::timeout(SILENT, inbound.next()).await else {
            break;
        };
        let text = match m {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Ok(dial) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let (Some(id), Some(room), Some(uri)) = (
            dial["id"].as_u64(),
            dial["room"].as_str(),
            dial["uri"].as_str(),
        ) else {
            continue;
        };
        let answer = match dialer.dial(room, uri) {
            Ok(()) => json!({ "id": id, "status": 202 }),
            Err((status, why)) => json!({ "id": id, "status": status, "error": why }),
        };
        if out
            .send(Message::Text(answer.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    Ok(())
}
