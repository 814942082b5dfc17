//! The routing core's actions, carried out on the peers: keyframe requests to a
//! publisher, subscriptions that become (or stop being) m-lines, bitrate targets for
//! a subscriber's BWE, and room events for the control plane.

use std::sync::Arc;
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::media::KeyframeRequestKind;

use super::Worker;
use crate::core::{Action, RoomEvent, Sink, TrackId};
use crate::peer::Negotiation;
use control::NodeEvent;

impl Worker {
    pub(super) fn apply_actions(&mut self) {
        let mut actions = std::mem::take(&mut self.actions);
        for a in actions.drain(..) {
            self.apply(a);
        }
        // Keep the capacity; anything pushed meanwhile is handled in the next round.
        actions.append(&mut self.actions);
        self.actions = actions;
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::RequestKeyframe {
                publisher,
                track,
                layer,
            } => {
                let Some((idx, p)) = self.peer_mut(publisher) else {
                    return;
                };
                let Some(pubd) = p.published().iter().find(|x| x.track == track) else {
                    return;
                };
                let (mid, rid) = (pubd.mid, pubd.rids.get(layer as usize).copied());
                let mut api = p.rtc().direct_api();
                let asked = api
                    .stream_rx_by_mid(mid, rid)
                    .map(|rx| rx.request_keyframe(KeyframeRequestKind::Pli))
                    .is_some();
                if asked {
                    self.metrics.pli_sent.inc();
                }
                self.touch(idx);
            }
            Action::Subscribe {
                subscriber,
                track,
                kind,
                publisher,
                source,
            } => {
                let Some((idx, p)) = self.peer_mut(subscriber) else {
                    return;
                };
                match p.subscribe(track, kind, (publisher, source)) {
                    Some(slot) => self.bind_slot(self.now, idx, slot, track),
                    None => self.negotiate.push(idx),
                }
            }
            Action::Unsubscribe {
                subscriber, track, ..
            } => {
                let Some((idx, p)) = self.peer_mut(subscriber) else {
                    return;
                };
                match p.unsubscribe(track) {
                    Some((slot, next)) => self.bind_slot(self.now, idx, slot, next),
                    None => self.negotiate.push(idx),
                }
            }
            Action::SetBitrate {
                subscriber,
                min_bps,
                desired_bps,
            } => {
                let Some((idx, p)) = self.peer_mut(subscriber) else {
                    return;
                };
                p.rtc()
                    .bwe()
                    .set_bitrate(Bitrate::bps(min_bps), Bitrate::bps(desired_bps));
                self.touch(idx);
            }
            Action::Event(e) => {
                let Some(room) = self.room_of_event(&e) else {
                    return;
                };
                let ev = match e {
                    RoomEvent::TrackPublished {
                        track,
                        publisher,
                        kind,
                        source,
                    } => NodeEvent::TrackPublished {
                        room,
                        participant: publisher,
                        track,
                        kind,
                        source,
                    },
                    RoomEvent::TrackUnpublished { track, publisher } => {
                        NodeEvent::TrackUnpublished {
                            room,
                            participant: publisher,
                            track,
                        }
                    }
                    RoomEvent::LayerChanged {
                        subscriber,
                        track,
                        layer,
                    } => {
                        self.metrics.layer_switches.inc();
                        NodeEvent::LayerChanged {
                            room,
                            subscriber,
                            track,
                            layer,
                        }
                    }
                    RoomEvent::VideoPaused { subscriber, track } => NodeEvent::VideoPaused {
                        room,
                        subscriber,
                        track,
                    },
                    RoomEvent::VideoResumed { subscriber, track } => NodeEvent::VideoResumed {
                        room,
                        subscriber,
                        track,
                    },
                    RoomEvent::ActiveSpeaker { participant } => {
                        NodeEvent::ActiveSpeaker { room, participant }
                    }
                };
                self.emit(ev);
            }
        }
    }

    /// A fixed slot now carries `track`: forward into it, continuing its stream.
    /// Until the subscriber's connection is up (DTLS done), nothing is forwarded to
    /// it: str0m would hold the packets and release them late, all at once. Slots
    /// negotiated before that are bound when `Event::Connected` comes.
    pub(super) fn bind_slot(&mut self, now: Instant, idx: u32, slot: usize, track: TrackId) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        if !p.is_connected() {
            return;
        }
        let resume = p.start_forwarding(slot);
        let (participant, room) = (p.participant(), p.room().clone());
        if let Some(r) = self.rooms.get_mut(&room) {
            let sink = Sink {
                peer: idx,
                slot: slot as u32,
            };
            r.subscription_ready(now, participant, track, sink, resume, &mut self.actions);
        }
    }

    fn room_of_event(&self, e: &RoomEvent) -> Option<Arc<str>> {
        let p = match e {
            RoomEvent::TrackPublished { publisher, .. }
            | RoomEvent::TrackUnpublished { publisher, .. } => *publisher,
            RoomEvent::LayerChanged { subscriber, .. }
            | RoomEvent::VideoPaused { subscriber, .. }
            | RoomEvent::VideoResumed { subscriber, .. } => *subscriber,
            RoomEvent::ActiveSpeaker { participant } => *participant,
        };
        let idx = self.peer_of(p)?;
        self.peers[idx as usize].as_ref().map(|p| p.room().clone())
    }

    pub(super) fn renegotiate(&mut self, idx: u32) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        if let Negotiation::Offer(sdp, tracks) = p.negotiate(self.now) {
            let ev = NodeEvent::Offer {
                room: p.room().clone(),
                participant: p.participant(),
                sdp,
                tracks,
            };
            self.emit(ev);
        }
        self.touch(idx);
    }
}
