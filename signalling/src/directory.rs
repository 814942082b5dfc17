//! Who is where: the signalling node's one record of rooms, the media node each room
//! lives on, and each room's participants with how they joined. Placement, event
//! delivery, WHIP/WHEP resources and the admin API all read it; nothing else keeps
//! membership on this side (the media node keeps its own shard placement).
//!
//! [`Directory`] is the interface; [`MemoryDirectory`] keeps it in this process. A
//! shared backend (Redis, for several signalling nodes) implements the same
//! operations, each of which is one atomic step on one room or one participant.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use control::{ControlError, ParticipantId};

/// A media node, as the signalling node numbers them.
pub type NodeId = usize;

/// How a participant joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// The WebSocket API (the browser page, the load generator, the SIP gateway).
    WebSocket,
    /// A WHIP publisher or WHEP viewer, ended by `DELETE` of its resource.
    Resource(Resource),
    /// A WHIP/WHEP session a media node handed back after this node restarted: its
    /// resource went with the earlier run, so it ends when its client goes away.
    Carried,
}

/// A WHIP/WHEP session's resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Unguessable (128 random bits, hex): its URL is the session's handle.
    pub id: Arc<str>,
    /// SHA-256 of the bearer token that opened it: only that bearer (or an admin)
    /// may end it.
    pub owner: [u8; 32],
}

/// One participant's membership of a room: its entry in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub participant: ParticipantId,
    pub room: Arc<str>,
    /// The token's subject, shown to the room (personal data: never logged at INFO).
    pub identity: Arc<str>,
    pub via: Via,
    pub node: NodeId,
    /// A SIP call's (meeting records count them apart).
    pub sip: bool,
    /// The organisation its token named (`org`), for meeting records.
    pub org: Option<Arc<str>>,
}

/// Who joins, as the directory keeps them: shown to the room (`identity`, personal
/// data), and counted in meeting records (how they came, their organisation).
#[derive(Clone, Debug)]
pub struct Joiner {
    pub identity: Arc<str>,
    pub via: Via,
    pub sip: bool,
    pub org: Option<Arc<str>>,
}

impl Joiner {
    /// A browser-like participant of no organisation: the check page's probe.
    pub fn plain(identity: &str, via: Via) -> Joiner {
        Joiner {
            identity: identity.into(),
            via,
            sip: false,
            org: None,
        }
    }
}

/// A live node that may take new rooms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeId,
    /// Most participants to place on it.
    pub capacity: usize,
}

/// The record, whatever keeps it.
pub trait Directory: Send + Sync {
    /// Create a room ahead of its first join (`POST /api/rooms`); true if new.
    fn declare(&self, room: &str) -> bool;
    /// Whether the room was declared.
    fn is_declared(&self, room: &str) -> bool;
    /// Withdraw a declaration; true if there was one.
    fn undeclare(&self, room: &str) -> bool;

    /// Enter `member` (its `node` is ignored) into its room: the room's node, or for a
    /// room with nobody in it the least-loaded candidate with capacity left. Returns
    /// the node and whether the room was placed now.
    fn admit(
        &self,
        member: Membership,
        candidates: &[Candidate],
    ) -> Result<(NodeId, bool), ControlError>;
    /// The participant is gone; its entry, if it had one.
    fn remove(&self, participant: ParticipantId) -> Option<Membership>;

    fn member(&self, participant: ParticipantId) -> Option<Membership>;
    /// The WHIP/WHEP participant behind a resource.
    fn by_resource(&self, resource: &str) -> Option<Membership>;
    /// Everyone in the room, by participant id.
    fn members(&self, room: &str) -> Vec<Membership>;
    /// The node the room lives on, while anyone is in it.
    fn node_of_room(&self, room: &str) -> Option<NodeId>;

    /// Everyone leaves the room; returns who was in it.
    fn close_room(&self, room: &str) -> Vec<Membership>;
    /// The node is gone: its rooms are unplaced; returns who was on it.
    fn node_lost(&self, node: NodeId) -> Vec<Membership>;

    /// Rooms with someone in them, and declared rooms, sorted.
    fn rooms(&self) -> Vec<String>;
    /// Rooms with someone in them.
    fn occupied_rooms(&self) -> usize;
    /// Participants placed on the node.
    fn placed_on(&self, node: NodeId) -> usize;
    /// Whether the participant left lately (among the last [`RECENTLY_LEFT`] to
    /// go): its media node may not have heard yet.
    fn left_lately(&self, participant: ParticipantId) -> bool;
}

/// How many departures the directory remembers for [`Directory::left_lately`].
pub const RECENTLY_LEFT: usize = 4096;

#[derive(Default)]
struct RoomEntry {
    /// Set while the room has members.
    node: Option<NodeId>,
    declared: bool,
    members: BTreeSet<ParticipantId>,
}

#[derive(Default)]
struct Record {
    rooms: HashMap<Arc<str>, RoomEntry>,
    members: HashMap<ParticipantId, Membership>,
    resources: HashMap<Arc<str>, ParticipantId>,
    placed: HashMap<NodeId, usize>,
    /// The last departures, oldest first.
    left: std::collections::VecDeque<ParticipantId>,
}

impl Record {
    fn take(&mut self, participant: ParticipantId) -> Option<Membership> {
        let m = self.members.remove(&participant)?;
        if self.left.len() >= RECENTLY_LEFT {
            self.left.pop_front();
        }
        self.left.push_back(participant);
        if let Via::Resource(r) = &m.via {
            self.resources.remove(&r.id);
        }
        if let Some(n) = self.placed.get_mut(&m.node) {
            *n = n.saturating_sub(1);
        }
        if let Some(room) = self.rooms.get_mut(&m.room) {
            room.members.remove(&participant);
            if room.members.is_empty() {
                room.node = None;
                if !room.declared {
                    self.rooms.remove(&m.room);
                }
            }
        }
        Some(m)
    }

    fn take_all(&mut self, participants: Vec<ParticipantId>) -> Vec<Membership> {
        participants
            .into_iter()
            .filter_map(|p| self.take(p))
            .collect()
    }
}

/// The directory in this process's memory: one lock, held for one short step.
#[derive(Default)]
pub struct MemoryDirectory {
    record: Mutex<Record>,
}

impl MemoryDirectory {
    fn lock(&self) -> MutexGuard<'_, Record> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Directory for MemoryDirectory {
    fn declare(&self, room: &str) -> bool {
        let mut r = self.lock();
        let entry = r.rooms.entry(room.into()).or_default();
        !std::mem::replace(&mut entry.declared, true)
    }

    fn is_declared(&self, room: &str) -> bool {
        self.lock().rooms.get(room).is_some_and(|r| r.declared)
    }

    fn undeclare(&self, room: &str) -> bool {
        let mut r = self.lock();
        let Some(entry) = r.rooms.get_mut(room) else {
            return false;
        };
        let was = std::mem::replace(&mut entry.declared, false);
        if entry.members.is_empty() {
            r.rooms.remove(room);
        }
        was
    }

    fn admit(
        &self,
        mut member: Membership,
        candidates: &[Candidate],
    ) -> Result<(NodeId, bool), ControlError> {
        let mut r = self.lock();
        let r = &mut *r;
        // A room whose node is no longer a candidate (lost, not yet reported) is
        // placed anew; its members there are being told to rejoin.
        let placed_now = r
            .rooms
            .get(&*member.room)
            .and_then(|e| e.node)
            .filter(|n| candidates.iter().any(|c| c.node == *n));
        let (node, new) = match placed_now {
            Some(node) => (node, false),
            None => {
                let load = |c: &Candidate| r.placed.get(&c.node).copied().unwrap_or(0);
                let node = candidates
                    .iter()
                    .filter(|c| load(c) < c.capacity)
                    .min_by_key(|c| load(c) * 1000 / c.capacity.max(1))
                    .map(|c| c.node)
                    .ok_or_else(|| {
                        ControlError::Unavailable("no media node has capacity left".into())
                    })?;
                (node, true)
            }
        };
        member.node = node;
        let room = r.rooms.entry(member.room.clone()).or_default();
        room.node = Some(node);
        room.members.insert(member.participant);
        *r.placed.entry(node).or_default() += 1;
        if let Via::Resource(res) = &member.via {
            r.resources.insert(res.id.clone(), member.participant);
        }
        if let Some(old) = r.members.insert(member.participant, member) {
            // Ids are never reused; an entry replaced means a caller's mistake.
            tracing::warn!(
                participant = old.participant.0,
                "participant admitted twice"
            );
        }
        Ok((node, new))
    }

    fn remove(&self, participant: ParticipantId) -> Option<Membership> {
        self.lock().take(participant)
    }

    fn member(&self, participant: ParticipantId) -> Option<Membership> {
        self.lock().members.get(&participant).cloned()
    }

    fn by_resource(&self, resource: &str) -> Option<Membership> {
        let r = self.lock();
        let p = r.resources.get(resource)?;
        r.members.get(p).cloned()
    }

    fn members(&self, room: &str) -> Vec<Membership> {
        let r = self.lock();
        let Some(entry) = r.rooms.get(room) else {
            return Vec::new();
        };
        entry
            .members
            .iter()
            .filter_map(|p| r.members.get(p).cloned())
            .collect()
    }

    fn node_of_room(&self, room: &str) -> Option<NodeId> {
        self.lock().rooms.get(room).and_then(|e| e.node)
    }

    fn close_room(&self, room: &str) -> Vec<Membership> {
        let mut r = self.lock();
        let Some(entry) = r.rooms.get(room) else {
            return Vec::new();
        };
        let who: Vec<ParticipantId> = entry.members.iter().copied().collect();
        r.take_all(who)
    }

    fn node_lost(&self, node: NodeId) -> Vec<Membership> {
        let mut r = self.lock();
        let who: Vec<ParticipantId> = r
            .members
            .values()
            .filter(|m| m.node == node)
            .map(|m| m.participant)
            .collect();
        let gone = r.take_all(who);
        r.placed.remove(&node);
        gone
    }

    fn rooms(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().rooms.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    fn occupied_rooms(&self) -> usize {
        self.lock()
            .rooms
            .values()
            .filter(|r| r.node.is_some())
            .count()
    }

    fn placed_on(&self, node: NodeId) -> usize {
        self.lock().placed.get(&node).copied().unwrap_or(0)
    }

    fn left_lately(&self, participant: ParticipantId) -> bool {
        self.lock().left.contains(&participant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(p: u64, room: &str, via: Via) -> Membership {
        Membership {
            participant: ParticipantId(p),
            room: room.into(),
            identity: format!("who{p}").into(),
            via,
            node: 0,
            sip: false,
            org: None,
        }
    }

    const TWO: [Candidate; 2] = [
        Candidate {
            node: 1,
            capacity: 4,
        },
        Candidate {
            node: 2,
            capacity: 4,
        },
    ];

    #[test]
    fn rooms_stay_on_their_node_and_new_rooms_go_to_the_emptiest() {
        let d = MemoryDirectory::default();
        assert_eq!(d.admit(member(1, "a", Via::WebSocket), &TWO), Ok((1, true)));
        assert_eq!(
            d.admit(member(2, "a", Via::WebSocket), &TWO),
            Ok((1, false))
        );
        assert_eq!(d.admit(member(3, "b", Via::WebSocket), &TWO), Ok((2, true)));
        assert_eq!(
            d.admit(member(4, "a", Via::WebSocket), &TWO),
            Ok((1, false))
        );
        assert_eq!(d.admit(member(5, "c", Via::WebSocket), &TWO), Ok((2, true)));
        assert_eq!((d.placed_on(1), d.placed_on(2)), (3, 2));
        // A full node takes no new room; the room already there still grows.
        d.admit(member(6, "b", Via::WebSocket), &TWO).unwrap();
        d.admit(member(7, "b", Via::WebSocket), &TWO).unwrap();
        assert_eq!(d.admit(member(8, "d", Via::WebSocket), &TWO), Ok((1, true)));
        assert!(matches!(
            d.admit(member(9, "e", Via::WebSocket), &TWO),
            Err(ControlError::Unavailable(_))
        ));
        assert!(
            d.member(ParticipantId(9)).is_none(),
            "a refusal leaves no entry"
        );
        assert_eq!(d.occupied_rooms(), 4);
    }

    #[test]
    fn leaving_empties_rooms_but_declared_rooms_remain_unplaced() {
        let d = MemoryDirectory::default();
        assert!(d.declare("kept"));
        assert!(!d.declare("kept"));
        d.admit(member(1, "kept", Via::WebSocket), &TWO).unwrap();
        d.admit(member(2, "gone", Via::WebSocket), &TWO).unwrap();
        assert_eq!(d.rooms(), ["gone", "kept"]);
        assert_eq!(d.remove(ParticipantId(1)).unwrap().room.as_ref(), "kept");
        assert_eq!(d.remove(ParticipantId(2)).unwrap().node, 2);
        assert_eq!(d.remove(ParticipantId(2)), None);
        assert_eq!(d.rooms(), ["kept"]);
        assert_eq!(d.node_of_room("kept"), None);
        assert_eq!(d.occupied_rooms(), 0);
        assert_eq!((d.placed_on(1), d.placed_on(2)), (0, 0));
        assert!(d.undeclare("kept"));
        assert!(d.rooms().is_empty());
    }

    #[test]
    fn resources_name_their_participant_until_it_leaves_by_any_way() {
        let d = MemoryDirectory::default();
        let resource = |id: &str| {
            Via::Resource(Resource {
                id: id.into(),
                owner: [7; 32],
            })
        };
        let whip = resource("p1");
        d.admit(member(1, "a", whip.clone()), &TWO).unwrap();
        d.admit(member(2, "a", Via::WebSocket), &TWO).unwrap();
        d.admit(member(3, "b", resource("p3")), &TWO).unwrap();
        assert_eq!(d.by_resource("p1").unwrap().via, whip);
        assert_eq!(d.members("a").len(), 2);

        // Closing a room ends its resources too.
        let closed = d.close_room("a");
        assert_eq!(closed.len(), 2);
        assert!(d.by_resource("p1").is_none());
        assert!(d.members("a").is_empty());

        // So does losing the node (room b is on node 2).
        assert_eq!(d.node_of_room("b"), Some(2));
        let lost = d.node_lost(2);
        assert_eq!(
            lost.iter().map(|m| m.participant.0).collect::<Vec<_>>(),
            [3]
        );
        assert!(d.by_resource("p3").is_none());
        assert_eq!(d.node_of_room("b"), None);
        assert!(d.rooms().is_empty());
    }
}
