//! Meeting records: one JSON line per ended meeting, for usage statistics
//! (`signalling --records DIR`, `signalling records`). A meeting is a room's life
//! from its first participant to its last: who came is counted, never named (no
//! identities, names or addresses: the room is its log reference, a keyed hash).
//!
//! [`Meetings`] is the sans-IO part: joins and leaves (with their time) in, records
//! out. [`file`] writes them (a file per UTC day, each line synced; the meetings in
//! progress in a small journal, so that a crash loses none of them: they are
//! recorded as ended by a crash when the node starts again), [`usage`] reads them
//! back into statistics.

pub mod directory;
pub mod file;
pub mod recorder;
pub mod usage;
pub mod webhook;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use control::{ParticipantId, TrackId};
use serde::{Deserialize, Serialize};

/// How a participant came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// The WebSocket API: the browser page (and the load generator).
    Browser,
    /// A WHIP publisher or WHEP viewer.
    WhipWhep,
    /// A SIP call through the gateway.
    Sip,
}

/// Participants of a meeting by how they came (each counted once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByKind {
    pub browser: u32,
    pub whip_whep: u32,
    pub sip: u32,
}

impl ByKind {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Browser => self.browser += 1,
            Kind::WhipWhep => self.whip_whep += 1,
            Kind::Sip => self.sip += 1,
        }
    }
}

/// Why a meeting ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// Its last participant left.
    Empty,
    /// An admin or host closed the room.
    Closed,
    /// Its media node was lost.
    NodeLost,
    /// The signalling node stopped (or crashed) while it ran: found in the journal.
    Crash,
}

/// One ended meeting, as written (one JSON line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The room's opaque reference (its log reference): never its name.
    pub room_id: String,
    /// The organisation, from the first participant's token that named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    /// Distinct participants.
    pub participants: u32,
    /// Most at once.
    pub participants_peak: u32,
    /// Participant time, summed, in minutes.
    pub participant_minutes: f64,
    /// The same, exactly (for the counter; not written).
    #[serde(skip)]
    pub participant_ms: u64,
    pub by_kind: ByKind,
    /// The media nodes it ran on, by name.
    pub nodes: Vec<String>,
    pub ended: Ended,
    /// How its videos fared, as the media node told.
    #[serde(default)]
    pub quality: Quality,
}

/// What the media node said of a meeting's media: the loss and jitter its
/// subscribers' RTCP receiver reports named (loss: the mean of the reports and the
/// worst; jitter: the worst), the layers it switched its subscribers between (the
/// allocator following their links), and how long videos were paused for want of
/// bandwidth (summed over subscribers and videos).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quality {
    /// Subscribers' quality reports behind the loss and jitter (one a subscriber
    /// each ten seconds or so).
    pub reports: u32,
    pub loss_mean_pct: f64,
    pub loss_max_pct: f64,
    pub jitter_max_ms: u32,
    pub layer_switches: u32,
    pub video_paused_s: f64,
}

/// A meeting in progress.
#[derive(Clone, Debug)]
struct Open {
    room_id: String,
    org: Option<String>,
    /// Unix milliseconds.
    started: u64,
    /// Who is in it now: since when (Unix ms), how they came, who they are.
    present: HashMap<ParticipantId, (u64, Kind, u64)>,
    /// Who was in it a moment at least, as keyed hashes of their identities (in
    /// memory only): one who comes back (a reconnection, a rejoin) is one.
    seen: HashSet<u64>,
    by_kind: ByKind,
    /// The most in it at once, of those who stayed a moment at least.
    peak: usize,
    /// Joins of the last moment, in order: the joiner, when (Unix ms), and how many
    /// were in the meeting then. A join that fails (out within the moment) leaves,
    /// and no longer counts in the joins after it; the others count in the peak
    /// once their joiner has stayed the moment.
    joins: Vec<(ParticipantId, u64, usize)>,
    /// Participant time of those who left, ms.
    spent_ms: u64,
    nodes: BTreeSet<String>,
    /// Told as started (to webhooks).
    announced: bool,
    layer_switches: u32,
    /// Quality reports; their loss (per mille) summed over loss figures, how many
    /// figures, the worst; the worst jitter (ms).
    reports: u32,
    loss_sum: u64,
    loss_figures: u64,
    loss_max: u32,
    jitter_max_ms: u32,
    /// Videos paused now, by subscriber and track: since when.
    paused: HashMap<(ParticipantId, TrackId), u64>,
    /// Paused time of videos resumed (or whose subscriber left), ms.
    paused_ms: u64,
}

/// A meeting that started, as webhooks are told.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Started {
    pub room_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub started_at: String,
}

impl Open {
    /// The peak among the last moment's joins whose joiners have stayed it by `now`.
    /// (Each by its own time: steps from other signalling nodes carry their clocks.)
    fn settled_peak(&self, now: u64) -> usize {
        self.joins
            .iter()
            .filter(|&&(_, at, _)| now.saturating_sub(at) >= STAY_MS)
            .map(|&(_, _, count)| count)
            .max()
            .unwrap_or(0)
    }

    /// The joins whose joiners have stayed the moment by `now` count in the peak.
    fn settle(&mut self, now: u64) {
        self.peak = self.peak.max(self.settled_peak(now));
        self.joins
            .retain(|&(_, at, _)| now.saturating_sub(at) < STAY_MS);
    }

    /// A join failed: it is nobody, and was not in the meeting for the joins after it.
    fn failed(&mut self, participant: ParticipantId) {
        if let Some(i) = self.joins.iter().position(|&(p, ..)| p == participant) {
            self.joins.remove(i);
            for later in &mut self.joins[i..] {
                later.2 = later.2.saturating_sub(1);
            }
        }
    }

    fn started(&self) -> Started {
        Started {
            room_id: self.room_id.clone(),
            org: self.org.clone(),
            started_at: rfc3339(self.started),
        }
    }

    fn record(&self, now: u64, ended: Ended) -> Record {
        // Those still in it count as if they left now.
        let (mut seen, mut by_kind, mut spent) = (self.seen.clone(), self.by_kind, self.spent_ms);
        for &(since, kind, who) in self.present.values() {
            let stay = now.saturating_sub(since);
            if stay >= STAY_MS {
                spent += stay;
                if seen.insert(who) {
                    by_kind.add(kind);
                }
            }
        }
        Record {
            room_id: self.room_id.clone(),
            org: self.org.clone(),
            started_at: rfc3339(self.started),
            ended_at: rfc3339(now.max(self.started)),
            duration_s: now.saturating_sub(self.started) as f64 / 1000.0,
            participants: seen.len() as u32,
            participants_peak: self.peak.max(self.settled_peak(now)) as u32,
            participant_minutes: round2(spent as f64 / 60_000.0),
            participant_ms: spent,
            by_kind,
            nodes: self.nodes.iter().cloned().collect(),
            ended,
            quality: Quality {
                reports: self.reports,
                loss_mean_pct: round2(
                    self.loss_sum as f64 / self.loss_figures.max(1) as f64 / 10.0,
                ),
                loss_max_pct: round2(f64::from(self.loss_max) / 10.0),
                jitter_max_ms: self.jitter_max_ms,
                layer_switches: self.layer_switches,
                video_paused_s: round2(
                    (self.paused_ms
                        + self
                            .paused
                            .values()
                            .map(|&since| now.saturating_sub(since))
                            .sum::<u64>()) as f64
                        / 1000.0,
                ),
            },
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A stay shorter than this was a join that failed (admitted, then refused by its
/// media node): not a participant.
const STAY_MS: u64 = 1000;

/// A participant entering a room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    pub room: Arc<str>,
    /// The room's log reference (what the record calls it).
    pub room_id: String,
    pub participant: ParticipantId,
    /// A keyed hash of its identity (never written): who it is, without a name.
    pub who: u64,
    pub kind: Kind,
    pub org: Option<Arc<str>>,
    /// The media node's name.
    pub node: String,
}

/// The meetings in progress.
#[derive(Default)]
pub struct Meetings {
    open: HashMap<Arc<str>, Open>,
    /// Each participant's room.
    rooms: HashMap<ParticipantId, Arc<str>>,
}

impl Meetings {
    /// A participant came in (at `now`, Unix ms): the room's meeting starts with its
    /// first.
    pub fn joined(&mut self, a: Arrival, now: u64) {
        if self.rooms.contains_key(&a.participant) {
            return;
        }
        let m = self.open.entry(a.room.clone()).or_insert_with(|| Open {
            room_id: a.room_id.clone(),
            org: None,
            started: now,
            present: HashMap::new(),
            seen: HashSet::new(),
            by_kind: ByKind::default(),
            peak: 0,
            joins: Vec::new(),
            spent_ms: 0,
            nodes: BTreeSet::new(),
            announced: false,
            layer_switches: 0,
            reports: 0,
            loss_sum: 0,
            loss_figures: 0,
            loss_max: 0,
            jitter_max_ms: 0,
            paused: HashMap::new(),
            paused_ms: 0,
        });
        if m.org.is_none() {
            m.org = a.org.as_deref().map(str::to_owned);
        }
        m.settle(now);
        m.present.insert(a.participant, (now, a.kind, a.who));
        m.joins.push((a.participant, now, m.present.len()));
        m.nodes.insert(a.node);
        self.rooms.insert(a.participant, a.room);
    }

    /// A participant left (at `now`): the record of its meeting when it was the
    /// last, with `why` it ended, and whether it was announced as started.
    pub fn left(
        &mut self,
        participant: ParticipantId,
        now: u64,
        why: Ended,
    ) -> Option<(Record, bool)> {
        let room = self.rooms.remove(&participant)?;
        let m = self.open.get_mut(&room)?;
        // Its paused videos are paused no more.
        let paused: Vec<(ParticipantId, TrackId)> = m
            .paused
            .keys()
            .filter(|k| k.0 == participant)
            .copied()
            .collect();
        for k in paused {
            if let Some(since) = m.paused.remove(&k) {
                m.paused_ms += now.saturating_sub(since);
            }
        }
        m.settle(now);
        if let Some((since, kind, who)) = m.present.remove(&participant) {
            let stay = now.saturating_sub(since);
            if stay >= STAY_MS {
                m.spent_ms += stay;
                if m.seen.insert(who) {
                    m.by_kind.add(kind);
                }
            } else {
                m.failed(participant);
            }
        }
        if !m.present.is_empty() {
            return None;
        }
        let record = m.record(now, why);
        let announced = m.announced;
        self.open.remove(&room);
        Some((record, announced))
    }

    /// The media node switched a subscriber's layer of a video.
    pub fn layer_changed(&mut self, subscriber: ParticipantId) {
        if let Some(m) = self.meeting_of(subscriber) {
            m.layer_switches = m.layer_switches.saturating_add(1);
        }
    }

    /// A subscriber's receiver reports since its last quality report: loss per
    /// mille (their mean over `figures` loss figures, the worst) and the worst
    /// jitter (ms). The meeting's mean loss weighs each report by its figures (a
    /// report of jitter alone says nothing of loss).
    pub fn received(
        &mut self,
        subscriber: ParticipantId,
        (mean, max, figures, jitter): (u32, u32, u32, u32),
    ) {
        if let Some(m) = self.meeting_of(subscriber) {
            m.reports = m.reports.saturating_add(1);
            m.loss_sum += u64::from(mean.min(1000)) * u64::from(figures);
            m.loss_figures = m.loss_figures.saturating_add(u64::from(figures));
            if figures > 0 {
                m.loss_max = m.loss_max.max(max.min(1000));
            }
            m.jitter_max_ms = m.jitter_max_ms.max(jitter);
        }
    }

    /// The media node paused (`true`) or resumed a video for a subscriber, at `now`.
    pub fn video_paused(
        &mut self,
        subscriber: ParticipantId,
        track: TrackId,
        paused: bool,
        now: u64,
    ) {
        let Some(m) = self.meeting_of(subscriber) else {
            return;
        };
        if paused {
            m.paused.entry((subscriber, track)).or_insert(now);
        } else if let Some(since) = m.paused.remove(&(subscriber, track)) {
            m.paused_ms += now.saturating_sub(since);
        }
    }

    fn meeting_of(&mut self, participant: ParticipantId) -> Option<&mut Open> {
        let room = self.rooms.get(&participant)?;
        self.open.get_mut(room)
    }

    /// Meetings running for `after` ms or more (at `now`) not announced yet: now
    /// they are. (A "meeting" gone within a moment was joins that failed.)
    pub fn to_announce(&mut self, now: u64, after: u64) -> Vec<Started> {
        let mut out = Vec::new();
        for m in self.open.values_mut() {
            if !m.announced && now.saturating_sub(m.started) >= after {
                m.announced = true;
                out.push(m.started());
            }
        }
        out
    }

    /// The meetings in progress as records ended by a crash at `now`: what the
    /// journal keeps.
    pub fn in_progress(&self, now: u64) -> Vec<Record> {
        let mut open: Vec<Record> = self
            .open
            .values()
            .map(|m| m.record(now, Ended::Crash))
            .collect();
        open.sort_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then(a.room_id.cmp(&b.room_id))
        });
        open
    }

    /// Meetings in progress.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Unix milliseconds as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
