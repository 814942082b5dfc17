//! One plan on several machines: each runs a slice of it (`--slice I/N`: the
//! meetings whose index is I modulo N, of the same seeded plan), and `loadtest merge`
//! combines their reports into one. Exactly: every report carries what it was made
//! from (`details.parts`: its meeting counts and its distributions as HDR histograms,
//! V2-serialized), the histograms are added, the counts summed, and the thresholds
//! judged again on the merged data, as if one machine had run the whole plan. Only
//! the timeline is approximate: the slices' seconds are added by their own start.

use std::str::FromStr;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::report::{self, Report, Tally};
use crate::runner::{Aggregate, MeetingPlan, Sample};
use crate::thresholds::Thresholds;
use client::Impairment;

/// Slice `index` of `count` (`--slice I/N`, 0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Slice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("a slice is I/N, e.g. 0/4")?;
        let (index, count) = (
            i.parse::<usize>()
                .map_err(|e| format!("slice index {i:?}: {e}"))?,
            n.parse::<usize>()
                .map_err(|e| format!("slice count {n:?}: {e}"))?,
        );
        if count == 0 || index >= count {
            return Err(format!(
                "slice {index}/{count}: I must be below N (0-based)"
            ));
        }
        Ok(Slice { index, count })
    }
}

impl std::fmt::Display for Slice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The plan's meetings that are this slice's: every `count`th, from `index`.
pub fn slice_of(plans: Vec<MeetingPlan>, slice: Slice) -> Vec<MeetingPlan> {
    plans
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % slice.count == slice.index)
        .map(|(_, p)| p)
        .collect()
}

/// An [`Aggregate`] as a report carries it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AggregateWire {
    /// Each histogram, V2-serialized and base64-encoded, in [`Aggregate`]'s order.
    pub histograms: Vec<String>,
    pub recovered_frames: u64,
    pub video_frames: u64,
    pub freeze_sum_pct: f64,
    pub video_streams: u64,
    pub loss_max_pct: f64,
    pub layer_frames: [u64; 3],
    pub sip_legs: u64,
}

/// What a report was made from (`details.parts`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Parts {
    pub tally: Tally,
    pub aggregate: AggregateWire,
    pub thresholds: Thresholds,
    pub impairment: Impairment,
    /// What the scenario sustained (meetings held, or the replay's peak).
    pub sustained: f64,
    /// The slice this report is of, if it is one.
    pub slice: Option<Slice>,
    /// What plan it ran (its scenario's arguments): only slices of one plan merge.
    #[serde(default)]
    pub plan: String,
    /// When it began, milliseconds since 1970: the slices' timelines are lined up
    /// by it.
    #[serde(default)]
    pub started_unix_ms: u64,
}

fn histograms(a: &Aggregate) -> [&Histogram<u64>; 9] {
    [
        &a.join_ms,
        &a.loss_milli_pct,
        &a.audio_loss_milli_pct,
        &a.video_loss_milli_pct,
        &a.recovery_p99_us,
        &a.delay_p50_us,
        &a.delay_p99_us,
        &a.sip_picture_delay_p99_us,
        &a.sip_mix_jitter_p99_us,
    ]
}

fn histograms_mut(a: &mut Aggregate) -> [&mut Histogram<u64>; 9] {
    [
        &mut a.join_ms,
        &mut a.loss_milli_pct,
        &mut a.audio_loss_milli_pct,
        &mut a.video_loss_milli_pct,
        &mut a.recovery_p99_us,
        &mut a.delay_p50_us,
        &mut a.delay_p99_us,
        &mut a.sip_picture_delay_p99_us,
        &mut a.sip_mix_jitter_p99_us,
    ]
}

impl Aggregate {
    pub fn to_wire(&self) -> AggregateWire {
        let mut ser = V2Serializer::new();
        let histograms = histograms(self)
            .iter()
            .map(|h| {
                let mut bytes = Vec::new();
                ser.serialize(h, &mut bytes)
                    .expect("a histogram serializes");
                base64::engine::general_purpose::STANDARD.encode(bytes)
            })
            .collect();
        AggregateWire {
            histograms,
            recovered_frames: self.recovered_frames,
            video_frames: self.video_frames,
            freeze_sum_pct: self.freeze_sum_pct,
            video_streams: self.video_streams,
            loss_max_pct: self.loss_max_pct,
            layer_frames: self.layer_frames,
            sip_legs: self.sip_legs,
        }
    }

    pub fn from_wire(w: &AggregateWire) -> Result<Aggregate, String> {
        let mut a = Aggregate::default();
        if w.histograms.len() != 9 {
            return Err(format!("{} histograms, not 9", w.histograms.len()));
        }
        let mut de = Deserializer::new();
        for (h, text) in histograms_mut(&mut a).into_iter().zip(&w.histograms) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("a histogram: {e}"))?;
            // The reader takes the header's payload length at its word and allocates
            // it first: no more than there is.
            let claimed = bytes
                .get(4..8)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if claimed.is_none_or(|n| n > bytes.len()) {
                return Err("a histogram: its length is not what it says".into());
            }
            let read: Histogram<u64> = de
                .deserialize(&mut bytes.as_slice())
                .map_err(|e| format!("a histogram: {e:?}"))?;
            h.add(&read).map_err(|e| format!("a histogram: {e:?}"))?;
        }
        a.recovered_frames = w.recovered_frames;
        a.video_frames = w.video_frames;
        a.freeze_sum_pct = w.freeze_sum_pct;
        a.video_streams = w.video_streams;
        a.loss_max_pct = w.loss_max_pct;
        a.layer_frames = w.layer_frames;
        a.sip_legs = w.sip_legs;
        Ok(a)
    }

    /// Add `other`'s streams and joins to these.
    pub fn merge(&mut self, other: &Aggregate) {
        let theirs = histograms(other);
        for (h, o) in histograms_mut(self).into_iter().zip(theirs) {
            // Same bounds on both sides: adding cannot fail.
            let _ = h.add(o);
        }
        self.recovered_frames += other.recovered_frames;
        self.video_frames += other.video_frames;
        self.freeze_sum_pct += other.freeze_sum_pct;
        self.video_streams += other.video_streams;
        self.loss_max_pct = self.loss_max_pct.max(other.loss_max_pct);
        for (s, o) in self.layer_frames.iter_mut().zip(other.layer_frames) {
            *s += o;
        }
        self.sip_legs += other.sip_legs;
    }
}

/// The report over everything `reports` (JSON, each with `details.parts`) measured,
/// judged again; an error when they cannot be merged (no parts, other scenarios or
/// thresholds, a slice twice, or slices of different plans).
pub fn merge(reports: &[(String, serde_json::Value)]) -> Result<Report, String> {
    let mut aggregate = Aggregate::default();
    let mut tally = Tally::default();
    let mut timeline: Vec<Sample> = Vec::new();
    let mut timelines: Vec<(u64, Vec<Sample>)> = Vec::new();
    let mut first: Option<(String, String, Parts)> = None;
    let mut slices = Vec::new();
    let mut sustained = 0.0;
    let mut inconclusive = None;
    for (name, r) in reports {
        if r["valid"] == false && inconclusive.is_none() {
            let why = r["inconclusive"].as_str().unwrap_or("no reason given");
            inconclusive = Some(format!("{name} was inconclusive: {why}"));
        }
        let parts: Parts = serde_json::from_value(r["details"]["parts"].clone())
            .map_err(|e| format!("{name}: no parts to merge ({e}): made by an older loadtest?"))?;
        let scenario = r["scenario"].as_str().unwrap_or_default().to_owned();
        let target = r["target"].as_str().unwrap_or_default().to_owned();
        if scenario == "capacity" {
            return Err(format!("{name}: a capacity search's steps are not merged"));
        }
        match &first {
            None => first = Some((scenario, target, parts.clone())),
            Some((s, _, p)) => {
                if *s != scenario {
                    return Err(format!("{name}: a {scenario} report, not {s}"));
                }
                if p.thresholds != parts.thresholds || p.impairment != parts.impairment {
                    return Err(format!("{name}: judged by other thresholds or impairment"));
                }
                if p.plan != parts.plan {
                    return Err(format!(
                        "{name}: another plan ({} against {}): slices of one plan merge",
                        parts.plan, p.plan
                    ));
                }
            }
        }
        if let Some(s) = parts.slice {
            if slices.iter().any(|x: &Slice| x.index == s.index) {
                return Err(format!("{name}: slice {s} twice"));
            }
            if slices.first().is_some_and(|x: &Slice| x.count != s.count) {
                return Err(format!("{name}: slice {s} of another division"));
            }
            slices.push(s);
        }
        aggregate
            .merge(&Aggregate::from_wire(&parts.aggregate).map_err(|e| format!("{name}: {e}"))?);
        let t = &parts.tally;
        tally.started += t.started;
        tally.completed += t.completed;
        tally.passed += t.passed;
        let room = 10usize.saturating_sub(tally.meeting_failures.len());
        tally
            .meeting_failures
            .extend(t.meeting_failures.iter().take(room).cloned());
        tally.duration_s = tally.duration_s.max(t.duration_s);
        sustained += parts.sustained;
        let samples: Vec<Sample> =
            serde_json::from_value(r["timeline"].clone()).unwrap_or_default();
        timelines.push((parts.started_unix_ms, samples));
    }
    // The slices' seconds lined up by when each began.
    let first_start = timelines.iter().map(|t| t.0).min().unwrap_or(0);
    for (start, samples) in &timelines {
        let offset = ((start - first_start) as f64 / 1000.0).round() as usize;
        add_timeline(&mut timeline, samples, offset);
    }
    let Some((scenario, target, parts)) = first else {
        return Err("no reports to merge".into());
    };
    if let Some(n) = slices.first().map(|s| s.count) {
        if slices.len() != reports.len() || slices.len() != n {
            return Err(format!(
                "{} of {n} slices given (every slice of the plan, once each)",
                slices.len()
            ));
        }
    }
    // Peaks over the added timeline: the slices ran side by side.
    tally.meetings_peak = timeline.iter().map(|s| s.meetings).max().unwrap_or(0);
    tally.participants_peak = timeline.iter().map(|s| s.participants).max().unwrap_or(0);
    if scenario == "quarter" {
        // A replay sustained its peak: the merged one, not the sum of the slices'.
        sustained = tally.meetings_peak as f64;
    }
    let details = serde_json::json!({
        "merged_from": reports.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "parts": Parts {
            tally: tally.clone(),
            aggregate: aggregate.to_wire(),
            thresholds: parts.thresholds,
            impairment: parts.impairment,
            sustained,
            slice: None,
            plan: parts.plan.clone(),
            started_unix_ms: first_start,
        },
    });
    let judged = (parts.thresholds, parts.impairment, sustained);
    let mut merged = report::build_from(
        &scenario, &target, &aggregate, &tally, timeline, judged, details,
    );
    if let Some(why) = inconclusive {
        // One slice could not offer its load: neither can the whole.
        merged.inconclusive(why);
    }
    Ok(merged)
}

/// Add `samples` to `timeline`, second by second, `offset` seconds in.
fn add_timeline(timeline: &mut Vec<Sample>, samples: &[Sample], offset: usize) {
    for (i, s) in samples.iter().enumerate() {
        let i = i + offset;
        while timeline.len() <= i {
            let t_s = timeline.len() as f64 + 1.0;
            timeline.push(Sample {
                t_s,
                ..Sample::default()
            });
        }
        let t = &mut timeline[i];
        t.meetings += s.meetings;
        t.participants += s.participants;
        t.packets_per_s += s.packets_per_s;
        t.media_packets_per_s += s.media_packets_per_s;
        t.completed += s.completed;
        t.passed += s.passed;
        t.frames_late += s.frames_late;
        t.slow_turns += s.slow_turns;
    }
}

#[cfg(test)]
mod tests;
