//! A sandbox cannot make the host's git run a program: every place git reads programs or
//! more metadata from, planted from inside `coding-agent`, then the host's git run on the
//! workspace as a developer would (status, diff, commit, submodule status). Each plant is
//! first shown to work unconfined, on a fresh copy of the same repository.

mod common;

use std::path::Path;
use std::process::Command;

use common::{require_root, Fixture};

/// The host's git, as the developer runs it (their home's config, nothing system-wide).
fn host_git(f: &Fixture, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", &f.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs")
}

fn ok(f: &Fixture, dir: &Path, args: &[&str]) {
    let out = host_git(f, dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository in the workspace with one commit.
fn repo(f: &Fixture) {
    let ws = &f.workspace;
    std::fs::write(ws.join("README.md"), "hello\n").expect("file");
    ok(f, ws, &["init", "-q"]);
    ok(f, ws, &["add", "README.md"]);
    ok(f, ws, &["commit", "-qm", "first"]);
}

/// [`repo`] with a checked-out submodule `sub` (its `.git` a file naming `.git/modules/sub`).
fn repo_with_submodule(f: &Fixture) {
    let upstream = f.dir.path().join("upstream");
    std::fs::create_dir_all(&upstream).expect("upstream");
    std::fs::write(upstream.join("lib.txt"), "lib\n").expect("file");
    ok(f, &upstream, &["init", "-q"]);
    ok(f, &upstream, &["add", "lib.txt"]);
    ok(f, &upstream, &["commit", "-qm", "lib"]);
    repo(f);
    let url = upstream.to_string_lossy().into_owned();
    ok(
        f,
        &f.workspace,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &url,
            "sub",
        ],
    );
    ok(f, &f.workspace, &["commit", "-qm", "sub"]);
}

/// A git config that runs `touch MARK` whenever git refreshes its index.
const FSMONITOR: &str = r#"printf '[core]\n\tfsmonitor = "touch MARK; false"\n'"#;

struct Plant {
    name: &'static str,
    setup: fn(&Fixture),
    /// Shell commands run in the workspace; `MARK` is the file the planted program creates.
    script: String,
}

fn plants() -> Vec<Plant> {
    let p = |name, setup: fn(&Fixture), script: String| Plant {
        name,
        setup,
        script,
    };
    vec![
        p("config", repo, format!("{FSMONITOR} >> .git/config")),
        p(
            "hook",
            repo,
            "mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch MARK\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit".into(),
        ),
        p(
            "commondir",
            repo,
            format!(
                "mkdir -p evil/objects evil/refs && {FSMONITOR} > evil/config && echo \"$PWD/evil\" > .git/commondir"
            ),
        ),
        p(
            "config.worktree",
            |f| {
                repo(f);
                ok(f, &f.workspace, &["config", "extensions.worktreeConfig", "true"]);
            },
            format!("{FSMONITOR} > .git/config.worktree"),
        ),
        p(
            "a submodule's git dir",
            repo_with_submodule,
            format!("{FSMONITOR} >> .git/modules/sub/config"),
        ),
        p(
            "a submodule's .git file",
            repo_with_submodule,
            format!(
                "mkdir evil && cp -r .git/modules/sub/. evil/ && sed -i '/worktree/d' evil/config && {FSMONITOR} >> evil/config && echo \"gitdir: $PWD/evil\" > sub/.git"
            ),
        ),
        p(
            "a gitlink in the index",
            repo,
            format!(
                "mkdir evilsub && cd evilsub && git init -q && echo x > x && git add x && git -c user.name=a -c user.email=a@b commit -qm x && {FSMONITOR} >> .git/config && cd .. && git update-index --add --cacheinfo \"160000,$(git -C evilsub rev-parse HEAD),evilsub\""
            ),
        ),
        p(
            "a hooks directory in the work tree (core.hooksPath)",
            |f| {
                repo(f);
                std::fs::create_dir_all(f.workspace.join(".githooks")).expect("hooks");
                ok(f, &f.workspace, &["config", "core.hooksPath", ".githooks"]);
            },
            "printf '#!/bin/sh\\ntouch MARK\\n' > .githooks/pre-commit && chmod +x .githooks/pre-commit".into(),
        ),
        p(
            "a config file the repository's config includes",
            |f| {
                repo(f);
                std::fs::write(f.workspace.join("team.gitconfig"), "").expect("include");
                ok(f, &f.workspace, &["config", "include.path", "../team.gitconfig"]);
            },
            format!("{FSMONITOR} >> team.gitconfig"),
        ),
        p(
            "a hook that is a symlink into the work tree",
            |f| {
                repo(f);
                let scripts = f.workspace.join("scripts");
                std::fs::create_dir_all(&scripts).expect("scripts");
                std::fs::write(scripts.join("pre-commit"), "#!/bin/sh\n").expect("hook");
                ok(f, &f.workspace, &["update-index", "--chmod=+x", "--add", "scripts/pre-commit"]);
                let _ = Command::new("chmod")
                    .args(["+x"])
                    .arg(scripts.join("pre-commit"))
                    .status();
                let hooks = f.workspace.join(".git/hooks");
                std::fs::create_dir_all(&hooks).expect("hooks");
                std::os::unix::fs::symlink("../../scripts/pre-commit", hooks.join("pre-commit"))
                    .expect("link");
            },
            "printf '#!/bin/sh\\ntouch MARK\\n' > scripts/pre-commit".into(),
        ),
        p(
            "a repository where there was none",
            |_| {},
            format!("git init -q && {FSMONITOR} >> .git/config"),
        ),
    ]
}

/// Runs `plant` (inside the sandbox, or not), then the developer's git commands; whether the
/// planted program ran.
fn attack(plant: &Plant, confined: bool) -> bool {
    let f = Fixture::new("coding-agent", "");
    (plant.setup)(&f);
    let marker = f.dir.path().join("planted-program-ran");
    let script = plant.script.replace("MARK", &marker.to_string_lossy());
    if confined {
        // The plant may fail part way (that is the point); the sandbox must have run it.
        let out = f.run(&["/bin/sh", "-c", &format!("({script}); echo ran")]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().last(),
            Some("ran"),
            "{}: the sandbox did not run the plant: {}",
            plant.name,
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .current_dir(&f.workspace)
            .env("HOME", &f.home)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "the plant {:?} itself fails: {}",
            plant.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !marker.exists(),
        "{}: ran before the host's git",
        plant.name
    );
    for args in [
        &["status"][..],
        &["diff"],
        &["commit", "--allow-empty", "-qm", "by the developer"],
        &["submodule", "status"],
    ] {
        let _ = host_git(&f, &f.workspace, args);
    }
    marker.exists()
}

#[test]
fn no_plant_in_the_workspace_makes_the_hosts_git_run_a_program() {
    if !require_root("no_plant_in_the_workspace_makes_the_hosts_git_run_a_program") {
        return;
    }
    for plant in plants() {
        assert!(
            attack(&plant, false),
            "the twin: planting {:?} unconfined makes the host's git run it",
            plant.name
        );
        assert!(
            !attack(&plant, true),
            "planted {:?} from inside the sandbox, and the host's git ran it",
            plant.name
        );
    }
}

#[test]
fn git_reads_work_inside_and_writes_say_why_they_fail() {
    if !require_root("git_reads_work_inside_and_writes_say_why_they_fail") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    repo(&f);
    std::fs::write(f.workspace.join("README.md"), "changed\n").expect("edit");
    for args in [
        &["git", "status", "--short"][..],
        &["git", "log", "--oneline"],
        &["git", "diff", "--stat"],
    ] {
        let out = f.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        // Quiet: `status` takes no optional lock in the read-only .git (the profile's
        // GIT_OPTIONAL_LOCKS=0), so nothing is refused.
        assert!(!stderr.contains("denied"), "{args:?}: {stderr}");
    }
    let out = f.run(&["git", "commit", "-qam", "by the agent"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The edit itself went through; the developer commits it.
    ok(&f, &f.workspace, &["commit", "-qam", "by the developer"]);
}

#[test]
fn a_workspace_without_a_repository_gets_an_empty_git_dir_the_host_ignores() {
    if !require_root("a_workspace_without_a_repository_gets_an_empty_git_dir_the_host_ignores") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let out = f.run(&["/bin/true"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("created an empty") && stderr.contains(".git"),
        "the user is told once: {stderr}"
    );
    let dot_git = f.workspace.join(".git");
    assert!(dot_git.is_dir());
    assert_eq!(std::fs::read_dir(&dot_git).expect("read").count(), 0);
    // The host's git sees no repository there, and makes one when asked to.
    let status = host_git(&f, &f.workspace, &["status"]);
    assert!(!status.status.success());
    ok(&f, &f.workspace, &["init", "-q"]);
    // The next run says nothing: there is nothing to create.
    let out = f.run(&["/bin/true"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("created an empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
