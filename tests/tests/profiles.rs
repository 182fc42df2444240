//! Every shipped profile passes its own expectations (`profiles/NAME.expect.toml`), run by
//! `cordon profile test` through the real `cordon run`.

mod common;

use common::{cordon_bin, repo, require_root};

#[test]
fn every_shipped_profile_meets_its_expectations() {
    if !require_root("every_shipped_profile_meets_its_expectations") {
        return;
    }
    let mut tested = 0;
    let dir = repo().join("profiles");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("profiles/")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".toml") || name.ends_with(".expect.toml") {
            continue;
        }
        let expect = path.with_file_name(name.replace(".toml", ".expect.toml"));
        assert!(
            expect.is_file(),
            "{name} ships without {}",
            expect.display()
        );
        let out = std::process::Command::new(cordon_bin())
            .arg("--profile-path")
            .arg(&dir)
            .args(["profile", "test"])
            .arg(&path)
            .output()
            .expect("cordon profile test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
        tested += 1;
    }
    assert!(tested >= 3, "at least three profiles ship, found {tested}");
}
