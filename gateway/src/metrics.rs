//! The gateway's Prometheus metrics. Registered in the signalling node's registry when
//! it runs in-process (`signalling --sip`), so that they are scraped with the node's.
//! No label names a room, a caller or an address.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

pub struct Metrics {
    pub calls_active: IntGauge,
    /// Calls by how they went: `answered`, `refused` (the caller's request could not be
    /// served: no room, an offer it cannot take, the gateway full), `failed` (ours).
    pub calls: IntCounterVec,
    /// How long one 20 ms frame of a leg's mix took (decode, mix, encode).
    pub mix_duration: Histogram,
    /// Per call at its end: the share of the caller's RTP packets lost, and the worst
    /// jitter seen (RFC 3550 interarrival jitter), in seconds.
    pub leg_loss_ratio: Histogram,
    pub leg_jitter: Histogram,
    /// Datagrams on calls' RTP ports that were not the call's RTP.
    pub leg_ignored: prometheus::IntCounter,
    /// 1 while the registration with the SIP registrar holds (`--sip-register`).
    pub registered: IntGauge,
}

impl Metrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &Registry) -> Metrics {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let r = registry;
        Metrics {
            calls_active: reg(
                r,
                IntGauge::new("gateway_calls_active", "SIP calls in progress").expect("metric"),
            ),
            calls: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_calls_total",
                        "SIP calls by result: answered (in its room), refused (4xx), \
                         failed (could not join its room), dropped (lost its room once answered), \
                         expired (no session refresh came)",
                    ),
                    &["result"],
                )
                .expect("metric"),
            ),
            mix_duration: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "gateway_mix_duration_seconds",
                        "Time to make one 20 ms frame of a leg's audio (decode, mix, encode)",
                    )
                    .buckets(vec![
                        0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02,
                    ]),
                )
                .expect("metric"),
            ),
            leg_loss_ratio: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "gateway_leg_loss_ratio",
                        "Share of a call's incoming RTP packets lost, per call",
                    )
                    .buckets(vec![0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]),
                )
                .expect("metric"),
            ),
            leg_jitter: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "gateway_leg_jitter_seconds",
                        "Highest interarrival jitter of a call's incoming RTP, per call",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
                )
                .expect("metric"),
            ),
            leg_ignored: reg(
                r,
                prometheus::IntCounter::new(
                    "gateway_leg_datagrams_ignored_total",
                    "Datagrams on calls' RTP ports that were not the call's RTP",
                )
                .expect("metric"),
            ),
            registered: reg(
                r,
                IntGauge::new(
                    "gateway_registered",
                    "1 while the registration with the SIP registrar holds (--sip-register)",
                )
                .expect("metric"),
            ),
        }
    }

    pub fn result(&self, result: &str) {
        self.calls.with_label_values(&[result]).inc();
    }
}
