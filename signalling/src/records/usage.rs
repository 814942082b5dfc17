//! Usage statistics from the records (`signalling records`): meetings, participants,
//! participant-minutes and the most meetings at once, per day (the day a meeting
//! ended) or per organisation, as a table for people, CSV, or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::file::day_of;
use super::{Ended, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Day,
    Org,
}

/// One line of statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    /// The day (`YYYY-MM-DD`) or the organisation (`-` for none).
    pub key: String,
    pub meetings: u64,
    pub participants: u64,
    pub participant_minutes: f64,
    /// The most meetings that ran at once.
    pub peak_meetings: u64,
    pub browser: u64,
    pub whip_whep: u64,
    pub sip: u64,
    /// Meetings a signalling node's stop or crash cut short.
    pub crashed: u64,
}

/// The records of the days `from..=to` (`YYYY-MM-DD`, either open) in `dir`, and how
/// many lines did not parse.
pub fn read(
    dir: &Path,
    from: Option<&str>,
    to: Option<&str>,
) -> std::io::Result<(Vec<Record>, usize)> {
    let mut days: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(day) = day_of(&entry.file_name().to_string_lossy()) else {
            continue;
        };
        if from.is_some_and(|f| day.as_str() < f) || to.is_some_and(|t| day.as_str() > t) {
            continue;
        }
        days.push((day, entry.path()));
    }
    days.sort();
    let (mut records, mut bad) = (Vec::new(), 0);
    for (_, path) in days {
        // A line cut short by a crash may end inside a character: read what there is.
        let bytes = std::fs::read(path)?;
        for line in String::from_utf8_lossy(&bytes).lines() {
            match serde_json::from_str::<Record>(line) {
                Ok(r) => records.push(r),
                Err(_) if line.trim().is_empty() => {}
                Err(_) => bad += 1,
            }
        }
    }
    Ok((records, bad))
}

/// Statistics of `records`, grouped `by`, in key order, with a total row last.
pub fn rows(records: &[Record], by: By) -> Vec<Row> {
    let mut groups: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        let key = match by {
            By::Day => r.ended_at.get(..10).unwrap_or("?").to_owned(),
            By::Org => r.org.clone().unwrap_or_else(|| "-".into()),
        };
        groups.entry(key).or_default().push(r);
    }
    let mut out: Vec<Row> = groups.into_iter().map(|(k, rs)| row(k, &rs)).collect();
    let all: Vec<&Record> = records.iter().collect();
    out.push(row("total".into(), &all));
    out
}

fn row(key: String, records: &[&Record]) -> Row {
    let mut row = Row {
        key,
        peak_meetings: peak(records),
        ..Row::default()
    };
    for r in records {
        row.meetings += 1;
        row.participants += u64::from(r.participants);
        row.participant_minutes += r.participant_minutes;
        row.browser += u64::from(r.by_kind.browser);
        row.whip_whep += u64::from(r.by_kind.whip_whep);
        row.sip += u64::from(r.by_kind.sip);
        row.crashed += u64::from(r.ended == Ended::Crash);
    }
    row.participant_minutes = (row.participant_minutes * 10.0).round() / 10.0;
    row
}

/// The most of `records` that ran at once (one ending as another starts: not both).
fn peak(records: &[&Record]) -> u64 {
    let at = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .ok()
    };
    let mut edges: Vec<(i64, i64)> = Vec::new();
    for r in records {
        if let (Some(s), Some(e)) = (at(&r.started_at), at(&r.ended_at)) {
            edges.push((s, 1));
            edges.push((e, -1));
        }
    }
    // Ends before starts at the same second.
    edges.sort();
    let (mut now, mut most) = (0i64, 0i64);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as u64
}

const HEADER: [&str; 9] = [
    "key",
    "meetings",
    "participants",
    "participant_minutes",
    "peak_meetings",
    "browser",
    "whip_whep",
    "sip",
    "crashed",
];

fn cells(r: &Row) -> [String; 9] {
    [
        r.key.clone(),
        r.meetings.to_string(),
        r.participants.to_string(),
        format!("{:.1}", r.participant_minutes),
        r.peak_meetings.to_string(),
        r.browser.to_string(),
        r.whip_whep.to_string(),
        r.sip.to_string(),
        r.crashed.to_string(),
    ]
}

/// A table for people: columns aligned, the key left, figures right.
pub fn table(rows: &[Row], by: By) -> String {
    let mut header = HEADER.map(str::to_owned);
    header[0] = match by {
        By::Day => "day".into(),
        By::Org => "org".into(),
    };
    let lines: Vec<[String; 9]> = std::iter::once(header)
        .chain(rows.iter().map(cells))
        .collect();
    let widths: Vec<usize> = (0..9)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        if n == lines.len() - 1 && n > 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
        let cols: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cols.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// CSV with a header line (keys quoted when they hold a comma or a quote).
pub fn csv(rows: &[Row]) -> String {
    let mut out = HEADER.join(",");
    out.push('\n');
    for r in rows {
        let mut c = cells(r);
        if c[0].contains([',', '"', '\n']) {
            c[0] = format!("\"{}\"", c[0].replace('"', "\"\""));
        }
        out.push_str(&c.join(","));
        out.push('\n');
    }
    out
}
