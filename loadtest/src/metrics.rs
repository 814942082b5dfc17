//! The load generator's own Prometheus metrics (`--metrics ADDR`), so that operators
//! see the load beside the server's figures.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct LtMetrics {
    pub registry: Registry,
    pub meetings_active: IntGauge,
    pub participants_active: IntGauge,
    pub meetings: IntCounterVec,
    pub packets_received: IntCounter,
    pub join_duration: Histogram,
}

impl LtMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let meetings_active =
            IntGauge::new("loadtest_meetings_active", "Meetings in progress").expect("metric");
        let participants_active =
            IntGauge::new("loadtest_participants_active", "Participants in progress")
                .expect("metric");
        let meetings = IntCounterVec::new(
            Opts::new("loadtest_meetings_total", "Finished meetings by verdict"),
            &["result"],
        )
        .expect("metric");
        let packets_received = IntCounter::new(
            "loadtest_packets_received_total",
            "UDP datagrams received by all clients",
        )
        .expect("metric");
        let join_duration = Histogram::with_opts(
            HistogramOpts::new(
                "loadtest_join_duration_seconds",
                "Join request to first media received",
            )
            .buckets(vec![0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0]),
        )
        .expect("metric");
        for c in [
            Box::new(meetings_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(participants_active.clone()),
            Box::new(meetings.clone()),
            Box::new(packets_received.clone()),
            Box::new(join_duration.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        LtMetrics {
            registry,
            meetings_active,
            participants_active,
            meetings,
            packets_received,
            join_duration,
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut s);
        s
    }
}

impl Default for LtMetrics {
    fn default() -> Self {
        Self::new()
    }
}
