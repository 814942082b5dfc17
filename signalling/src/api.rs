//! HTTP routes: the browser client, the WebSocket join, the room API, tokens in dev
//! mode, health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::messages::{pid, ServerMsg};
use crate::state::{valid_room, AppState, ROOM_NAME_RULE};
use crate::token::Role;
use crate::whip;
use crate::ws::{session, MAX_MESSAGE};

const CLIENT_PAGE: &str = include_str!("client/index.html");

/// The public routes; `/metrics` among them unless it has an address of its own.
pub fn router(state: Arc<AppState>, with_metrics: bool) -> Router {
    let public = Router::new()
        .route("/", get(|| async { Html(CLIENT_PAGE) }))
        .route("/ws/{room}", get(ws_join))
        .route("/check", get(crate::check::page))
        .route("/api/check", post(crate::check::post))
        .route(
            "/whip/{room}",
            post(whip::whip_post).options(whip::preflight),
        )
        .route(
            "/whep/{room}",
            post(whip::whep_post).options(whip::preflight),
        )
        .route(
            "/whip/{room}/{resource}",
            delete(whip::delete)
                .patch(whip::no_trickle)
                .options(whip::preflight),
        )
        .route(
            "/whep/{room}/{resource}",
            delete(whip::delete)
                .patch(whip::no_trickle)
                .options(whip::preflight),
        )
        .route("/api/rooms", get(list_rooms).post(create_room))
        .route("/api/rooms/{room}", get(room_info).delete(close_room))
        .route("/api/rooms/{room}/dial", post(dial))
        .route("/api/rooms/{room}/links", post(create_link))
        .route("/api/dev-token", get(dev_token))
        .route("/api/sip/token", post(sip_token))
        .route("/api/sip/dials", get(sip_dials))
        .route("/api/ice-servers", get(ice_servers))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    let public = if with_metrics {
        public.route("/metrics", get(metrics))
    } else {
        public
    };
    public.with_state(state)
}

/// `/metrics` alone, for its own listener (`--metrics-listen`).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn ws_join(
    ws: WebSocketUpgrade,
    Path(room): Path<String>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
) -> Response {
    let from = state.proxies.caller(from, &headers).ip;
    let Some(prejoin) = state.prejoin.take(from) else {
        state
            .metrics
            .joins
            .with_label_values(&["too_many_pending"])
            .inc();
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from your address that have not joined yet",
        );
    };
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| session(socket, state, room, from, prejoin))
}

/// Admin calls carry `Authorization: Bearer <token>` with role `admin` for room `*`;
/// in dev mode, local callers (loopback, not through a proxy) need none. With a
/// secret set, no address grants anything.
/// Returns the refusal, if any.
fn admin(state: &AppState, headers: &HeaderMap, from: SocketAddr) -> Option<Response> {
    if state.dev_mode && state.proxies.caller(from, headers).local {
        return None;
    }
    let token = crate::whip::bearer(headers);
    match state.verify_token(token, "*") {
        Ok(c) if c.role == Role::Admin => None,
        Ok(_) => {
            state
                .metrics
                .token_rejections
                .with_label_values(&["not_admin"])
                .inc();
            Some(error(StatusCode::FORBIDDEN, "an admin token is required"))
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            Some(error(status, e.to_string()))
        }
    }
}

/// [`admin`], or a host of `room` (a host token of that room): what a host may do
/// for the meeting they run.
fn admin_or_host(
    state: &AppState,
    headers: &HeaderMap,
    from: SocketAddr,
    room: &str,
) -> Option<Response> {
    let token = crate::whip::bearer(headers);
    // A token of this room is a host's or nobody's here; any other (an admin's for
    // `*`, none) is judged as an admin's.
    if state.dev_mode && state.proxies.caller(from, headers).local {
        return None;
    }
    match state.keys.verify(token, room) {
        Ok(c) if c.role == Role::Host => None,
        Ok(_) => {
            state
                .metrics
                .token_rejections
                .with_label_values(&["not_admin"])
                .inc();
            Some(error(
                StatusCode::FORBIDDEN,
                "a host's token of this room or an admin token is required",
            ))
        }
        Err(_) => admin(state, headers, from),
    }
}

async fn list_rooms(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin(&state, &headers, from) {
        return r;
    }
    // Connection checks (`check:...`, no room's name) are no meetings.
    let mut rooms = state.directory.rooms();
    rooms.retain(|r| !r.contains(':'));
    let mut body = json!({ "rooms": rooms, "nodes": state.cluster.nodes() });
    // With other signalling nodes: the cluster's registry, as each has it.
    if let Some(shared) = state.cluster.shared() {
        match shared.registry().await {
            Ok(registry) => {
                let signalling: Vec<_> = registry
                    .into_iter()
                    .map(|(instance, nodes)| json!({"instance": instance, "nodes": nodes}))
                    .collect();
                body["cluster"] = json!({"this": shared.instance, "signalling": signalling});
            }
            Err(e) => {
                state.metrics.redis_errors.inc();
                tracing::warn!("Redis: the cluster's registry: {e}");
            }
        }
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
struct CreateRoom {
    name: String,
    /// The PIN SIP callers enter (6-16 digits); none: the room takes no callers who
    /// need one.
    #[serde(default)]
    pin: Option<String>,
    /// `vp8` or `h264`: the room's clients all send it (room systems send H.264).
    #[serde(default)]
    video_codec: Option<String>,
    /// 4-16 digits SIP callers may dial instead of the name (a keypad has no letters).
    #[serde(default)]
    alias: Option<String>,
    /// A waiting room: everyone but hosts enters when a host admits them. Left out,
    /// the room's waiting room stays as it is.
    #[serde(default)]
    lobby: Option<bool>,
}

/// Admin: create a room ahead of its first join (needed with `--rooms-must-exist`).
async fn create_room(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = admin(&state, &headers, from) {
        return r;
    }
    let req: CreateRoom = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad request: {e}; expected {{\"name\": \"...\"}}"),
            )
        }
    };
    if !valid_room(&req.name) {
        return error(StatusCode::BAD_REQUEST, ROOM_NAME_RULE);
    }
    if req
        .pin
        .as_deref()
        .is_some_and(|p| !crate::pins::valid_pin(p))
    {
        return error(StatusCode::BAD_REQUEST, "a PIN is 6 to 16 digits");
    }
    let video = match req
        .video_codec
        .as_deref()
        .map(control::RoomVideo::from_name)
    {
        None => control::RoomVideo::Any,
        Some(Some(v)) => v,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "video_codec is \"vp8\" or \"h264\" (or absent: any)",
            )
        }
    };
    if req
        .alias
        .as_deref()
        .is_some_and(|a| !crate::state::valid_alias(a))
    {
        return error(StatusCode::BAD_REQUEST, "an alias is 4 to 16 digits");
    }
    if !state.aliases.set(&req.name, req.alias.as_deref()) {
        return error(StatusCode::CONFLICT, "another room has that alias");
    }
    state.pins.set(&req.name, req.pin.as_deref());
    state.videos.set(&req.name, video);
    if let Some(on) = req.lobby {
        state.lobby.set(&req.name, on);
        let room = state.redact.room(&req.name);
        tracing::info!(room, lobby = on, "waiting room set");
    }
    let new = state.directory.declare(&req.name);
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if !state.share_settings(&req.name, false).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster's shared state (Redis) is unavailable: the room is made on this signalling node only; try again",
        );
    }
    let pin = req.pin.is_some();
    let body = json!({
        "name": req.name, "pin": pin, "video_codec": video.name(), "alias": req.alias,
        "lobby": state.lobby.has(&req.name),
    });
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    /// `host`, `guest`, `publisher` or `viewer`.
    role: String,
    /// The display name others see (a guest's is shown to hosts while waiting).
    name: String,
    /// How long it admits, from `not_before` (default 2h, at most 30 days).
    #[serde(default)]
    ttl: Option<String>,
    /// Not valid before (seconds since the Unix epoch): an appointment ahead.
    #[serde(default)]
    not_before: Option<u64>,
}

/// Furthest ahead a link's appointment may be.
const LINK_MAX_AHEAD: u64 = 366 * 86_400;

/// An admin's request about `room` with a JSON body: checked (admin, room name)
/// and parsed, or the refusal (`expected` says what the body should be).
fn room_request<T: serde::de::DeserializeOwned>(
    state: &AppState,
    (headers, from): (&HeaderMap, SocketAddr),
    room: &str,
    body: &[u8],
    expected: &str,
) -> Result<T, Box<Response>> {
    if let Some(r) = admin(state, headers, from) {
        return Err(Box::new(r));
    }
    if !valid_room(room) {
        return Err(Box::new(error(StatusCode::BAD_REQUEST, ROOM_NAME_RULE)));
    }
    serde_json::from_slice(body).map_err(|e| {
        let why = format!("bad request: {e}; expected {expected}");
        Box::new(error(StatusCode::BAD_REQUEST, why))
    })
}

/// Longest a link admits.
const LINK_MAX_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Admin: a join link for one person (a booking system mints a host's and a guest's).
async fn create_link(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let expected = r#"{"role": "host"|"guest"|"publisher"|"viewer", "name": "..."}"#;
    let req: Link = match room_request(&state, (&headers, from), &room, &body, expected) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if !state.keys.mints_lasting_tokens() {
        // A link outlives this process; a node with only the token service's public
        // key has no key whose tokens do.
        let why = "this node verifies tokens with --token-public-key and mints no links: \
                   mint them with the token service's key (signalling token --token-private-key)";
        return error(StatusCode::CONFLICT, why);
    }
    let role = match Role::from_name(&req.role) {
        Some(r @ (Role::Host | Role::Guest | Role::Publisher | Role::Viewer)) => r,
        _ => {
            let why = "role is \"host\", \"guest\", \"publisher\" or \"viewer\"";
            return error(StatusCode::BAD_REQUEST, why);
        }
    };
    if !(1..=64).contains(&req.name.chars().count()) || req.name.chars().any(char::is_control) {
        return error(StatusCode::BAD_REQUEST, "a name is 1 to 64 characters");
    }
    let ttl = match req.ttl.as_deref().map(crate::token::parse_ttl) {
        None => std::time::Duration::from_secs(2 * 3600),
        Some(Ok(t)) if !t.is_zero() && t <= LINK_MAX_TTL => t,
        Some(Ok(_)) => return error(StatusCode::BAD_REQUEST, "ttl is at most 30d"),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if req.not_before.is_some_and(|t| t > now + LINK_MAX_AHEAD) {
        return error(
            StatusCode::BAD_REQUEST,
            "not_before is at most a year ahead",
        );
    }
    let (token, expires_at) = state
        .keys
        .mint_window(&room, &req.name, role, (req.not_before, ttl));
    // The token in the fragment: never sent to the server or a proxy's logs.
    let url = format!("/?room={room}#token={token}");
    let body = json!({ "token": token, "url": url, "role": req.role, "expires_at": expires_at });
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Deserialize)]
struct Dial {
    /// The SIP URI of the room system or phone to call into the room.
    uri: String,
}

/// Admin, or the room's host: the room calls a room system or phone through the SIP
/// gateway (202: the call is being placed; it joins the room once answered).
async fn dial(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = admin_or_host(&state, &headers, from, &room) {
        return r;
    }
    if !valid_room(&room) {
        return error(StatusCode::BAD_REQUEST, ROOM_NAME_RULE);
    }
    let req: Dial = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("bad request: {e}; expected {{\"uri\": \"sip:...\"}}");
            return error(StatusCode::BAD_REQUEST, why);
        }
    };
    if state.dial_out.get().is_none() && !state.gateways.any() {
        let why = "no SIP gateway places calls for this node (start it with --sip, \
                   or run one: gateway --signalling URL --service-token T)";
        return error(StatusCode::NOT_IMPLEMENTED, why);
    }
    // A room calls out a few times a minute at most (a host's link may be shared,
    // and every call rings somebody).
    if !state.dials.allow(&room) {
        let why = "this room placed too many calls lately: try again in a minute";
        return error(StatusCode::TOO_MANY_REQUESTS, why);
    }
    let placed = match state.dial_out.get() {
        Some(dial_out) => dial_out(&room, &req.uri),
        None => match state.gateways.dial(&room, &req.uri).await {
            Some(placed) => placed,
            None => Err((503, "the SIP gateway is gone".into())),
        },
    };
    match placed {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "dialing": true }))).into_response(),
        Err((status, why)) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            why,
        ),
    }
}

async fn room_info(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin(&state, &headers, from) {
        return r;
    }
    match state.cluster.room_stats(&room).await {
        Ok((f, node)) => {
            let people = state.hub.others(&room, control::ParticipantId(0));
            Json(json!({
                "name": room,
                "log_ref": state.redact.room(&room),
                "node": node,
                "participants": people,
                "audio_tracks": f.audio_tracks,
                "video_tracks": f.video_tracks,
                "subscriptions": f.subscriptions,
                "paused_videos": f.paused_videos,
            }))
            .into_response()
        }
        _ => error(StatusCode::NOT_FOUND, format!("no room {room:?}")),
    }
}

async fn close_room(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin(&state, &headers, from) {
        return r;
    }
    let declared = state.directory.undeclare(&room);
    // A room made again under the name does not inherit its PIN.
    let had_pin = state.pins.has(&room);
    state.pins.set(&room, None);
    state.videos.set(&room, control::RoomVideo::Any);
    state.aliases.set(&room, None);
    let had_lobby = state.lobby.close(&room);
    let reason = "the room was closed";
    // Its sessions on the other signalling nodes go (the relay is best effort, and goes
    // out whatever Redis says of the settings: the sooner closed, the better), and its
    // sessions here, before Redis is asked: an operator closing a room must not find
    // it still running here after a 503.
    state.relay(crate::shared::Relay::Close {
        room: room.clone(),
        reason: reason.into(),
    });
    let closed_here = state.cluster.close_room(&room).await;
    if let Ok(members) = &closed_here {
        let closed = ServerMsg::Closed {
            reason: reason.into(),
        };
        state.hub.tell(members, &closed);
    }
    if !state.share_settings(&room, true).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster's shared state (Redis) is unavailable: the room is closed on this signalling node only; try again",
        );
    }
    match closed_here {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        // With other signalling nodes, its participants may all be on those.
        Err(_) if declared || had_pin || had_lobby || state.cluster.is_shared() => {
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => error(StatusCode::NOT_FOUND, format!("no room {room:?}")),
    }
}

#[derive(Deserialize)]
struct RoomQuery {
    room: String,
}

/// The STUN/TURN servers (with fresh TURN credentials) for a client about to join
/// `room`: its join token (`Authorization: Bearer`) shows it may. The page asks
/// before it builds its peer connection, so that it gathers relay candidates.
async fn ice_servers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<RoomQuery>,
) -> Response {
    if !valid_room(&q.room) {
        return error(StatusCode::BAD_REQUEST, ROOM_NAME_RULE);
    }
    let token = crate::whip::bearer(&headers);
    match state.verify_token(token, &q.room) {
        // TURN credentials are for those who join: a service token joins no room.
        Ok(c) if c.role == Role::Service => {
            return error(StatusCode::FORBIDDEN, "a service token joins no room");
        }
        Ok(_) => {}
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return error(status, e.to_string());
        }
    }
    let servers = state.ice.for_client(std::time::SystemTime::now());
    Json(json!({ "ice_servers": servers })).into_response()
}

#[derive(Deserialize)]
struct DevTokenQuery {
    room: String,
    identity: Option<String>,
    /// `sip`: a token for a SIP call (the gateway's), shown as such in the room.
    #[serde(default)]
    kind: Option<String>,
}

/// Dev tokens admit joins for this long: the page asks for a fresh one at every join.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(600);

/// Dev mode only, local callers only: a publisher token for the browser page.
async fn dev_token(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<DevTokenQuery>,
) -> Response {
    if !state.dev_mode {
        return error(
            StatusCode::NOT_FOUND,
            "dev tokens exist only in dev mode (no --secret or --token-public-key, loopback)",
        );
    }
    if !state.proxies.caller(from, &headers).local {
        return error(
            StatusCode::FORBIDDEN,
            "dev tokens are for local callers only (loopback, not through a proxy)",
        );
    }
    if !valid_room(&q.room) {
        return error(StatusCode::BAD_REQUEST, ROOM_NAME_RULE);
    }
    let identity = q
        .identity
        .filter(|i| (1..=64).contains(&i.chars().count()))
        .unwrap_or_else(|| pid(state.cluster.allocate_participant()).replace('p', "guest-"));
    let token = match q.kind.as_deref() {
        None => state
            .keys
            .mint(&q.room, &identity, Role::Publisher, DEV_TOKEN_TTL),
        // Dev mode asks no PIN of anyone: the call counts as trusted.
        Some("sip") => {
            let call = crate::token::SipCall {
                trusted: true,
                source: None,
            };
            state.keys.mint_sip(&q.room, &identity, call, DEV_TOKEN_TTL)
        }
        Some(_) => return error(StatusCode::BAD_REQUEST, "kind is \"sip\" or absent"),
    };
    Json(json!({ "token": token, "identity": identity })).into_response()
}

/// A SIP call's join token for a gateway running on its own, as the in-process
/// gateway mints it: a publisher's for ten minutes, with the call's `sip` claim.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SipTokenRequest {
    room: String,
    identity: String,
    /// From a network the gateway trusts (`--sip-trust`): no PIN asked.
    trusted: bool,
    /// The caller's address as the gateway saw it (wrong PINs count per caller).
    #[serde(default)]
    source: Option<std::net::IpAddr>,
}

const SIP_TOKEN_TTL: Duration = Duration::from_secs(600);

/// `None` when the caller shows a service token (a SIP gateway of its own); else the
/// refusal.
fn service(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let token = crate::whip::bearer(headers);
    match state.verify_token(token, "*") {
        Ok(c) if c.role == Role::Service => None,
        Ok(_) => {
            state
                .metrics
                .token_rejections
                .with_label_values(&["not_service"])
                .inc();
            Some(error(StatusCode::FORBIDDEN, "a service token is required"))
        }
        Err(crate::token::TokenError::WrongRoom) => {
            let msg = "a service token is required (room \"*\", role \"service\")";
            Some(error(StatusCode::FORBIDDEN, msg))
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            Some(error(status, e.to_string()))
        }
    }
}

/// A SIP gateway of its own takes this node's dial-outs over this WebSocket (its
/// service token; in dev mode, a local caller needs none). See [`crate::gateways`].
async fn sip_dials(
    State(state): State<Arc<AppState>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let local_dev = state.dev_mode && state.proxies.caller(from, &headers).local;
    if !local_dev {
        if let Some(r) = service(&state, &headers) {
            return r;
        }
    }
    if state.gateways.full() {
        let why = "as many SIP gateways are connected as are taken";
        return error(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    ws.max_message_size(4096)
        .on_upgrade(move |socket| async move { state.gateways.serve(socket).await })
}

/// `POST /api/sip/token`: only a service token (role `service`, room `*`) gets one, so
/// a gateway of its own holds no key that mints tokens.
async fn sip_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = service(&state, &headers) {
        return r;
    }
    let req: SipTokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let expected = r#"{"room", "identity", "trusted", "source"}"#;
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad request: {e}; expected {expected}"),
            );
        }
    };
    if !valid_room(&req.room) {
        return error(StatusCode::BAD_REQUEST, ROOM_NAME_RULE);
    }
    if !(1..=64).contains(&req.identity.chars().count()) {
        return error(StatusCode::BAD_REQUEST, "identity: 1 to 64 characters");
    }
    let call = crate::token::SipCall {
        trusted: req.trusted,
        source: req.source.map(|ip| ip.to_string()),
    };
    let token = state
        .keys
        .mint_sip(&req.room, &req.identity, call, SIP_TOKEN_TTL);
    Json(json!({ "token": token })).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.cluster.ready_nodes();
    if state.cluster.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if ready > 0 {
        (StatusCode::OK, format!("ready: {ready} media node(s)\n")).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no media node ready\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state
        .metrics
        .joins_waiting
        .set(state.cluster.admission.waiting() as i64);
    state
        .metrics
        .rooms
        .set(state.directory.occupied_rooms() as i64);
    let mut out = String::new();
    let enc = prometheus::TextEncoder::new();
    let _ = enc.encode_utf8(&state.metrics.registry.gather(), &mut out);
    // The embedded node's own series (a remote node serves its own /metrics).
    out.push_str(&state.cluster.node_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
