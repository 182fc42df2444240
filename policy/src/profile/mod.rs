//! Profiles: finding them, parsing them, following `extends`, and merging the chain.
//!
//! A profile is named either by a file path (anything containing `/` or ending in `.toml`)
//! or by a name looked up in the search path: each directory in turn (`NAME.toml`), then
//! the profiles built in (the repository's `profiles/`, compiled into this crate).
//! `extends` entries are looked up in the extending file's own directory first.
//!
//! The result is a [`Profile`]: the whole chain merged, every value still carrying the place
//! it was written so [`crate::policy::compile`] can point at it. A plain list adds to what
//! the profiles extended have; a table edits it (see [`edit`]).
//!
//! Reading goes on past an error, so that `cordon profile check` can report every one: a file
//! is read again without each entry serde stopped at, a profile `extends` cannot find is left
//! out, and so on.

pub(crate) mod diag;
mod edit;
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diag::{closest, with_suggestion, Diagnostic, Diagnostics, Loc, Located, Source};
pub use schema::{Compat, MemorySize, Mode, Proto, SyscallAction};

use edit::{Findings, List};
use schema::ProfileFile;
use serde::Deserialize;

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
    ("git", include_str!("../../../profiles/fragments/git.toml")),
    (
        "python",
        include_str!("../../../profiles/fragments/python.toml"),
    ),
    (
        "node",
        include_str!("../../../profiles/fragments/node.toml"),
    ),
    (
        "rust",
        include_str!("../../../profiles/fragments/rust.toml"),
    ),
    (
        "openai",
        include_str!("../../../profiles/fragments/openai.toml"),
    ),
    (
        "anthropic",
        include_str!("../../../profiles/fragments/anthropic.toml"),
    ),
    ("codex", include_str!("../../../profiles/codex.toml")),
    (
        "claude-code",
        include_str!("../../../profiles/claude-code.toml"),
    ),
    ("aider", include_str!("../../../profiles/aider.toml")),
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
    Invalid(#[from] Diagnostics),
}

/// A profile as far as it could be read, and what was wrong with it. Only for reporting
/// (`cordon profile check`): a profile with errors is never compiled for a sandbox.
#[derive(Debug)]
pub struct Loaded {
    pub profile: Profile,
    /// Every error found, in no particular order (see [`Diagnostics::sorted`]).
    pub errors: Vec<Diagnostic>,
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

    /// The same search, looking in `dir` first.
    pub fn with_first(&self, dir: &Path) -> Self {
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(self.dirs.iter().cloned());
        Self { dirs }
    }

    /// Loads the profile named by `spec` (a name or a file path) and everything it extends.
    pub fn load(&self, spec: &str) -> Result<Profile, ProfileError> {
        let loaded = self.load_all(spec)?;
        if loaded.errors.is_empty() {
            Ok(loaded.profile)
        } else {
            Err(Diagnostics::sorted(loaded.errors).into())
        }
    }

    /// [`Self::load`], going on past errors in the files to find them all. Fails only when
    /// `spec` itself cannot be found or a file cannot be read.
    pub fn load_all(&self, spec: &str) -> Result<Loaded, ProfileError> {
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
        let mut found = std::mem::take(&mut chain.found);
        let profile = chain.merge(&mut found);
        let mut profile = profile;
        profile.warnings = found.warnings;
        Ok(Loaded {
            profile,
            errors: found.errors,
        })
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

/// Parses one file, pushing every error onto `errors` with the file's line and column. After
/// each error serde stops at, the entry it is in is taken out of the parsed document and the
/// rest is read again; `None` when the file cannot be read at all (a syntax error, or a
/// required key missing).
fn parse(source: &Arc<Source>, errors: &mut Vec<Diagnostic>) -> Option<ProfileFile> {
    let at = |e: &toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        Loc::new(source.clone(), span).error(diag::with_suggestion(e.message()))
    };
    let (mut document, syntax) = toml::de::DeTable::parse_recoverable(&source.text);
    if !syntax.is_empty() {
        errors.extend(syntax.iter().map(at));
        return None;
    }
    // Each round takes one entry out, so the number of entries bounds the rounds.
    loop {
        let de = toml::de::Deserializer::from(document.clone());
        match ProfileFile::deserialize(de) {
            Ok(file) => return Some(file),
            Err(e) => {
                errors.push(at(&e));
                let span = e.span()?;
                if e.message().starts_with("missing field")
                    || !prune(document.get_mut(), span.start)
                {
                    return None;
                }
            }
        }
    }
}

/// Takes out of a parsed document the entry at byte `at`: a key of the top level (a section
/// whose header holds it goes whole), else the key of a section holding it, or the element of
/// that key's array, so that nothing half-read is left to cause errors of its own. Whether
/// there was one.
fn prune<'i>(root: &mut toml::de::DeTable<'i>, at: usize) -> bool {
    use toml::de::{DeArray, DeTable, DeValue};
    fn holding(table: &DeTable<'_>, at: usize) -> Option<String> {
        let holds =
            |span: std::ops::Range<usize>| span.start <= at && (at < span.end || span.is_empty());
        table
            .iter()
            .find(|(k, v)| holds(k.span()) || holds(v.span()))
            .map(|(k, _)| k.get_ref().to_string())
    }
    if let Some(key) = holding(root, at) {
        root.remove(key.as_str());
        return true;
    }
    // A section's own span is its header's: look inside each.
    for (_, section) in root.iter_mut() {
        let DeValue::Table(entries) = section.get_mut() else {
            continue;
        };
        let Some(key) = holding(entries, at) else {
            continue;
        };
        if let Some(value) = entries.get_mut(key.as_str()) {
            if let DeValue::Array(items) = value.get_mut() {
                let span_holds = |s: std::ops::Range<usize>| s.start <= at && at < s.end;
                if items.iter().any(|item| span_holds(item.span())) {
                    let kept: DeArray<'i> = std::mem::replace(items, DeArray::new())
                        .into_iter()
                        .filter(|item| !span_holds(item.span()))
                        .collect();
                    *items = kept;
                    return true;
                }
            }
        }
        entries.remove(key.as_str());
        return true;
    }
    false
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
    /// Errors and warnings so far.
    found: Findings,
}

impl Chain {
    fn visit(
        &mut self,
        search: &SearchPath,
        source: Arc<Source>,
        requested_as: Option<&str>,
    ) -> Result<(), ProfileError> {
        let Some(file) = parse(&source, &mut self.found.errors) else {
            return Ok(());
        };
        let name = file.profile.name.get_ref().clone();
        let name_loc = Loc::new(source.clone(), file.profile.name.span());
        if let Some(requested) = requested_as {
            if requested != name {
                self.found.errors.push(name_loc.error(format!(
                    "profile is named `{name}` but was loaded as `{requested}`; the file name and `name` must match"
                )));
            }
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.found.errors.push(
                name_loc.error(
                    "profile name must be non-empty and use only letters, digits, `-` and `_`",
                ),
            );
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
                self.found
                    .errors
                    .push(loc.error(format!("extends cycle: {}", cycle.join(" -> "))));
                continue;
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
                    self.found.errors.push(loc.error(format!(
                        "extends unknown profile `{parent_name}` (looked in {}){hint}",
                        search.describe(near)
                    )));
                    continue;
                }
            };
            self.visit(search, found, Some(parent_name))?;
        }
        self.stack.pop();
        self.done.push(name);
        self.files.push((source, file));
        Ok(())
    }

    /// Merges parents first: scalars are overridden by the profile that extends them; lists
    /// are added to, or edited (see [`edit`]).
    fn merge(self, found: &mut Findings) -> Profile {
        let mut p = Profile::default();
        let count = self.files.len();
        for (i, (source, file)) in self.files.into_iter().enumerate() {
            let one = |s| locate(&source, s);
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
            PATHS.read.apply(&mut p.read, fs.read, &source, one, found);
            PATHS
                .write
                .apply(&mut p.write, fs.write, &source, one, found);
            PATHS.exec.apply(&mut p.exec, fs.exec, &source, one, found);
            PATHS.deny.apply(&mut p.deny, fs.deny, &source, one, found);
            PATHS
                .read_only
                .apply(&mut p.read_only, fs.read_only, &source, one, found);
            PATHS
                .repositories
                .apply(&mut p.repositories, fs.repositories, &source, one, found);
            if let Some(size) = fs.tmp_size {
                p.tmp_size = Some(locate(&source, size));
            }
            let net = file.network;
            let port = |s| locate(&source, s);
            CONNECT_PORTS.apply(
                &mut p.connect_ports,
                net.connect_ports,
                &source,
                port,
                found,
            );
            BIND_PORTS.apply(&mut p.bind_ports, net.bind_ports, &source, port, found);
            SOCKET_FAMILIES.apply(
                &mut p.socket_families,
                net.socket_families,
                &source,
                one,
                found,
            );
            let rule = |rule: toml::Spanned<schema::EgressRule>| {
                let loc = Loc::new(source.clone(), rule.span());
                let rule = rule.into_inner();
                Egress {
                    loc,
                    host: rule.host.map(one),
                    cidr: rule.cidr.map(one),
                    ports: rule.ports.map(|p| locate_all(&source, p)),
                    proto: rule.proto,
                }
            };
            EGRESS.apply(&mut p.egress, net.egress, &source, rule, found);
            let sc = file.syscalls;
            if let Some(preset) = sc.preset {
                p.syscall_preset = Some(locate(&source, preset));
            }
            SYSCALL_DENY.apply(&mut p.syscall_deny, sc.deny, &source, one, found);
            SYSCALL_ALLOW.apply(&mut p.syscall_allow, sc.allow, &source, one, found);
            if let Some(action) = sc.action {
                p.syscall_action = action;
            }
            let pr = file.process;
            ENV.apply(&mut p.env, pr.env, &source, one, found);
            edit::apply_set_env(&mut p.set_env, pr.set_env, &source, found);
            CAPABILITIES.apply(&mut p.capabilities, pr.capabilities, &source, one, found);
            if let Some(user) = pr.user {
                p.user = Some(locate(&source, user));
            }
            if let Some(max) = pr.max_processes {
                p.max_processes = Some(locate(&source, max));
            }
            if let Some(max) = pr.max_memory {
                p.max_memory = Some(locate(&source, max));
            }
            // A child adds rules; it cannot take its parents' away (they may be what an
            // operator relies on to stop an agent).
            p.responses.extend(locate_all(&source, file.response));
            let sev = file.severity;
            for (into, entries) in [
                (&mut p.severity.paths, sev.paths),
                (&mut p.severity.syscalls, sev.syscalls),
                (&mut p.severity.hosts, sev.hosts),
                (&mut p.severity.kinds, sev.kinds),
            ] {
                for (key, level) in entries {
                    into.insert(key, locate(&source, level));
                }
            }
        }
        p
    }
}

/// `[severity]` as merged: each entry's key as written, its level where it was written.
#[derive(Debug, Default)]
pub struct SeverityOverrides {
    pub paths: BTreeMap<String, Located<cordon_proto::event::Severity>>,
    pub syscalls: BTreeMap<String, Located<cordon_proto::event::Severity>>,
    pub hosts: BTreeMap<String, Located<cordon_proto::event::Severity>>,
    pub kinds: BTreeMap<String, Located<cordon_proto::event::Severity>>,
}

/// The lists of `[filesystem]` that hold paths.
struct PathLists {
    read: List<Located<String>>,
    write: List<Located<String>>,
    exec: List<Located<String>>,
    deny: List<Located<String>>,
    read_only: List<Located<String>>,
    repositories: List<Located<String>>,
}

/// A list of paths; `protects` says what an entry does that taking it out undoes.
const fn paths(key: &'static str, protects: Option<&'static str>) -> List<Located<String>> {
    List {
        key,
        protects,
        show: edit::show_string,
        names: edit::same_path,
        same: edit::same_value,
        loc: edit::loc_of,
    }
}

/// A list of names compared as written.
const fn names(key: &'static str, protects: Option<&'static str>) -> List<Located<String>> {
    List {
        key,
        protects,
        show: edit::show_string,
        names: edit::same_value,
        same: edit::same_value,
        loc: edit::loc_of,
    }
}

const fn port_list(key: &'static str) -> List<Located<u16>> {
    List {
        key,
        protects: None,
        show: edit::show_port,
        names: edit::same_value,
        same: edit::same_value,
        loc: edit::loc_of,
    }
}

const PATHS: PathLists = PathLists {
    read: paths("read", None),
    write: paths("write", None),
    exec: paths("exec", None),
    deny: paths("deny", Some("hides it")),
    read_only: paths("read_only", Some("keeps it read-only")),
    repositories: paths("repositories", Some("keeps its git metadata read-only")),
};
const CONNECT_PORTS: List<Located<u16>> = port_list("connect_ports");
const BIND_PORTS: List<Located<u16>> = port_list("bind_ports");
const SOCKET_FAMILIES: List<Located<String>> = List {
    names: edit::same_ignoring_case,
    ..names("socket_families", None)
};
const EGRESS: List<Egress> = List {
    key: "egress",
    protects: None,
    show: edit::show_egress,
    names: edit::egress_names,
    same: edit::egress_same,
    loc: edit::egress_loc,
};
const SYSCALL_DENY: List<Located<String>> = names("deny", Some("denies it"));
const SYSCALL_ALLOW: List<Located<String>> = names("allow", None);
const ENV: List<Located<String>> = names("env", None);
const CAPABILITIES: List<Located<String>> = List {
    names: edit::same_capability,
    ..names("capabilities", None)
};

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
    /// `[severity]`, merged: a child's entry replaces its parent's.
    pub severity: SeverityOverrides,
    /// `[[response]]` entries, parents' first.
    pub responses: Vec<Located<crate::response::ResponseEntry>>,
    /// What merging had to say that does not stop the profile: an entry a protecting list
    /// lost on purpose (`widen = true`), `key = []` over inherited entries.
    pub warnings: Vec<Diagnostic>,
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
            severity: SeverityOverrides::default(),
            responses: Vec::new(),
            warnings: Vec::new(),
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

    /// Loads `c.toml` (extending `p`) from a directory holding both.
    fn child_of(parent: &str, child: &str) -> (tempfile::TempDir, Result<Loaded, ProfileError>) {
        let dir = dir_with(&[
            ("p.toml", &format!("[profile]\nname = \"p\"\n{parent}")),
            (
                "c.toml",
                &format!("[profile]\nname = \"c\"\nextends = [\"p\"]\n{child}"),
            ),
        ]);
        let loaded = SearchPath::new(vec![dir.path().to_path_buf()]).load_all("c");
        (dir, loaded)
    }

    /// The child's errors, as printed.
    fn errors_of(parent: &str, child: &str) -> Vec<String> {
        let (_dir, loaded) = child_of(parent, child);
        let loaded = loaded.unwrap();
        assert!(!loaded.errors.is_empty(), "expected errors");
        Diagnostics::sorted(loaded.errors)
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn loads(parent: &str, child: &str) -> Profile {
        let (_dir, loaded) = child_of(parent, child);
        let loaded = loaded.unwrap();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.profile
    }

    fn values<T: Clone>(list: &[Located<T>]) -> Vec<T> {
        list.iter().map(|l| l.value.clone()).collect()
    }

    #[test]
    fn a_child_replaces_removes_and_adds_to_inherited_lists() {
        let parent = "[filesystem]\nread = [\"/usr\", \"/etc\", \"/opt/\"]\n[network]\nconnect_ports = [443, 80]\n[process]\nenv = [\"PATH\", \"HOME\"]\ncapabilities = [\"CAP_CHOWN\"]\n";
        let p = loads(
            parent,
            "[filesystem]\nread = { remove = [\"/etc\", \"/opt\"], add = [\"/srv\"] }\n[network]\nconnect_ports = { replace = [] }\n[process]\nenv = { replace = [\"PATH\"] }\ncapabilities = { remove = [\"chown\"] }\n",
        );
        assert_eq!(values(&p.read), ["/usr", "/srv"]);
        assert!(p.connect_ports.is_empty());
        assert_eq!(values(&p.env), ["PATH"]);
        assert!(p.capabilities.is_empty());
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // A plain list still adds.
        let p = loads(parent, "[network]\nconnect_ports = [8443]\n");
        assert_eq!(values(&p.connect_ports), [443, 80, 8443]);
    }

    #[test]
    fn an_empty_plain_list_over_inherited_entries_is_a_warning_that_says_how_to_clear() {
        let p = loads(
            "[network]\nconnect_ports = [443]\n",
            "[network]\nconnect_ports = []\n",
        );
        assert_eq!(values(&p.connect_ports), [443]);
        let warning = p
            .warnings
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(warning.contains("c.toml:5:17: warning: `connect_ports = []` adds nothing: what is inherited (443) still holds; to clear the list, write `connect_ports = { replace = [] }`"), "{warning}");
        // Over nothing inherited, `[]` says nothing wrong.
        assert!(loads("", "[network]\nconnect_ports = []\n")
            .warnings
            .is_empty());
    }

    #[test]
    fn removing_what_the_parents_lack_names_the_place_their_entries_and_the_one_meant() {
        let errors = errors_of(
            "[filesystem]\nread = [\"/usr\", \"/etc\"]\n",
            "[filesystem]\nread = { remove = [\"/ect\"] }\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("c.toml:5:20: cannot remove `/ect` from `read`: the profiles this one extends do not have it (they have /usr, /etc); did you mean `/etc`?"), "{errors:?}");
        let errors = errors_of(
            "[network]\nconnect_ports = [443]\n",
            "[network]\nconnect_ports = { remove = [8080] }\n",
        );
        assert!(
            errors[0].contains("cannot remove `8080` from `connect_ports`")
                && errors[0].contains("(they have 443)"),
            "{errors:?}"
        );
        let errors = errors_of(
            "[process]\nset_env = { PIP_NO_INPUT = \"1\" }\n",
            "[process]\nset_env = { remove = [\"B\", \"PIP_NO_INPT\"] }\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[1].contains("cannot remove `PIP_NO_INPT` from `set_env`: the profiles this one extends do not set it (they set PIP_NO_INPUT); did you mean `PIP_NO_INPUT`?"), "{errors:?}");
    }

    #[test]
    fn taking_out_a_protection_needs_widen_and_is_a_warning_even_then() {
        let parent = "[filesystem]\ndeny = [\"{home}/.ssh\", \"{home}/.aws/\"]\nread_only = [\"{workspace}/.env\"]\nrepositories = [\"{workspace}\"]\n[syscalls]\ndeny = [\"ptrace\"]\n";
        for child in [
            "[filesystem]\ndeny = { remove = [\"{home}/.aws\"] }\n",
            "[filesystem]\ndeny = { replace = [\"{home}/.ssh\"] }\n",
            "[filesystem]\nread_only = { replace = [] }\n",
            "[filesystem]\nrepositories = { remove = [\"{workspace}\"] }\n",
            "[syscalls]\ndeny = { remove = [\"ptrace\"] }\n",
        ] {
            let errors = errors_of(parent, child);
            assert!(
                errors[0].contains("widens the sandbox")
                    && errors[0].contains("p.toml:")
                    && errors[0].contains("write `widen = true` in this table"),
                "{child}: {errors:?}"
            );
        }
        let p = loads(
            parent,
            "[filesystem]\ndeny = { remove = [\"{home}/.aws\"], widen = true }\n",
        );
        assert_eq!(values(&p.deny), ["{home}/.ssh"]);
        let warning = p
            .warnings
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            warning.contains(
                "c.toml:5:20: warning: this widens the sandbox: `{home}/.aws/` is out of `deny` ("
            ) && warning.contains("p.toml:4:24 hides it)"),
            "{warning}"
        );
        // Adding to a protecting list, or replacing it with more, widens nothing.
        let p = loads(
            parent,
            "[filesystem]\ndeny = { replace = [\"{home}/.ssh\", \"{home}/.aws/\", \"/srv\"] }\n",
        );
        assert_eq!(p.deny.len(), 3);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn widen_where_nothing_widens_is_an_error() {
        let errors = errors_of(
            "[filesystem]\nread = [\"/usr\"]\ndeny = [\"/etc/shadow\"]\n",
            "[filesystem]\nread = { remove = [\"/usr\"], widen = true }\ndeny = { add = [\"/srv\"], widen = true }\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("c.toml:5:37: `widen` belongs to lists that protect"),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .contains("c.toml:6:34: `widen = true`, but no entry of `deny` is taken out here"),
            "{errors:?}"
        );
    }

    #[test]
    fn egress_rules_are_removed_by_destination_and_optionally_ports() {
        let parent = "[network]\negress = [{ host = \"pypi.org\", ports = [443] }, { host = \"PyPI.org.\", ports = [80] }, { cidr = \"10.0.0.0/8\", ports = [5432] }]\n";
        let p = loads(
            parent,
            "[network]\negress = { remove = [{ host = \"pypi.org\" }] }\n",
        );
        assert_eq!(p.egress.len(), 1);
        let p = loads(parent, "[network]\negress = { remove = [{ host = \"pypi.org\", ports = [80] }, { cidr = \"10.0.0.0/8\" }] }\n");
        assert_eq!(p.egress.len(), 1);
        assert_eq!(
            p.egress[0].ports.as_ref().map(|p| values(p)),
            Some(vec![443])
        );
        let errors = errors_of(
            parent,
            "[network]\negress = { remove = [{ host = \"pypi.orgg\" }] }\n",
        );
        assert!(
            errors[0].contains("cannot remove `{ host = \"pypi.orgg\" }` from `egress`")
                && errors[0].contains("{ host = \"pypi.org\", ports = [443] }"),
            "{errors:?}"
        );
    }

    #[test]
    fn set_env_can_be_replaced_and_edits_are_checked() {
        let parent = "[process]\nset_env = { A = \"1\", B = \"2\" }\n";
        let p = loads(parent, "[process]\nset_env = { replace = { C = \"3\" } }\n");
        assert_eq!(p.set_env.keys().collect::<Vec<_>>(), ["C"]);
        let p = loads(
            parent,
            "[process]\nset_env = { remove = [\"A\"], B = \"two\" }\n",
        );
        assert_eq!(p.set_env.get("B").map(|v| v.value.as_str()), Some("two"));
        assert!(!p.set_env.contains_key("A"));
        let errors = errors_of(parent, "[process]\nset_env = { A = 1 }\n");
        assert!(
            errors[0].contains("c.toml:5:17: invalid type: integer `1`, expected a string"),
            "{errors:?}"
        );
        let errors = errors_of(parent, "[process]\nset_env = { remove = { A = \"1\" } }\n");
        assert!(
            errors[0].contains("c.toml:5:22: `set_env.remove` must be a string"),
            "{errors:?}"
        );
        let errors = errors_of(
            parent,
            "[process]\nset_env = { replace = { C = \"3\" }, D = \"4\" }\n",
        );
        assert!(errors[0].contains("cannot be combined"), "{errors:?}");
    }

    #[test]
    fn malformed_edits_are_errors_with_the_key_meant() {
        let parent = "[filesystem]\nread = [\"/usr\"]\n";
        let errors = errors_of(parent, "[filesystem]\nread = { remvoe = [\"/usr\"] }\n");
        assert!(
            errors[0].contains("c.toml:5:")
                && errors[0].contains("unknown field `remvoe`")
                && errors[0].contains("did you mean `remove`?"),
            "{errors:?}"
        );
        let errors = errors_of(
            parent,
            "[filesystem]\nread = { replace = [\"/a\"], add = [\"/b\"] }\n",
        );
        assert!(
            errors[0]
                .contains("c.toml:5:8: `replace` gives the whole of `read`; it cannot be combined"),
            "{errors:?}"
        );
        let errors = errors_of(parent, "[filesystem]\nread = {}\n");
        assert!(
            errors[0].contains("this table changes nothing"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_error_of_a_file_is_reported_not_only_the_first() {
        let dir = dir_with(&[(
            "a.toml",
            "[profile]\nname = \"a\"\nbogus = 1\n[filesystem]\nraed = [\"/usr\"]\nwrite = [\"/tmp\", 3]\n[network]\nconnect_ports = [443]\negress = [{ hots = \"x\", ports = [1] }, { host = \"a.b\", ports = [2] }]\n[proces]\nenv = [\"A\"]\n",
        )]);
        let path = dir.path().join("a.toml");
        let loaded = SearchPath::new(vec![])
            .load_all(path.to_str().unwrap())
            .unwrap();
        let errors: Vec<String> = Diagnostics::sorted(loaded.errors)
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        let at: Vec<&str> = errors
            .iter()
            .map(|e| {
                e.split(": ")
                    .next()
                    .unwrap_or_default()
                    .rsplit_once("a.toml:")
                    .map_or("", |(_, lc)| lc)
            })
            .collect();
        assert_eq!(at, ["3:1", "5:1", "6:18", "9:13", "10:2"], "{errors:#?}");
        assert!(errors[1].contains("did you mean `read`?"), "{errors:?}");
        assert!(errors[4].contains("did you mean `process`?"), "{errors:?}");
        // What was read past the errors is kept: the second egress rule, the ports.
        assert_eq!(loaded.profile.egress.len(), 1);
        assert_eq!(values(&loaded.profile.connect_ports), [443]);
        // And `load` refuses the profile with all of them.
        let msg = err(SearchPath::new(vec![]).load(path.to_str().unwrap()));
        assert_eq!(msg.lines().count(), 5, "{msg}");
    }
}
