use std::time::Duration;

use client::stats::{StreamKind, StreamResult};
use client::ParticipantResult;

use super::*;
use crate::runner::judge;

#[test]
fn the_slices_of_a_plan_partition_its_meetings() {
    let plan: Vec<MeetingPlan> = (0..23)
        .map(|i| MeetingPlan {
            name: format!("m{i}"),
            start: Duration::from_secs(i),
            size: 2,
            media_for: Duration::from_secs(5),
        })
        .collect();
    for n in 1..5 {
        let mut seen: Vec<String> = (0..n)
            .flat_map(|i| slice_of(plan.clone(), Slice { index: i, count: n }))
            .map(|p| p.name)
            .collect();
        seen.sort();
        let mut all: Vec<String> = plan.iter().map(|p| p.name.clone()).collect();
        all.sort();
        assert_eq!(seen, all, "{n} slices: every meeting once");
    }
    assert_eq!("1/3".parse::<Slice>(), Ok(Slice { index: 1, count: 3 }));
    for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
        assert!(bad.parse::<Slice>().is_err(), "{bad}");
    }
}

fn stream(sender: u32, kind: StreamKind, loss: f64, delay: f64) -> StreamResult {
    StreamResult {
        kind,
        sender,
        frames: 300,
        loss_pct: loss,
        delay_p50_ms: delay / 2.0,
        delay_p99_ms: delay,
        recovered_frames: 1,
        recovery_p99_ms: 40.0,
        jitter_p99_ms: 2.0,
        freeze_pct: 0.1,
        max_gap_ms: 80.0,
        max_gap_at_s: 1.0,
        layer_frames: [10, 20, 270],
    }
}

/// Meeting `m` of two: each hears the other's audio and video, with figures that
/// differ by meeting (so that a merge that averaged would show).
fn meeting(m: u32) -> Vec<ParticipantResult> {
    (0..2)
        .map(|p| {
            let mut r = ParticipantResult::new(&format!("m{m}"), m * 2 + p);
            r.join_ms = Some(100.0 + 37.0 * m as f64 + p as f64);
            let other = m * 2 + 1 - p;
            let loss = if m == 3 { 2.5 } else { 0.1 * m as f64 };
            r.streams = vec![
                stream(other, StreamKind::Audio, loss, 1.0 + m as f64),
                stream(other, StreamKind::Video, loss / 2.0, 2.0 + 3.0 * m as f64),
            ];
            r
        })
        .collect()
}

/// The report of meetings `ms`, as a run over them would make it.
fn report_of(ms: &[u32], slice: Option<Slice>) -> (String, serde_json::Value) {
    let t = Thresholds::default();
    let mut aggregate = Aggregate::default();
    let mut tally = Tally {
        duration_s: 30.0,
        ..Tally::default()
    };
    for &m in ms {
        let (passed, failures, ..) = judge(2, &meeting(m), &t, &mut aggregate);
        tally.started += 1;
        tally.completed += 1;
        if passed {
            tally.passed += 1;
        } else {
            tally
                .meeting_failures
                .push(format!("m{m}: {}", failures.join("; ")));
        }
    }
    let timeline = vec![Sample {
        t_s: 1.0,
        meetings: ms.len(),
        participants: 2 * ms.len(),
        ..Sample::default()
    }];
    tally.meetings_peak = ms.len();
    tally.participants_peak = 2 * ms.len();
    let parts = Parts {
        tally: tally.clone(),
        aggregate: aggregate.to_wire(),
        thresholds: t,
        impairment: Impairment::default(),
        sustained: ms.len() as f64,
        slice,
        plan: "steady meetings=6".into(),
        started_unix_ms: 1_000_000,
    };
    let details = serde_json::json!({ "parts": parts });
    let r = report::build_from(
        "steady",
        "http://x",
        &aggregate,
        &tally,
        timeline,
        (t, Impairment::default(), ms.len() as f64),
        details,
    );
    let name = slice.map_or("all".to_owned(), |s| s.to_string());
    (name, serde_json::to_value(&r).unwrap())
}

#[test]
fn merged_slices_read_as_one_report_over_the_same_meetings() {
    let whole = report_of(&[0, 1, 2, 3, 4, 5], None).1;
    let a = report_of(&[0, 2, 4], Some(Slice { index: 0, count: 2 }));
    let b = report_of(&[1, 3, 5], Some(Slice { index: 1, count: 2 }));
    let merged = serde_json::to_value(merge(&[a.clone(), b.clone()]).unwrap()).unwrap();
    for field in [
        "passed",
        "media_passed",
        "join_passed",
        "meetings_started",
        "meetings_completed",
        "meetings_passed",
        "participants_peak",
        "concurrent_meetings_peak",
        "join_ms",
        "loss_pct",
        "audio_loss_pct",
        "video_loss_pct",
        "recovery",
        "delay_ms",
        "freeze_pct",
        "video_layer_frames",
        "thresholds",
    ] {
        assert_eq!(merged[field], whole[field], "{field}");
    }
    // Meeting 3 lost 2.5%: the whole failed, and so does the merge, for it.
    assert_eq!(merged["passed"], false);
    assert!(
        merged["failures"].to_string().contains("m3"),
        "{}",
        merged["failures"]
    );
    // A merge of merges is the same again.
    let again = merge(&[("merged".into(), merged.clone())]).unwrap();
    assert_eq!(
        serde_json::to_value(again).unwrap()["delay_ms"],
        whole["delay_ms"]
    );
}

#[test]
fn what_cannot_be_merged_is_refused() {
    let a = report_of(&[0], Some(Slice { index: 0, count: 2 }));
    let b = report_of(&[1], Some(Slice { index: 1, count: 2 }));
    assert!(merge(&[a.clone(), a.clone()])
        .err()
        .unwrap()
        .contains("twice"));
    assert!(merge(std::slice::from_ref(&a))
        .err()
        .unwrap()
        .contains("1 of 2"));
    let mut other = b.clone();
    other.1["details"]["parts"]["thresholds"]["loss_pct"] = 5.0.into();
    assert!(merge(&[a.clone(), other])
        .err()
        .unwrap()
        .contains("thresholds"));
    let mut elsewhere = b.clone();
    elsewhere.1["details"]["parts"]["plan"] = "steady meetings=7".into();
    assert!(merge(&[a.clone(), elsewhere])
        .err()
        .unwrap()
        .contains("another plan"));
    let mut old = b.clone();
    old.1["details"] = serde_json::json!({});
    assert!(merge(&[a.clone(), old]).err().unwrap().contains("no parts"));
    // An inconclusive slice makes the merge inconclusive.
    let mut starved = b.clone();
    starved.1["valid"] = false.into();
    starved.1["inconclusive"] = "frames skipped".into();
    let m = merge(&[a, starved]).unwrap();
    assert!(!m.valid && !m.passed);
    assert!(m.inconclusive.unwrap().contains("frames skipped"));
}
