//! Real work under `coding-agent`: the tools an agent runs every day must keep working.

mod common;

use std::path::PathBuf;

use common::{require_root, Fixture};

/// The caller's real home: the toolchains (rustup, cargo) live there.
fn real_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// `coding-agent` as shipped, plus the Rust toolchain's directories when they are not in
/// the default place under the home (a CI image may keep them elsewhere).
fn fixture() -> Fixture {
    let home = real_home();
    let mut extra = Vec::new();
    for (var, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
        let dir = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(default));
        if !dir.starts_with(&home) {
            extra.push(format!("\"{}\"", dir.display()));
        }
    }
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("[filesystem]\nread = [{0}]\nexec = [{0}]", extra.join(", "))
    };
    Fixture::new("coding-agent", &extra)
}

/// Runs a bash script in the sandbox; returns success, stdout, and everything for messages.
fn sh(f: &Fixture, script: &str) -> (bool, String, String) {
    let out = f
        .command(&["/bin/bash", "-c", script])
        .env("HOME", real_home())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout, all)
}

#[test]
fn git_reads_in_the_workspace_and_its_metadata_stays_the_hosts() {
    if !require_root("git_reads_in_the_workspace_and_its_metadata_stays_the_hosts") {
        return;
    }
    let f = fixture();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&f.workspace)
            .env("HOME", &f.home)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "first"]);
    let (ok, out, all) = sh(
        &f,
        "set -e; echo hi > a; git status --short; git log --oneline | wc -l; git diff --stat HEAD; \
         if git add a 2>/dev/null; then echo added; else echo refused; fi",
    );
    assert!(ok, "{all}");
    assert!(out.contains("?? a"), "{out}");
    assert!(out.contains("refused"), "{out}");
}

#[test]
fn python_venv_in_the_workspace() {
    if !require_root("python_venv_in_the_workspace") {
        return;
    }
    let f = fixture();
    let (ok, out, all) = sh(&f, "set -e; /usr/bin/python3 -m venv venv && ./venv/bin/python -c 'import sys; print(sys.prefix)'");
    assert!(ok, "{all}");
    assert!(out.trim().ends_with("/venv"), "{out}");
}

#[test]
fn python_multiprocessing_shares_memory_of_the_sandboxs_own_not_the_hosts() {
    if !require_root("python_multiprocessing_shares_memory_of_the_sandboxs_own_not_the_hosts") {
        return;
    }
    let f = fixture();
    // The host's shared memory: what another process of the host put there.
    let planted =
        std::path::Path::new("/dev/shm").join(format!("cordon-test-{}", std::process::id()));
    std::fs::write(&planted, "host secret").expect("plant in /dev/shm");
    let name = planted.file_name().unwrap().to_str().unwrap().to_owned();
    let script = format!(
        "import multiprocessing as mp, os\n\
         with mp.Pool(2) as p: print('pool', sum(p.map(abs, range(-5, 5))))\n\
         print('sees', os.path.exists('/dev/shm/{name}'))\n\
         open('/dev/shm/{name}-inside', 'w').write('x')\n"
    );
    let run = |confined: bool| {
        let mut cmd = if confined {
            f.command(&["/usr/bin/python3", "-c", &script])
        } else {
            let mut c = std::process::Command::new("/usr/bin/python3");
            c.args(["-c", &script]);
            c
        };
        let out = cmd.output().expect("python3");
        let inside = planted.with_file_name(format!("{name}-inside"));
        let leaked = inside.exists();
        let _ = std::fs::remove_file(&inside);
        (out, leaked)
    };
    // Unconfined, the host's shared memory is one for all: the planted file is seen and a
    // file made there stays on the host.
    let (out, leaked) = run(false);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("sees True") && leaked,
        "{out:?}"
    );
    // Inside, multiprocessing works on a /dev/shm of the sandbox's own.
    let (out, leaked) = run(true);
    let _ = std::fs::remove_file(&planted);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("pool 25"), "{stdout}");
    assert!(
        stdout.contains("sees False"),
        "the host's /dev/shm is seen: {stdout}"
    );
    assert!(
        !leaked,
        "a file made in the sandbox's /dev/shm reached the host's"
    );
}

#[test]
fn cargo_build_of_a_small_crate() {
    if !require_root("cargo_build_of_a_small_crate") {
        return;
    }
    let f = fixture();
    std::fs::create_dir_all(f.workspace.join("hello/src")).expect("src");
    std::fs::write(
        f.workspace.join("hello/Cargo.toml"),
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .expect("manifest");
    std::fs::write(
        f.workspace.join("hello/src/main.rs"),
        "fn main() { println!(\"hello\"); }\n",
    )
    .expect("main");
    let (ok, out, all) = sh(&f, "cd hello && cargo build --offline 2>&1");
    assert!(ok, "{all}");
    assert!(
        f.workspace.join("hello/target/debug/hello").is_file(),
        "{out}"
    );
}

#[test]
fn make_builds_a_c_program() {
    if !require_root("make_builds_a_c_program") {
        return;
    }
    let f = fixture();
    std::fs::write(f.workspace.join("m.c"), "int main(void) { return 0; }\n").expect("source");
    std::fs::write(f.workspace.join("Makefile"), "m: m.c\n\tcc -O2 -o m m.c\n").expect("makefile");
    let (ok, out, all) = sh(&f, "make 2>&1");
    assert!(ok, "{all}");
    assert!(f.workspace.join("m").is_file(), "{out}");
}

/// A name that resolves here and that no shipped profile names (Debian's mirror).
const UNNAMED: &str = "deb.debian.org";

/// What every loop below checks after it: the same profile still refuses what it must. A
/// name no rule names is refused (it resolves unconfined), the host's caches are not written.
fn still_refuses(f: &Fixture) {
    let resolves = |host: &str| {
        std::process::Command::new("getent")
            .args(["hosts", host])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        resolves(UNNAMED),
        "the twin: unconfined, {UNNAMED} resolves"
    );
    let (ok, out, all) = sh(
        f,
        "python3 -c 'import socket; socket.getaddrinfo(\"deb.debian.org\", 443)' 2>/dev/null && echo resolved || echo refused; \
         for cache in ~/.cache/pip ~/.npm ~/.cargo/registry; do mkdir -p $cache/cordon-was-here 2>/dev/null && echo wrote $cache || echo kept $cache; done",
    );
    assert!(ok, "{all}");
    assert!(out.contains("refused"), "a name no rule names: {out}");
    assert!(!out.contains("wrote"), "the host's caches: {out}");
    for cache in [".cache/pip", ".npm", ".cargo/registry"] {
        assert!(!real_home().join(cache).join("cordon-was-here").exists());
    }
}

#[test]
fn python_packages_from_pypi_install_into_a_venv_and_their_tests_run() {
    if !require_root("python_packages_from_pypi_install_into_a_venv_and_their_tests_run") {
        return;
    }
    let f = fixture();
    std::fs::write(
        f.workspace.join("test_it.py"),
        "import iniconfig\n\ndef test_it():\n    assert iniconfig.__name__ == 'iniconfig'\n",
    )
    .expect("a test");
    let (ok, out, all) = sh(
        &f,
        "set -e; /usr/bin/python3 -m venv .venv; .venv/bin/pip install -q pytest; \
         .venv/bin/pytest -q -p no:cacheprovider test_it.py",
    );
    assert!(ok, "{all}");
    assert!(out.contains("1 passed"), "{out}");
    still_refuses(&f);
}

#[test]
fn node_packages_from_npm_install_and_their_programs_run() {
    if !require_root("node_packages_from_npm_install_and_their_programs_run") {
        return;
    }
    let f = fixture();
    let (ok, out, all) = sh(
        &f,
        "set -e; npm init -y >/dev/null; npm install --no-audit --no-fund -s semver@7 >/dev/null; \
         ./node_modules/.bin/semver 1.2.3; npx --no-install semver 2.0.0; \
         node -e 'console.log(require(\"semver\").valid(\"3.0.0\"))'",
    );
    assert!(ok, "{all}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1.2.3", "2.0.0", "3.0.0"],
        "{all}"
    );
    still_refuses(&f);
}

/// A crate in `workspace/hello` with a crates.io dependency (itoa), a build script (it runs
/// from target/, and so does the test binary) and a test.
fn small_crate(workspace: &std::path::Path) -> std::path::PathBuf {
    let dir = workspace.join("hello");
    std::fs::create_dir_all(dir.join("src")).expect("src");
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"1\"\n",
    )
    .expect("manifest");
    std::fs::write(
        dir.join("build.rs"),
        "fn main() { println!(\"cargo:rerun-if-changed=build.rs\"); }\n",
    )
    .expect("build script");
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() { println!(\"{}\", itoa::Buffer::new().format(42)); }\n#[test]\nfn formats() { assert_eq!(itoa::Buffer::new().format(7), \"7\"); }\n",
    )
    .expect("main");
    dir
}

#[test]
fn rust_crates_from_crates_io_build_test_and_clean() {
    if !require_root("rust_crates_from_crates_io_build_test_and_clean") {
        return;
    }
    let f = fixture();
    small_crate(&f.workspace);
    let (ok, out, all) = sh(
        &f,
        "set -e; cd hello; cargo build -q; ./target/debug/hello; cargo test -q 2>&1 | grep 'test result'; \
         cargo clean -q; test ! -e target && echo cleaned",
    );
    assert!(ok, "{all}");
    assert!(out.starts_with("42\n"), "{all}");
    assert!(out.contains("1 passed"), "{all}");
    assert!(out.contains("cleaned"), "{all}");
    still_refuses(&f);
}

#[test]
fn a_user_who_is_not_root_runs_the_python_and_node_loops_through_cordond() {
    if !require_root("a_user_who_is_not_root_runs_the_python_and_node_loops_through_cordond") {
        return;
    }
    use common::daemon::{Daemon, NOBODY, NOGROUP};
    let mut d = Daemon::new("");
    d.start();
    std::fs::write(
        d.workspace.join("test_it.py"),
        "import iniconfig\n\ndef test_it():\n    assert iniconfig.__name__ == 'iniconfig'\n",
    )
    .expect("a test");
    let script = "set -e; id -u; /usr/bin/python3 -m venv .venv; .venv/bin/pip install -q pytest; \
                  .venv/bin/pytest -q -p no:cacheprovider test_it.py | tail -1; \
                  npm init -y >/dev/null; npm install --no-audit --no-fund -s semver@7 >/dev/null; \
                  python3 -c 'import socket; socket.getaddrinfo(\"deb.debian.org\", 443)' 2>/dev/null && echo resolved || echo refused; \
                  ./node_modules/.bin/semver 1.2.3";
    let out = d
        .cordon(
            NOBODY,
            NOGROUP,
            &[
                "run",
                "-q",
                "-p",
                "coding-agent",
                "--",
                "/bin/sh",
                "-c",
                script,
            ],
        )
        .env("HOME", "/nonexistent")
        .output()
        .expect("cordon run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&NOBODY.to_string().as_str()),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert_eq!(lines.last(), Some(&"1.2.3"), "{stdout}");
    // The negative twin: the same profile refuses a name no rule names (that resolves here).
    assert!(
        std::process::Command::new("getent")
            .args(["hosts", UNNAMED])
            .output()
            .is_ok_and(|o| o.status.success()),
        "the twin: unconfined, {UNNAMED} resolves"
    );
    assert!(
        stdout.contains("refused") && !stdout.contains("resolved"),
        "{stdout}"
    );
    // What it made is the user's, not root's.
    let venv = std::fs::metadata(d.workspace.join(".venv")).expect("the venv");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&venv), NOBODY);
}

/// The Rust toolchain of this machine lives in root's home, which no other user may enter:
/// its directories bound under a directory anyone may enter, for as long as a test needs them.
struct SharedToolchain {
    dir: tempfile::TempDir,
}

impl SharedToolchain {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cordon-e2e-rust-")
            .tempdir_in("/var/tmp")
            .expect("a directory");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let home = real_home();
        for (from, to) in [
            (home.join(".rustup"), "rustup"),
            (home.join(".cargo/bin"), "bin"),
        ] {
            let at = dir.path().join(to);
            std::fs::create_dir(&at).expect("mount point");
            nix::mount::mount(
                Some(&from),
                &at,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .unwrap_or_else(|e| panic!("bind {}: {e}", from.display()));
        }
        Self { dir }
    }
}

impl Drop for SharedToolchain {
    fn drop(&mut self) {
        for to in ["rustup", "bin"] {
            let _ =
                nix::mount::umount2(&self.dir.path().join(to), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn a_user_who_is_not_root_builds_tests_and_cleans_a_crate_through_cordond() {
    if !require_root("a_user_who_is_not_root_builds_tests_and_cleans_a_crate_through_cordond") {
        return;
    }
    use common::daemon::{Daemon, NOBODY, NOGROUP};
    let rust = SharedToolchain::new();
    let mut d = Daemon::new("");
    // coding-agent, plus the toolchain where this machine keeps it for other users.
    let (rustup, bin) = (rust.dir.path().join("rustup"), rust.dir.path().join("bin"));
    std::fs::write(
        d.dir.path().join("profiles/rusty.toml"),
        format!(
            "[profile]\nname = \"rusty\"\nextends = [\"coding-agent\"]\n[filesystem]\nread = [\"{r}\"]\nexec = [\"{r}/toolchains\", \"{b}\"]\n",
            r = rustup.display(),
            b = bin.display()
        ),
    )
    .expect("profile");
    d.start();
    let dir = small_crate(&d.workspace);
    for path in [
        &dir,
        &dir.join("src"),
        &dir.join("Cargo.toml"),
        &dir.join("build.rs"),
        &dir.join("src/main.rs"),
    ] {
        nix::unistd::chown(
            path.as_path(),
            Some(nix::unistd::Uid::from_raw(NOBODY)),
            Some(nix::unistd::Gid::from_raw(NOGROUP)),
        )
        .expect("chown");
    }
    let out = d
        .cordon(
            NOBODY,
            NOGROUP,
            &[
                "run",
                "-q",
                "-p",
                "rusty",
                "--",
                "/bin/sh",
                "-c",
                "set -e; cd hello; cargo build -q; ./target/debug/hello; cargo test -q 2>&1 | grep 'test result'; cargo clean -q; test ! -e target && echo cleaned",
            ],
        )
        .env("HOME", "/nonexistent")
        .env("RUSTUP_HOME", &rustup)
        .env("RUSTUP_TOOLCHAIN", "stable")
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .expect("cordon run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("42\n"), "{stdout}");
    assert!(
        stdout.contains("1 passed") && stdout.contains("cleaned"),
        "{stdout}"
    );
}
