//! Prometheus metrics of the media node.
//!
//! Counters on the packet path are resolved to per-shard handles once, when the shard
//! starts ([`ShardMetrics`]): incrementing one is a single uncontended atomic add, never
//! a label lookup.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub rooms: IntGauge,
    pub participants: IntGauge,
    pub tracks: IntGaugeVec,
    paused_videos: IntGaugeVec,
    packets_received: IntCounterVec,
    bytes_received: IntCounterVec,
    packets_sent: IntCounterVec,
    bytes_sent: IntCounterVec,
    forwarded: IntCounterVec,
    dropped: IntCounterVec,
    keyframe_requests_sent: IntCounterVec,
    keyframe_requests_received: IntCounterVec,
    nacks_received: IntCounterVec,
    nacks_sent: IntCounterVec,
    layer_switches: IntCounterVec,
    busy: GaugeVec,
    turn: prometheus::HistogramVec,
    udp_calls: IntCounterVec,
    udp_send_failed: IntCounterVec,
    udp_gso_refused: IntCounterVec,
    udp_offload: IntGaugeVec,
    tcp_connections: IntGaugeVec,
    tcp_packets: IntCounterVec,
    tcp_closed: IntCounterVec,
    tcp_send_dropped: IntCounterVec,
    pub bwe_estimate: Histogram,
    pub join_duration: Histogram,
    pub peer_failures: IntCounterVec,
    pub events_dropped: IntCounter,
}

/// Handles for one shard.
#[derive(Clone)]
pub struct ShardMetrics {
    pub packets_received: IntCounter,
    pub bytes_received: IntCounter,
    pub packets_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub forwarded: IntCounter,
    pub dropped_unknown_source: IntCounter,
    pub dropped_rejected: IntCounter,
    pub dropped_rtc_error: IntCounter,
    pub dropped_over_rate: IntCounter,
    pub pli_sent: IntCounter,
    pub pli_received: IntCounter,
    pub fir_received: IntCounter,
    pub nacks_received: IntCounter,
    pub nacks_sent: IntCounter,
    pub layer_switches: IntCounter,
    pub busy: Gauge,
    pub turn: Histogram,
    pub paused_videos: IntGauge,
    pub send_calls: IntCounter,
    pub recv_calls: IntCounter,
    pub send_failed: IntCounter,
    pub gso_refused: IntCounter,
    pub tcp_connections: IntGauge,
    pub tcp_packets_received: IntCounter,
    pub tcp_packets_sent: IntCounter,
    pub tcp_send_dropped: IntCounter,
    /// Connections closed, by [`crate::tcp::Close`] reason (in its order).
    pub tcp_closed: [IntCounter; crate::tcp::Close::ALL.len()],
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = &registry;
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            reg.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let tracks = IntGaugeVec::new(Opts::new("sfu_tracks", "Published tracks"), &["kind"])
            .expect("valid metric");
        reg.register(Box::new(tracks.clone()))
            .expect("unique metric");
        let busy = GaugeVec::new(
            Opts::new(
                "sfu_shard_busy_ratio",
                "Share of wall time a shard spent working rather than waiting for I/O",
            ),
            &["shard"],
        )
        .expect("valid metric");
        reg.register(Box::new(busy.clone())).expect("unique metric");
        Metrics {
            rooms: gauge("sfu_rooms", "Rooms with at least one participant"),
            participants: gauge("sfu_participants", "Participants (peer connections)"),
            paused_videos: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "sfu_paused_videos",
                        "Subscriptions whose video is paused for lack of bandwidth",
                    ),
                    &["shard"],
                )
                .expect("valid metric");
                reg.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            tracks,
            packets_received: counter(reg, "sfu_packets_received_total", "UDP datagrams received", &["shard"]),
            bytes_received: counter(reg, "sfu_received_bytes_total", "UDP bytes received", &["shard"]),
            packets_sent: counter(reg, "sfu_packets_sent_total", "UDP datagrams sent", &["shard"]),
            bytes_sent: counter(reg, "sfu_sent_bytes_total", "UDP bytes sent", &["shard"]),
            forwarded: counter(reg, "sfu_rtp_forwarded_total", "RTP packets forwarded to subscribers", &["shard"]),
            dropped: counter(
                reg,
                "sfu_datagrams_dropped_total",
                "Datagrams dropped: unknown_source, rejected (not accepted by the peer), rtc_error (failed SRTP, malformed), over_rate (beyond a track's rate ceiling: audio over 256 kbit/s)",
                &["shard", "reason"],
            ),
            keyframe_requests_sent: counter(reg, "sfu_keyframe_requests_sent_total", "Keyframe requests sent to publishers", &["shard", "kind"]),
            keyframe_requests_received: counter(reg, "sfu_keyframe_requests_received_total", "Keyframe requests received from subscribers", &["shard", "kind"]),
            nacks_received: counter(reg, "sfu_nacks_received_total", "NACKs received from subscribers (each answered by a retransmission from the send buffer when possible)", &["shard"]),
            nacks_sent: counter(reg, "sfu_nacks_sent_total", "NACKs sent to publishers", &["shard"]),
            layer_switches: counter(reg, "sfu_layer_switches_total", "Simulcast layer switches done for subscribers", &["shard"]),
            busy,
            turn: {
                let h = prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "sfu_shard_turn_seconds",
                        "Loop turns that moved datagrams: from waking to the last send of the turn (the most a datagram waits inside the node)",
                    )
                    .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05]),
                    &["shard"],
                )
                .expect("valid metric");
                reg.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            udp_calls: counter(
                reg,
                "sfu_udp_syscalls_total",
                "Send and receive system calls; datagrams per call shows the batching at work",
                &["shard", "direction"],
            ),
            udp_send_failed: counter(reg, "sfu_udp_send_failed_total", "Datagrams the kernel refused to send (buffer full, unreachable)", &["shard"]),
            udp_gso_refused: counter(reg, "sfu_udp_gso_refused_total", "GSO sends the kernel refused (EIO: the device or path cannot segment); the shard then sends without GSO", &["shard"]),
            udp_offload: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "sfu_udp_offload_segments",
                        "Datagrams per call the kernel batches for the shard's socket: gso (send), gro (receive); 1 = that offload is off",
                    ),
                    &["shard", "offload"],
                )
                .expect("valid metric");
                reg.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            tcp_connections: {
                let g = IntGaugeVec::new(
                    Opts::new("sfu_ice_tcp_connections", "Open ICE-TCP connections (clients whose UDP is blocked)"),
                    &["shard"],
                )
                .expect("valid metric");
                reg.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            tcp_packets: counter(reg, "sfu_ice_tcp_packets_total", "Packets (RFC 4571 frames) over ICE-TCP connections", &["shard", "direction"]),
            tcp_closed: counter(
                reg,
                "sfu_ice_tcp_closed_total",
                "ICE-TCP connections closed: eof (by the client), error, unknown (its first packet named no participant of the shard), idle (nothing for 30 s), limit (too many connections), left (its participant left)",
                &["shard", "reason"],
            ),
            tcp_send_dropped: counter(reg, "sfu_ice_tcp_send_dropped_total", "Packets not sent to an ICE-TCP client because its connection's send buffer was full (a client slower than its media)", &["shard"]),
            bwe_estimate: hist(
                "sfu_bwe_estimate_bits_per_second",
                "Subscribers' bandwidth estimates",
                vec![100e3, 200e3, 300e3, 500e3, 750e3, 1e6, 1.5e6, 2e6, 3e6, 5e6, 10e6],
            ),
            join_duration: hist(
                "sfu_join_duration_seconds",
                "Time from a participant's offer to its connection being up",
                vec![0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0],
            ),
            peer_failures: counter(reg, "sfu_peer_failures_total", "Peer connections that failed", &["reason"]),
            events_dropped: {
                let c = IntCounter::new("sfu_events_dropped_total", "Control events dropped because the control plane lagged: those a later event of their kind supersedes, or any past the held limit (their participant is let go)").expect("valid metric");
                reg.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            registry,
        }
    }

    pub fn shard(&self, index: usize) -> ShardMetrics {
        let s = index.to_string();
        let s = s.as_str();
        ShardMetrics {
            packets_received: self.packets_received.with_label_values(&[s]),
            bytes_received: self.bytes_received.with_label_values(&[s]),
            packets_sent: self.packets_sent.with_label_values(&[s]),
            bytes_sent: self.bytes_sent.with_label_values(&[s]),
            forwarded: self.forwarded.with_label_values(&[s]),
            dropped_unknown_source: self.dropped.with_label_values(&[s, "unknown_source"]),
            dropped_rejected: self.dropped.with_label_values(&[s, "rejected"]),
            dropped_rtc_error: self.dropped.with_label_values(&[s, "rtc_error"]),
            dropped_over_rate: self.dropped.with_label_values(&[s, "over_rate"]),
            pli_sent: self.keyframe_requests_sent.with_label_values(&[s, "pli"]),
            pli_received: self
                .keyframe_requests_received
                .with_label_values(&[s, "pli"]),
            fir_received: self
                .keyframe_requests_received
                .with_label_values(&[s, "fir"]),
            nacks_received: self.nacks_received.with_label_values(&[s]),
            nacks_sent: self.nacks_sent.with_label_values(&[s]),
            layer_switches: self.layer_switches.with_label_values(&[s]),
            busy: self.busy.with_label_values(&[s]),
            turn: self.turn.with_label_values(&[s]),
            paused_videos: self.paused_videos.with_label_values(&[s]),
            send_calls: self.udp_calls.with_label_values(&[s, "send"]),
            recv_calls: self.udp_calls.with_label_values(&[s, "recv"]),
            send_failed: self.udp_send_failed.with_label_values(&[s]),
            gso_refused: self.udp_gso_refused.with_label_values(&[s]),
            tcp_connections: self.tcp_connections.with_label_values(&[s]),
            tcp_packets_received: self.tcp_packets.with_label_values(&[s, "received"]),
            tcp_packets_sent: self.tcp_packets.with_label_values(&[s, "sent"]),
            tcp_send_dropped: self.tcp_send_dropped.with_label_values(&[s]),
            tcp_closed: crate::tcp::Close::ALL
                .map(|c| self.tcp_closed.with_label_values(&[s, c.label()])),
        }
    }

    /// Record which batched I/O path a shard's socket got.
    pub fn set_offload(&self, index: usize, offload: udpbatch::Offload) {
        let s = index.to_string();
        let g = |kind: &str, n: usize| {
            self.udp_offload
                .with_label_values(&[s.as_str(), kind])
                .set(n as i64)
        };
        g("gso", offload.gso_segments);
        g("gro", offload.gro_segments);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        let encoder = prometheus::TextEncoder::new();
        let _ = encoder.encode_utf8(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
