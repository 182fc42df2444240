//! The local journal: every event of this host as JSON lines, in the order cordond read them,
//! in `events.jsonl` and its rotated predecessors `events.jsonl.1` (newest) to `.N` (oldest).
//! Bounded by `max_bytes` per file and `keep` rotated files. `cordon events` reads it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// The one writer (cordond's journal thread).
pub struct Journal {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl Journal {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
        }
        let file = open_append(path)?;
        let size = cut_torn_line(&file)?;
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file,
            size,
        })
    }

    /// Appends lines (each without its newline), rotating first when they would not fit.
    pub fn append(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for line in lines {
            let need = (buf.len() + line.len() + 1) as u64;
            if self.size + need > self.max_bytes && self.size + buf.len() as u64 > 0 {
                self.write(&buf)?;
                buf.clear();
                self.rotate()?;
            }
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        self.write(&buf)
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Cuts a line the journal ends in without its newline, and returns the file's size. A
/// cordond killed while writing (SIGKILL ends a long write between pages) leaves part of a
/// line; the next one would write its first line onto it, and a reader would find one line
/// that is no event where two events were. What was cut is written again whole: the spool's
/// cursor moves only after a write completes.
fn cut_torn_line(file: &File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt as _;
    let size = file.metadata()?.len();
    let mut end = size;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if end == size && part.last() == Some(&b'\n') {
            return Ok(size);
        }
        if let Some(at) = part.iter().rposition(|b| *b == b'\n') {
            end = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(
        "the journal ended in a torn line ({} bytes, a crash while writing): cut; its event is written again",
        size - end
    );
    file.set_len(end)?;
    Ok(end)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        // Read too: a torn last line is looked for when the journal is opened.
        .read(true)
        .mode(0o640)
        .open(path)
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The journal's files, oldest first (those that exist).
pub fn files(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|n| rotated(path, n))
        .filter(|p| p.exists())
        .collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// One kind, or several separated by commas (`file_denied,dns_denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Events at or after this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::event::rfc3339_opt"
    )]
    pub since: Option<SystemTime>,
    /// Events of this severity or higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<crate::event::Severity>,
    /// One session's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<uuid::Uuid>,
}

/// Checks a `kind` filter: every name, comma-separated, is a kind of event; an unknown one is
/// an error that names the kinds (and the one probably meant), never a query for nothing.
pub fn check_kinds(text: &str) -> Result<(), String> {
    for kind in text.split(',').map(str::trim) {
        if crate::event::What::KINDS.contains(&kind) {
            continue;
        }
        let hint = cordon_policy::profile::closest(kind, crate::event::What::KINDS)
            .map(|m| format!("; did you mean `{m}`?"))
            .unwrap_or_default();
        return Err(format!(
            "`{kind}` is not a kind of event ({}){hint}",
            crate::event::What::KINDS.join(", ")
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Head {
    sandbox: String,
    kind: String,
    #[serde(with = "crate::event::rfc3339")]
    time: SystemTime,
    #[serde(default)]
    severity: Option<crate::event::Severity>,
    #[serde(default)]
    session: Option<uuid::Uuid>,
}

impl Filter {
    pub fn matches(&self, line: &[u8]) -> bool {
        let Ok(head) = serde_json::from_slice::<Head>(line) else {
            return false;
        };
        self.sandbox.as_ref().is_none_or(|s| *s == head.sandbox)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| k.split(',').any(|k| k.trim() == head.kind))
            && self.since.is_none_or(|t| head.time >= t)
            && self.session.is_none_or(|s| head.session == Some(s))
            && self.severity.is_none_or(|least| {
                // An older agent's event says none: its kind does.
                let severity = head.severity.or_else(|| {
                    serde_json::from_slice::<crate::event::Event>(line)
                        .ok()
                        .map(|e| e.severity())
                });
                severity.is_some_and(|s| s >= least)
            })
    }
}

/// Calls `each` with every matching line of the journal, oldest first; with `follow`, keeps
/// waiting for new lines (across rotations) until `each` returns false. While waiting,
/// `each(None)` asks every 100 ms whether the reader still wants lines.
pub fn read(
    path: &Path,
    keep: u32,
    filter: &Filter,
    follow: bool,
    mut each: impl FnMut(Option<&[u8]>) -> bool,
) -> std::io::Result<()> {
    let mut emit = |line: Option<&[u8]>| match line {
        Some(line) => !filter.matches(line) || each(Some(line)),
        None => each(None),
    };
    let files = files(path, keep);
    let Some((current, older)) = files.split_last() else {
        if !follow {
            return Ok(());
        }
        return tail(path, None, &mut emit);
    };
    for file in older {
        // A file rotated away between listing and opening is read under its next name: skip.
        let Ok(f) = File::open(file) else { continue };
        let mut reader = std::io::BufReader::new(f);
        if !read_available(&mut reader, &mut emit)? {
            return Ok(());
        }
    }
    let f = File::open(current)?;
    if !follow {
        let mut reader = std::io::BufReader::new(f);
        read_available(&mut reader, &mut emit)?;
        return Ok(());
    }
    tail(path, Some(f), &mut emit)
}

/// Complete lines until the end; false when `emit` wants no more.
fn read_available(
    reader: &mut std::io::BufReader<File>,
    emit: &mut impl FnMut(Option<&[u8]>) -> bool,
) -> std::io::Result<bool> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(true);
        }
        if line.last() != Some(&b'\n') {
            // Half a line at the end: step back and read it whole later.
            reader.seek_relative(-(n as i64))?;
            return Ok(true);
        }
        line.pop();
        if !emit(Some(&line)) {
            return Ok(false);
        }
    }
}

fn tail(
    path: &Path,
    open: Option<File>,
    emit: &mut impl FnMut(Option<&[u8]>) -> bool,
) -> std::io::Result<()> {
    let mut reader = open.map(std::io::BufReader::new);
    loop {
        if let Some(r) = reader.as_mut() {
            if !read_available(r, emit)? {
                return Ok(());
            }
        }
        let current_ino = std::fs::metadata(path).ok().map(|m| m.ino());
        let open_ino = reader
            .as_ref()
            .and_then(|r| r.get_ref().metadata().ok())
            .map(|m| m.ino());
        if current_ino.is_some() && current_ino != open_ino {
            // Rotated: what is left of the old file was read above; go on with the new one.
            if let Some(r) = reader.as_mut() {
                if !read_available(r, emit)? {
                    return Ok(());
                }
            }
            reader = File::open(path).ok().map(std::io::BufReader::new);
            continue;
        }
        if !emit(None) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sandbox: &str, kind: &str, n: u32) -> Vec<u8> {
        format!(
            r#"{{"v":1,"sandbox":"{sandbox}","kind":"{kind}","time":"2026-11-26T10:00:{n:02}Z","n":{n}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_torn_last_line_is_cut_before_the_next_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (a, b, c) = (
            line("s", "exec", 1),
            line("s", "exec", 2),
            line("s", "exec", 3),
        );
        let mut torn = [a.clone(), b"\n".to_vec(), b[..10].to_vec()].concat();
        std::fs::write(&path, &torn).unwrap();
        let mut journal = Journal::open(&path, 1 << 20, 1).unwrap();
        journal.append(&[b.clone(), c.clone()]).unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        assert_eq!(
            text(&std::fs::read(&path).unwrap()),
            text(
                &[
                    a.clone(),
                    b"\n".to_vec(),
                    b,
                    b"\n".to_vec(),
                    c,
                    b"\n".to_vec()
                ]
                .concat()
            ),
        );
        // A whole last line, an empty file and a file of one torn line are as they should be.
        for (before, after) in [
            (
                [a.clone(), b"\n".to_vec()].concat(),
                [a.clone(), b"\n".to_vec()].concat(),
            ),
            (Vec::new(), Vec::new()),
            (a[..5].to_vec(), Vec::new()),
        ] {
            std::fs::write(&path, &before).unwrap();
            drop(Journal::open(&path, 1 << 20, 1).unwrap());
            assert_eq!(std::fs::read(&path).unwrap(), after);
        }
        // A torn line longer than one read of the search.
        torn = [a.clone(), b"\n".to_vec(), vec![b'x'; 10_000]].concat();
        std::fs::write(&path, &torn).unwrap();
        drop(Journal::open(&path, 1 << 20, 1).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), [a, b"\n".to_vec()].concat());
    }

    #[test]
    fn rotates_within_its_bound_and_reads_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j/events.jsonl");
        let mut j = Journal::open(&path, 200, 2).unwrap();
        for n in 0..10 {
            j.append(&[line("s", "exec", n)]).unwrap();
        }
        let files = files(&path, 2);
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 200);
        }
        let mut seen = Vec::new();
        read(&path, 2, &Filter::default(), false, |l| {
            seen.push(String::from_utf8(l.unwrap().to_vec()).unwrap());
            true
        })
        .unwrap();
        // The oldest went with the bound; what is left is in order and ends with the last.
        assert!(seen.len() >= 5 && seen.len() < 10, "{seen:?}");
        let ns: Vec<u32> = seen
            .iter()
            .map(|l| {
                l.rsplit(':')
                    .next()
                    .unwrap()
                    .trim_end_matches('}')
                    .parse()
                    .unwrap()
            })
            .collect();
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted);
        assert_eq!(ns.last(), Some(&9));
    }

    #[test]
    fn kinds_are_checked_and_may_be_several() {
        assert!(check_kinds("file_denied, dns_denied").is_ok());
        let err = check_kinds("file_denied,dns_deny").unwrap_err();
        assert!(err.contains("`dns_deny` is not a kind of event"), "{err}");
        assert!(err.contains("did you mean `dns_denied`?"), "{err}");
        let f = Filter {
            kind: Some("exec,exit".into()),
            ..Filter::default()
        };
        assert!(f.matches(&line("a", "exit", 1)));
        assert!(f.matches(&line("a", "exec", 2)));
        assert!(!f.matches(&line("a", "fork", 3)));
    }

    #[test]
    fn filters_by_sandbox_kind_and_time() {
        let f = Filter {
            sandbox: Some("a".into()),
            kind: Some("exec".into()),
            since: Some(humantime::parse_rfc3339("2026-11-26T10:00:05Z").unwrap()),
            severity: None,
            session: None,
        };
        assert!(f.matches(&line("a", "exec", 5)));
        assert!(!f.matches(&line("a", "exec", 4)));
        assert!(!f.matches(&line("b", "exec", 6)));
        assert!(!f.matches(&line("a", "fork", 6)));
        assert!(!f.matches(b"not json"));
    }

    #[test]
    fn filters_by_least_severity_even_for_events_that_do_not_say_theirs() {
        use crate::event::{Event, Severity, What};
        let at_least = |severity| Filter {
            severity: Some(severity),
            ..Filter::default()
        };
        let ptrace = What::SyscallDenied {
            nr: 101,
            syscall: "ptrace".into(),
            args: vec![0; 6],
            errno: 1,
        };
        let event = Event::new("a-1-0", "a", std::time::SystemTime::now(), None, ptrace);
        let said = serde_json::to_vec(&event).unwrap();
        let mut older = event.clone();
        older.severity = None;
        let unsaid = serde_json::to_vec(&older).unwrap();
        for line in [&said, &unsaid] {
            assert!(at_least(Severity::High).matches(line));
            assert!(!at_least(Severity::Critical).matches(line));
        }
        assert!(
            !at_least(Severity::Info).matches(&line("a", "exec", 5)),
            "a line that is not a whole event has no severity to pass"
        );
    }
}
