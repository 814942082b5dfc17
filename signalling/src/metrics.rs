//! The signalling node's own Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub rooms: IntGauge,
    pub participants: IntGauge,
    pub joins: IntCounterVec,
    pub join_duration: Histogram,
    pub websockets: IntGauge,
    pub joins_waiting: IntGauge,
    pub media_nodes: IntGaugeVec,
    pub media_nodes_lost: prometheus::IntCounter,
    pub media_nodes_refused: prometheus::IntCounter,
    pub node_events_refused: prometheus::IntCounter,
    pub sessions_carried: prometheus::IntCounter,
    pub redis_errors: prometheus::IntCounter,
    pub sessions_resumed: prometheus::IntCounter,
    pub placements: IntCounterVec,
    pub token_rejections: IntCounterVec,
    pub bad_messages: IntCounterVec,
    pub pin_refusals: IntCounterVec,
    pub meetings: prometheus::IntCounter,
    pub participant_seconds: prometheus::Counter,
    pub webhooks: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let r = &registry;
        Metrics {
            webhooks: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "signalling_webhooks_total",
                        "Meeting webhook notices, by result (delivered, retried: a try that failed, failed: after the last try, dropped: the queue was full)",
                    ),
                    &["result"],
                )
                .expect("metric"),
            ),
            meetings: reg(
                r,
                prometheus::IntCounter::new(
                    "signalling_meetings_total",
                    "Meetings ended (a room's first participant to its last)",
                )
                .expect("metric"),
            ),
            participant_seconds: reg(
                r,
                prometheus::Counter::new(
                    "signalling_participant_seconds_total",
                    "Participant time of ended meetings, summed",
                )
                .expect("metric"),
            ),
            pin_refusals: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "signalling_pin_refusals_total",
                        "SIP callers' joins refused for their room's PIN, by why",
                    ),
                    &["why"],
                )
                .expect("metric"),
            ),
            rooms: reg(
                r,
                IntGauge::new("signalling_rooms", "Rooms with participants").expect("metric"),
            ),
            participants: reg(
                r,
                IntGauge::new("signalling_participants", "Joined participants").expect("metric"),
            ),
            joins_waiting: reg(
                r,
                IntGauge::new(
                    "signalling_joins_waiting",
                    "Joins queued by admission control for their turn to be set up",
                )
                .expect("metric"),
            ),
            joins: reg(
                r,
                IntCounterVec::new(
                    Opts::new("signalling_joins_total", "Join attempts by result"),
                    &["result"],
                )
                .expect("metric"),
            ),
            join_duration: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "signalling_join_duration_seconds",
                        "Join request to SDP answer",
                    )
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                )
                .expect("metric"),
            ),
            websockets: reg(
                r,
                IntGauge::new("signalling_websockets_open", "Open WebSocket connections")
                    .expect("metric"),
            ),
            media_nodes: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("signalling_media_nodes", "Media nodes by state"),
                    &["state"],
                )
                .expect("metric"),
            ),
            media_nodes_lost: reg(
                r,
                prometheus::IntCounter::new(
                    "signalling_media_nodes_lost_total",
                    "Media nodes that stopped answering",
                )
                .expect("metric"),
            ),
            node_events_refused: reg(
                r,
                prometheus::IntCounter::new(
                    "signalling_node_events_refused_total",
                    "Events from a media node about rooms or participants not placed on it (dropped)",
                )
                .expect("metric"),
            ),
            redis_errors: reg(
                r,
                prometheus::IntCounter::new(
                    "signalling_redis_errors_total",
                    "Steps on the shared state in Redis (--redis) that failed, and relayed messages this node could not read",
                )
                .expect("metric"),
            ),
            sessions_carried: reg(
                r,
                prometheus::IntCounter::new(
                    "signalling_sessions_carried_total",
                    "Sessions media nodes handed back after this node (re)started, to be resumed by their clients",
                )
                .expect("metric"),
            ),
            sessions_resumed: reg(
                r,
                prometheus::IntCounter::new(
                    "signalling_sessions_resumed_total",
                    "Sessions a client resumed over a new WebSocket (same peer connection)",
                )
                .expect("metric"),
            ),
            media_nodes_refused: reg(
                r,
                prometheus::IntCounter::new(
                    "signalling_media_nodes_refused_total",
                    "Media nodes whose registration failed (wrong secret on either side, broken handshake)",
                )
                .expect("metric"),
            ),
            placements: reg(
                r,
                IntCounterVec::new(
                    Opts::new("signalling_placements_total", "Rooms placed on media nodes"),
                    &["node"],
                )
                .expect("metric"),
            ),
            token_rejections: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "signalling_token_rejections_total",
                        "Refused join tokens by reason",
                    ),
                    &["reason"],
                )
                .expect("metric"),
            ),
            bad_messages: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "signalling_bad_messages_total",
                        "Rejected client messages by reason",
                    ),
                    &["reason"],
                )
                .expect("metric"),
            ),
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
