//! Profiles: finding them, parsing them, following `extends`, and merging the chain.
//!
//! A profile is named either by a file path (anything containing `/` or ending in `.toml`)
//! or by a name looked up in the search path: each directory in turn (`NAME.toml`), then
//! the profiles built in (the repository's `profiles/`, compiled into this crate).
//! `extends` entries are looked up in the extending file's own directory first.
//!
//! The result is a [`Profile`]: the whole chain merged, every value still carrying the place
//! it was written so [`crate::policy::compile`] can point at it.

mod diag;
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diag::{closest, with_suggestion, Diagnostic, Loc, Located, Source};
pub use schema::{Compat, MemorySize, Mode, Proto, SyscallAction};

use schema::ProfileFile;

/// Directory searched for profiles after `--profile-path` and `CORDON_PROFILE_PATH` (and
/// cordond's default profile path).
pub const SYSTEM_PROFILE_DIR: &str = "/etc/cordon/profiles";

/// Profiles shipped with Cordon, compiled into the binary so `cordon` works from anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    ("base", include_str!("../../../profiles/base.toml")),
    (
        "coding-agent",
        include_str!("../../../profiles/coding-agent.toml"),
    ),
    (
        "offline-tool",
        include_str!("../../../profiles/offline-tool.toml"),
    ),
    (
        "readonly-analyst",
        include_str!("../../../profiles/readonly-analyst.toml"),
    ),
];

/// Errors while finding, reading or parsing profiles.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("profile `{name}` not found (looked in {searched})")]
    NotFound { name: String, searched: String },
    #[error(transparent)]
    Invalid(#[from] Diagnostic),
}

/// Where profiles named without a path are looked up.
#[derive(Debug, Clone)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// Directories searched in order, before the built-in profiles.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// Loads the profile named by `spec` (a name or a file path) and everything it extends.
    pub fn load(&self, spec: &str) -> Result<Profile, ProfileError> {
        let mut chain = Chain::default();
        let source = if is_path(spec) {
            read_source(Path::new(spec))?
        } else {
            self.find(spec, None)
                .ok_or_else(|| ProfileError::NotFound {
                    name: spec.to_string(),
                    searched: self.describe(None),
                })??
        };
        chain.visit(self, source, if is_path(spec) { None } else { Some(spec) })?;
        Ok(chain.merge())
    }

    fn find(&self, name: &str, near: Option<&Path>) -> Option<Result<Arc<Source>, ProfileError>> {
        let file = format!("{name}.toml");
        let dirs = near
            .into_iter()
            .chain(self.dirs.iter().map(PathBuf::as_path));
        for dir in dirs {
            let candidate = dir.join(&file);
            if candidate.is_file() {
                return Some(read_source(&candidate));
            }
        }
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, text)| {
            Ok(Arc::new(Source {
                path: PathBuf::from(format!("<builtin>/{n}.toml")),
                text: (*text).to_string(),
            }))
        })
    }

    fn describe(&self, near: Option<&Path>) -> String {
        let mut places: Vec<String> = near
            .into_iter()
            .chain(self.dirs.iter().map(PathBuf::as_path))
            .map(|d| d.display().to_string())
            .collect();
        places.push("the built-in profiles".to_string());
        places.join(", ")
    }

    /// Names of every profile reachable by name, for suggestions.
    fn known_names(&self, near: Option<&Path>) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        for dir in near
            .into_iter()
            .chain(self.dirs.iter().map(PathBuf::as_path))
        {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                        if !stem.ends_with(".expect") {
                            names.push(stem.to_string());
                        }
                    }
                }
            }
        }
        names
    }
}

fn is_path(spec: &str) -> bool {
    spec.contains('/') || spec.ends_with(".toml")
}

fn read_source(path: &Path) -> Result<Arc<Source>, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(Source {
        path: path.to_path_buf(),
        text,
    }))
}

/// Parses one file; errors carry the file's line and column.
fn parse(source: &Arc<Source>) -> Result<ProfileFile, Diagnostic> {
    toml::from_str(&source.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        Loc::new(source.clone(), span).error(diag::with_suggestion(e.message()))
    })
}

/// The `extends` graph, flattened parents-first.
#[derive(Default)]
struct Chain {
    /// Parsed files in merge order (parents before children).
    files: Vec<(Arc<Source>, ProfileFile)>,
    /// Names on the current DFS path, to detect cycles.
    stack: Vec<String>,
    /// Names already merged (a profile extended twice is merged once).
    done: Vec<String>,
}

impl Chain {
    fn visit(
        &mut self,
        search: &SearchPath,
        source: Arc<Source>,
        requested_as: Option<&str>,
    ) -> Result<(), ProfileError> {
        let file = parse(&source)?;
        let name = file.profile.name.get_ref().clone();
        let name_loc = Loc::new(source.clone(), file.profile.name.span());
        if let Some(requested) = requested_as {
            if requested != name {
                return Err(name_loc
                    .error(format!(
                        "profile is named `{name}` but was loaded as `{requested}`; the file name and `name` must match"
                    ))
                    .into());
            }
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(name_loc
                .error("profile name must be non-empty and use only letters, digits, `-` and `_`")
                .into());
        }
        self.stack.push(name.clone());
        let near = source.path.parent().filter(|p| !p.as_os_str().is_empty());
        let near = if source.path.starts_with("<builtin>") {
            None
        } else {
            near
        };
        for parent in &file.profile.extends {
            let parent_name = parent.get_ref();
            let loc = Loc::new(source.clone(), parent.span());
            if let Some(pos) = self.stack.iter().position(|n| n == parent_name) {
                let mut cycle = self.stack[pos..].to_vec();
                cycle.push(parent_name.clone());
                return Err(loc
                    .error(format!("extends cycle: {}", cycle.join(" -> ")))
                    .into());
            }
            if self.done.contains(parent_name) {
                continue;
            }
            let found = match search.find(parent_name, near) {
                Some(found) => found?,
                None => {
                    let known = search.known_names(near);
                    let hint = closest(parent_name, known.iter().map(String::as_str))
                        .map(|m| format!("; did you mean `{m}`?"))
                        .unwrap_or_default();
                    return Err(loc
                        .error(format!(
                            "extends unknown profile `{parent_name}` (looked in {}){hint}",
                            search.describe(near)
                        ))
                        .into());
                }
            };
            self.visit(search, found, Some(parent_name))?;
        }
        self.stack.pop();
        self.done.push(name);
        self.files.push((source, file));
        Ok(())
    }

    /// Merges parents first: lists concatenate (first occurrence kept), scalars are overridden
    /// by the profile that extends them.
    fn merge(self) -> Profile {
        let mut p = Profile::default();
        let count = self.files.len();
        for (i, (source, file)) in self.files.into_iter().enumerate() {
            let at = |span| Loc::new(source.clone(), span);
            let one = |s| locate(&source, s);
            let located = |items| locate_all(&source, items);
            p.sources.push(source.path.clone());
            if i + 1 == count {
                p.name = file.profile.name.get_ref().clone();
                p.description = file.profile.description.clone().unwrap_or_default();
            }
            if let Some(mode) = file.profile.mode {
                p.mode = mode;
            }
            if let Some(compat) = file.profile.compat {
                p.compat = compat;
            }
            if let Some(abi) = file.profile.landlock_abi {
                p.landlock_abi = Some(locate(&source, abi));
            }
            let fs = file.filesystem;
            extend_unique(&mut p.read, located(fs.read));
            extend_unique(&mut p.write, located(fs.write));
            extend_unique(&mut p.exec, located(fs.exec));
            extend_unique(&mut p.deny, located(fs.deny));
            extend_unique(&mut p.read_only, located(fs.read_only));
            extend_unique(&mut p.repositories, located(fs.repositories));
            if let Some(size) = fs.tmp_size {
                p.tmp_size = Some(locate(&source, size));
            }
            extend_unique(
                &mut p.connect_ports,
                locate_all(&source, file.network.connect_ports),
            );
            extend_unique(
                &mut p.bind_ports,
                locate_all(&source, file.network.bind_ports),
            );
            extend_unique(
                &mut p.socket_families,
                located(file.network.socket_families),
            );
            for rule in file.network.egress {
                let loc = at(rule.span());
                let rule = rule.into_inner();
                p.egress.push(Egress {
                    loc,
                    host: rule.host.map(one),
                    cidr: rule.cidr.map(one),
                    ports: rule.ports.map(|p| locate_all(&source, p)),
                    proto: rule.proto,
                });
            }
            let sc = file.syscalls;
            if let Some(preset) = sc.preset {
                p.syscall_preset = Some(locate(&source, preset));
            }
            extend_unique(&mut p.syscall_deny, located(sc.deny));
            extend_unique(&mut p.syscall_allow, located(sc.allow));
            if let Some(action) = sc.action {
                p.syscall_action = action;
            }
            let pr = file.process;
            extend_unique(&mut p.env, located(pr.env));
            for (key, value) in pr.set_env {
                p.set_env.insert(key, locate(&source, value));
            }
            extend_unique(&mut p.capabilities, located(pr.capabilities));
            if let Some(user) = pr.user {
                p.user = Some(locate(&source, user));
            }
            if let Some(max) = pr.max_processes {
                p.max_processes = Some(locate(&source, max));
            }
            if let Some(max) = pr.max_memory {
                p.max_memory = Some(locate(&source, max));
            }
        }
        p
    }
}

/// A value read from `source`, with where it was.
fn locate<T>(source: &Arc<Source>, spanned: toml::Spanned<T>) -> Located<T> {
    Located {
        loc: Loc::new(Arc::clone(source), spanned.span()),
        value: spanned.into_inner(),
    }
}

/// [`locate`] for each of a list.
fn locate_all<T>(source: &Arc<Source>, items: Vec<toml::Spanned<T>>) -> Vec<Located<T>> {
    items.into_iter().map(|s| locate(source, s)).collect()
}

fn extend_unique<T: PartialEq>(into: &mut Vec<Located<T>>, items: Vec<Located<T>>) {
    for item in items {
        if !into.iter().any(|have| have.value == item.value) {
            into.push(item);
        }
    }
}

/// One `[network] egress` rule as written, with where each part came from.
#[derive(Debug, Clone)]
pub struct Egress {
    pub loc: Loc,
    pub host: Option<Located<String>>,
    pub cidr: Option<Located<String>>,
    pub ports: Option<Vec<Located<u16>>>,
    pub proto: Option<Proto>,
}

/// A profile with its whole `extends` chain merged, values still located in their files.
#[derive(Debug)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Every file merged, parents first.
    pub sources: Vec<PathBuf>,
    pub mode: Mode,
    pub compat: Compat,
    pub landlock_abi: Option<Located<u32>>,
    pub read: Vec<Located<String>>,
    pub write: Vec<Located<String>>,
    pub exec: Vec<Located<String>>,
    pub deny: Vec<Located<String>>,
    pub read_only: Vec<Located<String>>,
    pub repositories: Vec<Located<String>>,
    pub tmp_size: Option<Located<schema::MemorySize>>,
    pub connect_ports: Vec<Located<u16>>,
    pub bind_ports: Vec<Located<u16>>,
    pub egress: Vec<Egress>,
    pub socket_families: Vec<Located<String>>,
    pub syscall_preset: Option<Located<String>>,
    pub syscall_deny: Vec<Located<String>>,
    pub syscall_allow: Vec<Located<String>>,
    pub syscall_action: SyscallAction,
    pub env: Vec<Located<String>>,
    pub set_env: BTreeMap<String, Located<String>>,
    pub capabilities: Vec<Located<String>>,
    pub user: Option<Located<String>>,
    pub max_processes: Option<Located<i64>>,
    pub max_memory: Option<Located<schema::MemorySize>>,
}

impl Default for Profile {
    /// Secure defaults: enforce, strict, the default syscall preset, errno.
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            sources: Vec::new(),
            mode: Mode::Enforce,
            compat: Compat::Strict,
            landlock_abi: None,
            read: Vec::new(),
            write: Vec::new(),
            exec: Vec::new(),
            deny: Vec::new(),
            read_only: Vec::new(),
            repositories: Vec::new(),
            tmp_size: None,
            connect_ports: Vec::new(),
            bind_ports: Vec::new(),
            egress: Vec::new(),
            socket_families: Vec::new(),
            syscall_preset: None,
            syscall_deny: Vec::new(),
            syscall_allow: Vec::new(),
            syscall_action: SyscallAction::Errno,
            env: Vec::new(),
            set_env: BTreeMap::new(),
            capabilities: Vec::new(),
            user: None,
            max_processes: None,
            max_memory: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn err(result: Result<Profile, ProfileError>) -> String {
        match result {
            Ok(p) => panic!("expected an error, loaded {}", p.name),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_builtin_profile_loads() {
        let search = SearchPath::new(vec![]);
        for (name, _) in BUILTIN {
            let p = search.load(name).unwrap();
            assert_eq!(p.name, *name);
        }
    }

    #[test]
    fn unknown_key_names_line_column_and_the_key_meant() {
        let dir = dir_with(&[(
            "a.toml",
            "[profile]\nname = \"a\"\n\n[filesystem]\nraed = [\"/usr\"]\n",
        )]);
        let path = dir.path().join("a.toml");
        let msg = err(SearchPath::new(vec![]).load(path.to_str().unwrap()));
        assert!(
            msg.starts_with(&format!("{}:5:1: ", path.display())),
            "{msg}"
        );
        assert!(msg.contains("unknown field `raed`"), "{msg}");
        assert!(msg.contains("did you mean `read`?"), "{msg}");
    }

    #[test]
    fn extends_cycle_is_an_error_at_the_entry_that_closes_it() {
        let dir = dir_with(&[
            ("a.toml", "[profile]\nname = \"a\"\nextends = [\"b\"]\n"),
            ("b.toml", "[profile]\nname = \"b\"\nextends = [\"a\"]\n"),
        ]);
        let search = SearchPath::new(vec![dir.path().to_path_buf()]);
        let msg = err(search.load("a"));
        assert!(
            msg.contains("b.toml:3:12: extends cycle: a -> b -> a"),
            "{msg}"
        );
    }

    #[test]
    fn extends_unknown_suggests_a_known_profile() {
        let dir = dir_with(&[("a.toml", "[profile]\nname = \"a\"\nextends = [\"bsae\"]\n")]);
        let path = dir.path().join("a.toml");
        let msg = err(SearchPath::new(vec![]).load(path.to_str().unwrap()));
        assert!(
            msg.contains("a.toml:3:12: extends unknown profile `bsae`"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `base`?"), "{msg}");
    }

    #[test]
    fn children_override_scalars_and_extend_lists() {
        let dir = dir_with(&[
            (
                "p.toml",
                "[profile]\nname = \"p\"\ncompat = \"best-effort\"\n[filesystem]\nread = [\"/a\", \"/b\"]\n[syscalls]\naction = \"kill\"\n",
            ),
            (
                "c.toml",
                "[profile]\nname = \"c\"\nextends = [\"p\"]\ncompat = \"strict\"\n[filesystem]\nread = [\"/b\", \"/c\"]\n",
            ),
        ]);
        let p = SearchPath::new(vec![dir.path().to_path_buf()])
            .load("c")
            .unwrap();
        assert_eq!(p.compat, Compat::Strict);
        assert_eq!(p.syscall_action, SyscallAction::Kill);
        let read: Vec<_> = p.read.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(read, ["/a", "/b", "/c"]);
        assert_eq!(p.sources.len(), 2);
    }

    #[test]
    fn a_file_loaded_by_name_must_carry_that_name() {
        let dir = dir_with(&[("a.toml", "[profile]\nname = \"b\"\n")]);
        let msg = err(SearchPath::new(vec![dir.path().to_path_buf()]).load("a"));
        assert!(msg.contains("a.toml:2:8: profile is named `b`"), "{msg}");
    }
}
