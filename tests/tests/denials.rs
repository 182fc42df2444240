//! Every denial is an event, whatever layer refused it: the mounts of the sandbox's view
//! (a covered or left-out `deny` path, a read-only tree, a tree without exec, a host path the
//! profile does not list) are reported like Landlock's, with the path as the process asked
//! for it, the access, and the rule. Each attack has a twin that shows it works unconfined.

mod common;

use common::{occurrences, of_kind, probe_bin, require_root, Fixture};

/// A profile that can read the whole home: secrets must stay hidden inside it.
const HOME_READABLE: &str = "[filesystem]\nread = [\"{home}\"]";

/// The probe run outside any sandbox: what the attack does unconfined.
fn bare(args: &[&str]) -> String {
    let out = std::process::Command::new(probe_bin())
        .args(args)
        .output()
        .expect("the probe runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The one `file_denied` event of a run; fails when there are none or several.
fn denial(events: &[serde_json::Value]) -> &serde_json::Value {
    let found = of_kind(events, "file_denied");
    assert_eq!(
        found.len(),
        1,
        "expected one file_denied event: {events:#?}"
    );
    found[0]
}

/// Asserts the one `file_denied` event of a run says this path, access, layer and rule.
fn assert_denied(events: &[serde_json::Value], path: &str, access: &str, layer: &str, rule: &str) {
    let e = denial(events);
    assert_eq!(e["path"], path, "the path as the process asked for it");
    assert_eq!(e["access"], access);
    assert_eq!(e["layer"], layer);
    assert_eq!(e["rule"], rule);
    assert_eq!(e["process"]["comm"], "probe");
    // An attempt on what the profile protects (a denied path, git metadata) rates high.
    let high = layer == "deny" || rule.ends_with("/.git");
    assert_eq!(e["severity"], if high { "high" } else { "medium" }, "{e}");
}

#[test]
fn reading_a_covered_secret_is_reported_with_its_deny_rule() {
    if !require_root("reading_a_covered_secret_is_reported_with_its_deny_rule") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    let key = f.home_path(".ssh/id_ed25519");
    assert_eq!(
        bare(&["read", &key]),
        "ok",
        "the twin: unconfined, it reads"
    );
    let (answer, events) = f.probe_events(&[], &["read", &key]);
    assert_eq!(answer, "err EACCES");
    assert_denied(&events, &key, "fs.read_file", "deny", &f.home_path(".ssh"));

    // Listing the covered directory, by a path relative to the workspace.
    let (answer, events) = f.probe_events(&[], &["list", "../home/.ssh"]);
    assert_eq!(answer, "err EACCES");
    assert_denied(
        &events,
        "../home/.ssh",
        "fs.read_dir",
        "deny",
        &f.home_path(".ssh"),
    );
}

#[test]
fn reading_a_denied_path_left_out_of_the_view_is_reported() {
    if !require_root("reading_a_denied_path_left_out_of_the_view_is_reported") {
        return;
    }
    // coding-agent does not show the home at all: the key is simply not there.
    let f = Fixture::new("coding-agent", "");
    let key = f.home_path(".ssh/id_ed25519");
    assert_eq!(
        bare(&["read", &key]),
        "ok",
        "the twin: unconfined, it reads"
    );
    let (answer, events) = f.probe_events(&[], &["read", &key]);
    assert_eq!(answer, "err ENOENT");
    assert_denied(&events, &key, "fs.read_file", "deny", &f.home_path(".ssh"));
}

#[test]
fn writing_into_a_read_only_tree_is_reported_with_the_tree() {
    if !require_root("writing_into_a_read_only_tree_is_reported_with_the_tree") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    let planted = f.home_path("planted");
    assert_eq!(
        bare(&["write", &planted]),
        "ok",
        "the twin: unconfined, it writes"
    );
    std::fs::remove_file(&planted).expect("remove the twin's file");
    let (answer, events) = f.probe_events(&[], &["write", &planted]);
    assert_eq!(answer, "err EROFS");
    assert!(!f.home.join("planted").exists());
    assert_denied(
        &events,
        &planted,
        "fs.make_reg",
        "read_only",
        &f.home.to_string_lossy(),
    );

    // The repository's metadata: changing .git/config would make the host's git run code.
    let (answer, events) = f.probe_events(&[], &["write", ".git/config"]);
    assert_eq!(answer, "err EROFS");
    assert_denied(
        &events,
        ".git/config",
        "fs.make_reg",
        "read_only",
        &f.path(".git"),
    );
}

#[test]
fn running_a_binary_dropped_where_exec_is_not_allowed_is_reported() {
    if !require_root("running_a_binary_dropped_where_exec_is_not_allowed_is_reported") {
        return;
    }
    let f = Fixture::new("coding-agent", common::NOEXEC_WORKSPACE);
    let dropped = f.path("dropped");
    std::fs::copy("/usr/bin/true", &dropped).expect("copy");
    assert_eq!(
        bare(&["run", &dropped]),
        "ok",
        "the twin: unconfined, it runs"
    );
    let (answer, events) = f.probe_events(&[], &["exec", &dropped]);
    assert_eq!(answer, "err EACCES");
    assert_denied(
        &events,
        &dropped,
        "fs.execute",
        "noexec",
        &f.workspace.to_string_lossy(),
    );
}

#[test]
fn probing_many_paths_outside_the_view_is_one_summarised_event() {
    if !require_root("probing_many_paths_outside_the_view_is_one_summarised_event") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let outside = f.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let paths: Vec<String> = (0..200)
        .map(|i| {
            let p = outside.join(format!("config-{i}"));
            std::fs::write(&p, "x").expect("write");
            p.to_string_lossy().into_owned()
        })
        .collect();
    let mut args = vec!["read-each"];
    args.extend(paths.iter().map(String::as_str));
    assert_eq!(
        bare(&args),
        "value 0 failed",
        "the twin: unconfined, all are read"
    );

    let not_in_view = |events: &[serde_json::Value]| -> (usize, u64) {
        let found: Vec<_> = of_kind(events, "file_denied")
            .into_iter()
            .filter(|e| e["layer"] == "not_in_view")
            .collect();
        (found.len(), occurrences(&found))
    };
    // What the probe's own start costs, so the count below is exactly the 200.
    let (_, baseline) = f.probe_events(&[], &["read-each"]);
    let (_, before) = not_in_view(&baseline);
    let (answer, events) = f.probe_events(&[], &args);
    assert_eq!(answer, "value 200 failed");
    let (lines, count) = not_in_view(&events);
    assert_eq!(count, before + 200, "every refusal counted: {events:#?}");
    assert!(lines <= 3, "summarised, not one event each: {lines} events");
    let first = of_kind(&events, "file_denied")
        .into_iter()
        .find(|e| e["layer"] == "not_in_view")
        .expect("a not_in_view event");
    assert_eq!(first["access"], "fs.read_file");
}

#[test]
fn a_programs_own_misses_are_not_reported_as_denials() {
    if !require_root("a_programs_own_misses_are_not_reported_as_denials") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    for path in [
        f.path("no-such-file"),
        f.home_path("no-such-file"),
        "/usr/no-such-file".to_string(),
        "/no-such-dir/file".to_string(),
    ] {
        let (answer, events) = f.probe_events(&[], &["read", &path]);
        assert_eq!(answer, "err ENOENT", "{path}");
        assert!(
            of_kind(&events, "file_denied").is_empty(),
            "{path}: {events:#?}"
        );
    }
    // Nor a write the profile allows that the host's own permissions refuse.
    std::fs::create_dir_all(f.workspace.join("sub")).expect("sub");
    let (answer, events) = f.probe_events(&[], &["write", &f.path("sub")]);
    assert_eq!(answer, "err EISDIR");
    assert!(of_kind(&events, "file_denied").is_empty(), "{events:#?}");
}

/// A miss in the workspace is the program's own only when nothing on the way leads out of
/// it: a name below a link the sandbox made to a tree the view hides is a denial.
#[test]
fn a_hidden_tree_reached_through_a_link_in_the_workspace_is_reported() {
    if !require_root("a_hidden_tree_reached_through_a_link_in_the_workspace_is_reported") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    // Beside the workspace, in the host's /tmp, which the sandbox's private /tmp hides.
    let outside = f.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let secret = outside.join("secret");
    std::fs::write(&secret, "s").expect("secret");
    let secret = secret.to_string_lossy().into_owned();
    assert_eq!(
        bare(&["read", &secret]),
        "ok",
        "the twin: unconfined, it reads"
    );
    std::os::unix::fs::symlink(&outside, f.workspace.join("out")).expect("symlink");
    let (answer, events) = f.probe_events(&[], &["read", &f.path("out/secret")]);
    assert_eq!(answer, "err ENOENT");
    let e = denial(&events);
    assert_eq!(e["layer"], "not_in_view", "{e}");
    assert_eq!(e["target"], secret.as_str(), "{e}");
    // A name the host lacks there too is missing either way: no denial.
    let (answer, events) = f.probe_events(&[], &["read", &f.path("out/no-such-file")]);
    assert_eq!(answer, "err ENOENT");
    assert!(of_kind(&events, "file_denied").is_empty(), "{events:#?}");
}

#[test]
fn the_terminal_shows_which_rule_refused() {
    if !require_root("the_terminal_shows_which_rule_refused") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    let probe = probe_bin().to_string_lossy().into_owned();
    let out = f
        .command(&[probe.as_str(), "read", "/etc/shadow"])
        .output()
        .expect("cordon runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fs.read_file of /etc/shadow denied (denied by the profile: /etc/shadow)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused on purpose: under a `deny` entry of the profile"),
        "{stderr}"
    );

    // A refusal the profile could lift says which rule would: here, running what the
    // sandbox wrote in a tree it does not run from.
    let f = Fixture::new("coding-agent", common::NOEXEC_WORKSPACE);
    std::fs::create_dir_all(f.workspace.join("tools")).expect("tools");
    std::fs::copy("/usr/bin/true", f.workspace.join("tools/built")).expect("copy");
    let out = f
        .command(&[probe.as_str(), "exec", &f.path("tools/built")])
        .output()
        .expect("cordon runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("to allow it: add \"{workspace}/tools/\" to [filesystem] exec"),
        "{stderr}"
    );
}

#[test]
fn a_flood_of_missing_files_does_not_crowd_out_a_denial() {
    if !require_root("a_flood_of_missing_files_does_not_crowd_out_a_denial") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    let key = f.home_path(".ssh/id_ed25519");
    // 20 000 records of about 1 KiB would fill the sandbox's 1 MiB ring many times over.
    let (answer, events) = f.probe_events(&[], &["misses", "20000", "read", &key]);
    assert_eq!(answer, "err EACCES");
    assert_denied(&events, &key, "fs.read_file", "deny", &f.home_path(".ssh"));
    let lost = of_kind(&events, "events_lost");
    assert!(
        lost.iter().all(|e| e["reason"] == "unexamined"),
        "no denial lost: {lost:?}"
    );
    // Above the kernel's rate the misses are counted, not examined.
    let unexamined = occurrences(&lost);
    assert!(
        (10_000..20_000).contains(&unexamined),
        "{unexamined} unexamined: {lost:?}"
    );
}

#[test]
fn a_covered_path_reached_another_way_is_reported_all_the_same() {
    if !require_root("a_covered_path_reached_another_way_is_reported_all_the_same") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    assert_eq!(
        bare(&["read", "/etc/shadow"]),
        "ok",
        "the twin: unconfined, it reads"
    );
    let shadow = |events: &[serde_json::Value]| {
        let e = denial(events);
        assert_eq!(e["layer"], "deny", "{e}");
        assert_eq!(e["rule"], "/etc/shadow", "{e}");
    };
    // Through a link the sandbox made in its workspace.
    std::os::unix::fs::symlink("/etc", f.workspace.join("etc-link")).expect("symlink");
    let (answer, events) = f.probe_events(&[], &["read", &f.path("etc-link/shadow")]);
    assert_eq!(answer, "err EACCES");
    shadow(&events);
    // Through a link in its workspace as the path's last name.
    std::os::unix::fs::symlink("/etc/shadow", f.workspace.join("shadow-link")).expect("symlink");
    let (answer, events) = f.probe_events(&[], &["read", &f.path("shadow-link")]);
    assert_eq!(answer, "err EACCES");
    shadow(&events);
    // Through the process's own root.
    let (answer, events) = f.probe_events(&[], &["read", "/proc/self/root/etc/shadow"]);
    assert_eq!(answer, "err EACCES");
    shadow(&events);
    // Relative to the root directory, by a process that ends at once.
    let (answer, events) = f.probe_events(&[], &["read-in", "/", "etc/shadow"]);
    assert_eq!(answer, "err EACCES");
    shadow(&events);
    // Through the process's cwd in /proc, `..` then leading where the words do not.
    let f_home = Fixture::new("coding-agent", HOME_READABLE);
    let key = f_home.home_path(".ssh/id_ed25519");
    let (answer, events) =
        f_home.probe_events(&[], &["read", "/proc/self/cwd/../home/.ssh/id_ed25519"]);
    assert_eq!(answer, "err EACCES", "{key}");
    assert_eq!(denial(&events)["rule"], f_home.home_path(".ssh").as_str());
    // Git metadata written through a link to it: refused read-only, and said so.
    std::os::unix::fs::symlink(".git", f.workspace.join("g")).expect("symlink");
    let (answer, events) = f.probe_events(&[], &["write", "g/config"]);
    assert_eq!(answer, "err EROFS");
    let e = denial(&events);
    assert_eq!(e["layer"], "read_only", "{e}");
    assert_eq!(e["rule"], f.path(".git").as_str(), "{e}");
    // Through a link the sandbox made in its private /tmp (no host path leads there), and
    // by a name relative to /etc: each says where it led.
    let events_file = f.dir.path().join("events-private-link.jsonl");
    let out = f
        .command_with(
            &["--events", events_file.to_str().unwrap()],
            &[
                "/bin/sh",
                "-c",
                "ln -s /etc/shadow /tmp/l; cat /tmp/l; ln -s /tmp t; cat t/l; cd /etc && cat shadow; sleep 0.2",
            ],
        )
        .output()
        .expect("cordon run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/tmp/l: Permission denied"),
        "{out:?}"
    );
    let events = common::read_events(&events_file);
    let denied = of_kind(&events, "file_denied");
    let through_link = denied
        .iter()
        .find(|e| e["path"] == "/tmp/l")
        .unwrap_or_else(|| panic!("no event for the link: {events:#?}"));
    assert_eq!(through_link["rule"], "/etc/shadow", "{through_link}");
    assert_eq!(through_link["target"], "/etc/shadow", "{through_link}");
    // A workspace link to the private /tmp, and in it the link: the host's /tmp has neither.
    let through_two = denied
        .iter()
        .find(|e| e["path"] == "t/l")
        .unwrap_or_else(|| panic!("no event for the links: {events:#?}"));
    assert_eq!(through_two["target"], "/etc/shadow", "{through_two}");
    let relative = denied
        .iter()
        .find(|e| e["path"] == "shadow")
        .unwrap_or_else(|| panic!("no event for the relative name: {events:#?}"));
    assert_eq!(relative["target"], "/etc/shadow", "{relative}");
    // Padded to a length that a record of a fixed size would have cut off.
    let long = format!("{}etc/shadow", "/".repeat(3000));
    let (answer, events) = f.probe_events(&[], &["read", &long]);
    assert_eq!(answer, "err EACCES");
    shadow(&events);
}

#[test]
fn asking_whether_a_read_only_tree_is_writable_is_not_a_denial() {
    if !require_root("asking_whether_a_read_only_tree_is_writable_is_not_a_denial") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let (answer, events) = f.probe_events(&[], &["access-write", "/usr/bin"]);
    assert_eq!(answer, "err EROFS");
    assert!(of_kind(&events, "file_denied").is_empty(), "{events:#?}");
}

#[test]
fn a_profile_sets_the_severity_of_what_it_names() {
    if !require_root("a_profile_sets_the_severity_of_what_it_names") {
        return;
    }
    let f = Fixture::new(
        "coding-agent",
        &format!("{HOME_READABLE}\n[severity]\npaths = {{ \"{{home}}/.ssh\" = \"critical\" }}\n"),
    );
    let key = f.home_path(".ssh/id_ed25519");
    let (answer, events) = f.probe_events(&[], &["read", &key]);
    assert_eq!(answer, "err EACCES");
    let e = denial(&events);
    assert_eq!(e["severity"], "critical", "{e}");

    // What the profile does not name keeps its kind's level.
    let (answer, events) = f.probe_events(&[], &["write", &f.home_path("planted")]);
    assert_eq!(answer, "err EROFS");
    assert_eq!(denial(&events)["severity"], "medium");
}

/// A refusal that Landlock makes is reported once, by Landlock: the mount layer's watch
/// sees the same failed call and must not add an `unplaced` twin of it.
#[test]
fn a_landlock_refusal_is_one_event() {
    if !require_root("a_landlock_refusal_is_one_event") {
        return;
    }
    // Out of /tmp, which the sandbox writes (and so reads) as its own: the way to a
    // readable directory is in the view, but not itself readable.
    let outside = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let notes = outside.path().join("projects/notes");
    std::fs::create_dir_all(&notes).expect("dirs");
    let f = Fixture::new(
        "coding-agent",
        &format!("[filesystem]\nread = [{:?}]", notes.display().to_string()),
    );
    let parent = outside.path().join("projects").display().to_string();
    assert_eq!(
        bare(&["list", &parent]),
        "ok",
        "the twin: unconfined, it lists"
    );
    let (answer, events) = f.probe_events(&[], &["list", &parent]);
    assert_eq!(answer, "err EACCES");
    let e = denial(&events);
    assert_eq!(e["layer"], "landlock", "{e}");
    assert_eq!(e["path"], parent.as_str(), "{e}");
}
