//! The report: JSON for machines, a summary table and SVG charts for people.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::model::quarter_equivalent_meetings;
use crate::runner::{MeetingResult, Outcome, Sample};
use crate::thresholds::Thresholds;
use client::Impairment;

#[derive(Serialize, Default, Clone, Copy)]
pub struct Percentiles3 {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Serialize, Default, Clone, Copy)]
pub struct LossPct {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Serialize, Default, Clone, Copy)]
pub struct DelayMs {
    pub p50: f64,
    pub p99: f64,
}

/// Frames a retransmission completed, and how long they took.
#[derive(Serialize, Default, Clone, Copy)]
pub struct Recovery {
    /// Share of video frames, percent.
    pub frames_pct: f64,
    /// p50 and p99 of the video streams' p99 recovery delay, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The SIP legs' own figures: their picture (the active speaker's video through the
/// gateway) and their mix.
#[derive(Serialize, Default, Clone, Copy)]
pub struct SipLegs {
    pub legs: u64,
    /// p50 and p99 of the legs' pictures' p99 delay, milliseconds.
    pub picture_delay_p99_ms: DelayMs,
    /// The largest p99 jitter of a leg's mix, milliseconds.
    pub mix_jitter_p99_max_ms: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    /// Every meeting's media passed and join time is within its bound.
    pub passed: bool,
    /// The two verdicts `passed` is made of, judged apart: on a lossy link a join
    /// pays for lost handshake packets in retransmission timers, which says nothing
    /// of the media.
    pub media_passed: bool,
    pub join_passed: bool,
    /// False when the load generator could not offer its planned load: the run is
    /// inconclusive (never passed), for the reason in `inconclusive`.
    pub valid: bool,
    pub inconclusive: Option<String>,
    pub meetings_started: usize,
    pub meetings_completed: usize,
    pub meetings_passed: usize,
    pub participants_peak: usize,
    pub concurrent_meetings_peak: usize,
    /// Join (request to first media), over all participants.
    pub join_ms: Percentiles3,
    /// Loss after retransmission, over all streams, and by kind.
    pub loss_pct: LossPct,
    pub audio_loss_pct: LossPct,
    pub video_loss_pct: LossPct,
    /// Video frames completed by a retransmission (on a lossy link: the recovery).
    pub recovery: Recovery,
    /// Forwarding delay: p50 of the streams' medians, p99 of the streams' p99s.
    pub delay_ms: DelayMs,
    /// Mean share of time video streams spent frozen (gaps > 500 ms).
    pub freeze_pct: f64,
    /// Video frames received per simulcast layer (lowest first), over all streams.
    pub video_layer_frames: [u64; 3],
    /// What the SIP legs (`--sip-share`) saw and heard, when the run had any.
    pub sip_legs: Option<SipLegs>,
    pub thresholds: Thresholds,
    pub impairment: Impairment,
    pub duration_s: f64,
    /// Meetings sustained together while every meeting passed.
    pub sustained_concurrent_meetings: f64,
    /// What that concurrency supports per quarter (see README: load model).
    pub quarter_equivalent_meetings: f64,
    pub meetings_per_minute: f64,
    /// Scenario-specific figures (capacity steps, quarter replay).
    pub details: serde_json::Value,
    pub failures: Vec<String>,
    pub timeline: Vec<Sample>,
}

/// What a report counts of its meetings, apart from the streams' distributions: with
/// the [`Aggregate`](crate::runner::Aggregate) it is all a report is made from, and
/// what reports of slices of one plan are merged from (`crate::merge`).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Tally {
    pub started: usize,
    pub completed: usize,
    pub passed: usize,
    /// The first few failed meetings, each with its first reasons.
    pub meeting_failures: Vec<String>,
    pub duration_s: f64,
    pub meetings_peak: usize,
    pub participants_peak: usize,
}

impl Tally {
    pub fn of(outcome: &Outcome) -> Tally {
        Tally {
            started: outcome.meetings_started,
            completed: outcome.meetings.len(),
            passed: outcome.meetings.iter().filter(|m| m.passed).count(),
            meeting_failures: outcome
                .meetings
                .iter()
                .filter(|m| !m.passed)
                .take(10)
                .map(|m| format!("{}: {}", m.name, m.failures.join("; ")))
                .collect(),
            duration_s: outcome.duration.as_secs_f64(),
            meetings_peak: outcome.meetings_peak,
            participants_peak: outcome.participants_peak,
        }
    }
}

pub fn build(
    scenario: &str,
    target: &str,
    outcome: &Outcome,
    thresholds: Thresholds,
    impairment: Impairment,
    sustained: f64,
    details: serde_json::Value,
) -> Report {
    let tally = Tally::of(outcome);
    let (a, timeline) = (&outcome.aggregate, outcome.timeline.clone());
    let judged = (thresholds, impairment, sustained);
    build_from(scenario, target, a, &tally, timeline, judged, details)
}

/// The report of `a` and `tally`, judged by `thresholds`.
pub fn build_from(
    scenario: &str,
    target: &str,
    a: &crate::runner::Aggregate,
    tally: &Tally,
    timeline: Vec<Sample>,
    (thresholds, impairment, sustained): (Thresholds, Impairment, f64),
    details: serde_json::Value,
) -> Report {
    let pct = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64
        }
    };
    let join_ms = Percentiles3 {
        p50: pct(&a.join_ms, 0.5),
        p95: pct(&a.join_ms, 0.95),
        p99: pct(&a.join_ms, 0.99),
    };
    let passed_meetings = tally.passed;
    let mut failures = Vec::new();
    let join_bound = thresholds.join_bound_ms();
    let join_passed = join_ms.p95 <= join_bound;
    if !join_passed {
        failures.push(format!("join p95 {:.0} ms > {join_bound} ms", join_ms.p95));
    }
    failures.extend(tally.meeting_failures.iter().cloned());
    let complete = tally.completed == tally.started && tally.started > 0;
    let media_passed = complete && passed_meetings == tally.completed;
    let passed = media_passed && join_passed;
    let loss = |h: &hdrhistogram::Histogram<u64>, max: f64| LossPct {
        p50: (pct(h, 0.5) - 1.0).max(0.0) / 1000.0,
        p99: (pct(h, 0.99) - 1.0).max(0.0) / 1000.0,
        max,
    };
    // The maxima by kind are within the histograms' precision (2 digits).
    let max_of = |h: &hdrhistogram::Histogram<u64>| {
        if h.is_empty() {
            0.0
        } else {
            ((h.max() as f64 - 1.0) / 1000.0).min(a.loss_max_pct)
        }
    };
    let minutes = tally.duration_s / 60.0;
    Report {
        scenario: scenario.to_owned(),
        target: target.to_owned(),
        passed,
        media_passed,
        join_passed,
        valid: true,
        inconclusive: None,
        meetings_started: tally.started,
        meetings_completed: tally.completed,
        meetings_passed: passed_meetings,
        participants_peak: tally.participants_peak,
        concurrent_meetings_peak: tally.meetings_peak,
        join_ms,
        loss_pct: loss(&a.loss_milli_pct, a.loss_max_pct),
        audio_loss_pct: loss(&a.audio_loss_milli_pct, max_of(&a.audio_loss_milli_pct)),
        video_loss_pct: loss(&a.video_loss_milli_pct, max_of(&a.video_loss_milli_pct)),
        recovery: Recovery {
            frames_pct: if a.video_frames == 0 {
                0.0
            } else {
                100.0 * a.recovered_frames as f64 / a.video_frames as f64
            },
            p50_ms: pct(&a.recovery_p99_us, 0.5) / 1000.0,
            p99_ms: pct(&a.recovery_p99_us, 0.99) / 1000.0,
        },
        delay_ms: DelayMs {
            p50: pct(&a.delay_p50_us, 0.5) / 1000.0,
            p99: pct(&a.delay_p99_us, 0.99) / 1000.0,
        },
        freeze_pct: if a.video_streams == 0 {
            0.0
        } else {
            a.freeze_sum_pct / a.video_streams as f64
        },
        video_layer_frames: a.layer_frames,
        sip_legs: (a.sip_legs > 0).then(|| SipLegs {
            legs: a.sip_legs,
            picture_delay_p99_ms: DelayMs {
                p50: pct(&a.sip_picture_delay_p99_us, 0.5) / 1000.0,
                p99: pct(&a.sip_picture_delay_p99_us, 0.99) / 1000.0,
            },
            mix_jitter_p99_max_ms: if a.sip_mix_jitter_p99_us.is_empty() {
                0.0
            } else {
                a.sip_mix_jitter_p99_us.max() as f64 / 1000.0
            },
        }),
        thresholds,
        impairment,
        duration_s: tally.duration_s,
        sustained_concurrent_meetings: if passed { sustained } else { 0.0 },
        quarter_equivalent_meetings: if passed {
            quarter_equivalent_meetings(sustained)
        } else {
            0.0
        },
        meetings_per_minute: if minutes > 0.0 {
            tally.completed as f64 / minutes
        } else {
            0.0
        },
        details,
        failures,
        timeline,
    }
}

/// The summary a person reads at the end of a run.
impl Report {
    /// The load generator did not offer its planned load: whatever the streams
    /// measured, this run neither passes nor fails.
    pub fn inconclusive(&mut self, why: String) {
        self.valid = false;
        self.passed = false;
        self.media_passed = false;
        self.join_passed = false;
        self.sustained_concurrent_meetings = 0.0;
        self.quarter_equivalent_meetings = 0.0;
        self.inconclusive = Some(why);
    }
}

pub fn summary(r: &Report) -> String {
    let t = &r.thresholds;
    let verdict = match (r.valid, r.passed) {
        (false, _) => "INCONCLUSIVE",
        (true, true) => "PASSED",
        (true, false) => "FAILED",
    };
    let mut s = String::new();
    let link = if t.lossy_link { " · lossy link" } else { "" };
    s.push_str(&format!(
        "\nknudepunkt load test · {} · {}{link} · {verdict}\n",
        r.scenario, r.target
    ));
    s.push_str("┌──────────────────────────────┬──────────────────────────┬──────────────────┐\n");
    s.push_str("│ measure                      │ measured                 │ threshold        │\n");
    s.push_str("├──────────────────────────────┼──────────────────────────┼──────────────────┤\n");
    let row = |s: &mut String, a: &str, b: String, c: String| {
        s.push_str(&format!("│ {a:<28} │ {b:<24} │ {c:<16} │\n"));
    };
    row(
        &mut s,
        "meetings started / completed",
        format!("{} / {}", r.meetings_started, r.meetings_completed),
        String::new(),
    );
    row(
        &mut s,
        "meetings passed",
        format!("{}", r.meetings_passed),
        "all".into(),
    );
    row(
        &mut s,
        "peak concurrency",
        format!(
            "{} mtg / {} ppl",
            r.concurrent_meetings_peak, r.participants_peak
        ),
        String::new(),
    );
    row(
        &mut s,
        "join p50 / p95 / p99",
        format!(
            "{:.0} / {:.0} / {:.0} ms",
            r.join_ms.p50, r.join_ms.p95, r.join_ms.p99
        ),
        format!("p95 ≤ {} ms", t.join_bound_ms()),
    );
    let loss = |l: &LossPct| format!("{:.2} / {:.2} / {:.2} %", l.p50, l.p99, l.max);
    row(
        &mut s,
        "audio loss p50 / p99 / max",
        loss(&r.audio_loss_pct),
        if t.lossy_link && !t.audio_red {
            "reported".into()
        } else {
            format!("≤ {} %", t.loss_pct)
        },
    );
    row(
        &mut s,
        "video loss p50 / p99 / max",
        loss(&r.video_loss_pct),
        format!("≤ {} %", t.loss_pct),
    );
    row(
        &mut s,
        "delay p50 / p99",
        format!("{:.1} / {:.1} ms", r.delay_ms.p50, r.delay_ms.p99),
        format!("p99 ≤ {} ms", t.delay_p99_ms),
    );
    row(
        &mut s,
        "recovered frames, p99 delay",
        format!(
            "{:.2} %, {:.0} ms",
            r.recovery.frames_pct, r.recovery.p99_ms
        ),
        if t.lossy_link {
            format!("p99 ≤ {} ms", t.recovery_p99_ms)
        } else {
            "≤ 1 %".into()
        },
    );
    row(
        &mut s,
        "video frozen (mean)",
        format!("{:.3} %", r.freeze_pct),
        if t.lossy_link {
            "no gap > 500 ms".into()
        } else {
            format!("≤ {} %", t.freeze_pct)
        },
    );
    row(
        &mut s,
        "audio jitter",
        "per stream".into(),
        format!("p99 ≤ {} ms", t.jitter_p99_ms),
    );
    if let Some(sip) = &r.sip_legs {
        row(
            &mut s,
            &format!("SIP legs ({}): picture p99", sip.legs),
            format!(
                "{:.1} / {:.1} ms (p50/p99)",
                sip.picture_delay_p99_ms.p50, sip.picture_delay_p99_ms.p99
            ),
            format!("p99 ≤ {} ms", t.delay_p99_ms),
        );
        row(
            &mut s,
            "SIP legs: mix jitter p99",
            format!("{:.1} ms (max)", sip.mix_jitter_p99_max_ms),
            format!("p99 ≤ {} ms", t.jitter_p99_ms),
        );
    }
    row(
        &mut s,
        "duration",
        format!("{:.1} s", r.duration_s),
        String::new(),
    );
    row(
        &mut s,
        "meetings per minute",
        format!("{:.1}", r.meetings_per_minute),
        String::new(),
    );
    row(
        &mut s,
        "quarter equivalent",
        format!("{:.0} meetings", r.quarter_equivalent_meetings),
        "≥ 140000".into(),
    );
    s.push_str("└──────────────────────────────┴──────────────────────────┴──────────────────┘\n");
    if let Some(why) = &r.inconclusive {
        s.push_str(&format!("  INCONCLUSIVE: {why}\n"));
    } else if r.media_passed != r.join_passed {
        let (good, bad) = if r.media_passed {
            ("media", "join time")
        } else {
            ("join time", "media")
        };
        s.push_str(&format!("  judged apart: {good} passed, {bad} failed\n"));
    }
    for f in r.failures.iter().take(10) {
        s.push_str(&format!("  failed: {f}\n"));
    }
    s
}

/// Charts next to the report: concurrency over time, and per meeting (by end time)
/// its worst loss and delay.
pub fn charts(r: &Report, meetings: &[MeetingResult], stem: &Path) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    let conc = stem.with_extension("concurrency.svg");
    {
        let root = SVGBackend::new(&conc, (900, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let t_max = r.timeline.last().map_or(1.0, |s| s.t_s).max(1.0);
        let p_max = r
            .timeline
            .iter()
            .map(|s| s.participants)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: concurrency", r.scenario), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..p_max * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("active")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                r.timeline.iter().map(|s| (s.t_s, s.participants as f64)),
                &BLUE,
            ))
            .map_err(|e| e.to_string())?
            .label("participants")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                r.timeline.iter().map(|s| (s.t_s, s.meetings as f64)),
                &RED,
            ))
            .map_err(|e| e.to_string())?
            .label("meetings")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    written.push(conc.display().to_string());
    let qual = stem.with_extension("quality.svg");
    {
        let root = SVGBackend::new(&qual, (900, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let t_max = meetings.iter().map(|m| m.ended_s).fold(1.0, f64::max);
        let y_max = meetings
            .iter()
            .map(|m| m.worst_delay_p99_ms.max(m.worst_loss_pct))
            .fold(r.thresholds.delay_p99_ms, f64::max)
            * 1.2;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: worst loss (%) and delay p99 (ms) per meeting",
                    r.scenario
                ),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("meeting end (s)")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                meetings
                    .iter()
                    .map(|m| Circle::new((m.ended_s, m.worst_delay_p99_ms), 2, BLUE.filled())),
            )
            .map_err(|e| e.to_string())?
            .label("delay p99 ms")
            .legend(|(x, y)| Circle::new((x + 7, y), 3, BLUE.filled()));
        chart
            .draw_series(
                meetings
                    .iter()
                    .map(|m| Circle::new((m.ended_s, m.worst_loss_pct), 2, RED.filled())),
            )
            .map_err(|e| e.to_string())?
            .label("loss %")
            .legend(|(x, y)| Circle::new((x + 7, y), 3, RED.filled()));
        chart
            .draw_series(LineSeries::new(
                [
                    (0.0, r.thresholds.delay_p99_ms),
                    (t_max, r.thresholds.delay_p99_ms),
                ],
                BLACK.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("delay threshold")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    written.push(qual.display().to_string());
    Ok(written)
}
