//! The spool: events on disk until the collector has them.
//!
//! Each writer (the `cordon run` watching one sandbox, or cordond for its own events) appends
//! JSON lines to a file of its own, `<dir>/<uuidv7>.jsonl`, and holds an exclusive `flock` on
//! it while it lives. A line is in the page cache once `write` returns, so it survives the
//! death of any process, cordond included; cordond reads the files, journals and delivers
//! them, and deletes a file once it is fully delivered and its writer is gone (the lock is
//! free). Names sort by creation time, so files are read oldest first.
//!
//! The spool is bounded: when the files in the directory add up to more than `max_bytes`,
//! a writer stops writing and counts what it drops, and once there is room again it writes
//! one `events_lost` event (reason `spool_full`) with the count.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Suffix of spool files.
pub const SUFFIX: &str = "jsonl";

/// How often a writer re-measures the directory; in between it adds what it wrote itself.
const MEASURE_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// One writer's file.
pub struct SpoolWriter {
    /// Locked while this writer lives; the lock goes with the descriptor.
    file: nix::fcntl::Flock<File>,
    path: PathBuf,
    config: SpoolConfig,
    /// The directory's size when last measured, plus what was written since.
    used: u64,
    measured: Instant,
    dropped: u64,
}

impl SpoolWriter {
    /// Creates a new file in the spool directory (and the directory, mode 0700).
    pub fn create(config: SpoolConfig) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)?;
        let name = uuid::Uuid::now_v7().simple();
        let path = config.dir.join(format!("{name}.{SUFFIX}"));
        // Created and locked under a name the reader does not list, then renamed: the
        // reader never sees an unlocked file of a live writer (it would take it for a dead
        // one and delete it).
        let creating = config.dir.join(format!(".{name}.new"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&creating)?;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        std::fs::rename(&creating, &path)?;
        let used = dir_bytes(&config.dir);
        Ok(Self {
            file,
            path,
            config,
            used,
            measured: Instant::now(),
            dropped: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (a newline is added); returns false when the spool is full and the
    /// line was dropped (and counted).
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<bool> {
        if self.measured.elapsed() >= MEASURE_EVERY {
            self.used = dir_bytes(&self.config.dir);
            self.measured = Instant::now();
        }
        let size = line.len() as u64 + 1;
        if self.used + size > self.config.max_bytes {
            self.dropped += 1;
            return Ok(false);
        }
        if let Err(e) = self.append(line) {
            // A full or failing disk: counted like a full spool, and reported once it works
            // again; the watcher goes on.
            if self.dropped == 0 {
                tracing::error!("cannot write to the spool {}: {e}", self.path.display());
            }
            self.dropped += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// Appends a line whatever the bound (the one `events_lost` line that reports drops).
    pub fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        // One write per line: readers never see half of one unless a crash cuts it.
        (&*self.file).write_all(&buf)?;
        self.used += buf.len() as u64;
        Ok(())
    }

    /// Lines dropped since the last call, when there is room again (or `force`).
    pub fn take_dropped(&mut self, force: bool) -> Option<u64> {
        if self.dropped == 0 {
            return None;
        }
        if !force {
            if self.measured.elapsed() >= MEASURE_EVERY {
                self.used = dir_bytes(&self.config.dir);
                self.measured = Instant::now();
            }
            // Room for this line and a few more: otherwise the report itself would be noise.
            if self.used + 4096 > self.config.max_bytes {
                return None;
            }
        }
        Some(std::mem::take(&mut self.dropped))
    }

    /// Flushes to disk (for a clean end; a crash of the process loses nothing written).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// The spool files in `dir`, oldest first.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == SUFFIX))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether the file's writer is gone (nobody holds its lock).
pub fn writer_gone(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock).is_ok()
}

/// The bytes of the spool files in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    files(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Reads the complete lines of `path` from `offset`, at most `max_lines` and about
/// `max_bytes`; returns them with the offset after the last one. A line still being
/// written (no newline yet) is left for later.
pub fn read_lines(
    path: &Path,
    offset: u64,
    max_lines: usize,
    max_bytes: usize,
) -> std::io::Result<(Vec<Vec<u8>>, u64)> {
    use std::io::{BufRead as _, Seek as _};
    let mut file = File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::with_capacity(256 << 10, file);
    let mut lines = Vec::new();
    let mut end = offset;
    let mut bytes = 0;
    while lines.len() < max_lines && bytes < max_bytes {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        end += n as u64;
        bytes += n;
        line.pop();
        lines.push(line);
    }
    Ok((lines, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_locks_its_file_and_the_bound_counts_drops() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: 100,
        };
        let mut w = SpoolWriter::create(config).unwrap();
        assert!(!writer_gone(w.path()));
        assert!(w.write_line(&[b'a'; 49]).unwrap());
        assert!(w.write_line(&[b'b'; 49]).unwrap());
        assert!(!w.write_line(b"c").unwrap());
        assert!(!w.write_line(b"d").unwrap());
        assert_eq!(w.take_dropped(false), None, "no room yet");
        assert_eq!(w.take_dropped(true), Some(2));
        assert_eq!(w.take_dropped(true), None);
        let (lines, end) = read_lines(w.path(), 0, 10, 1 << 20).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(end, 100);
        let path = w.path().to_path_buf();
        drop(w);
        assert!(writer_gone(&path));
        assert_eq!(files(dir.path()).unwrap(), vec![path]);
    }

    #[test]
    fn a_line_without_its_newline_is_left_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, b"one\ntwo\nthr").unwrap();
        let (lines, end) = read_lines(&path, 0, 10, 1 << 20).unwrap();
        assert_eq!(lines, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(end, 8);
        let (lines, end) = read_lines(&path, 4, 1, 1 << 20).unwrap();
        assert_eq!(lines, vec![b"two".to_vec()]);
        assert_eq!(end, 8);
    }
}
