//! Files at rest through the real binary: a fresh data directory is 0700 and the database
//! 0600; a loosened install is reported by `cambot doctor` and tightened at start, with an info
//! log naming each path.

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::support::run_cambot;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn set(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// The human log format colours its fields on any terminal-less stderr too.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_fresh_install_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run_cambot(None, &data, &["tenants", "list"], "");
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("cambot.db")), 0o600);
    for extra in ["cambot.db-wal", "cambot.db-shm"] {
        let p = data.join(extra);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

#[test]
fn doctor_reports_a_loose_install_which_the_next_start_tightens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(run_cambot(None, &data, &["tenants", "list"], "").ok);
    set(&data, 0o755);
    set(&data.join("cambot.db"), 0o644);

    let out = run_cambot(None, &data, &["doctor"], "");
    let line = |what: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what} line in:\n{}", out.stdout))
            .to_owned()
    };
    let dir_line = line("data directory mode");
    assert!(
        dir_line.starts_with("[FAIL]") && dir_line.contains("0755"),
        "{dir_line}"
    );
    let db_line = line("database file modes");
    assert!(
        db_line.starts_with("[FAIL]") && db_line.contains("cambot.db 0644"),
        "{db_line}"
    );
    assert!(line("run directories").starts_with("[ ok ]"));

    // The daemon's start tightens them and says so, naming each path.
    set(&data, 0o755);
    set(&data.join("cambot.db"), 0o644);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("chat")
        .arg("--data-dir")
        .arg(&data)
        .env_remove("CAMBOT_CONFIG")
        .env("CAMBOT_LOG", "info")
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&data), 0o700, "{stderr}");
    assert_eq!(mode(&data.join("cambot.db")), 0o600, "{stderr}");
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tightened the mode of a file at rest"))
        .collect();
    assert_eq!(logged.len(), 2, "{stderr}");
    assert!(
        logged
            .iter()
            .any(|l| l.contains(&format!("path={} ", data.display())) && l.contains("0755")),
        "{logged:?}"
    );
    assert!(
        logged
            .iter()
            .any(|l| l.contains("cambot.db") && l.contains("0644")),
        "{logged:?}"
    );

    let out = run_cambot(None, &data, &["doctor"], "");
    let ok_line = |what: &str| {
        out.stdout
            .lines()
            .any(|l| l.starts_with("[ ok ]") && l.contains(what))
    };
    assert!(ok_line("data directory mode"), "{}", out.stdout);
    assert!(ok_line("database file modes"), "{}", out.stdout);
}
