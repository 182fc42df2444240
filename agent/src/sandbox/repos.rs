//! The git repositories a profile protects (`[filesystem] repositories`).
//!
//! Git reads programs to run from a repository's metadata: `core.fsmonitor`, hooks, filter
//! and diff drivers, and the places that name more metadata (`commondir`, `config.worktree`,
//! a `.git` file's `gitdir:`, submodules' git directories). A sandbox that can write any of
//! it can make the host's next `git status` (or the shell prompt that runs one) run a
//! program of its choosing. No file-system mechanism lets git write its index while
//! refusing the sandbox those names, so the metadata of a protected repository is read-only
//! inside, whatever the rules around it say:
//!
//! * its git directory (`.git`, or the directory a `.git` file names) and, for a linked
//!   worktree, the common directory its `commondir` names;
//! * the `.git` of each submodule the index records (a gitlink), or the submodule's
//!   directory when it is not checked out, so no `.git` can be planted there;
//! * a `.git` that does not exist yet: it is created empty before the sandbox starts (git
//!   takes an empty `.git` for no repository at all), so the sandbox cannot make one.
//!
//! Everything here reads the host tree below `root` (`/` in production), so tests can point
//! it at a temporary tree.

use std::path::{Component, Path, PathBuf};

/// A path of a protected repository that stays read-only inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub path: PathBuf,
    /// It does not exist: created as an empty directory before the sandbox starts.
    pub create: bool,
}

/// Why a repository's metadata could not be worked out (and so cannot be protected).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// Submodules inside submodules are followed this deep.
const MAX_DEPTH: usize = 4;

/// What of the repository whose work tree is `repo` must stay read-only.
pub fn protected(root: &Path, repo: &Path) -> Result<Vec<Protected>, RepoError> {
    let mut out = Vec::new();
    collect(root, repo, 0, &mut out)?;
    Ok(out)
}

fn collect(
    root: &Path,
    worktree: &Path,
    depth: usize,
    out: &mut Vec<Protected>,
) -> Result<(), RepoError> {
    let dot_git = worktree.join(".git");
    let real = host(root, &dot_git);
    let Ok(meta) = std::fs::symlink_metadata(&real) else {
        out.push(Protected {
            path: dot_git,
            create: true,
        });
        return Ok(());
    };
    push(out, dot_git.clone());
    let gitdir = if meta.is_dir() {
        dot_git
    } else {
        // A `.git` file (a submodule's, a linked worktree's): `gitdir: <path>`.
        let target = gitfile_target(&real).map_err(|reason| RepoError::Unreadable {
            path: dot_git.clone(),
            reason,
        })?;
        let gitdir = absolute(worktree, &target);
        push(out, gitdir.clone());
        gitdir
    };
    // A linked worktree's shared metadata lives in the directory `commondir` names.
    if let Ok(common) = std::fs::read_to_string(host(root, &gitdir.join("commondir"))) {
        push(out, absolute(&gitdir, Path::new(common.trim_end())));
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let index = host(root, &gitdir.join("index"));
    let bytes = match std::fs::read(&index) {
        Ok(b) => b,
        // No index yet: no gitlinks.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(RepoError::Unreadable {
                path: gitdir.join("index"),
                reason: e.to_string(),
            })
        }
    };
    let hash = hash_len(root, &gitdir);
    let links = gitlinks(&bytes, hash).map_err(|reason| RepoError::Unreadable {
        path: gitdir.join("index"),
        reason,
    })?;
    for link in links {
        let Some(sub) = inside(worktree, &link) else {
            continue;
        };
        if std::fs::symlink_metadata(host(root, &sub.join(".git"))).is_ok() {
            collect(root, &sub, depth + 1, out)?;
        } else {
            // Not checked out: the directory itself, so no `.git` can appear in it.
            let create = std::fs::symlink_metadata(host(root, &sub)).is_err();
            if !out.iter().any(|p| p.path == sub) {
                out.push(Protected { path: sub, create });
            }
        }
    }
    Ok(())
}

fn push(out: &mut Vec<Protected>, path: PathBuf) {
    if !out.iter().any(|p| p.path == path) {
        out.push(Protected {
            path,
            create: false,
        });
    }
}

fn host(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// `path` made absolute against `base`, with `.` and `..` taken out lexically.
fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `worktree/link` when `link` is a plain relative path (no `..`), as an index holds them.
fn inside(worktree: &Path, link: &str) -> Option<PathBuf> {
    let rel = Path::new(link);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| worktree.join(rel))
}

/// The `gitdir:` of a `.git` file.
fn gitfile_target(file: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let target = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("gitdir:"))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("a .git file that does not say `gitdir: <path>`")?;
    Ok(PathBuf::from(target))
}

/// Bytes of an object name: 32 in a SHA-256 repository, else 20.
fn hash_len(root: &Path, gitdir: &Path) -> usize {
    let config = std::fs::read_to_string(host(root, &gitdir.join("config"))).unwrap_or_default();
    let sha256 = config.lines().any(|l| {
        let l = l.trim().to_ascii_lowercase().replace(' ', "");
        l == "objectformat=sha256"
    });
    if sha256 {
        32
    } else {
        20
    }
}

/// The paths of the gitlinks (mode 160000: submodules) in an index file of version 2, 3
/// or 4 (`Documentation/gitformat-index.txt`).
pub fn gitlinks(index: &[u8], hash: usize) -> Result<Vec<String>, String> {
    const GITLINK: u32 = 0o160000;
    const MODE_TYPE: u32 = 0o170000;
    let be32 = |at: usize| -> Result<u32, String> {
        index
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| "the index ends early".to_string())
    };
    if index.get(..4) != Some(b"DIRC") {
        return Err("not a git index (no DIRC signature)".into());
    }
    let version = be32(4)?;
    if !(2..=4).contains(&version) {
        return Err(format!("index version {version} is not one Cordon reads"));
    }
    let count = be32(8)?;
    let mut at = 12;
    let mut previous = Vec::<u8>::new();
    let mut links = Vec::new();
    for _ in 0..count {
        let start = at;
        let mode = be32(at + 24)?;
        let flags_at = at + 40 + hash;
        let flags = index
            .get(flags_at..flags_at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or("the index ends early")?;
        let mut name_at = flags_at + 2;
        if version >= 3 && flags & 0x4000 != 0 {
            name_at += 2;
        }
        let rest = index.get(name_at..).ok_or("the index ends early")?;
        let (name, next) = if version == 4 {
            let (strip, used) = varint(rest).ok_or("a bad path prefix in the index")?;
            let suffix = &rest[used..];
            let end = suffix
                .iter()
                .position(|b| *b == 0)
                .ok_or("a path without its end")?;
            let keep = previous
                .len()
                .checked_sub(strip)
                .ok_or("a path prefix longer than the path before it")?;
            let mut name = previous[..keep].to_vec();
            name.extend_from_slice(&suffix[..end]);
            (name, name_at + used + end + 1)
        } else {
            let end = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or("a path without its end")?;
            // Entries are padded with 1 to 8 NULs to a multiple of 8 bytes.
            let len = name_at - start + end;
            (rest[..end].to_vec(), start + (len + 8) / 8 * 8)
        };
        if mode & MODE_TYPE == GITLINK {
            links.push(String::from_utf8_lossy(&name).into_owned());
        }
        previous = name;
        at = next;
    }
    Ok(links)
}

/// Git's offset varint (`varint.c`): 7 bits a byte, high bit for "more", plus one per byte.
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut used = 0;
    let mut byte = *bytes.first()?;
    used += 1;
    let mut value = usize::from(byte & 0x7f);
    while byte & 0x80 != 0 {
        byte = *bytes.get(used)?;
        used += 1;
        value = value.checked_add(1)?.checked_shl(7)? | usize::from(byte & 0x7f);
    }
    Some((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A repository with a file, a gitlink `vendor/lib` and, per `version`, that index format.
    fn repo_with_gitlink(version: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let ws = t.path().join("ws");
        std::fs::create_dir_all(ws.join("src")).expect("dirs");
        std::fs::write(ws.join("src/a.txt"), "a").expect("file");
        git(&ws, &["init", "-q"]);
        git(&ws, &["config", "index.version", version]);
        git(&ws, &["add", "src/a.txt"]);
        let oid = "0123456789abcdef0123456789abcdef01234567";
        git(
            &ws,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{oid},vendor/lib"),
            ],
        );
        t
    }

    #[test]
    fn gitlinks_are_read_from_every_index_version() {
        for version in ["2", "3", "4"] {
            let t = repo_with_gitlink(version);
            let index = std::fs::read(t.path().join("ws/.git/index")).expect("index");
            assert_eq!(
                gitlinks(&index, 20).expect("parses"),
                ["vendor/lib"],
                "version {version}"
            );
        }
    }

    #[test]
    fn a_damaged_index_is_an_error_not_an_empty_list() {
        let t = repo_with_gitlink("2");
        let index = std::fs::read(t.path().join("ws/.git/index")).expect("index");
        assert!(gitlinks(&index[..40], 20).is_err());
        assert!(gitlinks(b"nope", 20).is_err());
    }

    #[test]
    fn the_git_dir_and_an_unchecked_out_submodule_are_protected() {
        let t = repo_with_gitlink("4");
        let got = protected(t.path(), Path::new("/ws")).expect("protected");
        assert_eq!(
            got,
            [
                Protected {
                    path: "/ws/.git".into(),
                    create: false
                },
                Protected {
                    path: "/ws/vendor/lib".into(),
                    create: true
                },
            ]
        );
    }

    #[test]
    fn a_checked_out_submodule_and_a_gitfile_target_are_protected() {
        let t = repo_with_gitlink("2");
        let sub = t.path().join("ws/vendor/lib");
        std::fs::create_dir_all(&sub).expect("sub");
        std::fs::write(sub.join(".git"), "gitdir: ../../.git/modules/lib\n").expect("gitfile");
        std::fs::create_dir_all(t.path().join("ws/.git/modules/lib")).expect("modules");
        let got = protected(t.path(), Path::new("/ws")).expect("protected");
        let paths: Vec<_> = got.iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/ws/.git"),
                "/ws/vendor/lib/.git".into(),
                "/ws/.git/modules/lib".into()
            ]
        );
    }

    #[test]
    fn a_missing_git_dir_is_created_empty() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("ws")).expect("ws");
        assert_eq!(
            protected(t.path(), Path::new("/ws")).expect("protected"),
            [Protected {
                path: "/ws/.git".into(),
                create: true
            }]
        );
    }
}
