//! Where records go: `DIR/meetings-YYYY-MM-DD.jsonl`, one per UTC day (the day a
//! meeting ended), each line appended and synced before the next; the meetings in
//! progress in `DIR/journal.json` (rewritten whole: a temporary file, synced, renamed
//! over), read back at the next start as meetings ended by a crash; files older than
//! the retention removed.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Ended, Record};

/// The journal of meetings in progress.
const JOURNAL: &str = "journal.json";

/// Days of records kept by default: 400, a year and a month, so that a month can be
/// compared with the same month a year before (yearly and quarterly reports) while
/// nothing is kept for ever. The records name no one; the limit is housekeeping.
pub const DEFAULT_RETENTION_DAYS: u32 = 400;

pub struct RecordFiles {
    dir: PathBuf,
    retention_days: u32,
}

impl RecordFiles {
    /// Records in `dir` (made if missing), kept `retention_days`. Meetings a crash
    /// left in the journal are written as ended by it; returns them too.
    pub fn open(dir: &Path, retention_days: u32) -> std::io::Result<(RecordFiles, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let files = RecordFiles {
            dir: dir.to_owned(),
            retention_days,
        };
        let journal = dir.join(JOURNAL);
        let mut crashed = Vec::new();
        if let Ok(text) = std::fs::read(&journal) {
            // It is written whole (renamed into place): one that does not parse was
            // not written by this program.
            let open: Vec<Record> = serde_json::from_slice(&text).unwrap_or_else(|e| {
                tracing::warn!("meeting records: a journal that does not parse is left out: {e}");
                Vec::new()
            });
            for mut r in open {
                r.ended = Ended::Crash;
                files.append(&r)?;
                crashed.push(r);
            }
            std::fs::remove_file(&journal)?;
            sync_dir(dir)?;
        }
        Ok((files, crashed))
    }

    /// The day file of a record: the UTC day it ended.
    fn day_file(&self, r: &Record) -> PathBuf {
        let day = r.ended_at.get(..10).unwrap_or("0000-00-00");
        self.dir.join(format!("meetings-{day}.jsonl"))
    }

    /// Append one record and sync it (a new day file's directory entry too). A line
    /// a crash cut short is ended first, so that it costs only itself.
    pub fn append(&self, r: &Record) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let path = self.day_file(r);
        let new = !path.exists();
        let mut line = serde_json::to_string(r).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let len = f.metadata()?.len();
        let mut last = [b'\n'];
        if len > 0 {
            f.read_exact_at(&mut last, len - 1)?;
        }
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        if new {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The meetings in progress now (none: no journal).
    pub fn journal(&self, open: &[Record]) -> std::io::Result<()> {
        let path = self.dir.join(JOURNAL);
        if open.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                Err(_) => Ok(()),
                Ok(()) => sync_dir(&self.dir),
            };
        }
        let tmp = self.dir.join(format!("{JOURNAL}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(open).map_err(std::io::Error::other)?)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }

    /// Remove day files older than the retention, as of `today` (`YYYY-MM-DD`);
    /// returns how many.
    pub fn sweep(&self, today: &str) -> std::io::Result<usize> {
        let Some(oldest) = days_before(today, self.retention_days) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(day) = day_of(&name.to_string_lossy()) else {
                continue;
            };
            if day < oldest {
                std::fs::remove_file(self.dir.join(&name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A directory's entries (a new file, a rename, a removal) made durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What the writer thread does, in order.
enum Op {
    Append(Box<Record>),
    Journal(Vec<Record>),
    Sweep(String),
}

/// The files, written by a thread of their own: a slow disk (each line is synced)
/// holds up no task of the node's runtime. Operations are done in the order given.
pub struct Writer(std::sync::mpsc::Sender<Op>);

impl Writer {
    pub fn spawn(files: RecordFiles) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("records".into())
            .spawn(move || {
                for op in rx {
                    let done = match op {
                        Op::Append(r) => files.append(&r).map(|()| 0),
                        Op::Journal(open) => files.journal(&open).map(|()| 0),
                        Op::Sweep(today) => files.sweep(&today),
                    };
                    match done {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            files = n,
                            "meeting records past their retention removed"
                        ),
                        Err(e) => tracing::warn!("meeting records: {e}"),
                    }
                }
            })
            .expect("a thread for the records");
        Writer(tx)
    }

    pub fn append(&self, r: Record) {
        let _ = self.0.send(Op::Append(Box::new(r)));
    }

    pub fn journal(&self, open: Vec<Record>) {
        let _ = self.0.send(Op::Journal(open));
    }

    pub fn sweep(&self) {
        let _ = self.0.send(Op::Sweep(today()));
    }
}

/// The day of a records file's name (`meetings-YYYY-MM-DD.jsonl`).
pub fn day_of(name: &str) -> Option<String> {
    let day = name.strip_prefix("meetings-")?.strip_suffix(".jsonl")?;
    parse_day(day).map(|_| day.to_owned())
}

fn parse_day(day: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, &format).ok()
}

/// The day `n` days before `day` (both `YYYY-MM-DD`).
fn days_before(day: &str, n: u32) -> Option<String> {
    let d = parse_day(day)?.checked_sub(time::Duration::days(i64::from(n)))?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    ))
}

/// Today, UTC (`YYYY-MM-DD`).
pub fn today() -> String {
    super::rfc3339(super::now_ms())[..10].to_owned()
}
