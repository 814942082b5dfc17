//! The recorder's task: the directory's events into [`Meetings`], each ended meeting
//! counted (`signalling_meetings_total`, `signalling_participant_seconds_total`),
//! written (with `--records DIR`) and told (with `--webhook`); the meetings in
//! progress journalled when one ends, within seconds of a change, and each minute
//! while any runs; old files swept each hour.

use std::hash::BuildHasher;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::directory::Event;
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
    let Outlets { files, webhook } = outlets;
    let mut meetings = Meetings::default();
    // Identities are told apart by a hash keyed for this process alone, in memory.
    let who = std::collections::hash_map::RandomState::new();
    let mut journal = tokio::time::interval(JOURNAL_EVERY);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut changed = false;
    let mut journalled = tokio::time::Instant::now();
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                let Some(state) = state.upgrade() else { break };
                match e {
                    Event::Joined(m, node, at) => {
                        // Connection checks (`check:...`) are no meetings.
                        if m.room.contains(':') {
                            continue;
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
                            who: who.hash_one(&*m.identity),
                            kind,
                            org: m.org.clone(),
                            node: state.cluster.name_of(node).unwrap_or_else(|| node.to_string()),
                        };
                        meetings.joined(arrival, at);
                        changed = true;
                    }
                    Event::LayerChanged(p) => meetings.layer_changed(p),
                    Event::Received(p, figures) => meetings.received(p, figures),
                    Event::VideoPaused(p, track, paused, at) => {
                        meetings.video_paused(p, track, paused, at);
                    }
                    Event::Left(p, at, why) => {
                        let Some((r, announced)) = meetings.left(p, at, why) else {
                            continue;
                        };
                        // Told as started: its end is told too, however short.
                        if r.participant_ms >= SHORTEST_MS || announced {
                            if let Some(w) = &webhook {
                                if !announced {
                                    w.tell(Notice::MeetingStarted(started(&r)));
                                }
                                w.tell(Notice::MeetingEnded(r.clone()));
                            }
                            ended(&state, files.as_ref(), r);
                        }
                        // Out of the journal once in its day file (the writer keeps
                        // this order): a crash between them writes it twice at most.
                        if let Some(f) = &files {
                            f.journal(meetings.in_progress(now_ms()));
                            journalled = tokio::time::Instant::now();
                        }
                    }
                }
            }
            _ = journal.tick() => {
                if let Some(w) = &webhook {
                    for s in meetings.to_announce(now_ms(), SHORTEST_MS) {
                        w.tell(Notice::MeetingStarted(s));
                    }
                }
                let due = changed
                    || (!meetings.is_empty() && journalled.elapsed() >= JOURNAL_AT_LEAST);
                if !due {
                    continue;
                }
                changed = false;
                journalled = tokio::time::Instant::now();
                if let Some(f) = &files {
                    f.journal(meetings.in_progress(now_ms()));
                }
            }
            _ = sweep.tick() => {
                if let Some(f) = &files {
                    f.sweep();
                }
            }
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
