//! The WebRTC glue: one `str0m::Rtc` per participant, in RTP mode.
//!
//! A peer publishes the tracks its client offered to send, and receives every other
//! track of the room through sending slots that the node adds by renegotiation: the
//! node offers new `sendonly` m-lines, the client answers (one peer connection per
//! participant, server-initiated renegotiation). Payload types and header extensions
//! are mapped per slot: the core's decision says which packet goes where, this layer
//! writes it in the subscriber's own terms.

use std::sync::Arc;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::CodecSpec;
use str0m::media::{Direction, MediaKind, Mid, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc, Vp8Descriptor};
use str0m::Rtc;

use crate::core::{Codec, Forward, Kind, Layer, ParticipantId, Resume, TrackId, TrackSource};
use control::{NodeEvent, SlotTrack};

mod media;
pub mod quality;

pub use media::{clock_rate, codec_of, order_rids, parse_offer, published_from_media};
use media::{map_pt, OutPt};

/// A track this peer publishes.
#[derive(Debug)]
pub struct PublishedTrack {
    pub mid: Mid,
    pub track: TrackId,
    pub kind: Kind,
    /// Simulcast rids ordered from the lowest layer up; empty without simulcast.
    pub rids: Vec<Rid>,
}

/// Cached per received SSRC: which published track and layer it is.
#[derive(Clone, Copy, Debug)]
struct SsrcRoute {
    ssrc: u32,
    published: u16,
    layer: Layer,
}

/// A sending slot: one m-line carrying one subscribed track to this peer.
#[derive(Debug)]
pub struct Slot {
    pub mid: Mid,
    /// The track carried; `None` for a free fixed slot (WHEP).
    pub track: Option<TrackId>,
    pub kind: Kind,
    publisher: ParticipantId,
    source: TrackSource,
    pub ready: bool,
    /// The track is gone; the m-line is (or will be) inactive.
    retired: bool,
    /// Retired, and the client agreed to the m-line going inactive: the next track
    /// of its kind may take it (a renegotiating peer's SDP stays bounded).
    free: bool,
    /// The send stream's SSRC: str0m finds streams by SSRC in a hash map, by mid
    /// only with a scan.
    ssrc: Option<Ssrc>,
    /// Publisher payload type -> this peer's payload type for the same codec.
    pt_map: Vec<(u8, Option<OutPt>)>,
    /// Where the output stream is: a fixed slot that gets another track continues it.
    pub last_out: Option<Resume>,
    /// The core forwards into this slot (set once the peer is connected).
    pub forwarding: bool,
}

impl Slot {
    /// Its subscription to `track` queued again (an answer that was rejected).
    fn queued(&self, track: TrackId) -> Queued {
        Queued {
            track,
            kind: self.kind,
            publisher: self.publisher,
            source: self.source,
        }
    }
}

/// SSRC routes kept per published track: its layers, each with a few restarts.
const ROUTES_PER_TRACK: usize = crate::core::MAX_LAYERS * 4;

/// How a participant takes part (WebSocket client, WHIP publisher, WHEP viewer).
pub use control::JoinKind;

/// Codec details of a publisher's payload type, looked up once per (track, pt).
#[derive(Clone, Copy, Debug)]
pub struct PtInfo {
    pub pt: u8,
    pub codec: Codec,
    /// For RED (RFC 2198), the codec its blocks carry.
    pub spec: CodecSpec,
    /// RED: the payload type of its blocks (the publisher's Opus).
    pub red_of: Option<u8>,
}

/// One received packet as each subscriber's copy is made of it: parsed once, the
/// first time a subscriber needs it.
pub struct Source<'a> {
    pub pt: PtInfo,
    pub pkt: &'a RtpPacket,
    /// VP8's payload descriptor (each subscriber rewrites its picture numbers).
    pub vp8: Option<Vp8Descriptor>,
    /// RED's primary block alone, for subscribers that did not negotiate RED.
    primary: std::cell::OnceCell<Option<Arc<[u8]>>>,
}

impl<'a> Source<'a> {
    pub fn new(pt: PtInfo, pkt: &'a RtpPacket) -> Self {
        let vp8 = match pt.codec {
            Codec::Vp8 => Vp8Descriptor::parse(&pkt.payload).ok(),
            _ => None,
        };
        Source {
            pt,
            pkt,
            vp8,
            primary: std::cell::OnceCell::new(),
        }
    }

    fn primary(&self) -> Option<Arc<[u8]>> {
        self.primary
            .get_or_init(|| media::red_primary(&self.pkt.payload).map(Arc::from))
            .clone()
    }
}

/// One participant's str0m side: its `Rtc`, the tracks it publishes, the slots
/// (m-lines) that carry what it receives, and its connection's state.
pub struct Peer {
    rtc: Rtc,
    kind: JoinKind,
    participant: ParticipantId,
    room: Arc<str>,
    /// Who the participant is, as its token named it: given back to a signalling node
    /// that takes its sessions back after a restart.
    identity: Arc<str>,
    local_ufrag: String,
    published: Vec<PublishedTrack>,
    slots: Vec<Slot>,
    routes: Vec<SsrcRoute>,
    pts: Vec<PtInfo>,
    /// The offer awaiting the client's answer.
    pending: Option<PendingOffer>,
    /// The last answer taken: the same again (a client that answered a re-sent copy
    /// of an offer whose answer it thought lost) is no error.
    last_answer: Option<String>,
    /// Subscriptions waiting for the next negotiation round.
    queued: Vec<Queued>,
    /// The m-line its client kept for a screen share (see `control::JoinMedia`), and
    /// its simulcast rids once str0m reported it: published only while shared.
    screen: Option<(Mid, Option<Vec<Rid>>)>,
    /// Slots to retire in the next negotiation round.
    retire: Vec<Mid>,
    joined_at: Instant,
    connected: bool,
    /// When ICE reported Disconnected, until it recovers.
    disconnected_at: Option<Instant>,
    /// The addresses its datagrams came from (the demux knows them).
    addrs: Vec<crate::worker::Remote>,
    /// Last cumulative NACK counts per stream, to turn str0m's stats into counters.
    egress_nacks: Vec<((Mid, Option<Rid>), u64)>,
    /// What its receiver reports say, until the next quality report.
    pub quality: quality::ReceiveQuality,
    ingress_nacks: Vec<((Mid, Option<Rid>), u64)>,
}

/// A subscription waiting for an m-line.
#[derive(Clone, Copy, Debug)]
struct Queued {
    track: TrackId,
    kind: Kind,
    publisher: ParticipantId,
    source: TrackSource,
}

/// An offer sent, awaiting the client's answer.
struct PendingOffer {
    /// str0m's side of it.
    offer: SdpPendingOffer,
    /// The first slot it adds.
    first_new: usize,
    /// Free slots it gives new tracks, and slots it makes inactive.
    reused: Vec<usize>,
    retiring: Vec<Mid>,
    /// What the sending m-lines carry once it is answered.
    tracks: Vec<SlotTrack>,
    /// Its SDP: sent again while unanswered, and to a client that resumes its
    /// session after a signalling restart.
    sdp: String,
    sent_at: Instant,
    last_sent: Instant,
}

/// An unanswered offer is sent again after this long (a lost message, a client that
/// missed it): renegotiation must never stall on it.
pub const OFFER_RESEND: std::time::Duration = std::time::Duration::from_secs(10);
/// An offer unanswered this long, through its re-sends, fails the participant, by
/// default (`NodeConfig::offer_give_up`). A remote node makes it longer than its
/// participants may wait through a signalling restart (`--control-grace`, then the
/// 30 s a client has to resume), during which no answer can come.
pub const OFFER_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(75);

/// What negotiation produced.
pub enum Negotiation {
    /// Send this offer to the client, with what its m-lines carry; the answer goes
    /// to [`Peer::accept_answer`].
    Offer(String, Vec<SlotTrack>),
    Nothing,
}

impl Peer {
    pub fn new(
        rtc: Rtc,
        kind: JoinKind,
        participant: ParticipantId,
        (room, identity): (Arc<str>, Arc<str>),
        local_ufrag: String,
        now: Instant,
    ) -> Self {
        Peer {
            rtc,
            kind,
            participant,
            room,
            identity,
            local_ufrag,
            published: Vec::new(),
            slots: Vec::new(),
            routes: Vec::new(),
            pts: Vec::new(),
            pending: None,
            last_answer: None,
            queued: Vec::new(),
            screen: None,
            retire: Vec::new(),
            joined_at: now,
            connected: false,
            disconnected_at: None,
            addrs: Vec::new(),
            egress_nacks: Vec::new(),
            quality: quality::ReceiveQuality::default(),
            ingress_nacks: Vec::new(),
        }
    }

    pub fn rtc(&mut self) -> &mut Rtc {
        &mut self.rtc
    }

    pub fn rtc_ref(&self) -> &Rtc {
        &self.rtc
    }

    pub fn kind(&self) -> JoinKind {
        self.kind
    }

    pub fn participant(&self) -> ParticipantId {
        self.participant
    }

    pub fn room(&self) -> &Arc<str> {
        &self.room
    }

    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    pub fn addrs(&self) -> &[crate::worker::Remote] {
        &self.addrs
    }

    /// Datagrams now come from `addr` too (an ICE candidate pair of this peer).
    pub fn learn_addr(&mut self, addr: crate::worker::Remote) {
        self.addrs.push(addr);
    }

    /// Datagrams no longer come from `addr` (its ICE-TCP connection closed).
    pub fn forget_addr(&mut self, addr: crate::worker::Remote) {
        self.addrs.retain(|a| *a != addr);
    }

    /// The tracks it publishes.
    pub fn published(&self) -> &[PublishedTrack] {
        &self.published
    }

    /// A new track on m-line `p.mid`; false when that m-line already has one.
    pub fn add_published(&mut self, p: PublishedTrack) -> bool {
        if self.published.iter().any(|x| x.mid == p.mid) {
            return false;
        }
        self.published.push(p);
        true
    }

    /// The track it published on m-line `mid` ends (a screen share stopped): its
    /// packets are routed no more.
    pub fn remove_published(&mut self, mid: Mid) -> Option<PublishedTrack> {
        let i = self.published.iter().position(|p| p.mid == mid)?;
        // Routes name published tracks by index: found again on the next packet.
        self.routes.clear();
        Some(self.published.remove(i))
    }

    /// Keep m-line `mid` for a screen share: its track waits for [`Peer::screen`].
    pub fn keep_for_screen(&mut self, mid: Mid) {
        self.screen = Some((mid, None));
    }

    /// An m-line of the accepted offer, with its rids: true (and remembered) if it
    /// is the one kept for a screen share, which is not published at once.
    pub fn holds_screen(&mut self, mid: Mid, rids: &[Rid]) -> bool {
        match &mut self.screen {
            Some((m, held)) if *m == mid => {
                *held = Some(rids.to_vec());
                true
            }
            _ => false,
        }
    }

    /// The screen m-line and its rids, once its m-line was seen.
    pub fn screen(&self) -> Option<(Mid, &[Rid])> {
        let (mid, rids) = self.screen.as_ref()?;
        Some((*mid, rids.as_deref()?))
    }

    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// The slots negotiated and waiting for the connection, with their tracks.
    pub fn slots_waiting(&self) -> Vec<(usize, TrackId)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ready && !s.forwarding)
            .filter_map(|(i, s)| Some((i, s.track?)))
            .collect()
    }

    /// The core forwards into `slot` from now on: where its stream left off.
    pub fn start_forwarding(&mut self, slot: usize) -> Option<Resume> {
        let s = &mut self.slots[slot];
        s.forwarding = true;
        s.last_out
    }

    /// DTLS is up: media may flow. Returns when it joined.
    pub fn on_connected(&mut self) -> Instant {
        self.connected = true;
        self.joined_at
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// ICE reported Disconnected (`true`) or any other state (`false`) at `now`.
    pub fn on_ice_disconnected(&mut self, disconnected: bool, now: Instant) {
        if disconnected {
            self.disconnected_at.get_or_insert(now);
        } else {
            self.disconnected_at = None;
        }
    }

    /// Why this peer should go at `now`, if it should: never connected within
    /// `connect_timeout`, or ICE disconnected for over `ice_grace`.
    pub fn expired(
        &self,
        now: Instant,
        connect_timeout: std::time::Duration,
        ice_grace: std::time::Duration,
        offer_give_up: std::time::Duration,
    ) -> Option<&'static str> {
        if self
            .disconnected_at
            .is_some_and(|t| now.saturating_duration_since(t) > ice_grace)
        {
            Some("ice_disconnected")
        } else if !self.connected && now.saturating_duration_since(self.joined_at) > connect_timeout
        {
            Some("connect_timeout")
        } else if self
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.sent_at) > offer_give_up)
        {
            Some("offer_unanswered")
        } else {
            None
        }
    }

    /// str0m's NACK counts are cumulative per stream: how much the count of the
    /// stream `key` grew since its last report, sent (`egress`) or received.
    pub fn nacks_grown(&mut self, egress: bool, key: (Mid, Option<Rid>), total: u64) -> u64 {
        let last = if egress {
            &mut self.egress_nacks
        } else {
            &mut self.ingress_nacks
        };
        match last.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => total.saturating_sub(std::mem::replace(n, total)),
            None => {
                last.push((key, total));
                total
            }
        }
    }

    /// Which published track and layer an incoming packet belongs to.
    pub fn route(&mut self, pkt: &RtpPacket) -> Option<(usize, Layer)> {
        let ssrc = *pkt.header.ssrc;
        if let Some(r) = self.routes.iter().find(|r| r.ssrc == ssrc) {
            return Some((r.published as usize, r.layer));
        }
        // First packet of this SSRC: ask str0m which m-line and rid it is.
        let (mid, rid) = {
            let mut api = self.rtc.direct_api();
            let rx = api.stream_rx(&pkt.header.ssrc)?;
            (rx.mid(), rx.rid())
        };
        let idx = self.published.iter().position(|p| p.mid == mid)?;
        let p = &self.published[idx];
        let layer = match rid {
            Some(rid) => p.rids.iter().position(|r| *r == rid)? as Layer,
            None => 0,
        };
        // Bounded: a track's layers and a few encoder restarts each. A publisher that
        // sends more SSRCs loses its oldest routes (they are looked up again if used),
        // not the node's memory.
        if self.routes.len() >= ROUTES_PER_TRACK * self.published.len() {
            self.routes.remove(0);
        }
        self.routes.push(SsrcRoute {
            ssrc,
            published: idx as u16,
            layer,
        });
        Some((idx, layer))
    }

    /// Codec details for a received payload type.
    pub fn pt_info(&mut self, pt: u8) -> Option<PtInfo> {
        if let Some(i) = self.pts.iter().find(|i| i.pt == pt) {
            return Some(*i);
        }
        let config = self.rtc.codec_config();
        // RED has no params of its own in str0m: it hangs on the codec it carries.
        let (params, red_of) = match config.find(|p| *p.pt() == pt) {
            Some(p) => (p, None),
            None => {
                let p = config.find(|p| p.red().is_some_and(|r| *r == pt))?;
                (p, Some(*p.pt()))
            }
        };
        let spec = params.spec();
        let info = PtInfo {
            pt,
            codec: codec_of(spec.codec),
            spec,
            red_of,
        };
        self.pts.push(info);
        Some(info)
    }

    /// Queue a subscription; it becomes a slot at the next [`Peer::negotiate`], or,
    /// for a view-only peer, takes a free fixed slot at once (returned).
    pub fn subscribe(
        &mut self,
        track: TrackId,
        kind: Kind,
        (publisher, source): (ParticipantId, TrackSource),
    ) -> Option<usize> {
        self.queued.push(Queued {
            track,
            kind,
            publisher,
            source,
        });
        if self.kind == JoinKind::ViewOnly {
            return self.fill_fixed_slot(kind).map(|(slot, _)| slot);
        }
        None
    }

    /// A receive-only m-line of a view-only peer's offer, to be filled.
    pub fn add_fixed_slot(&mut self, mid: Mid, kind: Kind) -> Option<(usize, TrackId)> {
        let ssrc = self
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(unpaced);
        self.slots.push(Slot {
            mid,
            track: None,
            kind,
            publisher: ParticipantId(0),
            source: TrackSource::Camera,
            ready: ssrc.is_some(),
            retired: false,
            free: false,
            ssrc,
            pt_map: Vec::new(),
            last_out: None,
            forwarding: false,
        });
        self.fill_fixed_slot(kind)
    }

    /// Bind the oldest waiting track of `kind` to a free fixed slot.
    fn fill_fixed_slot(&mut self, kind: Kind) -> Option<(usize, TrackId)> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.track.is_none() && s.kind == kind && s.ready)?;
        let q = self.queued.iter().position(|q| q.kind == kind)?;
        let q = self.queued.remove(q);
        let s = &mut self.slots[slot];
        s.track = Some(q.track);
        s.publisher = q.publisher;
        s.source = q.source;
        s.pt_map.clear();
        Some((slot, q.track))
    }

    /// Retire the slot of a track that is gone. A view-only peer's fixed slot is
    /// freed and refilled with a waiting track if there is one (returned).
    pub fn unsubscribe(&mut self, track: TrackId) -> Option<(usize, TrackId)> {
        self.queued.retain(|q| q.track != track);
        if self.kind == JoinKind::ViewOnly {
            let slot = self.slots.iter_mut().find(|s| s.track == Some(track))?;
            slot.track = None;
            slot.forwarding = false;
            let kind = slot.kind;
            return self.fill_fixed_slot(kind);
        }
        for slot in self
            .slots
            .iter_mut()
            .filter(|s| s.track == Some(track) && !s.retired)
        {
            slot.retired = true;
            // A slot still in an open offer is retired when the answer arrives.
            if slot.ready {
                slot.ready = false;
                self.retire.push(slot.mid);
            }
        }
        None
    }

    /// Start a negotiation round if changes wait and none is under way.
    pub fn negotiate(&mut self, now: Instant) -> Negotiation {
        let idle = self.queued.is_empty() && self.retire.is_empty();
        if !self.kind.renegotiates() || self.pending.is_some() || idle {
            return Negotiation::Nothing;
        }
        let first_new = self.slots.len();
        let mut reused = Vec::new();
        let mut api = self.rtc.sdp_api();
        let retiring: Vec<Mid> = self.retire.drain(..).collect();
        for &mid in &retiring {
            api.set_direction(mid, Direction::Inactive);
        }
        for Queued {
            track,
            kind,
            publisher,
            source,
        } in self.queued.drain(..)
        {
            // A free m-line of the same kind takes the track: sending again, with
            // the output stream (SSRC, sequence, timestamps) going on where the last
            // track left it.
            let free = self.slots.iter().position(|s| s.free && s.kind == kind);
            if let Some(i) = free {
                let s = &mut self.slots[i];
                s.free = false;
                s.retired = false;
                s.track = Some(track);
                s.publisher = publisher;
                s.source = source;
                s.pt_map.clear();
                s.forwarding = false;
                api.set_direction(s.mid, Direction::SendOnly);
                reused.push(i);
                continue;
            }
            let mkind = match kind {
                Kind::Audio => MediaKind::Audio,
                Kind::Video => MediaKind::Video,
            };
            // The stream id names the publisher, so clients group its audio and video
            // and know whom they show.
            let mid = api.add_media(
                mkind,
                Direction::SendOnly,
                Some(format!("p{}", publisher.0)),
                Some(format!("t{}", track.0)),
                None,
            );
            self.slots.push(Slot {
                mid,
                track: Some(track),
                kind,
                publisher,
                source,
                ready: false,
                retired: false,
                free: false,
                ssrc: None,
                pt_map: Vec::new(),
                last_out: None,
                forwarding: false,
            });
        }
        match api.apply() {
            Some((offer, pending)) => {
                let sdp = offer.to_sdp_string();
                let tracks = self.tracks();
                self.pending = Some(PendingOffer {
                    offer: pending,
                    first_new,
                    reused,
                    retiring,
                    tracks: tracks.clone(),
                    sdp: sdp.clone(),
                    sent_at: now,
                    last_sent: now,
                });
                Negotiation::Offer(sdp, tracks)
            }
            None => {
                // Nothing to tell the client: str0m had these inactive already (their
                // earlier offer's answer was rejected after str0m took the change).
                for s in &mut self.slots {
                    if s.retired && retiring.contains(&s.mid) {
                        s.free = true;
                        s.track = None;
                    }
                }
                Negotiation::Nothing
            }
        }
    }

    /// What each sending m-line carries (retired ones nothing).
    fn tracks(&self) -> Vec<SlotTrack> {
        self.slots
            .iter()
            .filter(|s| !s.retired)
            .filter_map(|s| {
                Some(SlotTrack {
                    mid: s.mid.to_string(),
                    publisher: s.publisher,
                    track: s.track?,
                    kind: s.kind,
                    source: s.source,
                })
            })
            .collect()
    }

    /// The client's answer to our last offer. Returns the slots that became ready.
    /// A rejected answer drops the round's new slots and queues their tracks again,
    /// so the next round offers them anew; the slots it reused or retired are
    /// retired (again) in the next round.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Vec<usize>, String> {
        // An answer given again (its offer came again; answers to different offers
        // differ, in their o= version at least): taken already, whatever is pending
        // now.
        if self.last_answer.as_deref() == Some(sdp) {
            return Ok(Vec::new());
        }
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("bad SDP answer: {e}"))?;
        let Some(PendingOffer {
            offer,
            first_new,
            reused,
            retiring,
            ..
        }) = self.pending.take()
        else {
            return Err("no offer is awaiting an answer".into());
        };
        if let Err(e) = self.rtc.sdp_api().accept_answer(offer, answer) {
            for s in self.slots.drain(first_new..) {
                if let (false, Some(track)) = (s.retired, s.track) {
                    self.queued.push(s.queued(track));
                }
            }
            // The reused slots go inactive again first (str0m took their new
            // direction already), then serve again once that is agreed.
            for &i in &reused {
                let s = &mut self.slots[i];
                if let (false, Some(track)) = (s.retired, s.track.take()) {
                    self.queued.push(s.queued(track));
                }
                s.retired = true;
                self.retire.push(s.mid);
            }
            self.retire.extend(retiring);
            return Err(format!("answer rejected: {e}"));
        }
        self.last_answer = Some(sdp.to_owned());
        for s in &mut self.slots {
            if s.retired && retiring.contains(&s.mid) {
                s.free = true;
                s.track = None;
            }
        }
        let mut api = self.rtc.direct_api();
        let mut ready = Vec::new();
        for i in reused.into_iter().chain(first_new..self.slots.len()) {
            let s = &mut self.slots[i];
            if s.retired {
                // Its track ended while the offer was out.
                self.retire.push(s.mid);
                continue;
            }
            s.ssrc = api.stream_tx_by_mid(s.mid, None).map(unpaced);
            s.ready = s.ssrc.is_some();
            ready.push(i);
        }
        Ok(ready)
    }

    /// Whether an offer awaits the client's answer.
    pub fn offer_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The unanswered offer, to send again if it was last sent [`OFFER_RESEND`] ago.
    pub fn offer_to_resend(&mut self, now: Instant) -> Option<(String, Vec<SlotTrack>)> {
        let p = self.pending.as_mut()?;
        if now.saturating_duration_since(p.last_sent) < OFFER_RESEND {
            return None;
        }
        p.last_sent = now;
        Some((p.sdp.clone(), p.tracks.clone()))
    }

    /// The session as a signalling node needs it to take it back (see
    /// `NodeEvent::Carrying`).
    pub fn carried(&self) -> NodeEvent {
        NodeEvent::Carrying {
            room: self.room.clone(),
            participant: self.participant,
            identity: self.identity.clone(),
            kind: self.kind,
            offer: self.pending.as_ref().map(|p| p.sdp.clone()),
            tracks: match &self.pending {
                Some(p) => p.tracks.clone(),
                None => self.tracks(),
            },
        }
    }

    /// Write a forwarded packet into a slot, in the subscriber's terms (payload
    /// type; RED unwrapped for a subscriber without it; VP8 picture numbers).
    pub fn write(&mut self, slot: usize, src: &Source, f: &Forward, now: Instant) -> bool {
        let (in_pt, pkt) = (&src.pt, src.pkt);
        let Some(s) = self.slots.get_mut(slot) else {
            return false;
        };
        if !s.ready {
            return false;
        }
        let out_pt = match s.pt_map.iter().find(|(i, _)| *i == in_pt.pt) {
            Some((_, o)) => *o,
            None => {
                let o = map_pt(&self.rtc, s.mid, &in_pt.spec, in_pt.red_of);
                s.pt_map.push((in_pt.pt, o));
                o
            }
        };
        let Some(out_pt) = out_pt else {
            return false; // the subscriber did not accept this codec
        };
        let payload = if out_pt.unwrap_red {
            match src.primary() {
                Some(p) => p,
                None => return false, // a RED payload that does not parse
            }
        } else {
            pkt.payload.clone()
        };
        let Some(ssrc) = s.ssrc else {
            return false;
        };
        let video = s.kind == Kind::Video;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx(&ssrc) else {
            return false;
        };
        let got = &pkt.header.ext_vals;
        let ext = ExtensionValues {
            audio_level: got.audio_level,
            voice_activity: got.voice_activity,
            video_orientation: got.video_orientation,
            ..Default::default()
        };
        let (seq, ts) = (f.seq, f.ts);
        // Where the stream is: a late packet (a retransmission's straggler) does not
        // take it back.
        if s.last_out.is_none_or(|r| seq > r.seq) {
            s.last_out = Some(Resume {
                seq,
                ts,
                at: now,
                picture: f.picture,
            });
        }
        let mut write = RtpWrite::new(out_pt.pt.into(), seq.into(), ts, now, payload)
            .marker(pkt.header.marker)
            .ext_vals(ext)
            .nackable(video);
        // The subscriber's own picture numbers, patched in as str0m serializes the
        // packet (same length: no copy of the payload here).
        if let (Some(d), Some(p)) = (&src.vp8, f.picture) {
            let build = |id: u16| {
                let patch = d.patch().picture_id(id);
                match p.tl0 {
                    Some(tl0) => patch.tl0_pic_idx(tl0),
                    None => patch,
                }
                .build()
            };
            // A short (7-bit) PictureID keeps its width: the count's low bits.
            if let Ok(patch) = build(p.id).or_else(|_| build(p.id & 0x7f)) {
                write = write.vp8_patch(patch);
            }
        }
        tx.write_rtp(write);
        true
    }

    pub fn slot_of_mid(&self, mid: Mid) -> Option<usize> {
        self.slots.iter().position(|s| s.mid == mid)
    }
}

/// Forwarded media leaves at once: the allocator keeps each subscriber within its
/// estimate by choosing layers, and str0m's pacer (1.1x the estimate) would hold
/// every video frame for about a frame time, which is forwarding delay a subscriber
/// sees. BWE still gets TWCC feedback on every packet and probes with padding.
fn unpaced(tx: &mut str0m::rtp::StreamTx) -> Ssrc {
    tx.set_unpaced(true);
    tx.ssrc()
}
