//! The control plane's commands: joins (a peer built off the shard is adopted here),
//! answers to the node's offers, layer preferences, leaves, room closes and figures;
//! and teardown, which every way of leaving ends in.

use std::sync::atomic::Ordering;
use std::time::Instant;

use str0m::Output;

use super::{kind_label, Worker};
use crate::command::{Command, NewPeer};
use crate::core::{Action, Kind, ParticipantId, Room, RoomEvent, TrackId, TrackSource};
use crate::peer::Peer;
use control::{ControlError, NodeEvent};

impl Worker {
    /// One command of the control plane, and all it causes.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        let now = self.advance(now);
        {
            match cmd {
                Command::AddPeer(np) => self.add_peer(now, *np),
                Command::RemovePeer(participant) => {
                    if let Some(idx) = self.peer_of(participant) {
                        self.remove.push((idx, ""));
                    }
                }
                Command::Answer {
                    participant,
                    sdp,
                    reply,
                } => {
                    let r = self.on_answer(now, participant, &sdp);
                    let _ = reply.send(r);
                }
                Command::SetPreference {
                    participant,
                    track,
                    pref,
                    reply,
                } => {
                    let r = match self
                        .peer_of(participant)
                        .and_then(|i| self.peers[i as usize].as_ref())
                    {
                        None => Err(ControlError::NoSuchParticipant),
                        Some(p) => {
                            let room = p.room().clone();
                            let done = self.rooms.get_mut(&room).is_some_and(|r| {
                                r.set_preference(now, participant, track, pref, &mut self.actions)
                            });
                            if done {
                                Ok(())
                            } else {
                                Err(ControlError::NoSuchTrack)
                            }
                        }
                    };
                    let _ = reply.send(r);
                }
                Command::CloseRoom(room) => {
                    for (i, p) in self.peers.iter().enumerate() {
                        if p.as_ref().is_some_and(|p| *p.room() == room) {
                            self.remove.push((i as u32, ""));
                        }
                    }
                }
                Command::RoomStats { room, reply } => {
                    let r = self
                        .rooms
                        .get(&room)
                        .map(|r| r.figures())
                        .ok_or(ControlError::NoSuchRoom);
                    let _ = reply.send(r);
                }
                Command::Screen {
                    participant,
                    on,
                    reply,
                } => {
                    let r = self.screen(participant, on);
                    let _ = reply.send(r);
                }
                Command::HoldAudio {
                    participant,
                    held,
                    reply,
                } => {
                    let room = self.peer_mut(participant).map(|(_, p)| p.room().clone());
                    let held = room
                        .and_then(|r| self.rooms.get_mut(&r))
                        .is_some_and(|r| r.hold_audio(participant, held));
                    let r = if held {
                        Ok(())
                    } else {
                        Err(ControlError::NoSuchParticipant)
                    };
                    let _ = reply.send(r);
                }
                Command::Sessions(reply) => {
                    let carried = self.peers.iter().flatten().map(Peer::carried).collect();
                    let _ = reply.send(Ok(carried));
                }
                Command::Shutdown => self.shutdown = true,
            }
        }
        self.process();
    }

    fn add_peer(&mut self, now: Instant, np: NewPeer) {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.peers.push(None);
                (self.peers.len() - 1) as u32
            }
        };
        let NewPeer {
            rtc,
            kind,
            participant,
            identity,
            room,
            local_ufrag,
            screen,
        } = np;
        self.by_participant.insert(participant, idx);
        self.demux.add_peer(idx, &local_ufrag);
        self.peers[idx as usize] = Some(Peer::new(
            rtc,
            kind,
            participant,
            (room.clone(), identity.clone()),
            local_ufrag,
            now,
        ));
        if let (Some(mid), Some(p)) = (screen, self.peers[idx as usize].as_mut()) {
            p.keep_for_screen(mid);
        }
        self.timers.cancel(idx);
        let r = self.rooms.entry(room.clone()).or_insert_with(|| {
            self.node_metrics.rooms.inc();
            self.shared.rooms.fetch_add(1, Ordering::Relaxed);
            Room::new()
        });
        r.add_participant(participant, kind.receives(), &mut self.actions);
        self.node_metrics.participants.inc();
        self.shared.participants.fetch_add(1, Ordering::Relaxed);
        self.emit(NodeEvent::ParticipantJoined {
            room,
            participant,
            identity,
        });
        // The accepted offer left MediaAdded events in the Rtc: drained this turn.
        self.touch(idx);
        self.process();
    }

    /// The participant starts or stops sharing its screen on the m-line it kept.
    fn screen(&mut self, participant: ParticipantId, on: bool) -> Result<(), ControlError> {
        let (idx, p) = self
            .peer_mut(participant)
            .ok_or(ControlError::NoSuchParticipant)?;
        let Some((mid, rids)) = p.screen() else {
            return Err(ControlError::NoSuchTrack);
        };
        let rids = rids.to_vec();
        let shared = p.published().iter().find(|t| t.mid == mid).map(|t| t.track);
        let room = p.room().clone();
        // One shared screen a room: a second would compete with the first for every
        // subscriber's estimate (the allocator serves screens before all cameras).
        let taken = self.rooms.get(&room).is_some_and(|r| {
            r.tracks()
                .any(|t| t.source == TrackSource::Screen && t.publisher != participant)
        });
        match (on, shared) {
            (true, None) if taken => return Err(ControlError::ScreenTaken),
            (true, None) => self.publish(idx, (mid, Kind::Video, rids), TrackSource::Screen),
            (false, Some(track)) => {
                if let Some((_, p)) = self.peer_mut(participant) {
                    p.remove_published(mid);
                }
                self.node_metrics
                    .tracks
                    .with_label_values(&[kind_label(Kind::Video)])
                    .dec();
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.unpublish(track, &mut self.actions);
                }
            }
            // Shared already, or not shared: nothing changes.
            _ => {}
        }
        self.touch(idx);
        Ok(())
    }

    fn on_answer(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        sdp: &str,
    ) -> Result<(), ControlError> {
        let idx = self
            .peer_of(participant)
            .ok_or(ControlError::NoSuchParticipant)?;
        let p = self.peers[idx as usize]
            .as_mut()
            .ok_or(ControlError::NoSuchParticipant)?;
        let ready = p.accept_answer(sdp);
        // Another round: what queued meanwhile, or what a rejected answer re-queued.
        self.negotiate.push(idx);
        let ready = ready.map_err(ControlError::BadAnswer)?;
        let tracks: Vec<(usize, TrackId)> = ready
            .into_iter()
            .filter_map(|i| Some((i, p.slot(i).track?)))
            .collect();
        for (slot, track) in tracks {
            self.bind_slot(now, idx, slot, track);
        }
        self.touch(idx);
        Ok(())
    }

    pub(super) fn remove_peer(&mut self, idx: u32, reason: &'static str) {
        let Some(mut p) = self.peers[idx as usize].take() else {
            return;
        };
        // str0m 0.25's disconnect only marks the Rtc closed (it sends no DTLS
        // close_notify or RTCP BYE): the client learns from ICE. Flush what the Rtc
        // still had queued.
        p.rtc().disconnect();
        while let Ok(out) = p.rtc().poll_output() {
            match out {
                Output::Transmit(t) => self.sockets.send(&t),
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        self.free.push(idx);
        self.timers.cancel(idx);
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(p.participant());
        self.by_participant.remove(&p.participant());
        self.demux.remove_peer(p.local_ufrag(), p.addrs());
        self.sockets.tcp_gone.extend(
            p.addrs()
                .iter()
                .filter(|(proto, _)| *proto == str0m::net::Protocol::Tcp)
                .map(|(_, a)| *a),
        );
        self.queue.retain(|(i, _)| *i != idx);
        self.negotiate.retain(|i| *i != idx);
        self.node_metrics.participants.dec();
        self.shared.participants.fetch_sub(1, Ordering::Relaxed);
        for pubd in p.published() {
            self.node_metrics
                .tracks
                .with_label_values(&[kind_label(pubd.kind)])
                .dec();
        }
        if let Some(r) = self.rooms.get_mut(p.room()) {
            r.remove_participant(p.participant(), &mut self.actions);
            if r.is_empty() {
                self.rooms.remove(p.room());
                self.node_metrics.rooms.dec();
                self.shared.rooms.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Events of the unpublished tracks need the room name; emit them here.
        let mut pending = std::mem::take(&mut self.actions);
        for a in pending.drain(..) {
            match a {
                Action::Event(RoomEvent::TrackUnpublished { track, publisher }) => {
                    self.emit(NodeEvent::TrackUnpublished {
                        room: p.room().clone(),
                        participant: publisher,
                        track,
                    });
                }
                other => self.actions.push(other),
            }
        }
        if !reason.is_empty() {
            self.node_metrics
                .peer_failures
                .with_label_values(&[reason])
                .inc();
            self.emit(NodeEvent::PeerFailed {
                room: p.room().clone(),
                participant: p.participant(),
                reason: reason.to_string(),
            });
        }
        self.emit(NodeEvent::ParticipantLeft {
            room: p.room().clone(),
            participant: p.participant(),
        });
    }
}
