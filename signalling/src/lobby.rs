//! The waiting room. A guest (a `guest` token, in any room; anyone but a host in a
//! room created with `lobby: true`) enters only when a host lets it in: its join
//! waits here, its offer held and no media either way, until a host admits or turns
//! it away, the room closes, or the guest gives up. The room's hosts are told who
//! waits, by display name (to hosts only: names are never logged). Guest tokens wait
//! whatever this node remembers of the room: a restart that forgot its `lobby` flag
//! lets no guest in unasked. Plain state behind one lock; the WebSocket sessions do
//! the waiting.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use control::ParticipantId;
use tokio::sync::oneshot;

/// Most guests waiting in one room: more are refused (`lobby_full`).
pub const MAX_WAITING: usize = 50;

/// A guest's place in the waiting room, and how the host's decision reaches it.
pub struct Ticket {
    pub id: u64,
    pub decision: oneshot::Receiver<Decision>,
}

/// How a wait ends, but for the guest giving up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    Denied,
    /// The room was closed.
    Closed,
}

/// What [`Lobby::wait`] came to.
pub enum Wait {
    /// Wait for this ticket.
    Ticket(Ticket),
    /// The room has no waiting room (any more) and this is no guest token: go in.
    Open,
    /// Its waiting room is full.
    Full,
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
    decide: oneshot::Sender<Decision>,
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

    /// Give `room` a waiting room, or take it away: those who wait go on waiting
    /// (guest tokens wait for a host in any room); a host lets them in.
    pub fn set(&self, room: &str, on: bool) {
        let mut inner = self.lock();
        if on {
            inner.rooms.insert(room.to_owned());
        } else {
            inner.rooms.remove(room);
        }
    }

    /// The room was closed: its waiting room goes, and who waited is told. Returns
    /// whether it had a waiting room or anyone waiting.
    pub fn close(&self, room: &str) -> bool {
        let had = {
            let mut inner = self.lock();
            inner.hosts.remove(room);
            inner.rooms.remove(room)
        };
        self.end(room) || had
    }

    /// The meeting was ended (a host's `end`): who waited is told; the room keeps
    /// its waiting room for the next (its hosts leave with their sessions). Returns
    /// whether anyone waited.
    pub fn end(&self, room: &str) -> bool {
        let mut inner = self.lock();
        let waiting = inner.waiting.remove(room).unwrap_or_default();
        let any = !waiting.is_empty();
        for g in waiting {
            let _ = g.decide.send(Decision::Closed);
        }
        any
    }

    pub fn has(&self, room: &str) -> bool {
        self.lock().rooms.contains(room)
    }

    /// Someone named `name` would enter `room`: it waits if it holds a `guest`
    /// token or the room has a waiting room (checked under the same lock as the
    /// room's flag, so a waiting room taken away meanwhile strands nobody).
    pub fn wait(&self, room: &str, name: &str, guest: bool) -> Wait {
        let mut inner = self.lock();
        if !guest && !inner.rooms.contains(room) {
            return Wait::Open;
        }
        inner.next += 1;
        let id = inner.next;
        let guests = inner.waiting.entry(room.to_owned()).or_default();
        if guests.len() >= MAX_WAITING {
            return Wait::Full;
        }
        let (decide, decision) = oneshot::channel();
        guests.push(Guest {
            id,
            name: name.to_owned(),
            decide,
        });
        Wait::Ticket(Ticket { id, decision })
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
        let decision = if admit {
            Decision::Admitted
        } else {
            Decision::Denied
        };
        let _ = guest.decide.send(decision);
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
        let mut a = ticket(lobby.wait("r", "Ann", false));
        let mut b = ticket(lobby.wait("r", "Bo", false));
        let names: Vec<String> = lobby.waiting("r").into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["Ann", "Bo"]);
        assert!(a.decision.try_recv().is_err(), "no decision yet");
        assert!(lobby.decide("r", a.id, true));
        assert_eq!(a.decision.try_recv(), Ok(Decision::Admitted));
        assert!(lobby.decide("r", b.id, false));
        assert_eq!(b.decision.try_recv(), Ok(Decision::Denied));
        // Decided once; another room's host cannot decide for this room.
        assert!(!lobby.decide("r", a.id, true));
        let c = ticket(lobby.wait("r", "Cy", false));
        assert!(!lobby.decide("other", c.id, true));
        lobby.give_up("r", c.id);
        assert!(lobby.waiting("r").is_empty());
    }

    fn ticket(w: Wait) -> Ticket {
        match w {
            Wait::Ticket(t) => t,
            _ => panic!("expected to wait"),
        }
    }

    #[test]
    fn guest_tokens_wait_in_any_room_and_others_only_in_a_waiting_room() {
        let lobby = Lobby::default();
        assert!(matches!(lobby.wait("open", "p", false), Wait::Open));
        let mut g = ticket(lobby.wait("open", "g", true));
        // A room closed: who waited is told.
        lobby.close("open");
        assert_eq!(g.decision.try_recv(), Ok(Decision::Closed));
        // A waiting room taken away: its guests wait on for a host.
        lobby.set("r", true);
        let mut w = ticket(lobby.wait("r", "w", false));
        lobby.set("r", false);
        assert!(w.decision.try_recv().is_err());
        assert_eq!(lobby.waiting("r").len(), 1);
    }

    #[test]
    fn the_waiting_room_is_bounded() {
        let lobby = Lobby::default();
        lobby.set("r", true);
        let _tickets: Vec<Ticket> = (0..MAX_WAITING)
            .map(|i| ticket(lobby.wait("r", &format!("g{i}"), false)))
            .collect();
        assert!(matches!(lobby.wait("r", "one too many", true), Wait::Full));
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
