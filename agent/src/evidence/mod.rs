//! Evidence of one sandbox, for a responder, before it is killed: `cordon evidence SANDBOX`.
//!
//! One gzipped tar archive holds what the kernel can tell of the sandbox as it is now: each
//! process (argv, exe and its SHA-256, cwd, credentials, open descriptors with the sockets
//! behind them, memory maps, and with `--memory` an ELF core of its memory), the files
//! changed since launch in the trees it writes and in its private `/tmp`, the session's
//! whole event timeline from the journal, and the profile as it was resolved at launch.
//! `manifest.json`, the last entry, lists every other entry with its SHA-256; its own
//! SHA-256 goes into the `responder_action` event that records the collection, so the
//! record shows whether an archive was altered since (`cordon evidence --verify`).
//!
//! Collecting only reads: `/proc`, the sandbox's files through descriptors that never follow
//! a link it planted, the journal. A frozen sandbox stays frozen, a running one runs on, and
//! nothing is said to it.

mod changed;
mod core;
mod process;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cgroup::{self, SandboxCgroup};

/// The most bytes of the session's events kept in an archive.
const MAX_EVENTS_BYTES: usize = 64 << 20;

/// The archive's format, in its manifest.
pub const FORMAT: &str = "cordon-evidence/1";

/// What a session was launched with, recorded on its cgroup at launch (see
/// [`SandboxCgroup::set_launch_record`]): what evidence needs and the sandbox cannot change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchRecord {
    pub session: uuid::Uuid,
    /// Nanoseconds since the epoch: files whose inode changed at or after it changed during
    /// the session (a process can set a file's mtime back, never its ctime).
    pub started_ns: i64,
    pub workspace: PathBuf,
    /// The host trees the sandbox may write (its private `/tmp` and `/dev/shm` aside).
    pub written: Vec<PathBuf>,
    /// The profile as resolved, exactly the bytes whose SHA-256 `session_started` carries.
    pub profile_json: String,
}

/// The most bytes of a launch record kept as plain JSON, below an extended attribute's 64 KiB.
const RECORD_RAW_MAX: usize = 60 << 10;
/// How a gzip stream starts (and JSON never does).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl LaunchRecord {
    /// `profile_json`: the policy as serialized for `session_started`'s hash.
    pub fn new(
        session: uuid::Uuid,
        started: SystemTime,
        policy: &crate::policy::Policy,
        profile_json: String,
    ) -> Self {
        // The private /tmp is walked through the sandbox's root; devices and procfs are not
        // files anyone changes.
        let walked =
            |p: &Path| p != Path::new("/tmp") && !p.starts_with("/dev") && !p.starts_with("/proc");
        Self {
            session,
            started_ns: unix_ns(started),
            workspace: policy.workspace.clone(),
            written: policy
                .filesystem
                .rules
                .iter()
                .filter(|r| r.access.write && walked(&r.path))
                .map(|r| r.path.clone())
                .collect(),
            profile_json,
        }
    }

    /// JSON, gzipped only when it would not fit an extended attribute (64 KiB): the record
    /// is written on every launch, and compressing it took a millisecond of each; the
    /// shipped profiles' records are 15 to 20 KiB.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        if json.len() <= RECORD_RAW_MAX {
            return json;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = gz.write_all(&json);
        gz.finish().unwrap_or_default()
    }

    /// A record [`LaunchRecord::encode`] made: JSON, or gzipped JSON.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if !bytes.starts_with(&GZIP_MAGIC) {
            return serde_json::from_slice(bytes).map_err(|e| e.to_string());
        }
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(16 << 20)
            .read_to_end(&mut json)
            .map_err(|e| format!("not gzip: {e}"))?;
        serde_json::from_slice(&json).map_err(|e| e.to_string())
    }
}

/// How much to collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// An ELF core of each process's memory.
    pub memory: bool,
}

/// How long one collection may take: what is left when it runs out is a gap.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// What a collection may still spend, and the gaps it noted: the sandbox shapes what is
/// collected (its files, its processes, its memory), so every cost is bounded and every
/// bound reached is said in the manifest.
pub struct Budget {
    until: std::time::Instant,
    /// Bytes of memory cores still allowed, for all the processes together.
    pub memory: u64,
    gaps: Vec<String>,
}

impl Budget {
    pub(crate) fn new(deadline: std::time::Duration) -> Self {
        Self {
            until: std::time::Instant::now() + deadline,
            memory: core::MAX_BYTES,
            gaps: Vec::new(),
        }
    }

    pub fn gap(&mut self, what: String) {
        // A sandbox that makes endless gaps does not make an endless manifest.
        if self.gaps.len() < 10_000 {
            self.gaps.push(what);
        }
    }

    pub fn out_of_time(&self) -> bool {
        std::time::Instant::now() > self.until
    }
}

/// Where the session's events are: cordond's journal.
#[derive(Debug, Clone)]
pub struct Journal {
    pub path: PathBuf,
    pub keep: u32,
}

/// What was collected: recorded in the `responder_action` event and told to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub sandbox: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<uuid::Uuid>,
    /// `frozen` or `running`, as it was found (and left).
    pub state: String,
    pub processes: usize,
    /// Entries of the archive, the manifest aside.
    pub files: usize,
    pub bytes: u64,
    pub manifest_sha256: String,
    pub archive_sha256: String,
}

/// An archive on its way to the collector (cordond's outbox keeps it as `ID.json` beside
/// `ID.tar.gz` until the collector has it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Upload {
    pub id: uuid::Uuid,
    pub sandbox: String,
    pub summary: Summary,
}

impl Upload {
    /// What the upload's headers tell the collector.
    pub fn headers(&self) -> cordon_proto::collector::EvidenceUpload<'_> {
        cordon_proto::collector::EvidenceUpload {
            id: self.id,
            sandbox: &self.sandbox,
            session: self.summary.session,
            archive_sha256: &self.summary.archive_sha256,
            manifest_sha256: &self.summary.manifest_sha256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("not a sandbox name (see `cordon ps`)")]
    BadName,
    #[error("no such sandbox (see `cordon ps`)")]
    NoSuchSandbox,
    #[error("the sandbox has no process left to collect")]
    Empty,
    #[error("cannot write the archive: {0}")]
    Write(#[from] std::io::Error),
    #[error("{0} is where the sandbox writes: it could replace the archive; write it elsewhere")]
    OutputInSandbox(PathBuf),
}

/// The manifest: every entry of the archive with its SHA-256, and what it is evidence of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub sandbox: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<uuid::Uuid>,
    pub host: String,
    #[serde(with = "crate::event::rfc3339")]
    pub collected_at: SystemTime,
    pub state: String,
    pub cordon_version: String,
    pub files: Vec<ManifestEntry>,
    /// What could not be collected, and why (a process that ended meanwhile, a file too large).
    pub gaps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Collects the evidence of the sandbox `name` into `out` (a gzipped tar archive);
/// `out_path`, where `out` is, must not be where the sandbox writes.
pub fn collect(
    name: &str,
    host: &str,
    options: Options,
    journal: Option<&Journal>,
    (out, out_path): (&mut dyn Write, Option<&Path>),
) -> Result<Summary, EvidenceError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(EvidenceError::BadName);
    }
    let dir = cgroup::sandboxes_dir().map_err(|_| EvidenceError::NoSuchSandbox)?;
    let sandbox = SandboxCgroup::open(&dir.join(name)).map_err(|_| EvidenceError::NoSuchSandbox)?;
    let pids = process::pids_of(sandbox.path());
    if pids.is_empty() {
        return Err(EvidenceError::Empty);
    }
    let state = if sandbox.is_frozen().unwrap_or(false) {
        "frozen"
    } else {
        "running"
    };
    let mut budget = Budget::new(DEADLINE);
    let launch = match sandbox.launch_record().map(|b| LaunchRecord::decode(&b)) {
        Some(Ok(record)) => Some(record),
        Some(Err(e)) => {
            budget.gap(format!("the launch record is unreadable ({e})"));
            None
        }
        None => {
            budget.gap(
                "no launch record (a sandbox of an older cordon): no profile, no changed files"
                    .into(),
            );
            None
        }
    };
    if let (Some(launch), Some(path)) = (&launch, out_path) {
        let written = std::iter::once(&launch.workspace).chain(&launch.written);
        if path.starts_with("/proc") || written.into_iter().any(|t| path.starts_with(t)) {
            return Err(EvidenceError::OutputInSandbox(path.to_path_buf()));
        }
    }
    let session = launch
        .as_ref()
        .map(|l| l.session)
        .or_else(|| sandbox.session());

    let mut counted = Counted::new(out);
    let gz = flate2::write::GzEncoder::new(&mut counted, flate2::Compression::fast());
    let mut archive = Archive::new(gz);

    // Each process as listed, if it is still the sandbox's (a pid reused by a host process
    // since is not read).
    let ours = |pid: u32| process::in_cgroup(pid, name);
    for &pid in &pids {
        if budget.out_of_time() {
            budget.gap(format!(
                "process {pid} and after: the collection's time ran out"
            ));
            break;
        }
        if !ours(pid) {
            budget.gap(format!("process {pid}: ended (or no longer the sandbox's)"));
            continue;
        }
        match process::describe(pid, &mut budget) {
            Ok(p) => archive.add_json(&format!("processes/{pid}.json"), &p)?,
            Err(e) => budget.gap(format!("process {pid}: {e}")),
        }
        match std::fs::read(format!("/proc/{pid}/maps")) {
            Ok(maps) => archive.add(&format!("processes/{pid}.maps"), &maps)?,
            Err(e) => budget.gap(format!("process {pid}'s maps: {e}")),
        }
        if options.memory && ours(pid) {
            match core::write(pid, &mut budget) {
                Ok(mut file) => archive.add_file(&format!("memory/{pid}.core"), &mut file)?,
                Err(e) => budget.gap(format!("process {pid}'s core: {e}")),
            }
        }
    }
    if let Some(launch) = &launch {
        archive.add("profile.json", launch.profile_json.as_bytes())?;
        let mut listing = changed::Listing::default();
        let mut trees: Vec<(String, Result<std::os::fd::OwnedFd, String>)> = launch
            .written
            .iter()
            .map(|tree| (tree.display().to_string(), changed::open_tree(tree)))
            .collect();
        // The private /tmp and /dev/shm are seen through the sandbox's own root: through a
        // process that is still the sandbox's.
        let root = pids.iter().copied().find(|p| ours(*p));
        for private in ["tmp", "dev/shm"] {
            let tree = root
                .ok_or_else(|| "no process of the sandbox left to see it through".to_string())
                .and_then(|pid| changed::open_private(pid, private));
            trees.push((format!("/{private} (private)"), tree));
        }
        for (label, tree) in trees {
            match tree {
                Ok(fd) => changed::collect(
                    &fd,
                    &label,
                    launch.started_ns,
                    &mut archive,
                    &mut listing,
                    &mut budget,
                )?,
                Err(e) => budget.gap(format!("{label}: {e}")),
            }
        }
        archive.add_json("changed.json", &listing.changed)?;
    }
    let events = session_events(journal, session, name, &mut budget);
    archive.add("events.jsonl", &events)?;
    archive.add_json(
        "session.json",
        &serde_json::json!({
            "sandbox": name,
            "session": session,
            "started_ns": launch.as_ref().map(|l| l.started_ns),
            "workspace": launch.as_ref().map(|l| &l.workspace),
            "written": launch.as_ref().map(|l| &l.written),
            "owner_uid": sandbox.owner(),
            "processes": pids,
        }),
    )?;

    let manifest = Manifest {
        format: FORMAT.into(),
        sandbox: name.into(),
        session,
        host: host.into(),
        collected_at: SystemTime::now(),
        state: state.into(),
        cordon_version: env!("CARGO_PKG_VERSION").into(),
        files: archive.entries.clone(),
        gaps: budget.gaps,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let manifest_sha256 = hex(&Sha256::digest(&manifest_bytes));
    archive.append(
        "manifest.json",
        &mut manifest_bytes.as_slice(),
        manifest_bytes.len() as u64,
    )?;
    let files = archive.entries.len() - 1;
    archive.finish()?.finish()?;
    Ok(Summary {
        sandbox: name.into(),
        session,
        state: state.into(),
        processes: pids.len(),
        files,
        bytes: counted.bytes,
        manifest_sha256,
        archive_sha256: hex(&counted.hash.finalize()),
    })
}

/// The session's events, oldest first, from the journal; by sandbox name when the session
/// is not known.
fn session_events(
    journal: Option<&Journal>,
    session: Option<uuid::Uuid>,
    sandbox: &str,
    budget: &mut Budget,
) -> Vec<u8> {
    let Some(journal) = journal else {
        budget.gap("no journal on this host (cordond not running): no events".into());
        return Vec::new();
    };
    let filter = crate::export::journal::Filter {
        session,
        sandbox: session.is_none().then(|| sandbox.to_string()),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut full = false;
    let read = crate::export::journal::read(&journal.path, journal.keep, &filter, false, |line| {
        if let Some(line) = line {
            if out.len() + line.len() > MAX_EVENTS_BYTES {
                full = true;
                return false;
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        true
    });
    if let Err(e) = read {
        budget.gap(format!("the journal {}: {e}", journal.path.display()));
    }
    if full {
        budget.gap(format!(
            "events past the first {MAX_EVENTS_BYTES} bytes not kept (the journal has them)"
        ));
    }
    out
}

/// The most a manifest may be (every entry's name and hash, and the gaps).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Checks an archive against its manifest: every entry is listed with the SHA-256 of what
/// it holds, and nothing is listed that is not there. Returns the manifest and its SHA-256,
/// to compare with the one the `responder_action` event recorded.
pub fn verify(archive: &mut dyn Read) -> Result<(Manifest, String), String> {
    let mut seen = std::collections::BTreeMap::new();
    let mut manifest = None;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().map_err(|e| format!("not an archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("a damaged entry: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("an entry with no readable name: {e}"))?
            .display()
            .to_string();
        // Cordon writes regular files only: a link or a device is no entry of its.
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(format!("{path} is not a regular file"));
        }
        if path == "manifest.json" && manifest.is_some() {
            return Err("manifest.json is in the archive twice".into());
        }
        if path == "manifest.json" && entry.size() > MAX_MANIFEST_BYTES {
            return Err(format!("manifest.json is over {MAX_MANIFEST_BYTES} bytes"));
        }
        let mut hash = Sha256::new();
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
            if path == "manifest.json" {
                bytes.extend_from_slice(&buf[..n]);
            }
        }
        if path == "manifest.json" {
            manifest = Some(bytes);
        } else if seen
            .insert(path.clone(), (size, hex(&hash.finalize())))
            .is_some()
        {
            return Err(format!("{path} is in the archive twice"));
        }
    }
    let bytes = manifest.ok_or("no manifest.json in the archive")?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest.json: {e}"))?;
    for entry in &manifest.files {
        match seen.remove(&entry.path) {
            Some((size, sha256)) if size == entry.size && sha256 == entry.sha256 => {}
            Some(_) => return Err(format!("{} differs from the manifest", entry.path)),
            None => return Err(format!("{} is listed but missing", entry.path)),
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(format!("{extra} is in the archive but not in the manifest"));
    }
    Ok((manifest, hex(&Sha256::digest(&bytes))))
}

/// A tar archive being written, with the SHA-256 of each entry for the manifest.
pub(crate) struct Archive<W: Write> {
    tar: tar::Builder<W>,
    entries: Vec<ManifestEntry>,
}

impl<W: Write> Archive<W> {
    fn new(out: W) -> Self {
        Self {
            tar: tar::Builder::new(out),
            entries: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.append(path, &mut &*bytes, bytes.len() as u64)
    }

    fn add_json(&mut self, path: &str, value: &impl Serialize) -> std::io::Result<()> {
        self.add(path, &serde_json::to_vec_pretty(value).unwrap_or_default())
    }

    fn add_file(&mut self, path: &str, file: &mut std::fs::File) -> std::io::Result<()> {
        use std::io::Seek as _;
        let size = file.seek(std::io::SeekFrom::End(0))?;
        file.rewind()?;
        self.append(path, &mut file.take(size), size)
    }

    fn append(&mut self, path: &str, data: &mut dyn Read, size: u64) -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(unix_ns(SystemTime::now()) as u64 / 1_000_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        let mut hashing = Hashing {
            inner: data,
            hash: Sha256::new(),
            read: 0,
        };
        self.tar.append_data(&mut header, path, &mut hashing)?;
        if hashing.read != size {
            return Err(std::io::Error::other(format!(
                "{path}: {} bytes read of {size}",
                hashing.read
            )));
        }
        self.entries.push(ManifestEntry {
            path: path.into(),
            size,
            sha256: hex(&hashing.hash.finalize()),
        });
        Ok(())
    }

    /// Ends the tar archive; returns what it was written to.
    fn finish(self) -> std::io::Result<W> {
        self.tar.into_inner()
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<'a> {
    inner: &'a mut dyn Read,
    hash: Sha256,
    read: u64,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it: the archive's own SHA-256.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    hash: Sha256,
    bytes: u64,
}

impl<'a> Counted<'a> {
    fn new(inner: &'a mut dyn Write) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_ns(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(profile_json: String) -> LaunchRecord {
        LaunchRecord {
            session: uuid::Uuid::now_v7(),
            started_ns: 1,
            workspace: PathBuf::from("/w"),
            written: vec![PathBuf::from("/w")],
            profile_json,
        }
    }

    #[test]
    fn a_launch_record_is_plain_json_unless_too_large_for_an_attribute() {
        let small = record("{\"name\":\"p\"}".into());
        let bytes = small.encode();
        assert_eq!(bytes.first(), Some(&b'{'));
        assert_eq!(
            LaunchRecord::decode(&bytes).unwrap().profile_json,
            small.profile_json
        );
        // A profile of a hundred thousand rules' worth: gzipped, under the attribute's limit.
        let large = record("x".repeat(200 << 10));
        let bytes = large.encode();
        assert!(
            bytes.starts_with(&GZIP_MAGIC) && bytes.len() < 64 << 10,
            "{}",
            bytes.len()
        );
        assert_eq!(
            LaunchRecord::decode(&bytes).unwrap().profile_json,
            large.profile_json
        );
        assert!(LaunchRecord::decode(b"\x1f\x8bnot gzip").is_err());
    }
}
