//! The waiting room. A room created with `lobby: true` admits its guests only when a
//! host lets them in: a guest's join waits here, its offer held and no media either
//! way, until a host admits or turns it away, or the guest gives up. The room's hosts
//! are told who waits, by display name (to hosts only: names are never logged).
//! Plain state behind one lock; the WebSocket sessions do the waiting.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use control::ParticipantId;
use tokio::sync::oneshot;

/// Most guests waiting in one room: more are refused (`lobby_full`).
pub const MAX_WAITING: usize = 50;

/// A guest's place in the waiting room, and how the host's decision reaches it
/// (`true`: admitted). The decision never comes if the waiting room was let go.
pub struct Ticket {
    pub id: u64,
    pub decision: oneshot::Receiver<bool>,
}

/// A waiting guest as hosts see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Waiting {
    /// The guest's number in this waiting room (`admit`/`deny` name it).
    pub id: u64,
    /// The display name of its token.
    pub name: String,
}

struct Guest {
    id: u64,
    name: String,
    decide: oneshot::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    /// Rooms with a waiting room.
    rooms: HashSet<String>,
    waiting: HashMap<String, Vec<Guest>>,
    /// The hosts in each room now (they hear of the waiting room).
    hosts: HashMap<String, HashSet<ParticipantId>>,
    next: u64,
}

#[derive(Default)]
pub struct Lobby(Mutex<Inner>);

impl Lobby {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Give `room` a waiting room, or take it away (its waiting guests are let in:
    /// the room no longer asks a host).
    pub fn set(&self, room: &str, on: bool) {
        let mut inner = self.lock();
        if on {
            inner.rooms.insert(room.to_owned());
        } else if inner.rooms.remove(room) {
            for g in inner.waiting.remove(room).unwrap_or_default() {
                let _ = g.decide.send(true);
            }
        }
    }

    pub fn has(&self, room: &str) -> bool {
        self.lock().rooms.contains(room)
    }

    /// A guest named `name` starts waiting; `None` when the room's waiting room is
    /// full.
    pub fn wait(&self, room: &str, name: &str) -> Option<Ticket> {
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        let guests = inner.waiting.entry(room.to_owned()).or_default();
        if guests.len() >= MAX_WAITING {
            return None;
        }
        let (decide, decision) = oneshot::channel();
        guests.push(Guest {
            id,
            name: name.to_owned(),
            decide,
        });
        Some(Ticket { id, decision })
    }

    /// The guest stopped waiting (it left, or waited too long).
    pub fn give_up(&self, room: &str, id: u64) {
        let mut inner = self.lock();
        if let Some(guests) = inner.waiting.get_mut(room) {
            guests.retain(|g| g.id != id);
            if guests.is_empty() {
                inner.waiting.remove(room);
            }
        }
    }

    /// A host admits (`true`) or turns away guest `id`; false if no such guest waits.
    pub fn decide(&self, room: &str, id: u64, admit: bool) -> bool {
        let mut inner = self.lock();
        let Some(guests) = inner.waiting.get_mut(room) else {
            return false;
        };
        let Some(i) = guests.iter().position(|g| g.id == id) else {
            return false;
        };
        let guest = guests.remove(i);
        if guests.is_empty() {
            inner.waiting.remove(room);
        }
        // A guest that left meanwhile dropped its receiver: nothing to tell.
        let _ = guest.decide.send(admit);
        true
    }

    /// Who waits in `room`, longest first.
    pub fn waiting(&self, room: &str) -> Vec<Waiting> {
        self.lock().waiting.get(room).map_or_else(Vec::new, |g| {
            g.iter()
                .map(|g| Waiting {
                    id: g.id,
                    name: g.name.clone(),
                })
                .collect()
        })
    }

    /// A host is in `room` now (`true`), or left it.
    pub fn set_host(&self, room: &str, host: ParticipantId, present: bool) {
        let mut inner = self.lock();
        if present {
            inner.hosts.entry(room.to_owned()).or_default().insert(host);
        } else if let Some(hosts) = inner.hosts.get_mut(room) {
            hosts.remove(&host);
            if hosts.is_empty() {
                inner.hosts.remove(room);
            }
        }
    }

    pub fn is_host(&self, room: &str, participant: ParticipantId) -> bool {
        self.lock()
            .hosts
            .get(room)
            .is_some_and(|h| h.contains(&participant))
    }

    /// The hosts in `room`.
    pub fn hosts(&self, room: &str) -> Vec<ParticipantId> {
        self.lock()
            .hosts
            .get(room)
            .map_or_else(Vec::new, |h| h.iter().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_waits_until_a_host_decides() {
        let lobby = Lobby::default();
        lobby.set("r", true);
        assert!(lobby.has("r") && !lobby.has("other"));
        let mut a = lobby.wait("r", "Ann").unwrap();
        let mut b = lobby.wait("r", "Bo").unwrap();
        let names: Vec<String> = lobby.waiting("r").into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["Ann", "Bo"]);
        assert!(a.decision.try_recv().is_err(), "no decision yet");
        assert!(lobby.decide("r", a.id, true));
        assert_eq!(a.decision.try_recv(), Ok(true));
        assert!(lobby.decide("r", b.id, false));
        assert_eq!(b.decision.try_recv(), Ok(false));
        // Decided once; another room's host cannot decide for this room.
        assert!(!lobby.decide("r", a.id, true));
        let c = lobby.wait("r", "Cy").unwrap();
        assert!(!lobby.decide("other", c.id, true));
        lobby.give_up("r", c.id);
        assert!(lobby.waiting("r").is_empty());
    }

    #[test]
    fn the_waiting_room_is_bounded_and_opens_when_taken_away() {
        let lobby = Lobby::default();
        lobby.set("r", true);
        let mut tickets: Vec<Ticket> = (0..MAX_WAITING)
            .map(|i| lobby.wait("r", &format!("g{i}")).unwrap())
            .collect();
        assert!(lobby.wait("r", "one too many").is_none());
        lobby.set("r", false);
        assert!(tickets
            .iter_mut()
            .all(|t| t.decision.try_recv() == Ok(true)));
    }

    #[test]
    fn hosts_are_known_per_room() {
        let lobby = Lobby::default();
        let h = ParticipantId(7);
        lobby.set_host("r", h, true);
        assert!(lobby.is_host("r", h) && !lobby.is_host("s", h));
        assert_eq!(lobby.hosts("r"), [h]);
        lobby.set_host("r", h, false);
        assert!(lobby.hosts("r").is_empty());
    }
}
