//! `loadtest`: scenarios against a signalling node. Exit status: 0 passed,
//! 1 thresholds failed, 2 error (bad arguments, target unreachable).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use clap::{Args, Parser, Subcommand};
use client::media::{Clock, OpusFrames, VideoCodec, DEFAULT_LAYERS};
use client::sendlog::SendLog;
use client::{Counters, Env, Impairment};
use indicatif::{ProgressBar, ProgressStyle};
use loadtest::merge::{slice_of, Parts, Slice};
use loadtest::metrics::LtMetrics;
use loadtest::model;
use loadtest::report;
use loadtest::report::Tally;
use loadtest::runner::{self, MeetingPlan};
use loadtest::sip::SipShare;
use loadtest::target::Target;
use loadtest::thresholds::Thresholds;
use loadtest::validity::LoadFigures;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "knudepunkt load generator: real WebRTC clients, VDX-shaped load, quality thresholds"
)]
struct Cli {
    /// Worker threads for the clients (0 = one per core). Beside a server on the
    /// same small machine, fewer threads leave it a core of its own.
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// Run at idle priority (SCHED_IDLE): a server on the same machine gets the cores
    /// first, as if the load came from another machine. Recorded in the report.
    #[arg(long, global = true)]
    yield_cpu: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// The system to load: a signalling node (http[s]://HOST:PORT), the bare relay
    /// (relay://HOST:PORT[/SHARDS]) or Janus's videoroom (janus://HOST:PORT, HTTP API).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Another signalling node of the target's cluster (`signalling --redis`),
    /// repeatable: participants are spread over all of them (by their number), and
    /// each resumes through another when its own is lost.
    #[arg(long, value_name = "URL")]
    also_target: Vec<String>,
    /// Write the JSON report here (charts go next to it).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Serve the load generator's Prometheus metrics here while running.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Mint join tokens with this secret (the server's --secret); without it, tokens
    /// come from the server's dev-mode endpoint.
    #[arg(long, env = "KNUDEPUNKT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Local IP the clients' UDP sockets use.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Drop this share of received media datagrams before the clients' jitter
    /// buffers, percent (to show that the thresholds can fail).
    #[arg(long, default_value_t = 0.0)]
    impair_drop_pct: f64,
    /// Delay every received datagram by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    impair_delay_ms: u64,
    /// Seconds between keyframes (clients also answer every PLI/FIR).
    #[arg(long, default_value_t = 4.0)]
    keyframe_interval: f64,
    /// Simulcast layers to publish (1-3), from the load model's profile (ARCHITECTURE.md).
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Video codec the clients publish (h264: Constrained Baseline, packetization
    /// mode 1; knudepunkt targets only).
    #[arg(long, default_value = "vp8")]
    codec: VideoCodec,
    /// Skip every Nth frame slot on purpose, counted as skipped (0: never): shows the
    /// inconclusive rule without starving a machine. For tests.
    #[arg(long, default_value_t = 0)]
    inject_skip_every: u64,
    /// Send Opus in RED (RFC 2198) with two redundant copies where the node takes
    /// it, as Chromium does with one; audio recovered from it counts as received,
    /// and on --lossy-link audio loss is judged.
    #[arg(long)]
    audio_red: bool,
    /// The SIP gateway's address (UDP) for --sip-share: the node's `--sip` address.
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// Percent of participants that dial in as plain-RTP SIP legs (PCMA and one VP8
    /// video with probes) through the gateway at --sip, instead of joining over
    /// WebRTC. Their video is judged as any other; the mix they hear by continuity
    /// and level, the picture they see by the video thresholds.
    #[arg(long, default_value_t = 0.0)]
    sip_share: f64,
    /// Run slice I of N of the plan (0-based: the meetings whose index is I modulo
    /// N), one per machine; `loadtest merge` combines the slices' reports exactly.
    /// For smoke, steady and quarter.
    #[arg(long, value_name = "I/N")]
    slice: Option<Slice>,
    #[command(flatten)]
    thresholds: Thresholds,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// A few meetings for a few seconds: what CI runs.
    Smoke {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 2)]
        meetings: usize,
        /// Seconds of media per participant.
        #[arg(long, default_value_t = 8.0)]
        duration: f64,
    },
    /// Hold N concurrent meetings of VDX's size mix (mean 2.8), then leave.
    Steady {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        meetings: usize,
        /// Seconds of media per participant.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// Seconds over which the meetings start.
        #[arg(long, default_value_t = 10.0)]
        ramp: f64,
    },
    /// Raise concurrency step by step until the thresholds fail.
    Capacity {
        #[command(flatten)]
        common: Common,
        /// First step, in concurrent meetings.
        #[arg(long, default_value_t = 10)]
        start: usize,
        /// Each next step is this many times the previous.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// Seconds of media per step.
        #[arg(long, default_value_t = 30.0)]
        step_duration: f64,
    },
    /// Replay a quarter's meetings in the load model's shape, time-compressed.
    Quarter {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 140_000)]
        meetings: usize,
        /// Time compression: the quarter's working hours run this many times faster.
        #[arg(long)]
        speedup: f64,
        /// Each meeting exchanges media at least this long (seconds), whatever the speed-up.
        #[arg(long, default_value_t = 5.0)]
        min_media: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Combine the reports of a plan's slices (`--slice I/N`, one per machine) into
    /// one, exactly: histograms merged, counts summed, thresholds judged again.
    Merge {
        /// The slices' JSON reports.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the merged JSON report here (charts go next to it).
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

/// A finite number above zero (NaN and infinity are not).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Scenario::Merge { reports, report } = &cli.scenario {
        return merge(reports, report.as_deref());
    }
    if cli.yield_cpu {
        // Before the runtime starts its threads: they inherit the class.
        if let Err(e) = loadtest::sched::yield_cpu() {
            return fail(format!("--yield-cpu: {e}"));
        }
    }
    let setup = json!({"threads": cli.threads, "yield_cpu": cli.yield_cpu});
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cli.threads > 0 {
        builder.worker_threads(cli.threads);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("tokio runtime: {e}")),
    };
    rt.block_on(run(cli.scenario, setup))
}

fn plans_steady(meetings: usize, duration: f64, ramp: f64, prefix: &str) -> Vec<MeetingPlan> {
    model::sizes_for(meetings)
        .into_iter()
        .enumerate()
        .map(|(i, size)| MeetingPlan {
            name: format!("{prefix}-{i}"),
            start: Duration::from_secs_f64(ramp * i as f64 / meetings.max(1) as f64),
            size,
            media_for: Duration::from_secs_f64(duration),
        })
        .collect()
}

/// Write `text` to `path` whole or not at all (a report another process waits for,
/// e.g. a merge step, never reads half of it): a file beside it, then renamed.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    std::fs::write(&part, text)?;
    std::fs::rename(&part, path)
}

/// `loadtest merge`: the slices' reports as one.
fn merge(paths: &[PathBuf], out: Option<&std::path::Path>) -> ExitCode {
    let mut reports = Vec::new();
    for p in paths {
        let read = std::fs::read_to_string(p).map_err(|e| e.to_string());
        let json = read.and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
        match json {
            Ok(v) => reports.push((p.display().to_string(), v)),
            Err(e) => return fail(format!("{}: {e}", p.display())),
        }
    }
    let r = match loadtest::merge::merge(&reports) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    eprintln!("{}", report::summary(&r));
    if let Some(path) = out {
        if let Err(e) = write_report(&r, &[], path) {
            return e;
        }
    }
    verdict(&r)
}

/// The report as JSON at `path` (written whole), its charts beside it.
fn write_report(
    r: &report::Report,
    meetings: &[runner::MeetingResult],
    path: &std::path::Path,
) -> Result<(), ExitCode> {
    let json = serde_json::to_string_pretty(r).expect("report serializes");
    if let Err(e) = write_atomically(path, &json) {
        return Err(fail(format!("cannot write {}: {e}", path.display())));
    }
    match report::charts(r, meetings, path) {
        Ok(files) => eprintln!("report: {} · charts: {}", path.display(), files.join(", ")),
        Err(e) => eprintln!("report: {} (charts failed: {e})", path.display()),
    }
    Ok(())
}

/// The exit status of a judged report: 0 passed, 1 failed, 3 inconclusive.
fn verdict(r: &report::Report) -> ExitCode {
    if !r.valid {
        ExitCode::from(3)
    } else if r.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(scenario: Scenario, setup: serde_json::Value) -> ExitCode {
    let common = match &scenario {
        Scenario::Smoke { common, .. }
        | Scenario::Steady { common, .. }
        | Scenario::Capacity { common, .. }
        | Scenario::Quarter { common, .. } => common.clone(),
        Scenario::Merge { .. } => unreachable!("merged before any run"),
    };
    if common.slice.is_some() && matches!(scenario, Scenario::Capacity { .. }) {
        return fail(
            "--slice is for smoke, steady and quarter (a capacity search is one machine's)",
        );
    }
    let sliced = |plans: Vec<MeetingPlan>| match common.slice {
        Some(s) => slice_of(plans, s),
        None => plans,
    };
    if !(0.0..=100.0).contains(&common.impair_drop_pct) {
        return fail("--impair-drop-pct must be within 0-100");
    }
    if !(1..=3).contains(&common.layers) {
        return fail("--layers must be 1, 2 or 3");
    }
    if !positive(common.keyframe_interval) {
        return fail("--keyframe-interval must be positive");
    }
    let base = common.target.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let (target, ws_base) = match base.split_once("://") {
        Some(("relay", rest)) => {
            // relay://HOST:PORT[/SHARDS]: the bare UDP relay baseline (benches' `relay`).
            let (addr, shards) = rest.split_once('/').unwrap_or((rest, "1"));
            let (Ok(addr), Ok(shards)) =
                (addr.parse::<std::net::SocketAddr>(), shards.parse::<u16>())
            else {
                return fail(format!(
                    "--target relay:// needs HOST:PORT[/SHARDS], got {base:?}"
                ));
            };
            if shards == 0 {
                return fail("--target relay://HOST:PORT/SHARDS needs at least one shard");
            }
            for i in 0..shards {
                let shard = std::net::SocketAddr::new(addr.ip(), addr.port() + i);
                if let Err(e) = loadtest::plain::check(shard).await {
                    return fail(format!("target {base} unreachable: {e}"));
                }
            }
            (Target::Relay { addr, shards }, String::new())
        }
        Some(("janus", rest)) => {
            // janus://HOST:PORT: Janus's videoroom plugin through its HTTP API (benches/janus.sh).
            let janus = format!("http://{rest}/janus");
            if let Err(e) = loadtest::janus::check(&http, &janus).await {
                return fail(format!("target {base} unreachable ({janus}/info): {e}"));
            }
            (Target::Janus { base: janus }, String::new())
        }
        Some(("http" | "https", _)) => {
            let ws = match ready(&http, &base).await {
                Ok(ws) => ws,
                Err(e) => return fail(e),
            };
            let sip = match (common.sip, common.sip_share) {
                (_, share) if !(0.0..=100.0).contains(&share) => {
                    return fail("--sip-share must be within 0-100")
                }
                (_, 0.0) => None,
                (None, _) => return fail("--sip-share needs the gateway's address: --sip ADDR"),
                (Some(_), _) if common.codec != VideoCodec::Vp8 => {
                    return fail("--sip-share runs VP8 rooms (SIP legs send VP8)")
                }
                (Some(addr), share) => Some(Arc::new(SipShare::new(addr, share))),
            };
            (Target::Signalling { sip }, ws)
        }
        _ => {
            return fail(format!(
                "--target must be an http://, https://, relay:// or janus:// URL, got {base:?}"
            ))
        }
    };
    let mut ws_fallbacks = Vec::new();
    for other in &common.also_target {
        if !matches!(target, Target::Signalling { .. }) {
            return fail("--also-target is for knudepunkt targets (http://)");
        }
        match ready(&http, other.trim_end_matches('/')).await {
            Ok(ws) => ws_fallbacks.push(ws),
            Err(e) => return fail(format!("--also-target: {e}")),
        }
    }
    if !matches!(target, Target::Signalling { .. }) && common.sip_share != 0.0 {
        return fail("--sip-share is for knudepunkt targets (http://)");
    }
    if common.codec != VideoCodec::Vp8 && !matches!(target, Target::Signalling { .. }) {
        return fail(
            "--codec h264 is for knudepunkt targets (http://); the relay and Janus runs use VP8",
        );
    }
    let opus = match OpusFrames::new() {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let impair = Impairment {
        drop_pct: common.impair_drop_pct,
        delay_ms: common.impair_delay_ms,
    };
    let target = Arc::new(target);
    let env = Arc::new(Env {
        http_base: base.clone(),
        ws_base,
        ws_fallbacks,
        token_secret: common
            .secret
            .as_ref()
            .map(|s| jsonwebtoken::EncodingKey::from_secret(s.as_bytes())),
        http,
        opus,
        clock: Clock(Instant::now()),
        layers: DEFAULT_LAYERS[..common.layers].to_vec(),
        codec: common.codec,
        keyframe_interval: Duration::from_secs_f64(common.keyframe_interval),
        impair,
        bind_ip: common.bind_ip,
        counters: Counters::default(),
        send_log: SendLog::default(),
        skip_every: common.inject_skip_every,
        audio_red: common.audio_red,
    });
    let metrics = Arc::new(LtMetrics::new());
    if let Some(addr) = common.metrics {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot serve metrics on {addr}: {e}")),
        };
        let m = metrics.clone();
        let app = axum::Router::new().route("/metrics", get(move || async move { m.render() }));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let run_id = format!("lt{}", std::process::id());
    let thresholds = Thresholds {
        audio_red: common.audio_red,
        ..common.thresholds
    };
    let bar = |len: usize| {
        let pb = ProgressBar::new(len as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} meetings (ETA {eta}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        pb
    };

    // What plan this is (slices of one plan merge), and when it began.
    let plan = match &scenario {
        Scenario::Smoke {
            meetings, duration, ..
        } => format!("smoke meetings={meetings} duration={duration}"),
        Scenario::Steady {
            meetings,
            duration,
            ramp,
            ..
        } => format!("steady meetings={meetings} duration={duration} ramp={ramp}"),
        Scenario::Quarter {
            meetings,
            speedup,
            min_media,
            seed,
            ..
        } => format!(
            "quarter meetings={meetings} speedup={speedup} min_media={min_media} seed={seed}"
        ),
        _ => String::new(),
    };
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (name, outcome, sustained, details) = match scenario {
        Scenario::Smoke {
            meetings, duration, ..
        } => {
            let plans = sliced(plans_steady(
                meetings,
                duration,
                1.0,
                &format!("{run_id}-smoke"),
            ));
            let plans_len = plans.len();
            let o = runner::run(
                target.clone(),
                env.clone(),
                plans,
                thresholds,
                bar(plans_len),
                metrics.clone(),
            )
            .await;
            ("smoke", o, plans_len as f64, json!({}))
        }
        Scenario::Steady {
            meetings,
            duration,
            ramp,
            ..
        } => {
            if meetings == 0 {
                return fail("--meetings must be at least 1");
            }
            let plans = sliced(plans_steady(
                meetings,
                duration,
                ramp,
                &format!("{run_id}-steady"),
            ));
            let plans_len = plans.len();
            let o = runner::run(
                target.clone(),
                env.clone(),
                plans,
                thresholds,
                bar(plans_len),
                metrics.clone(),
            )
            .await;
            (
                "steady",
                o,
                plans_len as f64,
                json!({ "meetings": meetings, "duration_s": duration }),
            )
        }
        Scenario::Capacity {
            start,
            factor,
            max,
            step_duration,
            ..
        } => {
            if start == 0 || !(factor.is_finite() && factor > 1.0) {
                return fail("--start must be >= 1 and --factor > 1");
            }
            let mut level = start;
            let mut best = 0usize;
            let mut steps = Vec::new();
            let mut last = None;
            let mut floor = false;
            while level <= max {
                eprintln!("capacity: step of {level} concurrent meetings");
                let before = LoadFigures::read(&env.counters);
                let plans = plans_steady(
                    level,
                    step_duration,
                    (level as f64 / 20.0).max(2.0),
                    &format!("{run_id}-cap{level}"),
                );
                let o = runner::run(
                    target.clone(),
                    env.clone(),
                    plans,
                    thresholds,
                    bar(level),
                    metrics.clone(),
                )
                .await;
                let r = report::build(
                    "capacity-step",
                    &base,
                    &o,
                    thresholds,
                    impair,
                    level as f64,
                    json!({}),
                );
                // Each step is judged on what the load generator offered during it: a
                // step it could not offer ends the search, and the capacity found is
                // then a floor, not a measure.
                let offered = LoadFigures::read(&env.counters).since(&before);
                let inconclusive = offered.judge().err();
                steps.push(json!({
                    "meetings": level, "passed": r.passed && inconclusive.is_none(),
                    "valid": inconclusive.is_none(), "inconclusive": inconclusive,
                    "participants_peak": r.participants_peak,
                    "loss_pct_max": r.loss_pct.max, "delay_p99_ms": r.delay_ms.p99, "join_p95_ms": r.join_ms.p95,
                    "failures": r.failures.iter().take(3).collect::<Vec<_>>(),
                }));
                let passed = r.passed;
                last = Some(o);
                if let Some(why) = inconclusive {
                    eprintln!("capacity: step of {level} inconclusive: {why}");
                    floor = true;
                    break;
                }
                if !passed {
                    break;
                }
                best = level;
                level = ((level as f64 * factor).ceil() as usize).max(level + 1);
            }
            let o = last.expect("at least one step ran");
            (
                "capacity",
                o,
                best as f64,
                json!({ "capacity_meetings": best, "capacity_is_floor": floor, "steps": steps }),
            )
        }
        Scenario::Quarter {
            meetings,
            speedup,
            min_media,
            seed,
            ..
        } => {
            if meetings == 0 || !positive(speedup) || !positive(min_media) {
                return fail("--meetings, --speedup and --min-media must be positive");
            }
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let arrivals = model::quarter(meetings, speedup, min_media, &mut rng);
            // Say up front what the replay asks of the target: its busy hours.
            let planned_peak = model::peak_concurrency(&arrivals);
            eprintln!(
                "quarter: {meetings} meetings over {:.0} s; the plan peaks at {planned_peak} \
                 meetings at once (≈{:.0} participants)",
                model::quarter_span_s(speedup),
                planned_peak as f64 * model::mean_size()
            );
            let plans: Vec<MeetingPlan> = arrivals
                .iter()
                .enumerate()
                .map(|(i, a)| MeetingPlan {
                    name: format!("{run_id}-q{i}"),
                    start: Duration::from_secs_f64(a.start_s),
                    size: a.size,
                    media_for: Duration::from_secs_f64(a.duration_s),
                })
                .collect();
            let plans = sliced(plans);
            let plans_len = plans.len();
            let o = runner::run(
                target.clone(),
                env.clone(),
                plans,
                thresholds,
                bar(plans_len),
                metrics.clone(),
            )
            .await;
            let details = json!({
                "speedup": speedup, "min_media_s": min_media,
                "replayed_quarter_s": model::quarter_span_s(speedup),
                "wall_time_s": o.duration.as_secs_f64(),
                "planned_peak_meetings": planned_peak,
            });
            let peak = o.meetings_peak as f64;
            ("quarter", o, peak, details)
        }
        Scenario::Merge { .. } => unreachable!("merged before any run"),
    };
    let mut details = details;
    // What the report is made from: another slice's report merges with it exactly.
    details["parts"] = serde_json::to_value(Parts {
        tally: Tally::of(&outcome),
        aggregate: outcome.aggregate.to_wire(),
        thresholds,
        impairment: impair,
        sustained,
        slice: common.slice,
        plan,
        started_unix_ms,
    })
    .unwrap_or_default();
    let mut r = report::build(
        name, &base, &outcome, thresholds, impair, sustained, details,
    );
    if let Some(d) = r.details.as_object_mut() {
        // How the load generator itself fared: late sends, late client loops.
        let c = &env.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let mut setup = setup;
        setup["codec"] = serde_json::to_value(env.codec).unwrap_or_default();
        if let Target::Signalling { sip: Some(sip) } = &*target {
            setup["sip"] = json!({
                "gateway": sip.gateway.to_string(), "share_pct": sip.share_pct, "legs": sip.legs(),
            });
        }
        setup["frames_sent_late"] = load(&c.frames_sent_late).into();
        setup["slow_client_turns"] = load(&c.slow_turns).into();
        setup["slow_client_turn_worst_ms"] = load(&c.slow_turn_worst_ms).into();
        let figures = LoadFigures::read(c);
        setup["offered"] = serde_json::to_value(figures).unwrap_or_default();
        d.insert("load_generator".into(), setup);
        if let Err(why) = figures.judge() {
            r.inconclusive(why);
        }
    }
    eprintln!("{}", report::summary(&r));
    if let Some(path) = &common.report {
        if let Err(e) = write_report(&r, &outcome.meetings, path) {
            return e;
        }
    }
    verdict(&r)
}

/// A signalling node at `base` (http[s]://HOST:PORT) that answers `/readyz`: its
/// WebSocket base.
async fn ready(http: &reqwest::Client, base: &str) -> Result<String, String> {
    let ws = match base.split_once("://") {
        Some(("http", rest)) => format!("ws://{rest}"),
        Some(("https", rest)) => format!("wss://{rest}"),
        _ => return Err(format!("{base:?} is no http:// or https:// URL")),
    };
    let readyz = http
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match readyz {
        Ok(r) if r.status().is_success() => Ok(ws),
        Ok(r) => Err(format!(
            "target {base} is not ready: /readyz answered {}",
            r.status()
        )),
        Err(e) => Err(format!("target {base} unreachable: {e}")),
    }
}
