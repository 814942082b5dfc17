use super::file::RecordFiles;
use super::usage::{self, By};
use super::*;

fn arrival(room: &str, p: u64, kind: Kind, org: Option<&str>, node: &str) -> Arrival {
    Arrival {
        room: room.into(),
        room_id: rid(room),
        participant: ParticipantId(p),
        who: p,
        kind,
        org: org.map(Into::into),
        node: node.into(),
    }
}

/// A stand-in for the room's log reference (a keyed hash in the node).
fn rid(room: &str) -> String {
    format!("r{:012x}", room.bytes().map(u64::from).sum::<u64>() * 7919)
}

/// 2026-12-02T10:00:00Z in Unix ms.
const T0: u64 = 1_796_205_600_000;
const MIN: u64 = 60_000;

#[test]
fn a_meeting_runs_from_its_first_participant_to_its_last() {
    let mut m = Meetings::default();
    m.joined(
        arrival("ward", 1, Kind::Browser, Some("region-h"), "embedded"),
        T0,
    );
    m.joined(arrival("ward", 2, Kind::Sip, None, "embedded"), T0 + MIN);
    // A participant joining twice is one.
    m.joined(arrival("ward", 2, Kind::Sip, None, "embedded"), T0 + MIN);
    m.joined(
        arrival("other", 9, Kind::WhipWhep, Some("kommune"), "node-b"),
        T0,
    );
    assert_eq!(m.len(), 2);
    assert!(m
        .left(ParticipantId(2), T0 + 11 * MIN, Ended::Empty)
        .is_none());
    // Back in, as a new participant (a rejoin): distinct participants grow, the
    // peak does not.
    m.joined(
        arrival("ward", 3, Kind::Browser, Some("other-org"), "node-b"),
        T0 + 12 * MIN,
    );
    assert!(m
        .left(ParticipantId(1), T0 + 20 * MIN, Ended::Empty)
        .is_none());
    // Participant 2 again, under a new id (a reconnection): one person still.
    let mut again = arrival("ward", 4, Kind::Sip, None, "embedded");
    again.who = 2;
    m.joined(again, T0 + 25 * MIN);
    assert!(m
        .left(ParticipantId(4), T0 + 28 * MIN, Ended::Empty)
        .is_none());
    // A join that failed (in and out within a moment) is nobody.
    m.joined(
        arrival("ward", 5, Kind::Browser, None, "embedded"),
        T0 + 29 * MIN,
    );
    assert!(m
        .left(ParticipantId(5), T0 + 29 * MIN + 300, Ended::Empty)
        .is_none());
    // Its videos, as the media node told: two layer switches, one video paused for
    // three minutes, another for the last two of its subscriber's stay.
    // (Participant 1 left: what is said of it is of no meeting now.)
    m.layer_changed(ParticipantId(3));
    m.layer_changed(ParticipantId(3));
    m.layer_changed(ParticipantId(1));
    m.video_paused(ParticipantId(1), control::TrackId(9), true, T0 + 21 * MIN);
    m.video_paused(ParticipantId(3), control::TrackId(5), true, T0 + 21 * MIN);
    m.video_paused(ParticipantId(3), control::TrackId(5), true, T0 + 22 * MIN);
    m.video_paused(ParticipantId(3), control::TrackId(5), false, T0 + 24 * MIN);
    m.video_paused(ParticipantId(3), control::TrackId(6), true, T0 + 28 * MIN);
    // Receiver reports: 1 % over one figure, then 3 % over three (worst 5 %), then
    // jitter alone; at worst 12 ms.
    m.received(ParticipantId(3), (10, 20, 1, 12));
    m.received(ParticipantId(3), (30, 50, 3, 4));
    m.received(ParticipantId(3), (0, 0, 0, 7));
    m.received(ParticipantId(1), (900, 900, 9, 900));
    // Announced once it ran a moment (a webhook's "started"), and only once.
    let started = m.to_announce(T0 + 25 * MIN, 1000);
    assert_eq!(started.len(), 2);
    assert!(started
        .iter()
        .any(|s| s.room_id == rid("ward") && s.started_at == "2026-12-02T10:00:00Z"));
    assert!(m.to_announce(T0 + 26 * MIN, 1000).is_empty());
    let (r, announced) = m
        .left(ParticipantId(3), T0 + 30 * MIN, Ended::Closed)
        .expect("the last one out ends it");
    assert!(announced);
    assert_eq!(r.room_id, rid("ward"));
    assert_eq!(r.org.as_deref(), Some("region-h"), "the first org named");
    assert_eq!(r.started_at, "2026-12-02T10:00:00Z");
    assert_eq!(r.ended_at, "2026-12-02T10:30:00Z");
    assert_eq!(r.duration_s, 1800.0);
    assert_eq!((r.participants, r.participants_peak), (3, 2));
    // 20 + 10 + 18 + 3 minutes (and 0.3 s of nobody).
    assert_eq!(r.participant_minutes, 51.0);
    assert_eq!(
        r.by_kind,
        ByKind {
            browser: 2,
            whip_whep: 0,
            sip: 1
        }
    );
    assert_eq!(r.nodes, vec!["embedded".to_string(), "node-b".into()]);
    assert_eq!(r.ended, Ended::Closed);
    assert_eq!(
        r.quality,
        Quality {
            reports: 3,
            loss_mean_pct: 2.5,
            loss_max_pct: 5.0,
            jitter_max_ms: 12,
            layer_switches: 2,
            video_paused_s: 300.0
        }
    );
    // Nothing in it names anyone.
    let line = serde_json::to_string(&r).unwrap();
    assert!(!line.contains("ward"), "{line}");
    // The other meeting goes on: in progress, as a crash would leave it.
    let open = m.in_progress(T0 + 30 * MIN);
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].ended, open[0].participant_minutes),
        (Ended::Crash, 30.0)
    );
    assert!(
        m.left(ParticipantId(42), T0, Ended::Empty).is_none(),
        "a stranger"
    );
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("knudepunkt-records-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn records_go_to_their_day_and_a_crash_loses_no_meeting() {
    let d = dir("files");
    let (files, crashed) = RecordFiles::open(&d, 400).unwrap();
    assert!(crashed.is_empty());
    let mut m = Meetings::default();
    m.joined(arrival("a", 1, Kind::Browser, None, "n"), T0);
    m.joined(arrival("b", 2, Kind::Browser, None, "n"), T0);
    let (r, _) = m.left(ParticipantId(1), T0 + MIN, Ended::Empty).unwrap();
    files.append(&r).unwrap();
    // Meeting b is in progress when the node dies.
    files.journal(&m.in_progress(T0 + 2 * MIN)).unwrap();
    drop(files);
    let (files, crashed) = RecordFiles::open(&d, 400).unwrap();
    assert_eq!(crashed.len(), 1);
    assert_eq!(
        (crashed[0].room_id.clone(), crashed[0].ended),
        (rid("b"), Ended::Crash)
    );
    let day = std::fs::read_to_string(d.join("meetings-2026-12-02.jsonl")).unwrap();
    assert_eq!(day.lines().count(), 2, "{day}");
    assert!(!d.join("journal.json").exists(), "the journal is read once");
    // No meeting in progress: no journal.
    files.journal(&[]).unwrap();
    assert!(!d.join("journal.json").exists());
    // A line a crash cut short costs only itself.
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("meetings-2026-12-02.jsonl"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"room_id\":\"r12"))
        .unwrap();
    files.append(&r).unwrap();
    let (read, bad) = usage::read(&d, None, None).unwrap();
    assert_eq!((read.len(), bad), (3, 1));

    // Retention: a day past it goes, the others stay; other files are left alone.
    std::fs::write(d.join("meetings-2025-10-01.jsonl"), "").unwrap();
    std::fs::write(d.join("meetings-2025-11-10.jsonl"), "").unwrap();
    std::fs::write(d.join("notes.txt"), "").unwrap();
    assert_eq!(files.sweep("2026-12-02").unwrap(), 1);
    assert!(!d.join("meetings-2025-10-01.jsonl").exists());
    assert!(d.join("meetings-2025-11-10.jsonl").exists());
    assert!(d.join("notes.txt").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn usage_is_counted_per_day_and_per_org() {
    let d = dir("usage");
    let (files, _) = RecordFiles::open(&d, 400).unwrap();
    let mut m = Meetings::default();
    // Day 1: two meetings overlapping, one of region-h; day 2: one, cut by a crash.
    m.joined(arrival("a", 1, Kind::Browser, Some("region-h"), "n"), T0);
    m.joined(arrival("a", 2, Kind::Sip, None, "n"), T0);
    m.joined(arrival("b", 3, Kind::WhipWhep, None, "n"), T0 + 10 * MIN);
    m.left(ParticipantId(2), T0 + 20 * MIN, Ended::Empty);
    files
        .append(
            &m.left(ParticipantId(1), T0 + 30 * MIN, Ended::Empty)
                .unwrap()
                .0,
        )
        .unwrap();
    files
        .append(
            &m.left(ParticipantId(3), T0 + 40 * MIN, Ended::Empty)
                .unwrap()
                .0,
        )
        .unwrap();
    let next_day = T0 + 24 * 60 * MIN;
    m.joined(
        arrival("c", 4, Kind::Browser, Some("region-h"), "n"),
        next_day,
    );
    files.journal(&m.in_progress(next_day + 5 * MIN)).unwrap();
    drop(files);
    let (_files, _) = RecordFiles::open(&d, 400).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("meetings-2026-12-03.jsonl"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"not json\n"))
        .unwrap();

    let (records, bad) = usage::read(&d, None, None).unwrap();
    assert_eq!((records.len(), bad), (3, 1));
    let days = usage::rows(&records, By::Day);
    let keys: Vec<&str> = days.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["2026-12-02", "2026-12-03", "total"]);
    assert_eq!(
        (
            days[0].meetings,
            days[0].participants,
            days[0].peak_meetings
        ),
        (2, 3, 2)
    );
    // a: 30 + 20 minutes; b: 30.
    assert_eq!(days[0].participant_minutes, 80.0);
    assert_eq!((days[0].browser, days[0].sip, days[0].whip_whep), (1, 1, 1));
    assert_eq!((days[1].meetings, days[1].crashed), (1, 1));
    assert_eq!(days[2].meetings, 3);
    let orgs = usage::rows(&records, By::Org);
    let keys: Vec<&str> = orgs.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["-", "region-h", "total"]);
    assert_eq!(orgs[1].meetings, 2);
    // A window of days.
    let (only, _) = usage::read(&d, Some("2026-12-03"), Some("2026-12-03")).unwrap();
    assert_eq!(only.len(), 1);

    let table = usage::table(&days, By::Day);
    assert!(table.starts_with("day "), "{table}");
    assert!(table.lines().any(|l| l.starts_with("total ")), "{table}");
    let csv = usage::csv(&orgs);
    assert!(
        csv.starts_with("key,meetings,participants,participant_minutes,"),
        "{csv}"
    );
    assert!(csv.contains("\nregion-h,2,"), "{csv}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_failed_join_is_not_in_the_peak_and_a_short_overlap_is() {
    let mut m = Meetings::default();
    let browser = |room, p| arrival(room, p, Kind::Browser, None, "embedded");
    // 2 fails (out 300 ms after it came); 3 came meanwhile and stays: two at most.
    m.joined(browser("ward", 1), T0);
    m.joined(browser("ward", 2), T0 + MIN);
    m.joined(browser("ward", 3), T0 + MIN + 100);
    assert!(m
        .left(ParticipantId(2), T0 + MIN + 300, Ended::Empty)
        .is_none());
    assert!(m
        .left(ParticipantId(1), T0 + 2 * MIN, Ended::Empty)
        .is_none());
    let (r, _) = m
        .left(ParticipantId(3), T0 + 3 * MIN, Ended::Empty)
        .unwrap();
    assert_eq!((r.participants, r.participants_peak), (2, 2));

    // 5 leaves 500 ms after 6 came (both stayed a while): two at once, if briefly.
    m.joined(browser("other", 5), T0);
    m.joined(browser("other", 6), T0 + MIN);
    assert!(m
        .left(ParticipantId(5), T0 + MIN + 500, Ended::Empty)
        .is_none());
    let (r, _) = m
        .left(ParticipantId(6), T0 + 2 * MIN, Ended::Empty)
        .unwrap();
    assert_eq!((r.participants, r.participants_peak), (2, 2));

    // A meeting in progress (a crash's record) counts those who have stayed the
    // moment, in the participants and in the peak alike.
    m.joined(browser("third", 7), T0);
    m.joined(browser("third", 8), T0 + 500);
    let figures = |r: &Record| (r.participants, r.participants_peak);
    assert_eq!(figures(&m.in_progress(T0 + 900)[0]), (0, 0));
    assert_eq!(figures(&m.in_progress(T0 + 1200)[0]), (1, 1));
    assert_eq!(figures(&m.in_progress(T0 + 1600)[0]), (2, 2));
}
