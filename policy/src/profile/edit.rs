//! How a profile changes the lists it inherits.
//!
//! A plain list adds to what the extended profiles have (`read = ["/opt"]`). A table edits it:
//! `remove` takes inherited entries out (each must be one the parents have), `replace` gives
//! the whole list, `add` adds after the removals. Taking an entry out of a list that protects
//! (`deny`, `read_only`, `repositories`, `[syscalls] deny`) opens the sandbox, so it also needs
//! `widen = true`, and is reported as a warning even then.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::diag::{closest, Diagnostic, Loc, Located, Source};
use super::schema::{ListField, SetEnvEntry};

/// What merging found besides the profile: errors (the profile is refused) and warnings.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// One inheritable list, as messages name it and as its entries compare.
pub(super) struct List<T> {
    /// The key, as written in the profile (`connect_ports`).
    pub key: &'static str,
    /// What an inherited entry of a list that protects does (`hides it`); `None` for a list
    /// that allows, whose entries may be taken out freely.
    pub protects: Option<&'static str>,
    /// The entry as a person would write it, for messages.
    pub show: fn(&T) -> String,
    /// Whether an inherited entry (first) is one a `remove` entry (second) names.
    pub names: fn(&T, &T) -> bool,
    /// Whether two entries are the same (an entry added twice is kept once).
    pub same: fn(&T, &T) -> bool,
    pub loc: fn(&T) -> &Loc,
}

/// At most this many inherited entries are listed in a message.
const SHOWN: usize = 8;

impl<T> List<T> {
    /// The inherited entries, for messages: `443, 8443` or `none`.
    fn listed(&self, list: &[T]) -> String {
        if list.is_empty() {
            return "none".to_string();
        }
        let mut shown: Vec<String> = list.iter().take(SHOWN).map(|e| (self.show)(e)).collect();
        if list.len() > SHOWN {
            shown.push(format!("and {} more", list.len() - SHOWN));
        }
        shown.join(", ")
    }

    /// Adds `items` after what `list` has, each once.
    fn extend(&self, list: &mut Vec<T>, items: Vec<T>) {
        for item in items {
            if !list.iter().any(|have| (self.same)(have, &item)) {
                list.push(item);
            }
        }
    }

    /// Applies one file's `field` to the inherited `list`; `convert` places each entry in
    /// `source`.
    pub fn apply<R>(
        &self,
        list: &mut Vec<T>,
        field: Option<Spanned<ListField<R>>>,
        source: &Arc<Source>,
        convert: impl Fn(Spanned<R>) -> T,
        found: &mut Findings,
    ) {
        let Some(field) = field else {
            return;
        };
        let at = Loc::new(Arc::clone(source), field.span());
        let key = self.key;
        let edit = match field.into_inner() {
            ListField::Add(items) => {
                if items.is_empty() && !list.is_empty() {
                    found.warnings.push(at.warning(format!(
                        "`{key} = []` adds nothing: what is inherited ({}) still holds; to clear the list, write `{key} = {{ replace = [] }}`",
                        self.listed(list)
                    )));
                }
                let items = items.into_iter().map(&convert).collect();
                self.extend(list, items);
                return;
            }
            ListField::Edit(edit) => edit,
        };
        if edit.add.is_empty() && edit.remove.is_none() && edit.replace.is_none() {
            found.errors.push(at.error(format!(
                "this table changes nothing: write `{key} = {{ remove = [..] }}`, `{{ replace = [..] }}` or `{{ add = [..] }}`"
            )));
            return;
        }
        if edit.replace.is_some() && (edit.remove.is_some() || !edit.add.is_empty()) {
            found.errors.push(at.error(format!(
                "`replace` gives the whole of `{key}`; it cannot be combined with `add` or `remove`"
            )));
            return;
        }
        // Inherited entries taken out, with the entry of this file that took each out.
        let mut dropped: Vec<(T, Loc)> = Vec::new();
        if let Some(replace) = edit.replace {
            let new: Vec<T> = replace.into_iter().map(&convert).collect();
            for old in std::mem::take(list) {
                if !new.iter().any(|n| (self.same)(&old, n)) {
                    dropped.push((old, at.clone()));
                }
            }
            self.extend(list, new);
        }
        for pattern in edit.remove.unwrap_or_default() {
            let pattern = convert(pattern);
            let before = list.len();
            let mut kept = Vec::with_capacity(before);
            for have in std::mem::take(list) {
                if (self.names)(&have, &pattern) {
                    dropped.push((have, (self.loc)(&pattern).clone()));
                } else {
                    kept.push(have);
                }
            }
            if kept.len() == before {
                let shown = (self.show)(&pattern);
                let hint = closest(
                    &shown,
                    kept.iter()
                        .map(|e| (self.show)(e))
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                )
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
                found.errors.push((self.loc)(&pattern).error(format!(
                    "cannot remove `{shown}` from `{key}`: the profiles this one extends do not have it (they have {}){hint}",
                    self.listed(&kept)
                )));
            }
            *list = kept;
        }
        let add = edit.add.into_iter().map(&convert).collect();
        self.extend(list, add);

        let widen = edit.widen.map(|w| {
            let loc = Loc::new(Arc::clone(source), w.span());
            (w.into_inner(), loc)
        });
        match (self.protects, &widen) {
            (Some(does), Some((true, _))) if !dropped.is_empty() => {
                for (old, by) in &dropped {
                    found.warnings.push(by.warning(format!(
                        "this widens the sandbox: `{}` is out of `{key}` ({} {does})",
                        (self.show)(old),
                        (self.loc)(old)
                    )));
                }
            }
            (Some(does), _) => {
                for (old, by) in &dropped {
                    found.errors.push(by.error(format!(
                        "taking `{}` out of `{key}` widens the sandbox ({} {does}); write `widen = true` in this table if that is meant",
                        (self.show)(old),
                        (self.loc)(old)
                    )));
                }
                if let Some((true, loc)) = &widen {
                    found.errors.push(loc.error(format!(
                        "`widen = true`, but no entry of `{key}` is taken out here; remove it"
                    )));
                }
            }
            (None, Some((_, loc))) => found.errors.push(loc.error(format!(
                "`widen` belongs to lists that protect (deny, read_only, repositories, [syscalls] deny): taking entries out of `{key}` only narrows the sandbox"
            ))),
            (None, None) => {}
        }
    }
}

/// Applies one file's `[process] set_env` to the inherited variables: `NAME = "value"` sets
/// one, `remove = ["NAME"]` takes inherited ones out, `replace = { .. }` gives them all,
/// `add = { .. }` sets several.
pub(super) fn apply_set_env(
    vars: &mut BTreeMap<String, Located<String>>,
    field: Option<Spanned<BTreeMap<String, Spanned<SetEnvEntry>>>>,
    source: &Arc<Source>,
    found: &mut Findings,
) {
    let Some(field) = field else {
        return;
    };
    let at = Loc::new(Arc::clone(source), field.span());
    let located = |s: Spanned<String>| Located {
        loc: Loc::new(Arc::clone(source), s.span()),
        value: s.into_inner(),
    };
    let entries = field.into_inner();
    let replacing = matches!(
        entries.get("replace").map(|e| e.get_ref()),
        Some(SetEnvEntry::Table(_))
    );
    if replacing && entries.len() > 1 {
        found.errors.push(at.error(
            "`replace` gives every variable of `set_env`; it cannot be combined with other entries",
        ));
        return;
    }
    let mut sets = BTreeMap::new();
    for (name, entry) in entries {
        let loc = Loc::new(Arc::clone(source), entry.span());
        match (name.as_str(), entry.into_inner()) {
            (_, SetEnvEntry::Value(value)) => {
                sets.insert(name, Located { value, loc });
            }
            ("replace", SetEnvEntry::Table(table)) => {
                vars.clear();
                sets.extend(table.into_iter().map(|(k, v)| (k, located(v))));
            }
            ("add", SetEnvEntry::Table(table)) => {
                sets.extend(table.into_iter().map(|(k, v)| (k, located(v))));
            }
            ("remove", SetEnvEntry::Names(names)) => {
                for gone in names.into_iter().map(located) {
                    if vars.remove(&gone.value).is_none() {
                        let inherited: Vec<&str> = vars.keys().map(String::as_str).collect();
                        let hint = closest(&gone.value, inherited.iter().copied())
                            .map(|m| format!("; did you mean `{m}`?"))
                            .unwrap_or_default();
                        let have = if inherited.is_empty() {
                            "none".to_string()
                        } else {
                            inherited.join(", ")
                        };
                        found.errors.push(gone.loc.error(format!(
                            "cannot remove `{}` from `set_env`: the profiles this one extends do not set it (they set {have}){hint}",
                            gone.value
                        )));
                    }
                }
            }
            _ => found.errors.push(loc.error(format!(
                "`set_env.{name}` must be a string (the variable's value); to edit the inherited variables write `remove = [\"NAME\"]`, `replace = {{ .. }}` or `add = {{ .. }}`"
            ))),
        }
    }
    vars.extend(sets);
}

/// A path as written, for comparing a `remove` entry with inherited ones: a trailing `/`
/// (which only says "a directory") does not count.
pub(super) fn same_path(a: &Located<String>, b: &Located<String>) -> bool {
    let trim = |s: &str| -> String {
        let t = s.trim_end_matches('/');
        if t.is_empty() { "/" } else { t }.to_string()
    };
    trim(&a.value) == trim(&b.value)
}

/// Capabilities compare without case and without the `CAP_` prefix.
pub(super) fn same_capability(a: &Located<String>, b: &Located<String>) -> bool {
    let norm = |s: &str| {
        let up = s.to_ascii_uppercase();
        up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
    };
    norm(&a.value) == norm(&b.value)
}

/// Socket families compare without case.
pub(super) fn same_ignoring_case(a: &Located<String>, b: &Located<String>) -> bool {
    a.value.eq_ignore_ascii_case(&b.value)
}

pub(super) fn same_value<T: PartialEq>(a: &Located<T>, b: &Located<T>) -> bool {
    a.value == b.value
}

pub(super) fn show_string(e: &Located<String>) -> String {
    e.value.clone()
}

pub(super) fn show_port(e: &Located<u16>) -> String {
    e.value.to_string()
}

pub(super) fn loc_of<T>(e: &Located<T>) -> &Loc {
    &e.loc
}

/// The destination of an egress rule as compared: a host without case or final dot, a
/// prefix as its address parses.
fn destination(e: &super::Egress) -> Option<String> {
    match (&e.host, &e.cidr) {
        (Some(host), None) => Some(host.value.trim_end_matches('.').to_ascii_lowercase()),
        (None, Some(cidr)) => Some(
            cidr.value
                .trim()
                .parse::<ipnet::IpNet>()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| cidr.value.trim().to_string()),
        ),
        _ => None,
    }
}

fn ports_of(e: &super::Egress) -> Option<Vec<u16>> {
    e.ports.as_ref().map(|ports| {
        let mut p: Vec<u16> = ports.iter().map(|p| p.value).collect();
        p.sort_unstable();
        p.dedup();
        p
    })
}

/// Whether an inherited rule is one a `remove` entry names: the same destination, and the
/// same ports and protocol where the entry gives them.
pub(super) fn egress_names(have: &super::Egress, pattern: &super::Egress) -> bool {
    destination(have).is_some()
        && destination(have) == destination(pattern)
        && (pattern.ports.is_none() || ports_of(have) == ports_of(pattern))
        && (pattern.proto.is_none() || have.proto == pattern.proto)
}

/// Whether two rules are the same rule.
pub(super) fn egress_same(a: &super::Egress, b: &super::Egress) -> bool {
    destination(a).is_some()
        && destination(a) == destination(b)
        && ports_of(a) == ports_of(b)
        && a.proto == b.proto
}

/// An egress rule as it is written: `{ host = "pypi.org", ports = [443] }`.
pub(super) fn show_egress(e: &super::Egress) -> String {
    let mut parts = Vec::new();
    if let Some(host) = &e.host {
        parts.push(format!("host = \"{}\"", host.value));
    }
    if let Some(cidr) = &e.cidr {
        parts.push(format!("cidr = \"{}\"", cidr.value));
    }
    if let Some(ports) = &e.ports {
        let ports: Vec<String> = ports.iter().map(|p| p.value.to_string()).collect();
        parts.push(format!("ports = [{}]", ports.join(", ")));
    }
    if let Some(proto) = e.proto {
        let proto = match proto {
            super::Proto::Tcp => "tcp",
            super::Proto::Udp => "udp",
            super::Proto::Any => "any",
        };
        parts.push(format!("proto = \"{proto}\""));
    }
    format!("{{ {} }}", parts.join(", "))
}

pub(super) fn egress_loc(e: &super::Egress) -> &Loc {
    &e.loc
}
