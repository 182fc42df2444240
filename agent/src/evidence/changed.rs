//! The files a sandbox changed since launch, in the trees it writes: found by their inode's
//! change time (`ctime`, which no process can set back, unlike `mtime`), read through
//! descriptors one name at a time, never following a symbolic link (the sandbox could have
//! planted one pointing at the host's secrets), never opening what is not a regular file
//! (a FIFO would hang the collection).

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use serde::Serialize;

use super::Archive;

/// The most entries one collection looks at, and what it keeps of files' contents.
const MAX_VISITED: usize = 1_000_000;
const MAX_FILE: u64 = 16 << 20;
const MAX_KEPT: u64 = 512 << 20;

#[derive(Debug, Serialize)]
pub struct Changed {
    /// The tree (`/home/dev/repo`, `/tmp (private)`) and the path inside it.
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

/// Lists what in `tree` changed at or after `since_ns` and keeps the contents of the
/// regular files among them (each up to 16 MiB, 512 MiB in all).
pub fn collect<W: std::io::Write>(
    tree: &OwnedFd,
    label: &str,
    since_ns: i64,
    archive: &mut Archive<W>,
    listed: &mut Vec<Changed>,
    gaps: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut kept: u64 = listed
        .iter()
        .filter(|c| c.content.is_some())
        .map(|c| c.size)
        .sum();
    // One filesystem per tree: the private /tmp holds the workspace's bind when the
    // workspace is under the host's /tmp, walked as a tree of its own.
    let device = nix::sys::stat::fstat(tree)
        .map_err(std::io::Error::from)?
        .st_dev;
    let mut visited = 0usize;
    // Directories still to read: an open descriptor and the path to it inside the tree.
    let mut pending: Vec<(OwnedFd, String)> = vec![(dup(tree)?, String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let names = match read_names(&dir) {
            Ok(n) => n,
            Err(e) => {
                gaps.push(format!("{label}/{prefix}: {e}"));
                continue;
            }
        };
        for name in names {
            visited += 1;
            if visited > MAX_VISITED {
                gaps.push(format!(
                    "{label}: more than {MAX_VISITED} entries; the rest not looked at"
                ));
                return Ok(());
            }
            let path = format!("{prefix}{}", String::from_utf8_lossy(name.as_bytes()));
            let Ok(st) = fstatat(
                &dir,
                name.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR && st.st_dev == device {
                if let Ok(child) = openat(&dir, name.as_os_str(), DIR, Mode::empty()) {
                    pending.push((child, format!("{path}/")));
                }
            }
            let ctime_ns = st.st_ctime * 1_000_000_000 + st.st_ctime_nsec;
            if ctime_ns < since_ns {
                continue;
            }
            let mut entry = Changed {
                tree: label.to_string(),
                path: path.clone(),
                kind: match kind {
                    SFlag::S_IFREG => "file",
                    SFlag::S_IFDIR => "dir",
                    SFlag::S_IFLNK => "symlink",
                    _ => "other",
                },
                target: None,
                size: st.st_size as u64,
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                ctime_ns,
                mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
                content: None,
            };
            if kind == SFlag::S_IFLNK {
                entry.target = nix::fcntl::readlinkat(&dir, name.as_os_str())
                    .ok()
                    .map(|t| t.to_string_lossy().into_owned());
            }
            if kind == SFlag::S_IFREG {
                if entry.size > MAX_FILE || kept + entry.size > MAX_KEPT {
                    gaps.push(format!(
                        "{label}/{path}: {} bytes, content not kept",
                        entry.size
                    ));
                } else {
                    match read_file(&dir, &name) {
                        Ok(bytes) => {
                            let at = format!("changed/{}/{path}", tree_dir(label));
                            archive.add(&at, &bytes)?;
                            kept += bytes.len() as u64;
                            entry.content = Some(at);
                        }
                        Err(e) => gaps.push(format!("{label}/{path}: {e}")),
                    }
                }
            }
            listed.push(entry);
        }
    }
    Ok(())
}

/// The archive directory of a tree: its path without the leading `/`, the private ones
/// under `private/`.
fn tree_dir(label: &str) -> String {
    match label.strip_suffix(" (private)") {
        Some(private) => format!("private{private}"),
        None => label.trim_start_matches('/').to_string(),
    }
}

fn dup(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned()
}

fn read_names(dir: &OwnedFd) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut d = nix::dir::Dir::from_fd(dup(dir)?).map_err(std::io::Error::from)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(std::io::Error::from)?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// A regular file's content, opened without following a link or blocking on a FIFO.
fn read_file(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("no longer a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut bytes)?;
    Ok(bytes)
}
