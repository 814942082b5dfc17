//! The events a shard could not hand to a lagging control plane yet. A shard never
//! waits for the control plane (its packets would), so the event channel is bounded
//! and sends do not block; but an event that carries state (an offer to answer, a
//! participant gone, a connection up or failed) must not be lost, or a client waits
//! for ever. Those are held, in order, and go first once the channel has room; what
//! the next event of its kind replaces (a layer change, the active speaker) is
//! dropped and counted. Past [`HELD_MAX`] held events the participant an event
//! concerns is let go instead, with a reason; departures are held even then (there
//! are no more of them than participants).

use std::collections::VecDeque;

use control::{NodeEvent, ParticipantId};

/// The most events held for a lagging control plane.
pub const HELD_MAX: usize = 16_384;

/// What became of an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Sent,
    Held,
    /// Superseded by a later event of its kind anyway: dropped.
    Dropped,
    /// Held already to the limit: the participant it concerns must go.
    Overflow(ParticipantId),
}

#[derive(Default)]
pub struct Backlog {
    held: VecDeque<NodeEvent>,
}

impl Backlog {
    /// Send what is held, in order, while `send` takes it (it hands back what it
    /// could not take).
    pub fn drain(&mut self, mut send: impl FnMut(NodeEvent) -> Result<(), NodeEvent>) {
        while let Some(ev) = self.held.pop_front() {
            if let Err(ev) = send(ev) {
                self.held.push_front(ev);
                return;
            }
        }
    }

    /// Send `ev` after whatever is held; hold or drop it if it cannot go now.
    pub fn push(
        &mut self,
        ev: NodeEvent,
        mut send: impl FnMut(NodeEvent) -> Result<(), NodeEvent>,
    ) -> Fate {
        let ev = if self.held.is_empty() {
            match send(ev) {
                Ok(()) => return Fate::Sent,
                Err(ev) => ev,
            }
        } else {
            ev
        };
        if ev.is_superseded_by_next() {
            Fate::Dropped
        } else if self.held.len() >= HELD_MAX && !ev.is_departure() {
            Fate::Overflow(ev.participant())
        } else {
            self.held.push_back(ev);
            Fate::Held
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(p: u64) -> NodeEvent {
        NodeEvent::ParticipantLeft {
            room: "r".into(),
            participant: ParticipantId(p),
        }
    }

    fn speaker(p: u64) -> NodeEvent {
        NodeEvent::ActiveSpeaker {
            room: "r".into(),
            participant: ParticipantId(p),
        }
    }

    /// A channel with room for `room` events in all.
    fn channel(
        sent: &mut Vec<NodeEvent>,
        room: usize,
    ) -> impl FnMut(NodeEvent) -> Result<(), NodeEvent> + '_ {
        move |ev| {
            if sent.len() < room {
                sent.push(ev);
                Ok(())
            } else {
                Err(ev)
            }
        }
    }

    #[test]
    fn state_waits_in_order_and_what_is_superseded_is_dropped() {
        let mut b = Backlog::default();
        let mut sent = Vec::new();
        {
            let mut send = channel(&mut sent, 1);
            assert_eq!(b.push(left(1), &mut send), Fate::Sent);
            // The channel is full: state is held, a speaker change dropped.
            assert_eq!(b.push(left(2), &mut send), Fate::Held);
            assert_eq!(b.push(speaker(3), &mut send), Fate::Dropped);
            assert_eq!(b.push(left(4), &mut send), Fate::Held);
        }
        {
            // Nothing new goes past what is held, even with room.
            let mut send = channel(&mut sent, 10);
            assert_eq!(b.push(left(5), &mut send), Fate::Held);
            // Drained: the held go first, in order, then what is new.
            b.drain(&mut send);
            assert_eq!(b.push(speaker(6), &mut send), Fate::Sent);
        }
        assert!(b.is_empty());
        assert_eq!(sent, [left(1), left(2), left(4), left(5), speaker(6)]);
    }

    #[test]
    fn past_the_limit_the_participant_goes() {
        let mut b = Backlog::default();
        let mut full = |ev: NodeEvent| Err(ev);
        for i in 0..HELD_MAX as u64 {
            assert_eq!(b.push(left(i), &mut full), Fate::Held);
        }
        let joined = NodeEvent::Connected {
            room: "r".into(),
            participant: ParticipantId(99_999),
        };
        assert_eq!(
            b.push(joined, &mut full),
            Fate::Overflow(ParticipantId(99_999))
        );
        assert_eq!(b.len(), HELD_MAX);
        // A departure is held even then: it cannot be had again by letting someone go.
        assert_eq!(b.push(left(99_998), &mut full), Fate::Held);
    }
}
