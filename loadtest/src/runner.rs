//! Runs a schedule of meetings against the target: each meeting's participants join
//! (a little apart, as people do), exchange media for the meeting's length, leave,
//! and the meeting is judged by the thresholds. A sampler records the timeline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::metrics::LtMetrics;
use crate::sip::heard::{MIX, PICTURE};
use crate::target::{participant, Target};
use crate::thresholds::Thresholds;
use client::stats::StreamKind;
use client::{Env, ParticipantResult};

/// People join a meeting this far apart.
const JOIN_STAGGER_MS: u64 = 150;

#[derive(Clone, Debug)]
pub struct MeetingPlan {
    pub name: String,
    pub start: Duration,
    pub size: usize,
    pub media_for: Duration,
}

/// A judged meeting, kept small: a quarter replay holds 140,000 of them.
#[derive(Clone, Debug, Serialize)]
pub struct MeetingResult {
    pub name: String,
    pub size: usize,
    pub passed: bool,
    /// The first few reasons it failed.
    pub failures: Vec<String>,
    pub started_s: f64,
    pub ended_s: f64,
    pub worst_loss_pct: f64,
    pub worst_delay_p99_ms: f64,
    pub worst_freeze_pct: f64,
    pub rejoins: u32,
}

#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Sample {
    pub t_s: f64,
    pub meetings: usize,
    pub participants: usize,
    pub packets_per_s: f64,
    /// RTP media packets only (see `Counters::media_packets_in`).
    pub media_packets_per_s: f64,
    pub completed: usize,
    pub passed: usize,
    /// Frames this second skipped or written late, and client turns over 50 ms late:
    /// when the load generator fell short (see `validity`).
    pub frames_late: u64,
    pub slow_turns: u64,
}

/// Distributions over all streams and joins of a run.
pub struct Aggregate {
    pub join_ms: Histogram<u64>,
    pub loss_milli_pct: Histogram<u64>,
    /// The same by kind: on a lossy link audio's is reported, video's judged.
    pub audio_loss_milli_pct: Histogram<u64>,
    pub video_loss_milli_pct: Histogram<u64>,
    /// Per video stream, the p99 delay of frames a retransmission completed.
    pub recovery_p99_us: Histogram<u64>,
    pub recovered_frames: u64,
    pub video_frames: u64,
    pub delay_p50_us: Histogram<u64>,
    pub delay_p99_us: Histogram<u64>,
    pub freeze_sum_pct: f64,
    pub video_streams: u64,
    pub loss_max_pct: f64,
    /// Video frames received per simulcast layer, over all streams: which layers the
    /// system's subscribers got.
    pub layer_frames: [u64; 3],
    /// SIP legs judged (`--sip-share`), the p99 delay of each one's picture, and the
    /// p99 jitter of each one's mix.
    pub sip_legs: u64,
    pub sip_picture_delay_p99_us: Histogram<u64>,
    pub sip_mix_jitter_p99_us: Histogram<u64>,
}

impl Default for Aggregate {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds");
        Aggregate {
            join_ms: h(),
            loss_milli_pct: h(),
            audio_loss_milli_pct: h(),
            video_loss_milli_pct: h(),
            recovery_p99_us: h(),
            recovered_frames: 0,
            video_frames: 0,
            delay_p50_us: h(),
            delay_p99_us: h(),
            freeze_sum_pct: 0.0,
            video_streams: 0,
            loss_max_pct: 0.0,
            layer_frames: [0; 3],
            sip_legs: 0,
            sip_picture_delay_p99_us: h(),
            sip_mix_jitter_p99_us: h(),
        }
    }
}

pub struct Outcome {
    pub meetings: Vec<MeetingResult>,
    pub timeline: Vec<Sample>,
    pub aggregate: Aggregate,
    pub duration: Duration,
    pub meetings_started: usize,
    pub participants_peak: usize,
    pub meetings_peak: usize,
}

struct Live {
    meetings: AtomicUsize,
    participants: AtomicUsize,
    started: AtomicUsize,
    completed: AtomicUsize,
    passed: AtomicUsize,
    failed: AtomicUsize,
}

/// Judge one meeting from its participants' results.
pub fn judge(
    size: usize,
    results: &[ParticipantResult],
    t: &Thresholds,
    agg: &mut Aggregate,
) -> (bool, Vec<String>, f64, f64, f64) {
    let mut failures = Vec::new();
    let (mut loss, mut delay, mut freeze) = (0.0f64, 0.0f64, 0.0f64);
    // A SIP leg sends the room its video with a probe (its audio is re-encoded by the
    // gateway: no probe survives); it receives the room as one mix and one picture.
    let legs = results.iter().filter(|p| p.sip).count();
    for p in results {
        if p.sip {
            agg.sip_legs += 1;
            for s in &p.streams {
                let us = |ms: f64| (ms * 1000.0) as u64 + 1;
                let _ = match s.sender {
                    PICTURE => agg.sip_picture_delay_p99_us.record(us(s.delay_p99_ms)),
                    MIX => agg.sip_mix_jitter_p99_us.record(us(s.jitter_p99_ms)),
                    _ => Ok(()),
                };
            }
        }
        if let Some(e) = &p.error {
            failures.push(format!("participant {}: {e}", p.id));
        }
        match p.join_ms {
            Some(ms) => {
                let _ = agg.join_ms.record((ms as u64).max(1));
            }
            None => failures.push(format!("participant {}: no media received", p.id)),
        }
        // Everyone else's audio and video must arrive (a SIP leg's video only); a SIP
        // leg must get the mix and the picture.
        let expected = if p.sip {
            if size > 1 {
                2
            } else {
                0
            }
        } else {
            (size - 1).saturating_sub(legs) * 2 + legs
        };
        if p.streams.len() < expected && p.error.is_none() {
            failures.push(format!(
                "participant {}: {} of {expected} streams arrived",
                p.id,
                p.streams.len()
            ));
        }
        for s in &p.streams {
            if let Some(f) = t.stream_failure(s) {
                tracing::info!(participant = p.id, stream = ?s, "stream failed: {f}");
                // What the stream was, so that a failure can be read without a rerun.
                let [q, h, full] = s.layer_frames;
                failures.push(format!(
                    "participant {} from {} ({:?}, {} frames, layers {q}/{h}/{full}, \
                     max gap {:.0} ms at {:.1} s; its videos paused by the node {} \
                     times): {f}",
                    p.id, s.sender, s.kind, s.frames, s.max_gap_ms, s.max_gap_at_s, p.video_pauses
                ));
            }
            loss = loss.max(s.loss_pct);
            delay = delay.max(s.delay_p99_ms);
            let milli_pct = (s.loss_pct * 1000.0) as u64 + 1;
            let _ = agg.loss_milli_pct.record(milli_pct);
            let _ = match s.kind {
                StreamKind::Audio => agg.audio_loss_milli_pct.record(milli_pct),
                StreamKind::Video => agg.video_loss_milli_pct.record(milli_pct),
            };
            let _ = agg
                .delay_p50_us
                .record((s.delay_p50_ms * 1000.0) as u64 + 1);
            let _ = agg
                .delay_p99_us
                .record((s.delay_p99_ms * 1000.0) as u64 + 1);
            agg.loss_max_pct = agg.loss_max_pct.max(s.loss_pct);
            if s.kind == StreamKind::Video {
                freeze = freeze.max(s.freeze_pct);
                agg.freeze_sum_pct += s.freeze_pct;
                agg.video_streams += 1;
                agg.video_frames += s.frames;
                agg.recovered_frames += s.recovered_frames;
                if s.recovered_frames > 0 {
                    let _ = agg
                        .recovery_p99_us
                        .record((s.recovery_p99_ms * 1000.0) as u64 + 1);
                }
                for (sum, n) in agg.layer_frames.iter_mut().zip(s.layer_frames) {
                    *sum += n;
                }
            }
        }
    }
    let passed = failures.is_empty();
    failures.truncate(3);
    (passed, failures, loss, delay, freeze)
}

pub async fn run(
    target: Arc<Target>,
    env: Arc<Env>,
    plans: Vec<MeetingPlan>,
    thresholds: Thresholds,
    progress: ProgressBar,
    metrics: Arc<LtMetrics>,
) -> Outcome {
    let t0 = Instant::now();
    let live = Arc::new(Live {
        meetings: AtomicUsize::new(0),
        participants: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        completed: AtomicUsize::new(0),
        passed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let results: Arc<Mutex<(Vec<MeetingResult>, Aggregate)>> = Arc::default();
    let timeline: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let peaks = Arc::new(Mutex::new((0usize, 0usize)));

    // The sampler: timeline, progress bar, metrics.
    let sampler = {
        let (live, timeline, env, progress, metrics, peaks) = (
            live.clone(),
            timeline.clone(),
            env.clone(),
            progress.clone(),
            metrics.clone(),
            peaks.clone(),
        );
        tokio::spawn(async move {
            let c = &env.counters;
            let short =
                || c.frames_late.load(Ordering::Relaxed) + c.frames_skipped.load(Ordering::Relaxed);
            let mut last = (
                Instant::now(),
                c.packets_in.load(Ordering::Relaxed),
                c.media_packets_in.load(Ordering::Relaxed),
                short(),
                c.slow_turns.load(Ordering::Relaxed),
            );
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = Instant::now();
                let pin = c.packets_in.load(Ordering::Relaxed);
                let mpin = c.media_packets_in.load(Ordering::Relaxed);
                let (late, slow) = (short(), c.slow_turns.load(Ordering::Relaxed));
                let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
                let pps = (pin - last.1) as f64 / secs;
                let media_pps = (mpin - last.2) as f64 / secs;
                let (frames_late, slow_turns) = (late - last.3, slow - last.4);
                metrics.packets_received.inc_by(pin - last.1);
                last = (now, pin, mpin, late, slow);
                let (m, p) = (
                    live.meetings.load(Ordering::Relaxed),
                    live.participants.load(Ordering::Relaxed),
                );
                metrics.meetings_active.set(m as i64);
                metrics.participants_active.set(p as i64);
                {
                    let mut pk = peaks.lock().expect("peaks");
                    pk.0 = pk.0.max(m);
                    pk.1 = pk.1.max(p);
                }
                let (done, ok, bad) = (
                    live.completed.load(Ordering::Relaxed),
                    live.passed.load(Ordering::Relaxed),
                    live.failed.load(Ordering::Relaxed),
                );
                progress.set_position(done as u64);
                progress.set_message(format!(
                    "active {m} meetings / {p} participants · passed {ok} · failed {bad} · {pps:.0} pkt/s in"
                ));
                timeline.lock().expect("timeline").push(Sample {
                    t_s: now.duration_since(t0).as_secs_f64(),
                    meetings: m,
                    participants: p,
                    packets_per_s: pps,
                    media_packets_per_s: media_pps,
                    completed: done,
                    passed: ok,
                    frames_late,
                    slow_turns,
                });
            }
        })
    };

    let mut tasks = Vec::with_capacity(plans.len());
    for plan in plans {
        let (target, env, live, results, thresholds, metrics) = (
            target.clone(),
            env.clone(),
            live.clone(),
            results.clone(),
            thresholds,
            metrics.clone(),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((t0 + plan.start).into()).await;
            live.started.fetch_add(1, Ordering::Relaxed);
            live.meetings.fetch_add(1, Ordering::Relaxed);
            let started_s = t0.elapsed().as_secs_f64();
            let mut people = Vec::with_capacity(plan.size);
            for i in 0..plan.size {
                let (target, env, room, live) =
                    (target.clone(), env.clone(), plan.name.clone(), live.clone());
                // Everyone leaves together: the last to join gets the full media
                // time, and nobody's stream ends early in anyone's measurement.
                let deadline = Instant::now()
                    + Duration::from_millis(JOIN_STAGGER_MS * (plan.size as u64 - 1))
                    + plan.media_for;
                people.push(tokio::spawn(async move {
                    // People join a little apart.
                    tokio::time::sleep(Duration::from_millis(JOIN_STAGGER_MS * i as u64)).await;
                    live.participants.fetch_add(1, Ordering::Relaxed);
                    let id = rand::random::<u32>() >> 1;
                    let r = participant(&target, env, room, id, deadline, i == 0).await;
                    live.participants.fetch_sub(1, Ordering::Relaxed);
                    r
                }));
            }
            let mut out = Vec::with_capacity(plan.size);
            for p in people {
                if let Ok(r) = p.await {
                    out.push(r);
                }
            }
            live.meetings.fetch_sub(1, Ordering::Relaxed);
            let mut guard = results.lock().expect("results");
            let (passed, failures, loss, delay, freeze) =
                judge(plan.size, &out, &thresholds, &mut guard.1);
            for p in &out {
                if let Some(ms) = p.join_ms {
                    metrics.join_duration.observe(ms / 1000.0);
                }
            }
            let label = if passed { "passed" } else { "failed" };
            metrics.meetings.with_label_values(&[label]).inc();
            if passed {
                live.passed.fetch_add(1, Ordering::Relaxed);
            } else {
                live.failed.fetch_add(1, Ordering::Relaxed);
            }
            live.completed.fetch_add(1, Ordering::Relaxed);
            guard.0.push(MeetingResult {
                name: plan.name,
                size: plan.size,
                passed,
                failures,
                started_s,
                ended_s: t0.elapsed().as_secs_f64(),
                worst_loss_pct: loss,
                worst_delay_p99_ms: delay,
                worst_freeze_pct: freeze,
                rejoins: out.iter().map(|p| p.rejoins).sum(),
            });
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    sampler.abort();
    progress.set_position(live.completed.load(Ordering::Relaxed) as u64);
    let (meetings, aggregate) = std::mem::take(&mut *results.lock().expect("results"));
    let timeline = std::mem::take(&mut *timeline.lock().expect("timeline"));
    let (meetings_peak, participants_peak) = *peaks.lock().expect("peaks");
    Outcome {
        meetings,
        timeline,
        aggregate,
        duration: t0.elapsed(),
        meetings_started: live.started.load(Ordering::Relaxed),
        participants_peak,
        meetings_peak,
    }
}
