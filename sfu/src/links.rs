//! Which signalling node speaks for each participant, when a media node serves
//! several (`sfu --signalling A --signalling B`: signalling nodes sharing their state
//! in Redis). A participant belongs to the link its join came over; its own events
//! (offers, its connection, its quality) go there alone, a room's events (who joined
//! or left, tracks, the speaker) to every link with someone in the room. A link that
//! drops has its participants handed to a live link (as `NodeEvent::Carrying`, then
//! what was held for them), whose signalling node takes them back while their clients
//! resume there; with no live link they wait, and are let go after the grace period.
//!
//! Plain state, no I/O: the driver (`remote`) feeds it requests, events and link
//! changes, and sends what it queues.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::{NodeEvent, ParticipantId, Request};

/// A control link, by its place in `--signalling`.
pub type LinkId = usize;

/// Events held for one link while it is down (or slow): beyond this, news the next
/// of its kind replaces (the speaker, a layer, a quality report) is dropped; beyond
/// [`HELD_MOST`] the link's participants are let go (their clients rejoin).
const HELD_EVENTS: usize = 20_000;
const HELD_MOST: usize = 50_000;

#[derive(Debug, Default)]
struct Link {
    up: bool,
    /// When it dropped, while it is down.
    down_since: Option<Instant>,
    /// Events to send, in order.
    queue: VecDeque<NodeEvent>,
    /// Participants per room this link speaks for.
    rooms: HashMap<Arc<str>, usize>,
}

/// The routing table of one media node's control links.
#[derive(Debug)]
pub struct Links {
    links: Vec<Link>,
    owner: HashMap<ParticipantId, (LinkId, Arc<str>)>,
    /// Events dropped because a link's queue was full.
    pub dropped: u64,
    /// Participants whose link's queue overflowed: to be let go.
    overflowed: Vec<ParticipantId>,
}

/// What a link that registered must send first: the sessions it took over, then the
/// events held for them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Takeover {
    pub participants: Vec<ParticipantId>,
    pub held: Vec<NodeEvent>,
}

impl Links {
    pub fn new(count: usize) -> Links {
        Links {
            links: (0..count).map(|_| Link::default()).collect(),
            owner: HashMap::new(),
            dropped: 0,
            overflowed: Vec::new(),
        }
    }

    fn claim(&mut self, participant: ParticipantId, link: LinkId, room: Arc<str>) {
        self.forget(participant);
        *self.links[link].rooms.entry(room.clone()).or_default() += 1;
        self.owner.insert(participant, (link, room));
    }

    fn forget(&mut self, participant: ParticipantId) {
        let Some((link, room)) = self.owner.remove(&participant) else {
            return;
        };
        let rooms = &mut self.links[link].rooms;
        if let Some(n) = rooms.get_mut(&room) {
            *n -= 1;
            if *n == 0 {
                rooms.remove(&room);
            }
        }
    }

    /// A request arrives over `link` (before the node carries it out: the join's
    /// first events go where they belong). Returns the participant a join claimed: a
    /// participant another join claimed already stays with it (the node refuses the
    /// second join).
    pub fn request(&mut self, link: LinkId, request: &Request) -> Option<ParticipantId> {
        let Request::AddParticipant {
            participant, room, ..
        } = request
        else {
            return None;
        };
        if self.owner.contains_key(participant) {
            return None;
        }
        self.claim(*participant, link, room.as_str().into());
        Some(*participant)
    }

    /// A join the node refused: the claim it made is undone.
    pub fn refused(&mut self, participant: ParticipantId) {
        self.forget(participant);
    }

    /// The link whose signalling node speaks for the participant.
    pub fn owner(&self, participant: ParticipantId) -> Option<LinkId> {
        self.owner.get(&participant).map(|(l, _)| *l)
    }

    /// Queue one of the node's events on the links it concerns.
    pub fn event(&mut self, ev: NodeEvent) {
        let participant = ev.participant();
        // The node's last word of a participant, however it went (a failure too).
        let gone = matches!(ev, NodeEvent::ParticipantLeft { .. });
        if room_wide(&ev) {
            let room = ev.room();
            let targets: Vec<LinkId> = (0..self.links.len())
                .filter(|l| self.links[*l].rooms.contains_key(room))
                .collect();
            for link in targets {
                self.push(link, ev.clone());
            }
        } else if let Some(link) = self.owner(participant) {
            self.push(link, ev);
        }
        if gone {
            self.forget(participant);
        }
    }

    fn push(&mut self, link: LinkId, ev: NodeEvent) {
        let queue = &mut self.links[link].queue;
        let replaceable = ev.is_superseded_by_next() || matches!(ev, NodeEvent::Quality { .. });
        if queue.len() >= HELD_EVENTS && replaceable {
            self.dropped += 1;
            return;
        }
        if queue.len() >= HELD_MOST {
            // Its signalling node will never catch up: its sessions end.
            self.dropped += queue.len() as u64;
            queue.clear();
            let gone: Vec<(ParticipantId, Arc<str>)> = self
                .owner
                .iter()
                .filter(|(_, (l, _))| *l == link)
                .map(|(p, (_, room))| (*p, room.clone()))
                .collect();
            for (p, room) in gone {
                self.forget(p);
                self.overflowed.push(p);
                // What the link's signalling node still hears of them: failed
                // (their clients are told), and gone.
                let failed = NodeEvent::PeerFailed {
                    room: room.clone(),
                    participant: p,
                    reason: "its signalling node fell too far behind".into(),
                };
                let left = NodeEvent::ParticipantLeft {
                    room,
                    participant: p,
                };
                self.links[link].queue.extend([failed, left]);
            }
            return;
        }
        queue.push_back(ev);
    }

    /// Events taken back for `link` (a takeover that could not be sent): first again.
    pub fn requeue(&mut self, link: LinkId, events: Vec<NodeEvent>) {
        let queue = &mut self.links[link].queue;
        for ev in events.into_iter().rev() {
            queue.push_front(ev);
        }
    }

    /// What `link` has to send now.
    pub fn drain(&mut self, link: LinkId) -> Vec<NodeEvent> {
        self.links[link].queue.drain(..).collect()
    }

    /// `link` registered: it takes every participant of a link that is down (its own,
    /// after a reconnect, included) and the events held for them.
    pub fn up(&mut self, link: LinkId) -> Takeover {
        let was_up = std::mem::replace(&mut self.links[link].up, true);
        self.links[link].down_since = None;
        // A live link heard its rooms' news itself: what was held of it for the
        // other link is not repeated.
        let heard: std::collections::HashSet<Arc<str>> = if was_up {
            self.links[link].rooms.keys().cloned().collect()
        } else {
            Default::default()
        };
        let from: Vec<LinkId> = (0..self.links.len())
            .filter(|l| {
                let own = *l == link;
                !((own && was_up) || (!own && self.links[*l].up))
            })
            .collect();
        let mut takeover = Takeover::default();
        let moving: Vec<(ParticipantId, Arc<str>)> = self
            .owner
            .iter()
            .filter(|(_, (l, _))| from.contains(l))
            .map(|(p, (_, room))| (*p, room.clone()))
            .collect();
        for (p, room) in moving {
            self.claim(p, link, room);
            takeover.participants.push(p);
        }
        for l in from {
            let held = self.links[l].queue.drain(..);
            takeover
                .held
                .extend(held.filter(|ev| !(room_wide(ev) && heard.contains(ev.room()))));
        }
        takeover.participants.sort();
        takeover
    }

    /// Whether a link that is down has participants (a live link is to take them).
    pub fn orphans(&self) -> bool {
        self.links.iter().any(|l| !l.up && !l.rooms.is_empty())
    }

    /// `link` dropped. Its participants go to a live link if there is one (which
    /// then takes them as [`Links::up`] says); returns that link.
    pub fn down(&mut self, link: LinkId, now: Instant) -> Option<LinkId> {
        let l = &mut self.links[link];
        l.up = false;
        l.down_since.get_or_insert(now);
        if l.rooms.is_empty() {
            return None;
        }
        (0..self.links.len()).find(|other| self.links[*other].up)
    }

    /// Participants left without a live link for longer than `grace`: they are to be
    /// let go (their clients have rejoined elsewhere by then), and are forgotten here.
    pub fn expired(&mut self, now: Instant, grace: Duration) -> Vec<ParticipantId> {
        let mut gone = Vec::new();
        for link in 0..self.links.len() {
            let l = &self.links[link];
            let expired = !l.up && l.down_since.is_some_and(|t| now - t >= grace);
            if !expired || l.rooms.is_empty() {
                continue;
            }
            gone.extend(
                self.owner
                    .iter()
                    .filter(|(_, (o, _))| *o == link)
                    .map(|(p, _)| *p),
            );
            self.links[link].queue.clear();
        }
        for p in &gone {
            self.forget(*p);
        }
        gone.append(&mut self.overflowed);
        gone.sort();
        gone
    }
}

/// News of a room, for everyone in it (rather than for one participant).
fn room_wide(ev: &NodeEvent) -> bool {
    matches!(
        ev,
        NodeEvent::ParticipantJoined { .. }
            | NodeEvent::ParticipantLeft { .. }
            | NodeEvent::TrackPublished { .. }
            | NodeEvent::TrackUnpublished { .. }
            | NodeEvent::ActiveSpeaker { .. }
            | NodeEvent::PeerFailed { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(p: u64, room: &str) -> Request {
        Request::AddParticipant {
            participant: ParticipantId(p),
            room: room.into(),
            identity: String::new(),
            offer: String::new(),
            kind: control::JoinKind::Full,
            video: Default::default(),
            screen: None,
        }
    }

    fn joined(p: u64, room: &str) -> NodeEvent {
        NodeEvent::ParticipantJoined {
            room: room.into(),
            participant: ParticipantId(p),
            identity: "x".into(),
        }
    }

    fn connected(p: u64, room: &str) -> NodeEvent {
        NodeEvent::Connected {
            room: room.into(),
            participant: ParticipantId(p),
        }
    }

    fn left(p: u64, room: &str) -> NodeEvent {
        NodeEvent::ParticipantLeft {
            room: room.into(),
            participant: ParticipantId(p),
        }
    }

    #[test]
    fn a_rooms_events_reach_every_link_with_someone_in_it_and_a_participants_its_own() {
        let mut links = Links::new(2);
        links.up(0);
        links.up(1);
        links.request(0, &join(1, "r"));
        links.request(1, &join(2, "r"));
        links.request(1, &join(3, "other"));
        links.event(joined(1, "r"));
        links.event(connected(1, "r"));
        links.event(joined(3, "other"));
        assert_eq!(links.drain(0), [joined(1, "r"), connected(1, "r")]);
        assert_eq!(links.drain(1), [joined(1, "r"), joined(3, "other")]);
        // A departure reaches the room, then its participant is nobody's.
        links.event(left(2, "r"));
        assert_eq!(links.owner(ParticipantId(2)), None);
        assert_eq!(links.drain(0), [left(2, "r")]);
        assert_eq!(links.drain(1), [left(2, "r")]);
        // Link 1 has nobody in "r" now: the room's news is not its.
        links.event(joined(4, "r"));
        assert!(links.drain(1).is_empty());
        // A refused join leaves no owner.
        assert_eq!(links.request(0, &join(5, "r")), Some(ParticipantId(5)));
        links.refused(ParticipantId(5));
        assert_eq!(links.owner(ParticipantId(5)), None);
        // A second join of a participant is not its owner's: the first stays.
        assert_eq!(links.request(1, &join(1, "r")), None);
        assert_eq!(links.owner(ParticipantId(1)), Some(0));
        // A failure is news to the room; its owner goes with the departure after.
        let failed = NodeEvent::PeerFailed {
            room: "r".into(),
            participant: ParticipantId(1),
            reason: "timeout".into(),
        };
        links.event(failed.clone());
        assert_eq!(links.owner(ParticipantId(1)), Some(0));
        links.event(left(1, "r"));
        assert_eq!(links.owner(ParticipantId(1)), None);
        assert_eq!(links.drain(0), [joined(4, "r"), failed, left(1, "r")]);
    }

    #[test]
    fn a_dropped_links_participants_go_to_a_live_link_with_what_was_held() {
        let t0 = Instant::now();
        let mut links = Links::new(2);
        links.up(0);
        links.up(1);
        links.request(0, &join(1, "r"));
        links.request(0, &join(2, "r"));
        links.request(1, &join(6, "r"));
        links.event(connected(1, "r"));
        assert_eq!(links.down(0, t0), Some(1), "handed to the live link");
        links.event(connected(2, "r"));
        // Link 1 hears of the room itself: not twice.
        links.event(joined(7, "r"));
        assert_eq!(links.drain(1), [joined(7, "r")]);
        let takeover = links.up(1);
        assert_eq!(
            takeover,
            Takeover {
                participants: vec![ParticipantId(1), ParticipantId(2)],
                held: vec![connected(1, "r"), connected(2, "r")],
            }
        );
        assert_eq!(links.owner(ParticipantId(1)), Some(1));
        links.event(connected(1, "r"));
        assert_eq!(links.drain(1), [connected(1, "r")]);
        assert!(links.drain(0).is_empty());
        // Taken over, they are not let go.
        assert!(links
            .expired(t0 + Duration::from_secs(99), Duration::from_secs(1))
            .is_empty());
    }

    #[test]
    fn a_link_that_never_catches_up_loses_replaceable_news_then_its_participants() {
        let t0 = Instant::now();
        let mut links = Links::new(1);
        links.up(0);
        links.request(0, &join(1, "r"));
        links.down(0, t0);
        for _ in 0..HELD_EVENTS {
            links.event(connected(1, "r"));
        }
        let speaker = NodeEvent::ActiveSpeaker {
            room: "r".into(),
            participant: ParticipantId(1),
        };
        links.event(speaker);
        assert_eq!(links.dropped, 1, "the speaker's news went");
        for _ in HELD_EVENTS..=HELD_MOST {
            links.event(connected(1, "r"));
        }
        assert_eq!(links.owner(ParticipantId(1)), None);
        assert_eq!(
            links.expired(t0, Duration::from_secs(60)),
            [ParticipantId(1)]
        );
        let drained = links.drain(0);
        assert!(
            matches!(drained[0], NodeEvent::PeerFailed { .. }),
            "{drained:?}"
        );
        assert_eq!(drained[1..], [left(1, "r")], "told it is gone");
    }

    #[test]
    fn with_no_live_link_participants_wait_for_the_first_back_or_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let mut links = Links::new(2);
        links.up(0);
        links.request(0, &join(1, "r"));
        assert_eq!(links.down(0, t0), None, "nobody to hand them to");
        links.event(connected(1, "r"));
        assert!(links.expired(t0 + Duration::from_secs(9), grace).is_empty());
        // The other link comes up first: it takes them.
        let takeover = links.up(1);
        assert_eq!(takeover.participants, [ParticipantId(1)]);
        assert_eq!(takeover.held, [connected(1, "r")]);
        // Link 1 drops too and nobody comes back within the grace: let go.
        links.request(1, &join(2, "s"));
        assert_eq!(links.down(1, t0 + Duration::from_secs(20)), None);
        assert!(links
            .expired(t0 + Duration::from_secs(29), grace)
            .is_empty());
        assert_eq!(
            links.expired(t0 + Duration::from_secs(30), grace),
            [ParticipantId(1), ParticipantId(2)]
        );
        assert_eq!(links.owner(ParticipantId(1)), None);
        // A link back after its own drop takes its own participants (a restart).
        links.up(0);
        links.request(0, &join(3, "r"));
        links.down(0, t0);
        assert_eq!(links.up(0).participants, [ParticipantId(3)]);
    }
}
