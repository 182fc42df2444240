//! `cordon evidence`: what a responder keeps of a sandbox before killing it. The archive
//! holds its processes, the files it changed, the socket it holds, its events and its
//! profile; its manifest verifies and the collection is recorded with the manifest's hash;
//! the sandbox stays frozen and is not told. A link the sandbox planted is not followed, and
//! an archive altered since does not verify.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, Read as _};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::collector::{Collector, Db};
use common::daemon::{Daemon, KillOnDrop, NOBODY, NOGROUP};
use common::{require_root, wait_until};
use sha2::{Digest as _, Sha256};

/// The archive's entries by name.
fn entries(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(archive).expect("archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in tar.entries().expect("a tar archive") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("name").display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read entry");
        out.insert(name, bytes);
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("JSON")
}

const MARKER: &str = "cordon-evidence-marker";

/// A sandbox of `profile` run through cordond as nobody (`cordon run -p PROFILE ARGS...`),
/// once its command printed `ready` (failing with its stderr otherwise), and its name in
/// `cordon ps`. Its stdout is read; its stderr stays for the caller.
fn start_ready(d: &Daemon, profile: &str, args: &[&str]) -> (KillOnDrop, String) {
    let mut argv = vec!["run", "-p", profile];
    argv.extend_from_slice(args);
    let mut run = KillOnDrop(
        d.cordon(NOBODY, NOGROUP, &argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cordon run"),
    );
    let mut line = String::new();
    std::io::BufReader::new(run.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the command's first line");
    if line.trim() != "ready" {
        let stderr = run.stderr_text();
        panic!("the sandbox's command did not start: {line:?} {stderr}");
    }
    let out = d.cordon(0, 0, &["ps", "--json"]).output().expect("ps");
    let ps: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ps JSON");
    // This test's sandbox (others may run on the host).
    let name = ps
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["uid"] == NOBODY && s["profile"] == profile)
        .and_then(|s| s["name"].as_str())
        .expect("the sandbox in cordon ps")
        .to_string();
    (run, name)
}

#[test]
fn evidence_of_a_frozen_sandbox_holds_what_it_runs_holds_and_changed() {
    if !require_root("evidence_of_a_frozen_sandbox_holds_what_it_runs_holds_and_changed") {
        return;
    }
    let mut d = Daemon::new("");
    d.start();
    // The agent: a file it changes, a secret it reads (refused), a link it plants towards
    // a host secret, a socket it listens on, and a string only its memory holds (built at
    // run time, so it is not in any file).
    let script = format!(
        "import os, socket, sys, time\n\
         open('changed.txt', 'w').write('the agent wrote this')\n\
         try: open('/etc/shadow').read()\n\
         except OSError: pass\n\
         os.symlink('/etc/shadow', 'leak')\n\
         s = socket.socket(socket.AF_UNIX); s.bind('agent.sock'); s.listen()\n\
         held = '{MARKER}-' + str(6 * 7)\n\
         print('ready', flush=True)\n\
         time.sleep(600)\n"
    );
    let (mut run, name) = start_ready(&d, "test-agent", &["--", "/usr/bin/python3", "-c", &script]);
    let ps = |d: &Daemon| -> Vec<serde_json::Value> {
        let out = d
            .cordon(0, 0, &["ps", "--json"])
            .output()
            .expect("cordon ps");
        serde_json::from_slice(&out.stdout).expect("ps JSON")
    };
    let ours = |d: &Daemon| {
        ps(d)
            .into_iter()
            .find(|s| s["name"] == name.as_str())
            .expect("the sandbox in cordon ps")
    };
    wait_until(
        "the refused read in the journal",
        Duration::from_secs(20),
        || {
            d.journal_events()
                .iter()
                .any(|e| e["kind"] == "file_denied" && e["path"] == "/etc/shadow")
                .then_some(())
        },
    );
    let frozen = d.cordon(0, 0, &["freeze", &name]).output().expect("freeze");
    assert!(frozen.status.success(), "{frozen:?}");

    let archive = d.dir.path().join("evidence.tar.gz");
    let out = d
        .cordon(
            0,
            0,
            &[
                "evidence",
                &name,
                "--memory",
                "--out",
                archive.to_str().unwrap(),
            ],
        )
        .output()
        .expect("cordon evidence");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let verified = d
        .cordon(0, 0, &["evidence", "--verify", archive.to_str().unwrap()])
        .output()
        .expect("verify");
    assert!(verified.status.success(), "{verified:?}");
    let files = entries(&archive);

    // Its processes: the agent's argv, the SHA-256 of the file it runs, its socket.
    let agent = files
        .iter()
        .filter(|(n, _)| n.starts_with("processes/") && n.ends_with(".json"))
        .map(|(_, b)| json(b))
        .find(|p| p["argv"][0] == "/usr/bin/python3")
        .unwrap_or_else(|| panic!("the agent's process: {:?}", files.keys()));
    let exe = std::fs::canonicalize("/usr/bin/python3").expect("python3");
    assert_eq!(
        agent["exe_sha256"],
        sha256(&std::fs::read(&exe).expect("read python3")),
        "{agent}"
    );
    assert!(
        agent["fds"].as_array().expect("fds").iter().any(|f| {
            f["socket"]["protocol"] == "unix"
                && f["socket"]["local"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("agent.sock"))
        }),
        "the listening socket: {agent}"
    );
    assert_eq!(agent["credentials"]["NoNewPrivs"], "1");
    // Its memory: the string it built.
    let pid = agent["pid"].as_u64().expect("pid");
    let core = &files[&format!("memory/{pid}.core")];
    assert_eq!(&core[..4], b"\x7fELF");
    let held = format!("{MARKER}-42");
    assert!(
        core.windows(held.len()).any(|w| w == held.as_bytes()),
        "the core does not hold the agent's string"
    );

    // What it changed, with the content; the planted link listed as a link, never followed.
    let changed = json(&files["changed.json"]);
    let changed = changed.as_array().expect("changed list");
    let file = changed
        .iter()
        .find(|c| c["path"] == "changed.txt")
        .expect("changed.txt is listed");
    let content = file["content"].as_str().expect("content kept");
    assert_eq!(files[content], b"the agent wrote this");
    let leak = changed
        .iter()
        .find(|c| c["path"] == "leak")
        .expect("the planted link is listed");
    assert_eq!(leak["kind"], "symlink");
    assert_eq!(leak["target"], "/etc/shadow");
    assert!(leak.get("content").is_none(), "{leak}");
    let shadow = std::fs::read("/etc/shadow").expect("the host's /etc/shadow");
    assert!(
        !files.values().any(|b| b.as_slice() == shadow.as_slice()),
        "the host's /etc/shadow is in the archive"
    );
    // Unconfined, the same link reads the host's secret: what a naive collector would keep.
    assert_eq!(
        std::fs::read(d.workspace.join("leak")).expect("read through the link"),
        shadow
    );

    // Its events (the refused read among them) and its profile, the one its session ran.
    let events: Vec<serde_json::Value> = files["events.jsonl"]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(json)
        .collect();
    let started = events
        .iter()
        .find(|e| e["kind"] == "session_started")
        .expect("session_started in the timeline");
    assert!(events
        .iter()
        .any(|e| e["kind"] == "file_denied" && e["path"] == "/etc/shadow"));
    assert_eq!(started["profile_sha256"], sha256(&files["profile.json"]));

    // The manifest: every entry, its hash recorded in the journal's responder_action.
    let manifest = json(&files["manifest.json"]);
    assert_eq!(manifest["state"], "frozen");
    assert_eq!(manifest["files"].as_array().unwrap().len(), files.len() - 1);
    let manifest_sha256 = sha256(&files["manifest.json"]);
    assert!(said.contains(&manifest_sha256), "{said}");
    wait_until(
        "the collection in the journal",
        Duration::from_secs(20),
        || {
            d.journal_events()
                .into_iter()
                .find(|e| e["kind"] == "responder_action" && e["action"] == "evidence")
        },
    );
    let recorded = d
        .journal_events()
        .into_iter()
        .find(|e| e["kind"] == "responder_action" && e["action"] == "evidence")
        .unwrap();
    assert_eq!(
        recorded["evidence"]["manifest_sha256"], manifest_sha256,
        "{recorded}"
    );
    assert_eq!(recorded["session"], started["session"]);

    // The sandbox stayed frozen, and was not told.
    assert_eq!(ours(&d)["state"], "frozen");
    let killed = d.cordon(0, 0, &["kill", &name]).output().expect("kill");
    assert!(killed.status.success(), "{killed:?}");
    let stderr = run.stderr_text();
    assert!(!stderr.to_lowercase().contains("evidence"), "{stderr}");
}

#[test]
fn an_archive_altered_after_collection_does_not_verify() {
    if !require_root("an_archive_altered_after_collection_does_not_verify") {
        return;
    }
    let mut d = Daemon::new("");
    d.start();
    let (_run, name) = start_ready(
        &d,
        "test-agent",
        &[
            "-q",
            "--",
            "/bin/sh",
            "-c",
            "echo x > f; echo ready; sleep 600",
        ],
    );
    let archive = d.dir.path().join("e.tar.gz");
    let out = d
        .cordon(
            0,
            0,
            &["evidence", &name, "--out", archive.to_str().unwrap()],
        )
        .output()
        .expect("evidence");
    assert!(out.status.success(), "{out:?}");
    // Collecting never writes over a file.
    let again = d
        .cordon(
            0,
            0,
            &["evidence", &name, "--out", archive.to_str().unwrap()],
        )
        .output()
        .expect("evidence");
    assert!(!again.status.success());
    let verify = |path: &Path| {
        d.cordon(0, 0, &["evidence", "--verify", path.to_str().unwrap()])
            .output()
            .expect("verify")
    };
    assert!(verify(&archive).status.success());

    // The same archive with one entry's content changed, the manifest kept.
    let files = entries(&archive);
    let altered = d.dir.path().join("altered.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&altered).expect("create"),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in &files {
        let bytes: &[u8] = if name == "profile.json" {
            b"{\"filesystem\":\"anything\"}"
        } else {
            bytes
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, name, bytes).expect("append");
    }
    tar.into_inner().expect("tar").finish().expect("gzip");
    let out = verify(&altered);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("profile.json differs from the manifest"),
        "{out:?}"
    );
}

/// A responder at the collector asks a host for a sandbox's evidence: the host collects it
/// (the sandbox is not told), the archive reaches the collector, listed for the session and
/// downloadable, the same bytes, its manifest the one the recorded action names.
fn a_responder_at_the_collector_collects_and_downloads_evidence(db: Db) {
    let c = Collector::start(db, "");
    let responder = c.token("bob", "responder", None);
    let viewer = c.token("alice", "viewer", None);
    let mut d = c.host("ev-host");
    d.start();
    let (_run, _) = start_ready(
        &d,
        "test-agent",
        &[
            "-q",
            "--",
            "/bin/sh",
            "-c",
            "echo x > made-here; echo ready; sleep 600",
        ],
    );
    let (name, session) = wait_until(
        "the sandbox at the collector",
        Duration::from_secs(30),
        || {
            let (_, listed) = c.get(Some(&viewer), "/api/v1/hosts/ev-host/sandboxes");
            // This test's sandbox: the host lists every sandbox of the machine.
            listed["live"].as_array()?.iter().find_map(|s| {
                if s["uid"] != NOBODY || s["profile"] != "test-agent" {
                    return None;
                }
                Some((
                    s["name"].as_str()?.to_string(),
                    s["session"].as_str()?.to_string(),
                ))
            })
        },
    );
    let (status, queued) = c.post(
        Some(&responder),
        "/api/v1/commands",
        &serde_json::json!({"host": "ev-host", "sandbox": name, "action": "evidence"}),
    );
    assert_eq!(status, 201, "{queued}");
    let id = queued["id"].as_str().expect("command id").to_string();
    let done = wait_until("the command done", Duration::from_secs(30), || {
        let (_, command) = c.get(Some(&responder), &format!("/api/v1/commands/{id}"));
        (command["status"] != "queued" && command["status"] != "delivered").then_some(command)
    });
    assert_eq!(done["status"], "done", "{done}");

    let row = wait_until(
        "the archive at the collector",
        Duration::from_secs(30),
        || {
            let (_, listed) = c.get(
                Some(&responder),
                &format!("/api/v1/evidence?session={session}"),
            );
            listed["evidence"].as_array()?.first().cloned()
        },
    );
    assert_eq!(row["sandbox"], name.as_str());
    assert_eq!(row["host"], "ev-host");
    // Viewers do not see evidence: it may hold what the agent held.
    let (status, _) = c.get(
        Some(&viewer),
        &format!("/api/v1/evidence?session={session}"),
    );
    assert_eq!(status, 403);

    let response = ureq::get(&format!(
        "{}/api/v1/evidence/{}",
        c.url,
        row["id"].as_str().unwrap()
    ))
    .set("Authorization", &format!("Bearer {responder}"))
    .call()
    .expect("download");
    let mut archive = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut archive)
        .expect("archive");
    assert_eq!(sha256(&archive), row["archive_sha256"]);
    let path = d.dir.path().join("downloaded.tar.gz");
    std::fs::write(&path, &archive).expect("write");
    let files = entries(&path);
    assert_eq!(sha256(&files["manifest.json"]), row["manifest_sha256"]);
    let changed = json(&files["changed.json"]);
    assert!(
        changed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "made-here"),
        "{changed} {}",
        String::from_utf8_lossy(&files["manifest.json"])
    );
    // The action as recorded, at the collector too, names the same manifest.
    let recorded = wait_until("the recorded action", Duration::from_secs(30), || {
        let (_, page) = c.get(
            Some(&viewer),
            "/api/v1/events?kind=responder_action&host=ev-host",
        );
        page["events"]
            .as_array()?
            .iter()
            .find(|e| e["action"] == "evidence")
            .cloned()
    });
    assert_eq!(
        recorded["evidence"]["manifest_sha256"],
        row["manifest_sha256"]
    );
    assert_eq!(recorded["actor"]["name"], "bob");

    // An archive that is not what its host says it is, is refused.
    let host_token = std::fs::read_to_string(d.dir.path().join("collector.token")).expect("token");
    let refused = ureq::post(&format!("{}/api/v1/evidence", c.url))
        .set("Authorization", &format!("Bearer {}", host_token.trim()))
        .set(
            "x-cordon-evidence-id",
            "01a2263e-175e-73e4-b000-b5d7de0f6653",
        )
        .set("x-cordon-sandbox", &name)
        .set("x-cordon-archive-sha256", &"0".repeat(64))
        .set("x-cordon-manifest-sha256", &"0".repeat(64))
        .send_bytes(b"not the archive");
    assert!(
        matches!(refused, Err(ureq::Error::Status(400, _))),
        "{refused:?}"
    );
    // Another host cannot plant an archive beside this host's session.
    let other = c.token("other-host", "host", Some("other-host"));
    let planted = ureq::post(&format!("{}/api/v1/evidence", c.url))
        .set("Authorization", &format!("Bearer {other}"))
        .set(
            "x-cordon-evidence-id",
            "01a2263e-175e-73e4-b000-b5d7de0f6654",
        )
        .set("x-cordon-sandbox", &name)
        .set("x-cordon-session", &session)
        .set("x-cordon-archive-sha256", &sha256(&archive))
        .set(
            "x-cordon-manifest-sha256",
            row["manifest_sha256"].as_str().unwrap(),
        )
        .send_bytes(&archive);
    assert!(
        matches!(planted, Err(ureq::Error::Status(425, _))),
        "{planted:?}"
    );
    let (_, listed) = c.get(
        Some(&responder),
        &format!("/api/v1/evidence?session={session}"),
    );
    assert_eq!(
        listed["evidence"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

mod collected_at_the_collector {
    #[test]
    fn sqlite() {
        if super::require_root("collected_at_the_collector::sqlite") {
            super::a_responder_at_the_collector_collects_and_downloads_evidence(super::Db::Sqlite);
        }
    }
    #[test]
    fn postgres() {
        if super::require_root("collected_at_the_collector::postgres") {
            super::a_responder_at_the_collector_collects_and_downloads_evidence(
                super::Db::Postgres,
            );
        }
    }
}

#[test]
fn the_outbox_for_the_collector_is_bounded_like_the_spool() {
    if !require_root("the_outbox_for_the_collector_is_bounded_like_the_spool") {
        return;
    }
    // A collector that never answers, and the smallest spool: a memory core does not fit.
    let dead = common::collector::free_port();
    let mut d = Daemon::new(&format!("[collector]\nurl = \"http://127.0.0.1:{dead}\"\n"));
    let config = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(
        &d.config,
        config.replacen("[spool]\n", "[spool]\nmax_bytes = \"64K\"\n", 1),
    )
    .expect("config");
    d.start();
    let (_run, name) = start_ready(
        &d,
        "test-agent",
        &["-q", "--", "/bin/sh", "-c", "echo ready; sleep 600"],
    );
    let archive = d.dir.path().join("big.tar.gz");
    let out = d
        .cordon(
            0,
            0,
            &[
                "evidence",
                &name,
                "--memory",
                "--out",
                archive.to_str().unwrap(),
            ],
        )
        .output()
        .expect("evidence");
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::metadata(&archive).expect("archive").len() > 64 << 10);
    // Written where asked; nothing waits in the outbox (neither the archive nor a part).
    let outbox = d.spool.join("evidence");
    let left: Vec<_> = std::fs::read_dir(&outbox)
        .map(|e| e.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // A small one still goes.
    let small = d.dir.path().join("small.tar.gz");
    let out = d
        .cordon(0, 0, &["evidence", &name, "--out", small.to_str().unwrap()])
        .output()
        .expect("evidence");
    assert!(out.status.success(), "{out:?}");
    let queued = std::fs::read_dir(&outbox)
        .expect("outbox")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(queued, 1);
}

/// The sandbox shapes what is collected: a deep tree, thousands of directories, names that
/// are not UTF-8, a time past 2262, an executable of a terabyte that takes no disk. Each
/// bound is a gap in the manifest, nothing is hidden or lost, and the collection ends soon.
#[test]
fn a_hostile_sandbox_cannot_hide_files_stall_or_spoil_the_collection() {
    if !require_root("a_hostile_sandbox_cannot_hide_files_stall_or_spoil_the_collection") {
        return;
    }
    let mut d = Daemon::new("");
    // The workspace runs, as under coding-agent.
    std::fs::write(
        d.dir.path().join("profiles/exec-agent.toml"),
        "[profile]\nname = \"exec-agent\"\nextends = [\"test-agent\"]\n\n[filesystem]\nexec = [\"{workspace}\"]\n",
    )
    .expect("profile");
    d.start();
    let script = "import os, shutil, subprocess, sys\n\
         for i in range(3000): os.mkdir('pad%d' % i)\n\
         os.makedirs('pad2999/zz'); open('pad2999/zz/payload.txt', 'w').write('hidden?')\n\
         os.makedirs('/'.join(['deep'] * 100))\n\
         open(b'notes\\xff', 'w').write('one'); open(b'notes\\xfe', 'w').write('two')\n\
         open('future', 'w').write('x'); os.utime('future', (2**40, 2**40))\n\
         shutil.copy('/bin/sleep', 'big'); os.chmod('big', 0o755); os.truncate('big', 1 << 40)\n\
         subprocess.Popen(['./big', '600'])\n\
         print('ready', flush=True)\n\
         import time; time.sleep(600)\n";
    let (_run, name) = start_ready(
        &d,
        "exec-agent",
        &["-q", "--", "/usr/bin/python3", "-c", script],
    );
    let archive = d.dir.path().join("hostile.tar.gz");
    let started = std::time::Instant::now();
    let out = d
        .cordon(
            0,
            0,
            &["evidence", &name, "--out", archive.to_str().unwrap()],
        )
        .output()
        .expect("evidence");
    assert!(out.status.success(), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the collection took {:?}",
        started.elapsed()
    );
    let verified = d
        .cordon(0, 0, &["evidence", "--verify", archive.to_str().unwrap()])
        .output()
        .expect("verify");
    assert!(verified.status.success(), "{verified:?}");
    let files = entries(&archive);
    let manifest = json(&files["manifest.json"]);
    let gaps: Vec<&str> = manifest["gaps"]
        .as_array()
        .expect("gaps")
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    let changed = json(&files["changed.json"]);
    let listed: Vec<&str> = changed
        .as_array()
        .expect("changed")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    // Behind thousands of directories: found all the same.
    assert!(listed.contains(&"pad2999/zz/payload.txt"), "{gaps:?}");
    // Past the depth walked: said.
    assert!(
        gaps.iter().any(|g| g.contains("deeper than 64 levels")),
        "{gaps:?}"
    );
    // Names that are not UTF-8: apart, both kept.
    assert!(
        listed.contains(&"notes%FF") && listed.contains(&"notes%FE"),
        "{listed:?}"
    );
    // A time past 2262: listed, not a crash.
    assert!(listed.contains(&"future"));
    // The terabyte executable: its size said, not hashed.
    let big = files
        .iter()
        .filter(|(n, _)| n.starts_with("processes/") && n.ends_with(".json"))
        .map(|(_, b)| json(b))
        .find(|p| p["argv"][0] == "./big")
        .expect("the big process");
    assert_eq!(big["exe_size"], 1u64 << 40);
    assert!(big["exe_sha256"].is_null(), "{big}");
    assert!(gaps.iter().any(|g| g.contains("not hashed")), "{gaps:?}");

    // The archive may not go where the sandbox writes (it could swap it for another).
    let inside = d.workspace.join("evidence.tar.gz");
    let out = d
        .cordon(
            0,
            0,
            &["evidence", &name, "--out", inside.to_str().unwrap()],
        )
        .output()
        .expect("evidence");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("where the sandbox writes"),
        "{out:?}"
    );
    assert!(!inside.exists());
}

/// An archive made up whole, consistent in itself, is not one Cordon collected: `--verify`
/// says so by the journal's record of each collection.
#[test]
fn a_made_up_archive_is_not_recorded() {
    if !require_root("a_made_up_archive_is_not_recorded") {
        return;
    }
    let mut d = Daemon::new("");
    d.start();
    let made_up = d.dir.path().join("made-up.tar.gz");
    let body = b"nothing to see";
    let manifest = serde_json::json!({
        "format": "cordon-evidence/1", "sandbox": "test-agent-1-0", "host": "e2e-host",
        "collected_at": "2026-11-29T08:00:00Z", "state": "frozen", "cordon_version": "0.1.0",
        "files": [{ "path": "events.jsonl", "size": body.len(), "sha256": sha256(body) }],
        "gaps": [],
    })
    .to_string();
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&made_up).expect("create"),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in [
        ("events.jsonl", &body[..]),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, name, bytes).expect("append");
    }
    tar.into_inner().expect("tar").finish().expect("gzip");
    let out = d
        .cordon(0, 0, &["evidence", "--verify", made_up.to_str().unwrap()])
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("intact") && said.contains("NOT recorded"),
        "{said}"
    );
}
