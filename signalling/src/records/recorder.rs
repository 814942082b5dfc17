//! The recorder's task: the directory's events into [`Meetings`], each ended meeting
//! counted (`signalling_meetings_total`, `signalling_participant_seconds_total`),
//! written (with `--records DIR`) and told (with `--webhook`); the meetings in
//! progress journalled when one ends, within seconds of a change, and each minute
//! while any runs; old files swept each hour.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use control::ParticipantId;

use super::directory::{Event, Step};
use super::file::Writer;
use super::webhook::{Notice, Webhook};
use super::{now_ms, Arrival, Kind, Meetings, Record};
use crate::directory::Via;
use crate::state::AppState;

/// How often the journal is rewritten while meetings change; and at least this often
/// while any runs (so that a crash's record ends within a minute of the crash).
const JOURNAL_EVERY: Duration = Duration::from_secs(5);
const JOURNAL_AT_LEAST: Duration = Duration::from_secs(60);
/// How often old files are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Shorter than this, a "meeting" was joins that failed (a refused offer admitted
/// and removed at once): none, neither counted nor told.
const SHORTEST_MS: u64 = 1000;

/// Where ended meetings go besides the counters.
pub struct Outlets {
    pub files: Option<Writer>,
    pub webhook: Option<Webhook>,
}

/// Run until the directory is gone (its sender dropped).
pub async fn run(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    state: Weak<AppState>,
    outlets: Outlets,
) {
    let mut recorder = Recorder {
        meetings: Meetings::default(),
        outlets,
        changed: false,
        journalled: tokio::time::Instant::now(),
    };
    let mut elsewhere = Elsewhere::default();
    let mut journal = tokio::time::interval(JOURNAL_EVERY);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                let Some(state) = state.upgrade() else { break };
                let step = match e {
                    Event::Forwarded(step) => step,
                    e => match step_of(&state, e) {
                        Some(step) => step,
                        None => continue,
                    },
                };
                for step in elsewhere.route(&state, step).await {
                    recorder.apply(&state, step);
                }
            }
            _ = journal.tick() => recorder.journal(),
            _ = sweep.tick() => {
                if let Some(f) = &recorder.outlets.files {
                    f.sweep();
                }
            }
        }
    }
}

/// The directory's event as a meeting's step; `None` for what no meeting counts.
fn step_of(state: &AppState, e: Event) -> Option<Step> {
    Some(match e {
        Event::Joined(m, node, at) => {
            // Connection checks (`check:...`) are no meetings.
            if m.room.contains(':') {
                return None;
            }
            let kind = match (&m.via, m.sip) {
                (_, true) => Kind::Sip,
                (Via::Resource(_) | Via::Carried, _) => Kind::WhipWhep,
                (Via::WebSocket, _) => Kind::Browser,
            };
            let arrival = Arrival {
                room_id: state.redact.room(&m.room),
                room: m.room.clone(),
                participant: m.participant,
                who: state.redact.person(&m.identity),
                kind,
                org: m.org.clone(),
                node: state
                    .cluster
                    .name_of(node)
                    .unwrap_or_else(|| node.to_string()),
            };
            Step::Joined(arrival, at)
        }
        Event::Left(p, at, why) => Step::Left(p, at, why),
        Event::LayerChanged(p) => Step::LayerChanged(p),
        Event::Received(p, figures) => Step::Received(p, figures),
        Event::VideoPaused(p, track, paused, at) => Step::VideoPaused(p, track, paused, at),
        Event::Forwarded(step) => step,
    })
}

/// With other signalling nodes (`--redis`), exactly one records each meeting: the
/// one that placed its room. This one's participants of a room another records are
/// handed to that one, step by step, in order.
#[derive(Default)]
struct Elsewhere {
    /// Participants whose meeting another signalling node records: which, and how
    /// they came (to be told again to a node that takes the meeting over, or taken
    /// in here).
    recorder: HashMap<ParticipantId, (u64, Step)>,
}

/// Where a step goes.
#[derive(Debug, PartialEq)]
enum Route {
    /// Recorded here: these steps (a meeting taken over brings its people).
    Here(Vec<Step>),
    /// To the node that records its meeting, with the participant's arrival.
    There {
        to: u64,
        step: Box<Step>,
        joined: Box<Step>,
    },
}

impl Elsewhere {
    /// The steps this node records (none: they went to the node that records their
    /// meeting).
    async fn route(&mut self, state: &AppState, step: Step) -> Vec<Step> {
        let Some(shared) = state.cluster.shared() else {
            return vec![step];
        };
        let me = shared.instance;
        let mut to = me;
        if let Step::Joined(a, _) = &step {
            match shared.recorder_of(&a.room).await {
                Ok(r) => to = r,
                Err(e) => {
                    // Recorded here then, taking nobody over: a meeting in two
                    // records beats one lost.
                    state.metrics.redis_errors.inc();
                    tracing::warn!("Redis: who records a meeting: {e}");
                    return vec![step];
                }
            }
        }
        let (to, step, joined) = match self.sort(step, to, me, now_ms()) {
            Route::Here(here) => return here,
            Route::There { to, step, joined } => (to, *step, *joined),
        };
        match shared.forward(to, &step).await {
            Ok(true) => Vec::new(),
            // Nobody records there any more (that node is gone): ask again, and
            // tell the new recorder of the participant first.
            Ok(false) => self.reroute(state, shared, step, joined).await,
            Err(e) => {
                state.metrics.redis_errors.inc();
                tracing::warn!("Redis: handing a meeting's step to its recorder: {e}");
                Vec::new()
            }
        }
    }

    async fn reroute(
        &mut self,
        state: &AppState,
        shared: &crate::shared::Shared,
        step: Step,
        joined: Step,
    ) -> Vec<Step> {
        let Step::Joined(a, _) = &joined else {
            return Vec::new();
        };
        let participant = step.participant();
        let to = match shared.recorder_of(&a.room).await {
            Ok(to) => to,
            Err(e) => {
                state.metrics.redis_errors.inc();
                tracing::warn!("Redis: who records a meeting: {e}");
                return Vec::new();
            }
        };
        let now = now_ms();
        if to == shared.instance {
            // Taken over here: this room's people handed elsewhere come in now.
            let mut here = self.take_room(&a.room, now);
            if !matches!(step, Step::Joined(..)) {
                self.recorder.remove(&participant);
                here.push(rejoined(joined, now));
            }
            here.push(step);
            return here;
        }
        let left = matches!(step, Step::Left(..));
        if !left {
            self.recorder.insert(participant, (to, joined.clone()));
        }
        for s in [rejoined(joined, now), step] {
            if matches!(s, Step::Joined(..)) && left {
                // Told to the new recorder, then gone at once: nothing to record.
                continue;
            }
            if let Err(e) = shared.forward(to, &s).await {
                state.metrics.redis_errors.inc();
                tracing::warn!("Redis: handing a meeting's step to its recorder: {e}");
            }
        }
        Vec::new()
    }

    /// The participants of `room` handed elsewhere so far, taken in here as of
    /// `now` (in the order they came).
    fn take_room(&mut self, room: &str, now: u64) -> Vec<Step> {
        let mut taken: Vec<(u64, ParticipantId)> = self
            .recorder
            .iter()
            .filter_map(|(p, (_, j))| match j {
                Step::Joined(b, at) if &*b.room == room => Some((*at, *p)),
                _ => None,
            })
            .collect();
        taken.sort();
        taken
            .into_iter()
            .filter_map(|(_, p)| self.recorder.remove(&p))
            .map(|(_, joined)| rejoined(joined, now))
            .collect()
    }

    /// Where a step goes: `to` records the meeting of a participant who comes in
    /// (`me` is this node); later steps follow their participant's. A meeting this
    /// node takes over (its recorder gone) takes in its participants that went
    /// elsewhere so far, as of `now`.
    fn sort(&mut self, step: Step, to: u64, me: u64, now: u64) -> Route {
        let participant = step.participant();
        match &step {
            Step::Joined(a, _) if to == me => {
                let room = a.room.clone();
                let mut here = self.take_room(&room, now);
                here.push(step);
                Route::Here(here)
            }
            Step::Joined(..) => {
                self.recorder.insert(participant, (to, step.clone()));
                Route::There {
                    to,
                    joined: Box::new(step.clone()),
                    step: Box::new(step),
                }
            }
            Step::Left(..) => match self.recorder.remove(&participant) {
                Some((to, joined)) => Route::There {
                    to,
                    step: Box::new(step),
                    joined: Box::new(joined),
                },
                None => Route::Here(vec![step]),
            },
            _ => match self.recorder.get(&participant) {
                Some((to, joined)) => Route::There {
                    to: *to,
                    joined: Box::new(joined.clone()),
                    step: Box::new(step),
                },
                None => Route::Here(vec![step]),
            },
        }
    }
}

/// A participant's arrival, as of `now` (its time before was another node's to
/// record).
fn rejoined(joined: Step, now: u64) -> Step {
    match joined {
        Step::Joined(a, _) => Step::Joined(a, now),
        other => other,
    }
}

/// The meetings this node records, and where ended ones go.
struct Recorder {
    meetings: Meetings,
    outlets: Outlets,
    changed: bool,
    journalled: tokio::time::Instant,
}

impl Recorder {
    fn apply(&mut self, state: &Arc<AppState>, step: Step) {
        let meetings = &mut self.meetings;
        match step {
            Step::Joined(arrival, at) => {
                meetings.joined(arrival, at);
                self.changed = true;
            }
            Step::LayerChanged(p) => meetings.layer_changed(p),
            Step::Received(p, figures) => meetings.received(p, figures),
            Step::VideoPaused(p, track, paused, at) => {
                meetings.video_paused(p, track, paused, at);
            }
            Step::Left(p, at, why) => {
                let Some((r, announced)) = meetings.left(p, at, why) else {
                    return;
                };
                let Outlets { files, webhook } = &self.outlets;
                // Told as started: its end is told too, however short.
                if r.participant_ms >= SHORTEST_MS || announced {
                    if let Some(w) = webhook {
                        if !announced {
                            w.tell(Notice::MeetingStarted(started(&r)));
                        }
                        w.tell(Notice::MeetingEnded(r.clone()));
                    }
                    ended(state, files.as_ref(), r);
                }
                // Out of the journal once in its day file (the writer keeps this
                // order): a crash between them writes it twice at most.
                if let Some(f) = files {
                    f.journal(meetings.in_progress(now_ms()));
                    self.journalled = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Meetings to announce, and the journal when due.
    fn journal(&mut self) {
        if let Some(w) = &self.outlets.webhook {
            for s in self.meetings.to_announce(now_ms(), SHORTEST_MS) {
                w.tell(Notice::MeetingStarted(s));
            }
        }
        let due = self.changed
            || (!self.meetings.is_empty() && self.journalled.elapsed() >= JOURNAL_AT_LEAST);
        if !due {
            return;
        }
        self.changed = false;
        self.journalled = tokio::time::Instant::now();
        if let Some(f) = &self.outlets.files {
            f.journal(self.meetings.in_progress(now_ms()));
        }
    }
}

/// A meeting ended before it was told as started: what its start was.
fn started(r: &Record) -> super::Started {
    super::Started {
        room_id: r.room_id.clone(),
        org: r.org.clone(),
        started_at: r.started_at.clone(),
    }
}

/// A meeting ended: counted, and written where records are kept.
fn ended(state: &Arc<AppState>, files: Option<&Writer>, r: Record) {
    state.metrics.meetings.inc();
    state
        .metrics
        .participant_seconds
        .inc_by(r.participant_ms as f64 / 1000.0);
    if let Some(f) = files {
        f.append(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(p: u64, room: &str) -> Step {
        let arrival = Arrival {
            room: room.into(),
            room_id: format!("ref-{room}"),
            participant: ParticipantId(p),
            who: p,
            kind: Kind::Browser,
            org: None,
            node: "n".into(),
        };
        Step::Joined(arrival, 1000 + p)
    }

    #[test]
    fn steps_follow_their_participants_recorder_and_a_meeting_taken_over_takes_its_people() {
        let (me, other, now) = (1, 2, 9000);
        let mut e = Elsewhere::default();
        let there = |step: Step, joined: Step| Route::There {
            to: other,
            step: Box::new(step),
            joined: Box::new(joined),
        };
        // Another node records room a: its steps go there, in order, with the
        // arrival they follow.
        assert_eq!(
            e.sort(joined(7, "a"), other, me, now),
            there(joined(7, "a"), joined(7, "a"))
        );
        let layer = Step::LayerChanged(ParticipantId(7));
        assert_eq!(
            e.sort(layer.clone(), me, me, now),
            there(layer, joined(7, "a"))
        );
        assert_eq!(
            e.sort(joined(8, "a"), other, me, now),
            there(joined(8, "a"), joined(8, "a"))
        );
        let left = Step::Left(ParticipantId(8), 5000, crate::records::Ended::Empty);
        assert_eq!(
            e.sort(left.clone(), me, me, now),
            there(left, joined(8, "a"))
        );
        // This node records room b: its steps stay here.
        assert_eq!(
            e.sort(joined(9, "b"), me, me, now),
            Route::Here(vec![joined(9, "b")])
        );
        let left9 = Step::Left(ParticipantId(9), 5000, crate::records::Ended::Empty);
        assert_eq!(e.sort(left9.clone(), me, me, now), Route::Here(vec![left9]));
        // Room a's recorder is gone and this node took it over: 7 (still in) is
        // recorded here from now on, then the newcomer.
        assert_eq!(
            e.sort(joined(10, "a"), me, me, now),
            Route::Here(vec![rejoined(joined(7, "a"), now), joined(10, "a")])
        );
        let left7 = Step::Left(ParticipantId(7), 9500, crate::records::Ended::Empty);
        assert_eq!(e.sort(left7.clone(), me, me, now), Route::Here(vec![left7]));
    }
}
