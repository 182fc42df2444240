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
//!   takes an empty `.git` for no repository at all), so the sandbox cannot make one;
//! * what the repository's config points back at: the `core.hooksPath` directory, the
//!   files `include.path` and `includeIf.*.path` name (followed), and the targets of
//!   symlinked hooks, wherever they are (a hooks directory in the work tree, as husky keeps
//!   it, is the sandbox's to write otherwise).
//!
//! Everything here reads the host tree below `root` (`/` in production), so tests can point
//! it at a temporary tree.

use std::path::{Component, Path, PathBuf};

/// A path of a protected repository that stays read-only inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub path: PathBuf,
    /// It does not exist: created empty before the sandbox starts.
    pub create: bool,
    /// A directory (else a file), when it is created.
    pub dir: bool,
}

/// Why a repository's metadata could not be worked out (and so cannot be protected).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// Submodules inside submodules are followed this deep.
const MAX_DEPTH: usize = 4;

/// What of the repository whose work tree is `repo` must stay read-only; `home` is what
/// `~/` means in its config files.
pub fn protected(root: &Path, repo: &Path, home: &Path) -> Result<Vec<Protected>, RepoError> {
    let mut out = Vec::new();
    collect(root, repo, home, 0, &mut out)?;
    Ok(out)
}

fn collect(
    root: &Path,
    worktree: &Path,
    home: &Path,
    depth: usize,
    out: &mut Vec<Protected>,
) -> Result<(), RepoError> {
    let dot_git = worktree.join(".git");
    let real = host(root, &dot_git);
    let Ok(meta) = std::fs::symlink_metadata(&real) else {
        out.push(Protected {
            path: dot_git,
            create: true,
            dir: true,
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
    let mut common = gitdir.clone();
    if let Ok(named) = std::fs::read_to_string(host(root, &gitdir.join("commondir"))) {
        common = absolute(&gitdir, Path::new(named.trim_end()));
        push(out, common.clone());
    }
    config_paths(root, worktree, &common, home, out);
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
            collect(root, &sub, home, depth + 1, out)?;
        } else {
            // Not checked out: the directory itself, so no `.git` can appear in it.
            let create = std::fs::symlink_metadata(host(root, &sub)).is_err();
            if !out.iter().any(|p| p.path == sub) {
                out.push(Protected {
                    path: sub,
                    create,
                    dir: true,
                });
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
            dir: false,
        });
    }
}

/// `path`, or, when it does not exist, the same marked to be created (`dir` or a file).
fn push_maybe_missing(root: &Path, out: &mut Vec<Protected>, path: PathBuf, dir: bool) {
    if out.iter().any(|p| p.path == path) {
        return;
    }
    let create = std::fs::symlink_metadata(host(root, &path)).is_err();
    out.push(Protected { path, create, dir });
}

/// What the config in `common` (and the files it includes) points back at: the hooks
/// directory `core.hooksPath` names (relative to the work tree, where hooks run), included
/// files (relative to the including file), and the targets of symlinked hooks.
fn config_paths(
    root: &Path,
    worktree: &Path,
    common: &Path,
    home: &Path,
    out: &mut Vec<Protected>,
) {
    let expand = |value: &str, base: &Path| -> PathBuf {
        match value.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => absolute(base, Path::new(value)),
        }
    };
    let mut hooks = common.join("hooks");
    let mut files = vec![common.join("config")];
    let mut seen = 0;
    while let Some(file) = files.pop() {
        seen += 1;
        if seen > 16 {
            break;
        }
        let Ok(text) = std::fs::read_to_string(host(root, &file)) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        for (section, key, value) in config_entries(&text) {
            match (section.as_str(), key.as_str()) {
                ("core", "hookspath") => {
                    let path = expand(&value, worktree);
                    push_maybe_missing(root, out, path.clone(), true);
                    hooks = path;
                }
                ("include" | "includeif", "path") => {
                    let path = expand(&value, &dir);
                    push_maybe_missing(root, out, path.clone(), false);
                    files.push(path);
                }
                _ => {}
            }
        }
    }
    // A hook that is a symlink runs whatever its target holds.
    if let Ok(entries) = std::fs::read_dir(host(root, &hooks)) {
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let path = absolute(&hooks, &target);
                push_maybe_missing(root, out, path, false);
            }
        }
    }
}

/// The `(section, key, value)` entries of a git config file, section and key in lower
/// case (subsections dropped), values unquoted. Enough of the format for the keys above.
fn config_entries(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.split([']', ' ', '"', '.']).next().unwrap_or("");
            section = name.to_ascii_lowercase();
            // `[section] key = value` on one line.
            let Some((_, after)) = rest.split_once(']') else {
                continue;
            };
            if let Some(entry) = entry(after.trim()) {
                out.push((section.clone(), entry.0, entry.1));
            }
            continue;
        }
        if let Some(entry) = entry(line) {
            out.push((section.clone(), entry.0, entry.1));
        }
    }
    out
}

fn entry(line: &str) -> Option<(String, String)> {
    if line.starts_with(['#', ';']) || line.is_empty() {
        return None;
    }
    let (key, value) = line.split_once('=')?;
    let mut value = value.trim();
    // A comment after the value, outside quotes.
    if !value.starts_with('"') {
        value = value.split([';', '#']).next().unwrap_or("").trim();
    }
    let value = value.trim_matches('"');
    Some((key.trim().to_ascii_lowercase(), value.to_string()))
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
        let got = protected(t.path(), Path::new("/ws"), Path::new("/home/dev")).expect("protected");
        assert_eq!(
            got,
            [
                Protected {
                    path: "/ws/.git".into(),
                    create: false,
                    dir: false
                },
                Protected {
                    path: "/ws/vendor/lib".into(),
                    create: true,
                    dir: true
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
        let got = protected(t.path(), Path::new("/ws"), Path::new("/home/dev")).expect("protected");
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
    fn what_the_config_points_back_at_is_protected() {
        let t = repo_with_gitlink("2");
        let ws = t.path().join("ws");
        git(&ws, &["config", "core.hooksPath", ".husky"]);
        git(&ws, &["config", "include.path", "../shared.gitconfig"]);
        std::fs::write(
            ws.join("shared.gitconfig"),
            "[includeIf \"gitdir:/x/\"]\n\tpath = more.gitconfig ; comment\n",
        )
        .unwrap();
        std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
        std::os::unix::fs::symlink("../../scripts/pre-commit", ws.join(".git/hooks/pre-commit"))
            .unwrap();
        let got = protected(t.path(), Path::new("/ws"), Path::new("/home/dev")).expect("protected");
        let find = |p: &str| got.iter().find(|g| g.path == Path::new(p)).cloned();
        assert_eq!(
            find("/ws/.husky"),
            Some(Protected {
                path: "/ws/.husky".into(),
                create: true,
                dir: true
            })
        );
        assert_eq!(find("/ws/shared.gitconfig").map(|p| p.create), Some(false));
        assert_eq!(
            find("/ws/more.gitconfig").map(|p| (p.create, p.dir)),
            Some((true, false))
        );
        // The hooks directory is .husky now: the symlink in .git/hooks is not used, so it
        // is not followed; point hooksPath back and it is.
        git(&ws, &["config", "--unset", "core.hooksPath"]);
        let got = protected(t.path(), Path::new("/ws"), Path::new("/home/dev")).expect("protected");
        assert!(
            got.iter()
                .any(|g| g.path == Path::new("/ws/scripts/pre-commit")),
            "{got:?}"
        );
    }

    #[test]
    fn config_entries_are_read_case_blind_and_unquoted() {
        let text = "[core]\n\tHooksPath = \"hooks dir\"\n[include]\n path = a.cfg # c\n[includeIf \"onbranch:main\"] path = b.cfg\n";
        assert_eq!(
            config_entries(text),
            [
                ("core".into(), "hookspath".into(), "hooks dir".into()),
                ("include".into(), "path".into(), "a.cfg".into()),
                ("includeif".into(), "path".into(), "b.cfg".into()),
            ]
        );
    }

    #[test]
    fn a_missing_git_dir_is_created_empty() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("ws")).expect("ws");
        assert_eq!(
            protected(t.path(), Path::new("/ws"), Path::new("/home/dev")).expect("protected"),
            [Protected {
                path: "/ws/.git".into(),
                create: true,
                dir: true
            }]
        );
    }
}
