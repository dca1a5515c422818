//! The mount path validator (`cambot_sandbox::mounts::validate_mount`) against a real directory
//! tree in a temp dir (symlinks included), and the allowlist file parser
//! (`MountAllowlist::from_json`).
//!
//! Fixture (under a temp home): projects/ (read-write root), docs/ (read-only root), `~` itself
//! (read-only root), .ssh/, projects/.ssh/, data/ (protected), outside/secret/, and links
//! projects/to-ssh -> .ssh, projects/to-data -> data, projects/to-outside -> outside.
//!
//! Input: 1 flag byte (main group, readonly wish, path prefix, container path given, allowlist
//! mode), then the host path, then optionally NUL and the container path.
//!
//! Properties: an accepted mount is a real (canonical) path inside an allowed root, outside the
//! protected dir, with no blocked component, under a valid relative container path, and
//! read-only unless the group, the root and the request all allow writing.

#![no_main]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::path::PathBuf;
use std::sync::OnceLock;

use cambot_protocol::AdditionalMount;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::mounts::DEFAULT_BLOCKED;
use cambot_sandbox::mounts::blocked_pattern;
use cambot_sandbox::mounts::valid_container_path;
use cambot_sandbox::mounts::validate_mount;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    lists: [MountAllowlist; 2],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().canonicalize().expect("canonical temp dir");
        for d in [
            "projects/app/src",
            "projects/tokenizer",
            "projects/.ssh",
            "docs/manual",
            ".ssh",
            "data/tenants",
            "outside/secret",
        ] {
            std::fs::create_dir_all(home.join(d)).expect("fixture dir");
        }
        symlink(home.join(".ssh"), home.join("projects/to-ssh")).expect("link");
        symlink(home.join("data"), home.join("projects/to-data")).expect("link");
        symlink(home.join("outside"), home.join("projects/to-outside")).expect("link");
        let list = |non_main_read_only: bool| {
            let json = format!(
                r#"{{"allowedRoots":[{{"path":"~/projects","allowReadWrite":true}},
                      {{"path":"{}/docs","allowReadWrite":false}},
                      {{"path":"~/does-not-exist","allowReadWrite":true}},
                      {{"path":"~","allowReadWrite":false}}],
                    "blockedPatterns":["token", "secrets/prod"],
                    "nonMainReadOnly":{non_main_read_only}}}"#,
                home.display()
            );
            MountAllowlist::from_json(&json)
                .expect("fixture allowlist")
                .with_protected(home.join("data"))
        };
        Fixture {
            lists: [list(false), list(true)],
            home,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if flags & 0x80 != 0 {
        if let Ok(list) = MountAllowlist::from_json(text) {
            for b in DEFAULT_BLOCKED {
                assert!(list.blocked.iter().any(|p| p == b), "default {b} dropped");
            }
        }
        return;
    }
    let f = fixture();
    let is_main = flags & 1 != 0;
    let readonly = [None, Some(true), Some(false)][usize::from((flags >> 1) & 3) % 3];
    let (host, container) = match text.split_once('\0') {
        Some((h, c)) => (h, Some(c)),
        None => (text, None),
    };
    let prefix = match (flags >> 3) & 3 {
        0 => String::new(),
        1 => format!("{}/", f.home.display()),
        2 => "~/".to_owned(),
        _ => format!("{}/projects/", f.home.display()),
    };
    let request = AdditionalMount {
        host_path: format!("{prefix}{host}"),
        container_path: container.filter(|_| flags & 0x20 != 0).map(str::to_owned),
        readonly,
    };
    let list = &f.lists[usize::from(flags & 0x40 != 0)];
    let Ok(mount) = validate_mount(&request, list, is_main, Some(&f.home)) else {
        return;
    };
    let real = &mount.host_path;
    assert!(real.is_absolute());
    assert_eq!(&real.canonicalize().expect("accepted path exists"), real);
    assert!(real.starts_with(&f.home), "{real:?} is outside every root");
    assert!(blocked_pattern(real, &list.blocked).is_none());
    let data = f.home.join("data");
    assert!(
        !real.starts_with(&data) && !data.starts_with(real),
        "{real:?} overlaps data"
    );
    assert!(valid_container_path(&mount.container_rel));
    assert!(!Path::new(&mount.container_rel).is_absolute());
    let rw_root = real.starts_with(f.home.join("projects"));
    let group_may_write = is_main || !list.non_main_read_only;
    if !mount.readonly {
        assert!(rw_root && group_may_write && readonly == Some(false));
    }
});
