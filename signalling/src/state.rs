//! What the HTTP handlers share.

use control::{ControlError, JoinKind, ParticipantId};

use crate::directory::{Directory, Via};
use crate::hub::Hub;
use crate::messages::{ParticipantInfo, ServerMsg};
use crate::metrics::Metrics;
use crate::token::Keys;

pub struct AppState {
    /// Who is where: rooms, their nodes, their participants.
    pub directory: std::sync::Arc<dyn Directory>,
    pub cluster: crate::cluster::Cluster,
    pub keys: Keys,
    /// What logs may say of rooms and people.
    pub redact: crate::redact::Redactor,
    /// No secret configured and loopback only: tokens are minted for the page.
    pub dev_mode: bool,
    pub hub: Hub,
    pub metrics: Metrics,
    /// Joins per source address.
    pub limiter: crate::limiter::AddressLimiter,
    /// WebSockets not joined yet, per source address.
    pub prejoin: crate::limiter::PreJoinCap,
    /// Whose forwarding headers are believed; who is local.
    pub proxies: crate::caller::TrustedProxies,
    pub rooms_on_join: bool,
    /// STUN/TURN servers for clients.
    pub ice: crate::ice::IceServers,
    /// Rooms' PINs, for SIP callers.
    pub pins: crate::pins::Pins,
    /// Rooms' video codecs.
    pub videos: RoomVideos,
    /// Rooms' numeric aliases, for SIP keypads.
    pub aliases: Aliases,
    /// Rooms' waiting rooms, and their hosts.
    pub lobby: crate::lobby::Lobby,
    /// The connection checks running (`/check`).
    pub checks: crate::check::Checks,

    /// Places a call from a room (`POST /api/rooms/{room}/dial`), when a SIP gateway
    /// runs in this process (`--sip`).
    pub dial_out: std::sync::OnceLock<Box<DialOut>>,
    /// The meeting recorder's events (the media nodes' quality events go there).
    pub record_events: tokio::sync::mpsc::UnboundedSender<crate::records::directory::Event>,
    /// SIP gateways of their own that place dial-outs (without one in-process).
    pub gateways: crate::gateways::Gateways,
    /// Dial-outs per room: six a minute (bursts of three).
    pub dials: crate::limiter::KeyedLimiter<String>,
}

/// `(room, uri)`: hands a call to the SIP gateway; `Err((status, why))` when it will
/// not place it (400 for the URI, 503 when busy or stopping).
pub type DialOut = dyn Fn(&str, &str) -> Result<(), (u16, String)> + Send + Sync;

/// Rooms' numeric aliases (`POST /api/rooms {"alias": "123456"}`): a room system's
/// keypad dials `sip:123456@host`, and the call joins the room. One alias a room, one
/// room an alias.
#[derive(Default)]
pub struct Aliases(std::sync::Mutex<std::collections::HashMap<String, String>>);

/// An alias is 4 to 16 digits.
pub fn valid_alias(alias: &str) -> bool {
    (4..=16).contains(&alias.len()) && alias.bytes().all(|b| b.is_ascii_digit())
}

impl Aliases {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Give `room` this alias (its old one goes), or none; `false` when another room
    /// has it (nothing changes then).
    pub fn set(&self, room: &str, alias: Option<&str>) -> bool {
        let mut aliases = self.lock();
        if alias.is_some_and(|a| aliases.get(a).is_some_and(|r| r != room)) {
            return false;
        }
        aliases.retain(|_, r| r != room);
        if let Some(a) = alias {
            aliases.insert(a.to_owned(), room.to_owned());
        }
        true
    }

    /// The room an alias names.
    pub fn room_of(&self, alias: &str) -> Option<String> {
        self.lock().get(alias).cloned()
    }

    /// The room's alias.
    pub fn alias_of(&self, room: &str) -> Option<String> {
        let aliases = self.lock();
        aliases
            .iter()
            .find(|(_, r)| *r == room)
            .map(|(a, _)| a.clone())
    }
}

/// Rooms' video codecs, as created (`POST /api/rooms {"video_codec"}`); a room not
/// named here takes any codec the node takes.
#[derive(Default)]
pub struct RoomVideos(std::sync::Mutex<std::collections::HashMap<String, control::RoomVideo>>);

impl RoomVideos {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, control::RoomVideo>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, room: &str, video: control::RoomVideo) {
        if video == control::RoomVideo::Any {
            self.lock().remove(room);
        } else {
            self.lock().insert(room.to_owned(), video);
        }
    }

    pub fn of(&self, room: &str) -> control::RoomVideo {
        self.lock().get(room).copied().unwrap_or_default()
    }
}

/// How long a session handed back by a media node waits for its client to resume.
pub const RESUME_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// What [`valid_room`] accepts, as told to clients.
pub const ROOM_NAME_RULE: &str = "room names are 1-64 characters of A-Z a-z 0-9 - _ .";

/// Room names: 1 to 64 characters of letters, digits, `-`, `_`, `.`.
pub fn valid_room(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl AppState {
    /// Whether a join may open (or enter) this room.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms_on_join || self.directory.is_declared(room)
    }

    /// Join through the cluster, counting each room placed on a node; returns the
    /// node's SDP answer.
    pub async fn join(
        &self,
        participant: ParticipantId,
        room: &str,
        who: crate::directory::Joiner,
        offer: &str,
        (kind, screen): (JoinKind, Option<String>),
    ) -> Result<String, ControlError> {
        let media = control::JoinMedia {
            kind,
            video: self.videos.of(room),
            screen,
        };
        let joined = self
            .cluster
            .join(participant, room, who, offer, media)
            .await?;
        if joined.new_room {
            self.metrics
                .placements
                .with_label_values(&[&joined.node])
                .inc();
        }
        Ok(joined.answer)
    }

    /// While this node drains, a meeting that is not running here starts elsewhere
    /// (late joiners of one that runs here still come in).
    pub fn refuses_new_meeting(&self, room: &str) -> bool {
        self.cluster.is_draining() && self.directory.members(room).is_empty()
    }

    /// To everyone in `room` but `except`, on this signalling node and the others.
    pub fn broadcast(&self, room: &str, except: Option<ParticipantId>, msg: &ServerMsg) {
        self.hub.broadcast(room, except, msg);
        if let Some(shared) = self.cluster.shared() {
            let relay = crate::shared::Relay::Broadcast {
                room: room.to_owned(),
                except: except.map(|p| p.0),
                msg: serde_json::to_value(msg).unwrap_or_default(),
            };
            shared.relay(relay);
        }
    }

    /// A room message from another signalling node.
    pub fn on_relay(self: &std::sync::Arc<Self>, relay: crate::shared::Relay) {
        use crate::shared::Relay;
        match relay {
            Relay::Broadcast { room, except, msg } => {
                let except = except.map(ParticipantId);
                self.hub.broadcast(&room, except, &ServerMsg::Relayed(msg));
            }
            Relay::Close { room, reason } => {
                self.apply_settings(&room, None);
                self.lobby.close(&room);
                self.end_here(&room, reason);
            }
            Relay::End { room, reason } => {
                self.lobby.end(&room);
                self.end_here(&room, reason);
            }
            Relay::Settings { room, settings } => self.apply_settings(&room, settings),
            Relay::Remove {
                room,
                participant,
                reason,
            } => {
                let target = ParticipantId(participant);
                // Its entry may be gone already (the media node told of its removal
                // first); one in another room is not the host's to remove.
                if self
                    .directory
                    .member(target)
                    .is_some_and(|m| *m.room != *room)
                {
                    return;
                }
                // As for a participant of this node: told (its session ends here
                // whatever its client does), and out, off its media node too.
                self.hub.send_to(target, ServerMsg::Closed { reason });
                let state = self.clone();
                tokio::spawn(async move {
                    let _ = state.cluster.remove(target).await;
                });
            }
        }
    }

    /// The meeting ends for its sessions on this signalling node: told why, and off
    /// their media node (the node that ended it asked for its own).
    fn end_here(&self, room: &str, reason: String) {
        let gone = self.directory.close_room(room);
        self.hub.tell(&gone, &ServerMsg::Closed { reason });
        for m in gone {
            if let Some(entry) = self.cluster.node_entry(m.node) {
                tokio::spawn(async move {
                    let _ = entry
                        .node
                        .done(control::Request::RemoveParticipant {
                            participant: m.participant,
                        })
                        .await;
                });
            }
        }
    }

    /// The room's settings as this node has them.
    fn settings_of(&self, room: &str) -> crate::shared::RoomSettings {
        crate::shared::RoomSettings {
            declared: self.directory.is_declared(room),
            pin: self.pins.get(room),
            video_codec: self.videos.of(room).name().map(str::to_owned),
            alias: self.aliases.alias_of(room),
            lobby: self.lobby.has(room),
        }
    }

    /// Take a room's settings from another signalling node (none: they go). The
    /// same again changes nothing (a PIN's count of wrong tries stays).
    pub fn apply_settings(&self, room: &str, settings: Option<crate::shared::RoomSettings>) {
        let s = settings.unwrap_or_default();
        let now = self.settings_of(room);
        if now.alias != s.alias && !self.aliases.set(room, s.alias.as_deref()) {
            tracing::warn!("a room's alias is another's here: not taken");
        }
        // Only a changed PIN is set again (setting it resets its wrong tries).
        if now.pin != s.pin {
            self.pins.set(room, s.pin.as_deref());
        }
        if now.video_codec != s.video_codec {
            let video = s
                .video_codec
                .as_deref()
                .and_then(control::RoomVideo::from_name);
            self.videos.set(room, video.unwrap_or_default());
        }
        if now.lobby != s.lobby {
            self.lobby.set(room, s.lobby);
        }
        if now.declared != s.declared {
            if s.declared {
                self.directory.declare(room);
            } else {
                self.directory.undeclare(room);
            }
        }
    }

    /// With other signalling nodes: the room's settings (`POST /api/rooms`) kept in
    /// Redis and told to them (none: the room was deleted); `false` if they could
    /// not be.
    pub async fn share_settings(&self, room: &str, deleted: bool) -> bool {
        let Some(shared) = self.cluster.shared() else {
            return true;
        };
        let settings = (!deleted).then(|| self.settings_of(room));
        if let Err(e) = shared.store_settings(room, settings).await {
            self.metrics.redis_errors.inc();
            tracing::warn!("Redis: a room's settings: {e}");
            return false;
        }
        true
    }

    /// With other signalling nodes: a room message for them.
    pub fn relay(&self, relay: crate::shared::Relay) {
        if let Some(shared) = self.cluster.shared() {
            shared.relay(relay);
        }
    }

    /// Everyone in the room but `me`: here, and on the other signalling nodes.
    pub async fn others(&self, room: &str, me: ParticipantId) -> Vec<ParticipantInfo> {
        let mut all = self.hub.others(room, me);
        if let Some(shared) = self.cluster.shared() {
            match shared.others(room).await {
                Ok(there) => all.extend(there.into_iter().filter(|(p, ..)| *p != me).map(
                    |(p, identity, sip)| ParticipantInfo {
                        participant: crate::messages::pid(p),
                        identity,
                        kind: sip.then_some("sip"),
                    },
                )),
                Err(e) => {
                    self.metrics.redis_errors.inc();
                    tracing::warn!("Redis: the room's members elsewhere: {e}");
                }
            }
        }
        all
    }

    /// Tell the room's hosts who waits in its waiting room now.
    pub fn tell_hosts(&self, room: &str) {
        let waiting = self.lobby.waiting(room);
        for host in self.lobby.hosts(room) {
            let msg = crate::messages::ServerMsg::Lobby {
                waiting: waiting.clone(),
            };
            self.hub.send_to(host, msg);
        }
    }

    /// Verify a bearer token for `room`, counting a refusal by its reason.
    pub fn verify_token(
        &self,
        token: Option<&str>,
        room: &str,
    ) -> Result<crate::token::Claims, crate::token::TokenError> {
        self.keys.verify(token, room).inspect_err(|e| {
            self.metrics
                .token_rejections
                .with_label_values(&[e.label()])
                .inc();
        })
    }

    /// A media node hands back a session it kept while this node was away (restart):
    /// it enters the directory on that node, the room hears of it, and a WebSocket
    /// session waits for its client to resume, with the node's unanswered offer
    /// queued (one nobody resumes within [`RESUME_WINDOW`] is let go on its node).
    /// Returns whether it was taken back; one that was not is the node's to let go.
    pub fn adopt(
        self: &std::sync::Arc<Self>,
        ev: control::NodeEvent,
        node: crate::directory::NodeId,
    ) -> bool {
        let control::NodeEvent::Carrying {
            room,
            participant,
            identity,
            kind,
            offer,
            tracks,
        } = ev
        else {
            return false;
        };
        if self.cluster.gave_out(participant) {
            // This run's own participant, whose node it lost meanwhile: it was told
            // to rejoin, and its session is over.
            return false;
        }
        // WebSocket sessions renegotiate; WHIP/WHEP ones do not, and have no client
        // that could resume them.
        let websocket = kind.renegotiates();
        let member = crate::directory::Membership {
            participant,
            room: room.clone(),
            identity: identity.clone(),
            via: if websocket {
                Via::WebSocket
            } else {
                Via::Carried
            },
            node,
            // What the node hands back says neither (its resume token says a SIP
            // call is one, to the room).
            sip: false,
            org: None,
        };
        let on = [crate::directory::Candidate {
            node,
            capacity: usize::MAX,
        }];
        if let Err(e) = self.directory.admit(member, &on) {
            tracing::warn!(
                participant = participant.0,
                "carried session not taken back: {e}"
            );
            return false;
        }
        if !self.rooms_on_join {
            // The earlier run had it declared: newcomers may still join it.
            self.directory.declare(&room);
        }
        self.metrics.sessions_carried.inc();
        // Those who resumed already hear of it; those who resume later see it listed.
        self.hub.broadcast(
            &room,
            Some(participant),
            &crate::messages::ServerMsg::ParticipantJoined {
                participant: crate::messages::pid(participant),
                identity: identity.to_string(),
                // Carried over a restart, a session's kind went with the earlier run.
                kind: None,
            },
        );
        if !websocket {
            return true;
        }
        self.hub.park(participant, offer.map(|sdp| (sdp, tracks)));
        let state = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RESUME_WINDOW).await;
            // Taken here or by the resume, whichever comes first: never both.
            if state.hub.resume(participant).is_some() {
                state.hub.unregister(participant);
                let _ = state.cluster.remove(participant).await;
                tracing::info!(
                    participant = participant.0,
                    "carried session not resumed: let go"
                );
            }
        });
        true
    }

    /// One event of any media node.
    pub fn on_node_event(&self, ev: control::NodeEvent) {
        use crate::records::directory::Event;
        use control::NodeEvent as E;
        let now = crate::records::now_ms;
        match &ev {
            E::ParticipantLeft { participant, .. } => {
                self.directory.remove(*participant);
            }
            // What the meeting's record says of its videos.
            E::LayerChanged { subscriber, .. } => {
                let _ = self.record_events.send(Event::LayerChanged(*subscriber));
            }
            E::Quality {
                participant,
                loss_mean_permille,
                loss_max_permille,
                loss_figures,
                jitter_max_ms,
                ..
            } => {
                let figures = (
                    *loss_mean_permille,
                    *loss_max_permille,
                    *loss_figures,
                    *jitter_max_ms,
                );
                let _ = self
                    .record_events
                    .send(Event::Received(*participant, figures));
            }
            E::VideoPaused {
                subscriber, track, ..
            } => {
                let paused = Event::VideoPaused(*subscriber, *track, true, now());
                let _ = self.record_events.send(paused);
            }
            E::VideoResumed {
                subscriber, track, ..
            } => {
                let resumed = Event::VideoPaused(*subscriber, *track, false, now());
                let _ = self.record_events.send(resumed);
            }
            _ => {}
        }
        self.hub.dispatch(ev);
    }

    pub fn update_node_gauges(&self) {
        let ready = self.cluster.ready_nodes();
        self.metrics
            .media_nodes
            .with_label_values(&["ready"])
            .set(ready as i64);
    }
}
