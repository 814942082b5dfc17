//! Which shard hosts which room, and who is in it: the node's registry.
//!
//! Shared by the control API (joins reserve a place) and the shards (a removed peer
//! releases its place), behind one mutex on the control path only, never per packet.
//! Reserving before the expensive part of a join keeps a room on one shard even when
//! a leave and a join race, and keeps `max_room_size` exact.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::ParticipantId;
use control::ControlError;

#[derive(Debug)]
struct RoomEntry {
    shard: usize,
    participants: usize,
}

/// Which shard of this node each room lives on (a room on one shard), and each
/// participant's room. Signalling's directory answers the same question one level up
/// (which node).
#[derive(Debug, Default)]
pub struct ShardPlacement {
    rooms: HashMap<Arc<str>, RoomEntry>,
    participants: HashMap<ParticipantId, Arc<str>>,
}

impl ShardPlacement {
    /// Reserve a place for `participant` in `room`; a new room goes to the shard
    /// `pick` chooses.
    pub fn reserve(
        &mut self,
        participant: ParticipantId,
        room: &str,
        max_room_size: usize,
        pick: impl FnOnce() -> usize,
    ) -> Result<(Arc<str>, usize), ControlError> {
        if self.participants.contains_key(&participant) {
            // Two callers handing out ids (the signalling node, a direct user of the
            // node) must never merge two participants into one.
            return Err(ControlError::ParticipantExists);
        }
        let (name, shard) = match self.rooms.get_key_value(room) {
            Some((name, e)) => {
                if e.participants >= max_room_size {
                    return Err(ControlError::RoomFull(e.participants));
                }
                (name.clone(), e.shard)
            }
            None => {
                let name: Arc<str> = room.into();
                let shard = pick();
                self.rooms.insert(
                    name.clone(),
                    RoomEntry {
                        shard,
                        participants: 0,
                    },
                );
                (name, shard)
            }
        };
        if let Some(e) = self.rooms.get_mut(&name) {
            e.participants += 1;
        }
        self.participants.insert(participant, name.clone());
        Ok((name, shard))
    }

    /// The participant is gone; an empty room is forgotten.
    pub fn release(&mut self, participant: ParticipantId) -> bool {
        let Some(room) = self.participants.remove(&participant) else {
            return false;
        };
        if let Some(e) = self.rooms.get_mut(&room) {
            e.participants = e.participants.saturating_sub(1);
            if e.participants == 0 {
                self.rooms.remove(&room);
            }
        }
        true
    }

    pub fn close_room(&mut self, room: &str) -> Option<(Arc<str>, usize)> {
        let (name, e) = self.rooms.remove_entry(room)?;
        self.participants.retain(|_, r| *r != name);
        Some((name, e.shard))
    }

    pub fn room(&self, room: &str) -> Option<(Arc<str>, usize)> {
        self.rooms
            .get_key_value(room)
            .map(|(n, e)| (n.clone(), e.shard))
    }

    pub fn shard_of(&self, participant: ParticipantId) -> Option<usize> {
        let room = self.participants.get(&participant)?;
        self.rooms.get(room).map(|e| e.shard)
    }

    pub fn room_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rooms.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.rooms.len(), self.participants.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_stays_on_its_shard_and_is_bounded() {
        let mut p = ShardPlacement::default();
        let a = ParticipantId(1);
        let b = ParticipantId(2);
        assert_eq!(p.reserve(a, "r", 2, || 1).unwrap().1, 1);
        assert_eq!(
            p.reserve(b, "r", 2, || 0).unwrap().1,
            1,
            "existing room keeps its shard"
        );
        assert_eq!(
            p.reserve(ParticipantId(3), "r", 2, || 0),
            Err(ControlError::RoomFull(2))
        );
        assert!(p.release(a));
        assert!(!p.release(a));
        assert_eq!(p.shard_of(b), Some(1));
        assert!(p.release(b));
        assert_eq!(p.room("r"), None, "empty room forgotten");
        assert_eq!(p.counts(), (0, 0));
    }

    #[test]
    fn an_id_in_use_is_refused_not_merged() {
        let mut p = ShardPlacement::default();
        p.reserve(ParticipantId(7), "a", 10, || 0).unwrap();
        assert_eq!(
            p.reserve(ParticipantId(7), "b", 10, || 0),
            Err(ControlError::ParticipantExists)
        );
        assert_eq!(p.counts(), (1, 1), "room b was not made for it");
    }
}
