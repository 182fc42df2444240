//! The files a sandbox changed since launch, in the trees it writes: found by their inode's
//! change time (`ctime`, which no process can set back, unlike `mtime`), read through
//! descriptors one name at a time, never following a symbolic link (the sandbox could have
//! planted one pointing at the host's secrets), never opening what is not a regular file
//! (a FIFO would hang the collection), and without touching access times.
//!
//! The sandbox shapes these trees, so every cost of walking them is bounded and every bound
//! reached is a gap in the manifest: the descriptors held (one per level of the path being
//! walked, [`MAX_DEPTH`] levels), the entries looked at, the changes listed and the bytes of
//! their names, the contents kept, and the collection's deadline.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use serde::Serialize;

use super::{Archive, Budget};

/// The most levels below a tree that are walked (a descriptor is held for each).
const MAX_DEPTH: usize = 64;
/// The most entries one collection looks at.
const MAX_VISITED: usize = 1_000_000;
/// The most changes listed, and the most bytes of their names.
const MAX_LISTED: usize = 100_000;
const MAX_LISTED_BYTES: usize = 32 << 20;
/// The most of one file's content kept, and of all contents: an archive stays below what a
/// collector takes (`cordon_proto::collector::EVIDENCE_MAX_BYTES`).
const MAX_FILE: u64 = 16 << 20;
pub const MAX_KEPT: u64 = 96 << 20;

#[derive(Debug, Serialize)]
pub struct Changed {
    /// The tree (`/home/dev/repo`, `/tmp (private)`) and the path inside it, its bytes
    /// that are not UTF-8 (and `%`) written `%XX`.
    pub tree: String,
    pub path: String,
    /// `file`, `dir`, `symlink` (with its target), or `other`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub ctime_ns: i64,
    pub mtime_ns: i64,
    /// Where its content is in the archive, when it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// What one collection has listed and kept so far, across trees.
#[derive(Default)]
pub struct Listing {
    pub changed: Vec<Changed>,
    listed_bytes: usize,
    kept: u64,
    visited: usize,
}

const DIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// A tree of the host, by its path (named by the profile, not by the sandbox).
pub fn open_tree(path: &Path) -> Result<OwnedFd, String> {
    openat(nix::fcntl::AT_FDCWD, path, DIR, Mode::empty()).map_err(|e| e.desc().to_string())
}

/// A directory of the sandbox's own root (`tmp`), through `/proc/PID/root`.
pub fn open_private(pid: u32, name: &str) -> Result<OwnedFd, String> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| e.desc().to_string())?;
    let mut dir = root;
    for part in name.split('/') {
        dir = openat(&dir, part, DIR, Mode::empty()).map_err(|e| e.desc().to_string())?;
    }
    Ok(dir)
}

/// One directory on the path being walked: its descriptor, its entries still to read,
/// and its path inside the tree.
struct Level {
    fd: OwnedFd,
    entries: nix::dir::OwningIter,
    prefix: String,
}

impl Level {
    fn open(fd: OwnedFd, prefix: String) -> std::io::Result<Self> {
        let entries = nix::dir::Dir::from_fd(fd.as_fd().try_clone_to_owned()?)
            .map_err(std::io::Error::from)?
            .into_iter();
        Ok(Self {
            fd,
            entries,
            prefix,
        })
    }
}

/// Lists what in `tree` changed at or after `since_ns` and keeps the contents of the
/// regular files among them, within the bounds above.
pub fn collect<W: std::io::Write>(
    tree: &OwnedFd,
    label: &str,
    since_ns: i64,
    archive: &mut Archive<W>,
    listing: &mut Listing,
    budget: &mut Budget,
) -> std::io::Result<()> {
    // One filesystem per tree: the private /tmp holds the workspace's bind when the
    // workspace is under the host's /tmp, walked as a tree of its own.
    let device = nix::sys::stat::fstat(tree)
        .map_err(std::io::Error::from)?
        .st_dev;
    let mut path: Vec<Level> = vec![Level::open(
        tree.as_fd().try_clone_to_owned()?,
        String::new(),
    )?];
    while let Some(level) = path.last_mut() {
        let Some(entry) = level.entries.next() else {
            path.pop();
            continue;
        };
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                budget.gap(format!("{label}/{}: {e}", level.prefix));
                path.pop();
                continue;
            }
        };
        let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string();
        if name == "." || name == ".." {
            continue;
        }
        listing.visited += 1;
        if listing.visited > MAX_VISITED {
            budget.gap(format!(
                "{label}: more than {MAX_VISITED} entries; the rest not looked at"
            ));
            return Ok(());
        }
        if budget.out_of_time() {
            budget.gap(format!(
                "{label}: the collection's time ran out; the rest not looked at"
            ));
            return Ok(());
        }
        let at = format!("{}{}", level.prefix, escape(name.as_bytes()));
        let st = match fstatat(
            &level.fd,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(e) => {
                budget.gap(format!("{label}/{at}: {}", e.desc()));
                continue;
            }
        };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let changed = ns(st.st_ctime, st.st_ctime_nsec) >= since_ns;
        if changed {
            list(
                archive,
                listing,
                budget,
                label,
                &at,
                &st,
                kind,
                (&level.fd, &name),
            )?;
        }
        if kind == SFlag::S_IFDIR && st.st_dev == device {
            if path.len() > MAX_DEPTH {
                budget.gap(format!(
                    "{label}/{at}: deeper than {MAX_DEPTH} levels, not looked into"
                ));
                continue;
            }
            let parent = path.last().map(|l| &l.fd);
            let opened = parent
                .ok_or_else(|| std::io::Error::other("no parent"))
                .and_then(|p| {
                    openat(p, name.as_os_str(), DIR | OFlag::O_NOATIME, Mode::empty())
                        .or_else(|_| openat(p, name.as_os_str(), DIR, Mode::empty()))
                        .map_err(std::io::Error::from)
                })
                .and_then(|fd| Level::open(fd, format!("{at}/")));
            match opened {
                Ok(child) => path.push(child),
                Err(e) => budget.gap(format!("{label}/{at}: not looked into: {e}")),
            }
        }
    }
    Ok(())
}

/// Lists one changed entry, and keeps its content when it is a regular file that fits.
#[allow(clippy::too_many_arguments)]
fn list<W: std::io::Write>(
    archive: &mut Archive<W>,
    listing: &mut Listing,
    budget: &mut Budget,
    label: &str,
    at: &str,
    st: &nix::sys::stat::FileStat,
    kind: SFlag,
    (dir, name): (&OwnedFd, &std::ffi::OsString),
) -> std::io::Result<()> {
    if listing.changed.len() >= MAX_LISTED || listing.listed_bytes + at.len() > MAX_LISTED_BYTES {
        if listing.changed.len() == MAX_LISTED || listing.listed_bytes <= MAX_LISTED_BYTES {
            budget.gap(format!(
                "{label}: more than {MAX_LISTED} changes (or {MAX_LISTED_BYTES} bytes of names); the rest not listed"
            ));
            // Said once.
            listing.listed_bytes = MAX_LISTED_BYTES + 1;
        }
        return Ok(());
    }
    listing.listed_bytes += at.len();
    let mut entry = Changed {
        tree: label.to_string(),
        path: at.to_string(),
        kind: match kind {
            SFlag::S_IFREG => "file",
            SFlag::S_IFDIR => "dir",
            SFlag::S_IFLNK => "symlink",
            _ => "other",
        },
        target: None,
        size: st.st_size.max(0) as u64,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
        content: None,
    };
    if kind == SFlag::S_IFLNK {
        entry.target = nix::fcntl::readlinkat(dir, name.as_os_str())
            .ok()
            .map(|t| escape(t.as_bytes()));
    }
    if kind == SFlag::S_IFREG {
        if entry.size > MAX_FILE || listing.kept + entry.size > MAX_KEPT {
            budget.gap(format!(
                "{label}/{at}: {} bytes, content not kept",
                entry.size
            ));
        } else {
            match read_file(dir, name) {
                Ok(bytes) => {
                    let stored = format!("changed/{}/{at}", tree_dir(label));
                    archive.add(&stored, &bytes)?;
                    listing.kept += bytes.len() as u64;
                    entry.content = Some(stored);
                }
                Err(e) => budget.gap(format!("{label}/{at}: {e}")),
            }
        }
    }
    listing.changed.push(entry);
    Ok(())
}

/// Nanoseconds of a `stat` time, saturating (a time set past the year 2262 is not an
/// overflow).
fn ns(seconds: i64, nanoseconds: i64) -> i64 {
    seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(nanoseconds)
}

/// A name as UTF-8 that can be undone: bytes that are not UTF-8, and `%`, as `%XX`; two
/// names never read the same.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The archive directory of a tree: its path without the leading `/`, the private ones
/// under `private/`.
fn tree_dir(label: &str) -> String {
    match label.strip_suffix(" (private)") {
        Some(private) => format!("private{private}"),
        None => label.trim_start_matches('/').to_string(),
    }
}

/// A regular file's content, opened without following a link, blocking on a FIFO or
/// changing its access time (which the sandbox could watch).
fn read_file(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags | OFlag::O_NOATIME, Mode::empty())
        // O_NOATIME is refused on a file of another owner without CAP_FOWNER.
        .or_else(|_| openat(dir, name, flags, Mode::empty()))
        .map_err(std::io::Error::from)?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("no longer a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_utf8_stay_apart() {
        assert_eq!(escape(b"notes\xff"), "notes%FF");
        assert_eq!(escape(b"notes\xfe"), "notes%FE");
        assert_eq!(escape("50%.txt".as_bytes()), "50%25.txt");
        assert_eq!(escape("é.txt".as_bytes()), "é.txt");
        assert_ne!(escape(b"a%FF"), escape(b"a\xff"));
    }

    #[test]
    fn times_past_2262_saturate() {
        assert_eq!(ns(i64::MAX / 2, 5), i64::MAX);
        assert_eq!(ns(1, 5), 1_000_000_005);
    }
}
