//! `/check`: a patient tests camera, microphone and the way to the media node before
//! a consultation, without joining any meeting. The page (`client/check.html`) does
//! the camera and microphone itself; for the connection it posts an offer of one
//! receive-only m-line to `POST /api/check`, and the node answers it as a view-only
//! peer alone in a room of its own (`check-` and 64 random bits: nobody else can be
//! in it, no token names it). The page sees whether ICE and DTLS come up, and over
//! what; the peer is let go after [`CHECK_FOR`] (or when the page goes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use control::JoinKind;

use crate::directory::Via;
use crate::state::AppState;

const CHECK_PAGE: &str = include_str!("client/check.html");

/// How long a check's peer lives: a connection comes up within seconds or not.
const CHECK_FOR: Duration = Duration::from_secs(30);

pub async fn page() -> Html<&'static str> {
    Html(CHECK_PAGE)
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        msg.to_owned(),
    )
        .into_response()
}

/// The offer of a check: answered by a view-only peer in a room of its own.
pub async fn post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    offer: String,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        );
    }
    // Checks count against the caller's joins: they cost the node a peer each.
    let from = state.proxies.caller(from, &headers).ip;
    if !state.limiter.allow(from) {
        state
            .metrics
            .joins
            .with_label_values(&["check_rate_limited"])
            .inc();
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many checks; retry shortly",
        );
    }
    let room = format!("check-{:016x}", rand::random::<u64>());
    let participant = state.cluster.allocate_participant();
    let joined = state
        .join(
            participant,
            &room,
            "check",
            Via::WebSocket,
            &offer,
            (JoinKind::ViewOnly, None),
        )
        .await;
    match joined {
        Ok(answer) => {
            state.metrics.joins.with_label_values(&["check_ok"]).inc();
            let cluster = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CHECK_FOR).await;
                let _ = cluster.cluster.remove(participant).await;
            });
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/sdp")],
                answer,
            )
                .into_response()
        }
        Err(e) => {
            state
                .metrics
                .joins
                .with_label_values(&["check_error"])
                .inc();
            let status = match e {
                control::ControlError::BadOffer(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            plain(status, &e.to_string())
        }
    }
}
