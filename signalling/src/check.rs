//! `/check`: a patient tests camera, microphone and the way to the media node before
//! a consultation, without joining any meeting. The page (`client/check.html`) does
//! the camera and microphone itself; for the connection it posts an offer of one
//! receive-only m-line to `POST /api/check`, and the node answers it as a view-only
//! peer alone in a room of its own (`check:` and 64 random bits: no room name has a
//! colon, so nobody else can be in it, and no token names it). The page sees whether
//! ICE and DTLS come up, and over what; the peer is let go after [`CHECK_FOR`].
//! Checks need no token, so they are bounded: the address's join rate, at most
//! [`PER_ADDRESS`] at a time from one address and [`AT_ONCE`] in all (a check holds a
//! peer on a media node, which real joins need more). The answer carries the node's
//! STUN/TURN servers (`Link` headers, as WHIP's), for a second check through TURN
//! where the direct one fails.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use control::JoinKind;

use crate::directory::{Joiner, Via};
use crate::state::AppState;

const CHECK_PAGE: &str = include_str!("client/check.html");

/// How long a check's peer lives: a connection comes up within seconds or not.
const CHECK_FOR: Duration = Duration::from_secs(20);

/// Checks at a time from one address (a direct one, then one through TURN).
pub const PER_ADDRESS: usize = 2;
/// Checks at a time in all.
pub const AT_ONCE: usize = 64;

/// The checks running, by address.
#[derive(Default)]
pub struct Checks(Mutex<HashMap<IpAddr, usize>>);

impl Checks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a check from `from`, if there is one.
    fn take(&self, from: IpAddr) -> bool {
        let mut running = self.lock();
        let all: usize = running.values().sum();
        let mine = running.entry(from).or_default();
        if *mine >= PER_ADDRESS || all >= AT_ONCE {
            if *mine == 0 {
                running.remove(&from);
            }
            return false;
        }
        *mine += 1;
        true
    }

    fn give_back(&self, from: IpAddr) {
        let mut running = self.lock();
        if let Some(n) = running.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                running.remove(&from);
            }
        }
    }
}

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
        let label = "check_rate_limited";
        state.metrics.joins.with_label_values(&[label]).inc();
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many checks; retry shortly",
        );
    }
    if !state.checks.take(from) {
        state.metrics.joins.with_label_values(&["check_busy"]).inc();
        let why = "too many checks at once; retry shortly";
        return plain(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let room = format!("check:{:016x}", rand::random::<u64>());
    let participant = state.cluster.allocate_participant();
    let media = (JoinKind::ViewOnly, None);
    let joined = state
        .join(
            participant,
            &room,
            Joiner::plain("check", Via::WebSocket),
            &offer,
            media,
        )
        .await;
    let answer = match joined {
        Ok(answer) => answer,
        Err(e) => {
            state.checks.give_back(from);
            state
                .metrics
                .joins
                .with_label_values(&["check_error"])
                .inc();
            let status = match e {
                control::ControlError::BadOffer(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return plain(status, &e.to_string());
        }
    };
    state.metrics.joins.with_label_values(&["check_ok"]).inc();
    let ending = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(CHECK_FOR).await;
        let _ = ending.cluster.remove(participant).await;
        ending.checks.give_back(from);
    });
    let mut r = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp")],
        answer,
    )
        .into_response();
    for link in state.ice.link_headers(std::time::SystemTime::now()) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().append(header::LINK, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_bounded_per_address_and_in_all() {
        let checks = Checks::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(checks.take(a) && checks.take(a));
        assert!(!checks.take(a), "a third from one address");
        checks.give_back(a);
        assert!(checks.take(a));
        for i in 0..AT_ONCE - PER_ADDRESS {
            let other = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
            assert!(checks.take(other));
        }
        let late: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(!checks.take(late), "over the cap in all");
        assert!(
            !checks.lock().contains_key(&late),
            "a refusal leaves no entry"
        );
    }
}
