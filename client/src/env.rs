//! What all clients of a run share (the media they send, the clock their probes are
//! stamped with, counters of what the run offered and received), and what one
//! participant's measurement comes to.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::media::{Clock, LayerProfile, OpusFrames, VideoCodec, DEFAULT_LAYERS};
use crate::sendlog::SendLog;
use crate::stats::{Measure, StreamKind, StreamResult};

/// Process-wide counters, for the progress bar and the metrics endpoint.
#[derive(Default)]
pub struct Counters {
    pub packets_in: AtomicU64,
    /// Received RTP media packets: not RTCP, not padding-only (RTP P bit), so that
    /// systems that probe bandwidth with padding are not flattered.
    pub media_packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Frames whose batch reached the kernel over 1 ms after their send stamp: this
    /// process's threads were held up (see `sendlog`).
    pub frames_sent_late: AtomicU64,
    /// Frame slots of all senders (sent or not), those missed altogether, and those
    /// whose frame was written over `slots::LATE` after its slot.
    pub frames_planned: AtomicU64,
    pub frames_skipped: AtomicU64,
    pub frames_late: AtomicU64,
    /// Client loop turns, for the share of them that came round late.
    pub client_turns: AtomicU64,
    /// Client loops that came round over 50 ms late, the worst lateness, and the second of
    /// the run in which that was last logged (`peer::count_turn`).
    pub slow_turns: AtomicU64,
    pub slow_turn_worst_ms: AtomicU64,
    pub slow_turn_said_s: AtomicU64,
}

/// Client-side impairment of what each participant receives.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Impairment {
    /// Share of received media datagrams dropped before str0m sees them, percent.
    pub drop_pct: f64,
    /// Extra delay added to every received datagram, milliseconds.
    pub delay_ms: u64,
}

/// What all participants of a run share.
pub struct Env {
    pub http_base: String,
    pub ws_base: String,
    /// Other signalling nodes' WebSocket bases (sharing their state in Redis):
    /// participants are spread over these and `ws_base` by their number, and a lost
    /// WebSocket is resumed through them in turn.
    pub ws_fallbacks: Vec<String>,
    /// Mint tokens with this secret; without it, ask the server's dev-token endpoint.
    pub token_secret: Option<jsonwebtoken::EncodingKey>,
    pub http: reqwest::Client,
    pub opus: Arc<OpusFrames>,
    pub clock: Clock,
    pub layers: Vec<LayerProfile>,
    pub codec: VideoCodec,
    pub keyframe_interval: Duration,
    pub impair: Impairment,
    pub bind_ip: IpAddr,
    pub counters: Counters,
    pub send_log: SendLog,
    /// Skip every Nth frame slot on purpose (0: never); see `slots::take_counted`.
    pub skip_every: u64,
    /// Clients offer Opus in RED (RFC 2198) and, where the node takes it, send each
    /// frame with the two before it: a frame is lost only with the two packets after
    /// it (`PeerSetup::audio_red`).
    pub audio_red: bool,
}

impl Env {
    /// Clients of the signalling node at `http_base` (its WebSocket API at the same
    /// address), bound to 127.0.0.1, publishing the load model's three VP8 layers with
    /// a keyframe every 3 s, unimpaired; asking the dev-token endpoint for tokens.
    /// Probes are stamped on `clock`; `opus` are the audio frames they send.
    pub fn new(http_base: &str, opus: Arc<OpusFrames>, clock: Clock) -> Env {
        let ws_base = match http_base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}"),
            Some((_, rest)) => format!("ws://{rest}"),
            None => String::new(),
        };
        Env {
            http_base: http_base.to_owned(),
            ws_base,
            ws_fallbacks: Vec::new(),
            token_secret: None,
            http: reqwest::Client::new(),
            opus,
            clock,
            layers: DEFAULT_LAYERS.to_vec(),
            codec: VideoCodec::Vp8,
            keyframe_interval: Duration::from_secs(3),
            impair: Impairment::default(),
            bind_ip: [127, 0, 0, 1].into(),
            counters: Counters::default(),
            send_log: SendLog::default(),
            skip_every: 0,
            audio_red: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ParticipantResult {
    pub room: String,
    pub id: u32,
    pub join_ms: Option<f64>,
    pub streams: Vec<StreamResult>,
    pub rejoins: u32,
    /// Times the node paused one of this participant's received videos for lack of
    /// bandwidth (its `video_paused` messages): a gap in a video reads differently.
    pub video_pauses: u32,
    /// A SIP leg (the load generator's `--sip-share`): it receives the room as one mix
    /// and one picture, and others receive only its video with a probe.
    pub sip: bool,
    pub error: Option<String>,
}

impl ParticipantResult {
    pub fn new(room: &str, id: u32) -> Self {
        ParticipantResult {
            room: room.to_owned(),
            id,
            join_ms: None,
            streams: Vec::new(),
            rejoins: 0,
            video_pauses: 0,
            sip: false,
            error: None,
        }
    }

    /// Close every stream's window at the deadline (or now, if earlier) and keep the
    /// results, by sender, audio first, and the join time.
    pub fn close(&mut self, env: &Env, deadline: Instant, measure: &Measure) {
        let end_us = env.clock.us(Instant::now().min(deadline));
        self.join_ms = measure.join_ms;
        let streams = measure.streams.values().map(|s| s.finish(end_us));
        let mut streams: Vec<StreamResult> = streams.collect();
        streams.sort_by_key(|s| (s.sender, s.kind == StreamKind::Video));
        self.streams = streams;
        env.send_log.forget(self.id);
    }
}

/// One turn of a client's loop, counted. One that came round over 50 ms late (its
/// thread was busy with other clients, or yielded its core) is counted as slow and
/// said at most once a second, since an overloaded load generator has thousands of
/// them and the frames it sends late are late too. Moves `last` to `now`.
pub fn count_turn(env: &Env, last: &mut Instant, now: Instant) {
    let gap = now.duration_since(*last);
    *last = now;
    env.counters.client_turns.fetch_add(1, Ordering::Relaxed);
    if gap <= Duration::from_millis(50) {
        return;
    }
    let c = &env.counters;
    let n = c.slow_turns.fetch_add(1, Ordering::Relaxed) + 1;
    let worst = c
        .slow_turn_worst_ms
        .fetch_max(gap.as_millis() as u64, Ordering::Relaxed)
        .max(gap.as_millis() as u64);
    let second = env.clock.us(now) / 1_000_000;
    let said = c.slow_turn_said_s.load(Ordering::Relaxed);
    if second > said
        && c.slow_turn_said_s
            .compare_exchange(said, second, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            slow_turns = n,
            worst_ms = worst,
            "client turns over 50 ms late: the load generator is short of CPU"
        );
    }
}
