//! str0m's events, turned into the routing core's inputs: a packet to route, a track
//! published (an accepted offer's m-line), a keyframe request, a bandwidth estimate,
//! a connection that came up or went away.

use std::sync::atomic::Ordering;
use std::time::Instant;

use str0m::bwe::BweKind;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::rtp::RtpPacket;
use str0m::{Event, IceConnectionState};

use super::{kind_label, mark, Worker};
use crate::core::keyframe::is_keyframe_start;
use crate::core::{Kind, PacketIn, Picture, Sink, TrackId, TrackSource};
use crate::peer::{self, JoinKind, Source};
use control::NodeEvent;

impl Worker {
    pub(super) fn on_event(&mut self, idx: u32, ev: Event) {
        let now = self.now;
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        match ev {
            Event::RtpPacket(pkt) => self.on_rtp(now, idx, pkt),
            Event::Connected => {
                let joined_at = p.on_connected();
                for (slot, track) in p.slots_waiting() {
                    self.bind_slot(now, idx, slot, track);
                }
                let Some(p) = self.peers[idx as usize].as_mut() else {
                    return;
                };
                self.node_metrics
                    .join_duration
                    .observe(now.saturating_duration_since(joined_at).as_secs_f64());
                let ev = NodeEvent::Connected {
                    room: p.room().clone(),
                    participant: p.participant(),
                };
                self.emit(ev);
            }
            // ICE may recover from Disconnected (a new nomination): give it time.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                p.on_ice_disconnected(true, now);
            }
            Event::IceConnectionStateChange(_) => p.on_ice_disconnected(false, now),
            Event::MediaAdded(m) => {
                let rids = m
                    .simulcast
                    .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l.rid)
                    .collect();
                if p.kind() == JoinKind::ViewOnly {
                    // A receive-only m-line of a WHEP offer: a slot for the room's tracks.
                    if m.direction == Direction::SendOnly {
                        let kind = if m.kind == MediaKind::Audio {
                            Kind::Audio
                        } else {
                            Kind::Video
                        };
                        if let Some((slot, track)) = p.add_fixed_slot(m.mid, kind) {
                            self.bind_slot(now, idx, slot, track);
                        }
                    }
                    return;
                }
                if !p.kind().publishes() {
                    return; // a viewer's offer was checked at its join; nothing to route
                }
                let Some((mid, kind, rids)) =
                    peer::published_from_media(m.mid, m.kind, m.direction, rids)
                else {
                    return;
                };
                // The m-line kept for a screen share waits until it is shared.
                if kind == Kind::Video && p.holds_screen(mid, &rids) {
                    return;
                }
                self.publish(idx, (mid, kind, rids), TrackSource::Camera);
            }
            Event::KeyframeRequest(req) => {
                match req.kind {
                    KeyframeRequestKind::Pli => self.metrics.pli_received.inc(),
                    KeyframeRequestKind::Fir => self.metrics.fir_received.inc(),
                }
                let Some(slot) = p.slot_of_mid(req.mid) else {
                    return;
                };
                let (track, participant, room) =
                    (p.slot(slot).track, p.participant(), p.room().clone());
                if let (Some(r), Some(track)) = (self.rooms.get_mut(&room), track) {
                    r.on_keyframe_request(now, participant, track, &mut self.actions);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                let bps = estimate.as_u64();
                self.node_metrics.bwe_estimate.observe(bps as f64);
                let (participant, room) = (p.participant(), p.room().clone());
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.set_estimate(participant, bps);
                }
            }
            Event::MediaEgressStats(s) => {
                let delta = p.nacks_grown(true, (s.mid, s.rid), s.nacks);
                self.metrics.nacks_received.inc_by(delta);
                // Jitter is in RTP units of the stream's clock: video's 90 kHz, Opus's
                // 48 kHz.
                let clock_rate = match p.slot_of_mid(s.mid).map(|i| p.slot(i).kind) {
                    Some(Kind::Video) => 90_000,
                    Some(Kind::Audio) => 48_000,
                    None => 0,
                };
                let jitter = s.remote.as_ref().map(|r| (r.jitter, clock_rate));
                p.quality.add(now, s.loss, jitter);
            }
            Event::MediaIngressStats(s) => {
                let delta = p.nacks_grown(false, (s.mid, s.rid), s.nacks);
                self.metrics.nacks_sent.inc_by(delta);
            }
            Event::Closed => self.remove.push((idx, "closed")),
            _ => {}
        }
    }

    /// Publish what m-line `mid` of peer `idx` sends as a new track of its room.
    pub(super) fn publish(
        &mut self,
        idx: u32,
        (mid, kind, rids): (Mid, Kind, Vec<Rid>),
        source: TrackSource,
    ) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        let track = TrackId(self.track_ids.fetch_add(1, Ordering::Relaxed));
        let layers = rids.len().max(1) as u8;
        let published = peer::PublishedTrack {
            mid,
            track,
            kind,
            rids,
        };
        if !p.add_published(published) {
            return; // that m-line publishes a track already
        }
        let (participant, room) = (p.participant(), p.room().clone());
        // The codec is known per packet; the track's codec is what the client
        // listed first for the m-line.
        let codec = p
            .rtc()
            .media(mid)
            .and_then(|m| m.remote_pts().first().copied())
            .and_then(|pt| p.pt_info(*pt))
            .map_or(crate::core::Codec::Other, |i| i.codec);
        if let Some(r) = self.rooms.get_mut(&room) {
            r.publish(
                track,
                participant,
                (kind, source),
                codec,
                peer::clock_rate(kind),
                layers,
                &mut self.actions,
            );
        }
        self.node_metrics
            .tracks
            .with_label_values(&[kind_label(kind)])
            .inc();
    }

    /// A publisher's packet: the room decides who gets it; write it to each.
    fn on_rtp(&mut self, now: Instant, idx: u32, pkt: RtpPacket) {
        let Some(p) = self.peers[idx as usize].as_mut() else {
            return;
        };
        let Some((pi, layer)) = p.route(&pkt) else {
            return;
        };
        let Some(pt) = p.pt_info(*pkt.header.payload_type) else {
            return;
        };
        let published = &p.published()[pi];
        let (track, kind) = (published.track, published.kind);
        let src = Source::new(pt, &pkt);
        let picture = src.vp8.and_then(|d| {
            Some(Picture {
                id: d.picture_id()?,
                tl0: d.tl0_pic_idx(),
            })
        });
        let pin = PacketIn {
            layer,
            ssrc: *pkt.header.ssrc,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            keyframe: kind == Kind::Audio || is_keyframe_start(pt.codec, &pkt.payload),
            payload_len: pkt.payload.len(),
            audio_level: pkt.header.ext_vals.audio_level,
            picture,
        };
        let Some(room) = self.rooms.get_mut(&**p.room()) else {
            return;
        };
        let mut forwards = std::mem::take(&mut self.forwards);
        forwards.clear();
        if !room.on_packet(now, track, &pin, &mut forwards, &mut self.actions) {
            self.metrics.dropped_over_rate.inc();
        }
        for f in &forwards {
            let Sink { peer, slot } = f.sink;
            let Some(sub) = self.peers.get_mut(peer as usize).and_then(|p| p.as_mut()) else {
                continue;
            };
            if sub.write(slot as usize, &src, f, now) {
                self.metrics.forwarded.inc();
                // Drained once at the end of the turn, with everything else written
                // to this subscriber meanwhile.
                mark(&mut self.touched, &mut self.is_touched, peer);
            }
        }
        self.forwards = forwards;
    }
}
