//! WHIP (RFC 9725) publishing and WHEP viewing: one HTTP POST of an SDP offer,
//! `201 Created` with the answer and a `Location` to `DELETE` when done.
//!
//! A WHIP publisher only publishes (no renegotiation exists to send it anything); a
//! WHEP viewer's offer declares receive-only m-lines that the media node fills with
//! the room's tracks. The node is ICE-lite and lists its candidates in the answer,
//! so trickle ICE (`PATCH`) is not needed and answered 405.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use control::{ControlError, JoinKind};

use crate::directory::{Resource, Via};
use crate::state::{valid_room, AppState, ROOM_NAME_RULE};
use crate::token::{Claims, Role};

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        msg.into() + "\n",
    )
        .into_response()
}

fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, if-match"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location, etag, link"),
    );
    r
}

pub async fn preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

pub async fn no_trickle() -> Response {
    cors(plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE is not needed: the media node is ICE-lite and its candidates are in the answer",
    ))
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn authorize(state: &AppState, headers: &HeaderMap, room: &str) -> Result<Claims, Box<Response>> {
    state.verify_token(bearer(headers), room).map_err(|e| {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        Box::new(cors(plain(status, e.to_string())))
    })
}

pub async fn whip_post(
    state: State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let from = state.proxies.caller(from, &headers).ip;
    cors(post(&state, from, &room, &headers, body, JoinKind::PublishOnly).await)
}

pub async fn whep_post(
    state: State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let from = state.proxies.caller(from, &headers).ip;
    cors(post(&state, from, &room, &headers, body, JoinKind::ViewOnly).await)
}

async fn post(
    state: &Arc<AppState>,
    from: std::net::IpAddr,
    room: &str,
    headers: &HeaderMap,
    offer: String,
    kind: JoinKind,
) -> Response {
    let (path, result_label) = match kind {
        JoinKind::PublishOnly => ("whip", "whip"),
        _ => ("whep", "whep"),
    };
    let refuse = |status: StatusCode, result: &str, msg: String| {
        state
            .metrics
            .joins
            .with_label_values(&[&format!("{result_label}_{result}")])
            .inc();
        plain(status, msg)
    };
    if !valid_room(room) {
        return refuse(StatusCode::BAD_REQUEST, "bad_room", ROOM_NAME_RULE.into());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_message",
            "the offer must be sent as Content-Type: application/sdp".into(),
        );
    }
    let claims = match authorize(state, headers, room) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if claims.role == Role::Service {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a service token joins no room".into(),
        );
    }
    if kind == JoinKind::PublishOnly && !claims.role.publishes() {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "publishing needs a publisher token".into(),
        );
    }
    if state.refuses_new_meeting(room) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this node is stopping: try again (another node takes the meeting)".into(),
        );
    }
    // WHIP and WHEP have no way to wait: a room with a waiting room takes only its
    // hosts through them.
    if state.lobby.has(room) && !claims.role.skips_lobby() {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this room has a waiting room: join through the page (or with a host token)".into(),
        );
    }
    if !state.limiter.allow(from) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many joins from your address; retry shortly".into(),
        );
    }
    if !state.may_join(room) {
        let msg = format!("no room {room:?}: rooms must be created first (POST /api/rooms)");
        return refuse(StatusCode::NOT_FOUND, "no_room", msg);
    }
    let participant = state.cluster.allocate_participant();
    let resource = Resource {
        id: hex(&rand::random::<[u8; 16]>()).into(),
        owner: owner_of(bearer(headers).unwrap_or_default()),
    };
    let location = format!("/{path}/{room}/{}", resource.id);
    let etag = format!("\"{}\"", resource.id);
    let via = Via::Resource(resource);
    let joined = state
        .join(
            participant,
            room,
            crate::directory::Joiner {
                identity: claims.sub.as_str().into(),
                via,
                sip: false,
                org: claims.org.as_deref().map(Into::into),
            },
            &offer,
            (kind, None),
        )
        .await;
    match joined {
        Ok(answer) => {
            state
                .metrics
                .joins
                .with_label_values(&[&format!("{result_label}_ok")])
                .inc();
            let mut r = (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_owned()),
                    (header::LOCATION, location),
                    (header::ETAG, etag),
                ],
                answer,
            )
                .into_response();
            // The STUN/TURN servers, for an ICE restart through them (RFC 9725).
            for link in state.ice.link_headers(std::time::SystemTime::now()) {
                if let Ok(v) = HeaderValue::from_str(&link) {
                    r.headers_mut().append(header::LINK, v);
                }
            }
            r
        }
        Err(e @ ControlError::RoomFull(_)) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE, "room_full", e.to_string())
        }
        Err(e @ ControlError::BadOffer(_)) => {
            refuse(StatusCode::BAD_REQUEST, "bad_offer", e.to_string())
        }
        Err(e @ ControlError::Busy(_)) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
        }
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, "error", e.to_string()),
    }
}

/// `DELETE` of the resource ends the session: with the token that opened it, or an
/// admin token (for room `*`, or for the room).
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((room, resource)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // An admin token is for room `*` (the room API's); a room's own token also works.
    let admin_anywhere = state
        .keys
        .verify(bearer(&headers), "*")
        .is_ok_and(|c| c.role == Role::Admin);
    let admin = admin_anywhere
        || match authorize(&state, &headers, &room) {
            Ok(c) => c.role == Role::Admin,
            Err(r) => return *r,
        };
    let found = state
        .directory
        .by_resource(&resource)
        .filter(|m| *m.room == *room);
    let Some(member) = found else {
        return cors(plain(
            StatusCode::NOT_FOUND,
            format!("no session {resource:?} in room {room:?}"),
        ));
    };
    let own = match &member.via {
        Via::Resource(r) => same(&r.owner, &owner_of(bearer(&headers).unwrap_or_default())),
        Via::WebSocket | Via::Carried => false,
    };
    if !own && !admin {
        return cors(plain(
            StatusCode::FORBIDDEN,
            "only the token that opened this session, or an admin's, may end it",
        ));
    }
    let _ = state.cluster.remove(member.participant).await;
    cors(StatusCode::OK.into_response())
}

/// Who opened a resource: the SHA-256 of their bearer token (the token itself is not
/// kept).
fn owner_of(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Equal digests, compared in constant time.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
