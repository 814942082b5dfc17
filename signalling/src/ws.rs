//! One WebSocket session: a participant's join ([`join`]: the first message, checked
//! and placed), then its life in the room ([`serve`]: renegotiations, preferences,
//! mutes, and the node's events).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use control::{ControlError, Preference, TrackId};

use crate::directory::Via;
use crate::limiter::PreJoinSlot;
use crate::messages::{pid, ClientMsg, ServerMsg};
use crate::state::{valid_room, AppState, ROOM_NAME_RULE};
use crate::token::Role;

/// Largest message a client may send (an SDP offer with many m-lines fits).
pub const MAX_MESSAGE: usize = 64 * 1024;
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that takes no message for this long is gone, or too slow to follow.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

async fn send(socket: &mut WebSocket, msg: &ServerMsg) -> bool {
    let text = serde_json::to_string(msg).expect("server messages serialize");
    let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await;
    matches!(sent, Ok(Ok(())))
}

async fn refuse(state: &AppState, socket: &mut WebSocket, result: &str, message: String) {
    state.metrics.joins.with_label_values(&[result]).inc();
    // The message may name the room: its words go to DEBUG, and only with --log-pii.
    tracing::info!(result, "join refused");
    if state.redact.names_at_debug() {
        tracing::debug!(result, "join refused: {message}");
    }
    let code = Some(result.to_owned());
    send(socket, &ServerMsg::Error { code, message }).await;
    let _ = socket.send(Message::Close(None)).await;
}

fn parse(state: &AppState, text: &str) -> Result<ClientMsg, String> {
    serde_json::from_str(text).map_err(|e| {
        let reason = if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "bad_message"
        };
        state
            .metrics
            .bad_messages
            .with_label_values(&[reason])
            .inc();
        format!("bad message: {e}")
    })
}

/// Client messages a joined session may send: on average per second, and in a burst
/// (a renegotiation answer, a few preferences and a mute at once fit easily).
const MESSAGES_PER_SECOND: std::num::NonZeroU32 = std::num::NonZeroU32::new(20).unwrap();
const MESSAGE_BURST: std::num::NonZeroU32 = std::num::NonZeroU32::new(40).unwrap();

/// A WebSocket from upgrade to close. `prejoin` holds the address's place among
/// connections that have not joined yet, and is let go once the join is through.
pub async fn session(
    mut socket: WebSocket,
    state: Arc<AppState>,
    room: String,
    from: IpAddr,
    prejoin: PreJoinSlot,
) {
    state.metrics.websockets.inc();
    let joined = join(&mut socket, &state, room, from).await;
    drop(prejoin);
    if let Some(joined) = joined {
        serve(&mut socket, &state, joined).await;
    }
    state.metrics.websockets.dec();
}

/// A participant whose join went through.
struct Joined {
    participant: control::ParticipantId,
    room: String,
    /// The room as logs may name it.
    room_ref: String,
    events: tokio::sync::mpsc::Receiver<ServerMsg>,
    /// Its token's role is `host`: it runs the meeting.
    host: bool,
}

/// The first message: a join, checked (token, viewer role, rate, room policy) and
/// placed; the client has its answer (or its refusal) when this returns.
async fn join(
    socket: &mut WebSocket,
    state: &Arc<AppState>,
    room: String,
    from: IpAddr,
) -> Option<Joined> {
    if !valid_room(&room) {
        refuse(state, socket, "bad_room", ROOM_NAME_RULE.into()).await;
        return None;
    }
    let first = match tokio::time::timeout(JOIN_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) => {
            return refused(
                state,
                socket,
                "bad_message",
                "expected a JSON text message".into(),
            )
            .await
        }
        _ => {
            return refused(
                state,
                socket,
                "timeout",
                "no join message within 10 s".into(),
            )
            .await
        }
    };
    let (token, offer, pin, screen) = match parse(state, &first) {
        Ok(ClientMsg::Join {
            token,
            offer,
            pin,
            screen,
        }) => (token, offer, pin, screen),
        Ok(ClientMsg::Resume { token }) => return resume(socket, state, room, from, &token).await,
        Ok(_) => {
            return refused(
                state,
                socket,
                "bad_message",
                "the first message must be a join".into(),
            )
            .await
        }
        Err(e) => return refused(state, socket, "bad_message", e).await,
    };
    let claims = match state.verify_token(Some(&token), &room) {
        Ok(c) if c.role == Role::Service => {
            let msg = "a service token joins no room".to_owned();
            return refused(state, socket, "forbidden", msg).await;
        }
        Ok(c) => c,
        Err(e) => return refused(state, socket, "bad_token", e.to_string()).await,
    };
    // A SIP call that dialled a room's numeric alias joins that room (its PIN, its
    // codec); the gateway's token names what the caller dialled.
    let room = match claims.sip {
        Some(_) => state.aliases.room_of(&room).unwrap_or(room),
        None => room,
    };
    // A SIP caller from outside the trusted networks joins with the room's PIN (in
    // dev mode every room takes every caller).
    if let Some(call) = claims
        .sip
        .as_ref()
        .filter(|s| !s.trusted && !state.dev_mode)
    {
        let caller = call.source.as_deref();
        let admission = state
            .pins
            .check(&room, pin.as_deref(), caller, Instant::now());
        if admission != crate::pins::Admission::Admitted {
            let why = match admission {
                crate::pins::Admission::NoPin => "this room takes no calls that need a PIN",
                crate::pins::Admission::Locked => "too many wrong PINs; try again in a minute",
                _ => "the room's PIN is needed",
            };
            state
                .metrics
                .pin_refusals
                .with_label_values(&[admission.code()])
                .inc();
            return refused(state, socket, admission.code(), why.into()).await;
        }
    }
    if !state.limiter.allow(from) {
        return refused(
            state,
            socket,
            "rate_limited",
            "too many joins from your address; retry shortly".into(),
        )
        .await;
    }

    if !state.may_join(&room) {
        let msg = format!("no room {room:?}: rooms must be created first (POST /api/rooms)");
        return refused(state, socket, "no_room", msg).await;
    }
    if state.refuses_new_meeting(&room) {
        let msg = "this node is stopping: join again (another node takes the meeting)";
        return refused(state, socket, "draining", msg.into()).await;
    }
    // A guest token, or anyone but a host in a room with a waiting room, waits for a
    // host (a SIP caller was admitted by its PIN or its trunk already).
    if !claims.role.skips_lobby() && claims.sip.is_none() {
        let guest = claims.role == Role::Guest;
        let refusal = match wait_in_lobby(socket, state, &room, &claims.sub, guest).await {
            Lobby::Admitted => None,
            Lobby::Denied => Some(("denied", "the host did not let you in")),
            Lobby::Closed => Some(("no_room", "the room was closed")),
            Lobby::Full => Some(("lobby_full", "the waiting room is full; try again later")),
            Lobby::TimedOut => Some(("lobby_timeout", "no host let you in within an hour")),
            Lobby::Gone => return None,
        };
        if let Some((code, msg)) = refusal {
            return refused(state, socket, code, msg.into()).await;
        }
        // An hour may have passed: the room may be gone.
        if !state.may_join(&room) {
            return refused(state, socket, "no_room", "the room was closed".into()).await;
        }
    }
    let started = Instant::now();
    let participant = state.cluster.allocate_participant();
    let events = state.hub.register(participant);
    let sip = claims.sip.is_some();
    if sip {
        state.hub.mark_sip(participant);
    }
    let joined = state
        .join(
            participant,
            &room,
            crate::directory::Joiner {
                identity: claims.sub.as_str().into(),
                via: Via::WebSocket,
                sip,
                org: claims.org.as_deref().map(Into::into),
            },
            &offer,
            // The media node checks a viewer's offer as it parses it.
            if claims.role == Role::Viewer {
                (control::JoinKind::Viewer, None)
            } else {
                (control::JoinKind::Full, screen)
            },
        )
        .await;
    let answer = match joined {
        Ok(answer) => answer,
        Err(e) => {
            state.hub.unregister(participant);
            let result = match e {
                ControlError::RoomFull(_) => "room_full",
                ControlError::BadOffer(_) => "bad_offer",
                ControlError::Busy(_) => "busy",
                _ => "error",
            };
            return refused(state, socket, result, e.to_string()).await;
        }
    };
    state.metrics.joins.with_label_values(&["ok"]).inc();
    state
        .metrics
        .join_duration
        .observe(started.elapsed().as_secs_f64());
    state.metrics.participants.inc();
    let room_ref = state.redact.room(&room);
    tracing::info!(room = room_ref, participant = participant.0, "joined");
    if state.redact.names_at_debug() {
        tracing::debug!(
            room,
            identity = claims.sub,
            participant = participant.0,
            "joined"
        );
    }

    let host = claims.role == Role::Host;
    let welcome = ServerMsg::Joined {
        participant: pid(participant),
        sdp: answer,
        participants: state.others(&room, participant).await,
        resume: state.keys.mint_resume(
            &room,
            crate::token::Resume {
                pid: participant.0,
                sip,
                host,
            },
        ),
        ice_servers: state.ice.for_client(std::time::SystemTime::now()),
        video_codec: state.videos.of(&room).name(),
        host,
    };
    let joined = Joined {
        participant,
        room,
        room_ref,
        events,
        host,
    };
    let joined = greet(socket, state, joined, &welcome).await?;
    hosting(state, &joined);
    Some(joined)
}

/// A host in session (after `joined` or `resumed`) is told who waits, through the
/// session's queue, and is told of newcomers to the waiting room from then on.
fn hosting(state: &AppState, joined: &Joined) {
    if joined.host {
        state.lobby.set_host(&joined.room, joined.participant, true);
        let waiting = state.lobby.waiting(&joined.room);
        state
            .hub
            .send_to(joined.participant, ServerMsg::Lobby { waiting });
    }
}

/// How long a guest may wait for a host.
const LOBBY_WAIT: Duration = Duration::from_secs(60 * 60);

/// `waiting` is said again this often: proxies drop a WebSocket idle for a minute.
const LOBBY_KEEPALIVE: Duration = Duration::from_secs(25);

/// How a wait in the waiting room ended.
enum Lobby {
    Admitted,
    Denied,
    Closed,
    /// No place to wait.
    Full,
    /// Waited [`LOBBY_WAIT`].
    TimedOut,
    /// The guest left (or sent more than a waiting page does).
    Gone,
}

/// Wait until a host decides (no wait at all for one that need not: `Admitted`); the
/// guest is told that it waits, and the hosts who waits. Its messages meanwhile are
/// ignored but a `leave`, within the session's message budget.
async fn wait_in_lobby(
    socket: &mut WebSocket,
    state: &Arc<AppState>,
    room: &str,
    name: &str,
    guest: bool,
) -> Lobby {
    let mut ticket = match state.lobby.wait(room, name, guest) {
        crate::lobby::Wait::Ticket(t) => t,
        crate::lobby::Wait::Open => return Lobby::Admitted,
        crate::lobby::Wait::Full => return Lobby::Full,
    };
    state.tell_hosts(room);
    let deadline = tokio::time::sleep(LOBBY_WAIT);
    tokio::pin!(deadline);
    let mut keepalive = tokio::time::interval(LOBBY_KEEPALIVE);
    let budget = message_budget();
    let outcome = loop {
        tokio::select! {
            d = &mut ticket.decision => break match d {
                Ok(crate::lobby::Decision::Admitted) => Lobby::Admitted,
                Ok(crate::lobby::Decision::Denied) => Lobby::Denied,
                // Closed, or the waiting room let go without a word.
                _ => Lobby::Closed,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    let leaving = matches!(parse(state, &t), Ok(ClientMsg::Leave));
                    if leaving || budget.check().is_err() {
                        break Lobby::Gone;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Lobby::Gone,
                Some(Ok(_)) => {}
            },
            _ = keepalive.tick() => {
                if !send(socket, &ServerMsg::Waiting {}).await {
                    break Lobby::Gone;
                }
            }
            _ = &mut deadline => break Lobby::TimedOut,
        }
    };
    if matches!(outcome, Lobby::Gone | Lobby::TimedOut) {
        state.lobby.give_up(room, ticket.id);
        state.tell_hosts(room);
    }
    outcome
}

/// How long a resuming client may wait for its media node to hand its session back
/// (a restarted signalling node hears from its nodes within a few seconds).
const RESUME_WAIT: Duration = Duration::from_secs(8);

/// A `resume` as the first message: the client's session lives on its media node,
/// which handed it back after this node restarted; the client takes the session's
/// queue and goes on as if it had never left. Nothing of the peer connection changes.
async fn resume(
    socket: &mut WebSocket,
    state: &Arc<AppState>,
    room: String,
    from: IpAddr,
    token: &str,
) -> Option<Joined> {
    let resumed = match state.keys.verify_resume(token, &room) {
        Ok(r) => r,
        Err(e) => {
            state
                .metrics
                .token_rejections
                .with_label_values(&[e.label()])
                .inc();
            return refused(state, socket, "bad_token", format!("resume: {e}")).await;
        }
    };
    let participant = control::ParticipantId(resumed.pid);
    if !state.limiter.allow(from) {
        let msg = "too many joins from your address; retry shortly".to_owned();
        return refused(state, socket, "rate_limited", msg).await;
    }
    if state.cluster.gave_out(participant) {
        // This run's own session: it ended when its WebSocket closed.
        let msg = "no session to resume: it ended; join again".to_owned();
        return refused(state, socket, "no_session", msg).await;
    }
    // The node may not have handed the session back yet: wait for it a little.
    let end = Instant::now() + RESUME_WAIT;
    let events = loop {
        if let Some(rx) = state.hub.resume(participant) {
            break rx;
        }
        if Instant::now() >= end {
            let msg = "no session to resume: join again".to_owned();
            return refused(state, socket, "no_session", msg).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Handed back in this room (the token says which), by a node the directory has.
    if state
        .directory
        .member(participant)
        .is_none_or(|m| *m.room != *room)
    {
        state.hub.unregister(participant);
        let msg = "no session to resume: join again".to_owned();
        return refused(state, socket, "no_session", msg).await;
    }
    if resumed.sip {
        state.hub.mark_sip(participant);
    }
    state.metrics.sessions_resumed.inc();
    state.metrics.participants.inc();
    let room_ref = state.redact.room(&room);
    tracing::info!(room = room_ref, participant = participant.0, "resumed");
    let welcome = ServerMsg::Resumed {
        participant: pid(participant),
        participants: state.others(&room, participant).await,
    };
    // A host hosts on (its resume token says it was one).
    let joined = Joined {
        participant,
        room,
        room_ref,
        events,
        host: resumed.host,
    };
    let joined = greet(socket, state, joined, &welcome).await?;
    hosting(state, &joined);
    Some(joined)
}

/// The session's first message (`joined`, `resumed`); a client gone meanwhile leaves.
async fn greet(
    socket: &mut WebSocket,
    state: &AppState,
    joined: Joined,
    welcome: &ServerMsg,
) -> Option<Joined> {
    if !send(socket, welcome).await {
        leave(state, &joined).await;
        return None;
    }
    Some(joined)
}

/// The joined participant's session, until it leaves, fails or its room closes.
async fn serve(socket: &mut WebSocket, state: &Arc<AppState>, mut joined: Joined) {
    let participant = joined.participant;
    let budget = message_budget();
    let mut warned_at: Option<Instant> = None;
    let mut shared_at: Option<Instant> = None;
    loop {
        tokio::select! {
                msg = socket.recv() => {
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    };
                    let now = Instant::now();
                    let reply = if budget.check().is_err() {
                        // Over its budget: dropped, counted, and said at most once a second.
                        state.metrics.bad_messages.with_label_values(&["rate_limited"]).inc();
                        let quiet = warned_at.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
                        quiet.then(|| {
                            warned_at = Some(now);
                            format!("too many messages: at most {MESSAGES_PER_SECOND} per second; some were dropped")
                        })
                    } else {
                        match parse(state, &text) {
                            Ok(ClientMsg::Leave) => break,
                            // Each share renegotiates with everyone in the room.
                            Ok(ClientMsg::Screen { on: true })
                                if shared_at.is_some_and(|t| now.duration_since(t) < SHARE_INTERVAL) =>
                            {
                                screen_refused(state, participant, "share at most once a second".into());
                                None
                            }
                            Ok(m) => {
                                if matches!(m, ClientMsg::Screen { on: true }) {
                                    shared_at = Some(now);
                                }
                                handle(state, &joined, m).await
                            }
                            Err(e) => Some(e),
                        }
                    };
                    if let Some(message) = reply {
                        let error = ServerMsg::Error {
                            code: None,
                            message,
                        };
                        if !send(socket, &error).await {
                            break;
                        }
                    }
                }
                ev = joined.events.recv() => {
                    let Some(ev) = ev else {
                        // Cut off by the hub: messages that carry state piled up.
                        if let Some(last) = state.hub.last_word(participant) {
                            send(socket, &last).await;
                        }
                        break;
                    };
                    let over = matches!(ev, ServerMsg::Failed { .. } | ServerMsg::Closed { .. });
                    if !send(socket, &ev).await || over {
                        break;
                    }
                }
        }
    }
    leave(state, &joined).await;
}

/// The participant is gone: its queue, its directory entry, its place on the node.
async fn leave(state: &AppState, joined: &Joined) {
    let participant = joined.participant;
    if joined.host {
        state.lobby.set_host(&joined.room, participant, false);
    }
    state.hub.unregister(participant);
    state.metrics.participants.dec();
    // The node may already have let it go (failure, node lost): nothing to undo then.
    let _ = state.cluster.remove(participant).await;
    tracing::info!(room = joined.room_ref, participant = participant.0, "left");
}

/// Refuse a join, for [`join`]'s early returns.
async fn refused(
    state: &AppState,
    socket: &mut WebSocket,
    result: &str,
    message: String,
) -> Option<Joined> {
    refuse(state, socket, result, message).await;
    None
}

/// A session's message allowance (governor, as the join limits): 20 a second on
/// average, bursts of 40.
fn message_budget() -> governor::DefaultDirectRateLimiter {
    let quota = governor::Quota::per_second(MESSAGES_PER_SECOND).allow_burst(MESSAGE_BURST);
    governor::RateLimiter::direct(quota)
}

/// One client message after the join; returns an error text for the client.
async fn handle(state: &Arc<AppState>, joined: &Joined, msg: ClientMsg) -> Option<String> {
    let (participant, room) = (joined.participant, joined.room.as_str());
    let r = match msg {
        ClientMsg::Join { .. } | ClientMsg::Resume { .. } => return Some("already joined".into()),
        ClientMsg::Leave => return None,
        ClientMsg::Mute { kind, muted } => {
            // Unmuting ends a host's mute, if there was one (whatever this node
            // remembers: it may have restarted since): the node forwards its audio.
            if kind == crate::messages::MediaKind::Audio && !muted {
                let request = control::Request::HoldAudio {
                    participant,
                    held: false,
                };
                if let Err(e) = state.cluster.ask(participant, request).await {
                    return Some(e.to_string());
                }
            }
            state.broadcast(
                room,
                Some(participant),
                &ServerMsg::Muted {
                    participant: pid(participant),
                    kind,
                    muted,
                    by_host: false,
                },
            );
            return None;
        }
        ClientMsg::Admit { guest } | ClientMsg::Deny { guest } if joined.host => {
            let admit = matches!(msg, ClientMsg::Admit { .. });
            if !state.lobby.decide(room, guest, admit) {
                return Some(format!("no guest {guest} waits"));
            }
            let what = if admit { "admitted" } else { "turned away" };
            tracing::info!(
                room = joined.room_ref,
                host = participant.0,
                guest,
                "host {what} a guest"
            );
            state.tell_hosts(room);
            return None;
        }
        ClientMsg::End if joined.host => {
            tracing::info!(
                room = joined.room_ref,
                host = participant.0,
                "host ended the meeting"
            );
            state.lobby.end(room);
            let reason = "the host ended the meeting";
            state.relay(crate::shared::Relay::End {
                room: room.to_owned(),
                reason: reason.into(),
            });
            let members = state.cluster.close_room(room).await.unwrap_or_default();
            let closed = ServerMsg::Closed {
                reason: reason.into(),
            };
            state.hub.tell(&members, &closed);
            return None;
        }
        ClientMsg::Remove { participant: who } if joined.host => {
            let Some((target, here)) = target_of(state, room, &who).await else {
                return Some(format!("no participant {who:?} in this room"));
            };
            tracing::info!(
                room = joined.room_ref,
                host = participant.0,
                removed = target.0,
                "host removed a participant"
            );
            let closed = ServerMsg::Closed {
                reason: "removed by a host".to_owned(),
            };
            if here {
                state.hub.send_to(target, closed);
                // A client that does not read its messages goes anyway.
                state.cluster.remove(target).await
            } else {
                // On another signalling node: told and let go there, and off the
                // media node.
                state.relay(crate::shared::Relay::Remove {
                    room: room.to_owned(),
                    participant: target.0,
                    reason: "removed by a host".to_owned(),
                });
                let request = control::Request::RemoveParticipant {
                    participant: target,
                };
                state.cluster.ask_room(room, request).await
            }
        }
        ClientMsg::MuteParticipant {
            participant: who,
            muted,
        } if joined.host => {
            let Some((target, _)) = target_of(state, room, &who).await else {
                return Some(format!("no participant {who:?} in this room"));
            };
            let request = control::Request::HoldAudio {
                participant: target,
                held: muted,
            };
            // The room's media node, whichever signalling node the target came through.
            if let Err(e) = state.cluster.ask_room(room, request).await {
                return Some(e.to_string());
            }
            let what = if muted { "muted" } else { "unmuted" };
            tracing::info!(
                room = joined.room_ref,
                host = participant.0,
                target = target.0,
                "host {what} a participant"
            );
            let muted = ServerMsg::Muted {
                participant: pid(target),
                kind: crate::messages::MediaKind::Audio,
                muted,
                by_host: true,
            };
            state.broadcast(room, None, &muted);
            return None;
        }
        ClientMsg::Admit { .. }
        | ClientMsg::End
        | ClientMsg::Deny { .. }
        | ClientMsg::Remove { .. }
        | ClientMsg::MuteParticipant { .. } => return Some("only a host may do that".into()),
        ClientMsg::Answer { sdp } => state.cluster.answer(participant, sdp).await,
        ClientMsg::Screen { on } => {
            if let Err(e) = state.cluster.screen(participant, on).await {
                let why = match e {
                    ControlError::NoSuchTrack => {
                        "no m-line was kept for a screen (the join's \"screen\")".into()
                    }
                    e => e.to_string(),
                };
                screen_refused(state, participant, why);
            }
            return None;
        }
        ClientMsg::Preference {
            track,
            paused,
            max_layer,
        } => {
            if max_layer > 2 {
                return Some("max_layer must be 0, 1 or 2".into());
            }
            let pref = Preference { paused, max_layer };
            state
                .cluster
                .set_preference(participant, TrackId(track), pref)
                .await
        }
    };
    r.err().map(|e| e.to_string())
}

/// The participant `who` (a wire id, `p<N>`) if it is in `room`.
fn member_of(state: &AppState, room: &str, who: &str) -> Option<control::ParticipantId> {
    let id = control::ParticipantId(who.strip_prefix('p')?.parse().ok()?);
    let member = state.directory.member(id)?;
    (*member.room == *room).then_some(id)
}

/// A host's target: a participant of the room here (`true`), or on another
/// signalling node (`false`).
async fn target_of(
    state: &AppState,
    room: &str,
    who: &str,
) -> Option<(control::ParticipantId, bool)> {
    if let Some(id) = member_of(state, room, who) {
        return Some((id, true));
    }
    let id = control::ParticipantId(who.strip_prefix('p')?.parse().ok()?);
    let elsewhere = state.cluster.shared()?.others(room).await.ok()?;
    elsewhere
        .iter()
        .any(|(p, ..)| *p == id)
        .then_some((id, false))
}

/// Least time between two screen shares of one participant.
const SHARE_INTERVAL: Duration = Duration::from_secs(1);

/// A share was refused: the client is told with code `screen` (its page stops
/// sharing).
fn screen_refused(state: &AppState, participant: control::ParticipantId, message: String) {
    let code = Some("screen".to_owned());
    state
        .hub
        .send_to(participant, ServerMsg::Error { code, message });
}
