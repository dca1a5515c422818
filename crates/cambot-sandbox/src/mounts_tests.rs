#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    list: MountAllowlist,
}

/// home/projects (rw root), home/docs (ro root), home/.ssh, home/data (protected data dir).
fn fixture(non_main_read_only: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().canonicalize().unwrap();
    for d in [
        "projects/app",
        "projects/tokenizer",
        "docs/manual",
        ".ssh",
        "data/tenants",
        "outside",
    ] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    let json = format!(
        r#"{{"allowedRoots":[{{"path":"~/projects","allowReadWrite":true}},
              {{"path":"{}/docs","allowReadWrite":false,"description":"manuals"}},
              {{"path":"~/does-not-exist","allowReadWrite":true}},
              {{"path":"~","allowReadWrite":false}}],
            "blockedPatterns":["token", "secrets/prod"],
            "nonMainReadOnly":{non_main_read_only}}}"#,
        home.display()
    );
    let list = MountAllowlist::from_json(&json)
        .unwrap()
        .with_protected(home.join("data"));
    Fixture {
        _dir: dir,
        home,
        list,
    }
}

fn req(host: &str, ctr: Option<&str>, readonly: Option<bool>) -> AdditionalMount {
    AdditionalMount {
        host_path: host.to_owned(),
        container_path: ctr.map(str::to_owned),
        readonly,
    }
}

fn check(f: &Fixture, r: &AdditionalMount, main: bool) -> Result<ValidatedMount, MountRejection> {
    validate_mount(r, &f.list, main, Some(&f.home))
}

#[test]
fn no_allowlist_rejects_everything() {
    let list = MountAllowlist::none("missing");
    let r = validate_mount(&req("/tmp", None, None), &list, true, None);
    assert!(matches!(r, Err(MountRejection::NoAllowlist(_))));
}

#[test]
fn missing_file_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allow.json");
    let first = MountAllowlist::load(&path, &[]);
    assert!(first.unavailable.is_some());
    std::fs::write(
        &path,
        r#"{"allowedRoots":[],"blockedPatterns":[],"nonMainReadOnly":true}"#,
    )
    .unwrap();
    let second = MountAllowlist::load(&path, &[]);
    assert_eq!(second.unavailable, None);
    assert!(
        second.protected.contains(&path),
        "the file itself is protected"
    );
}

#[test]
fn structural_errors_fail_the_load() {
    for bad in [
        r#"{"allowedRoots":{},"blockedPatterns":[],"nonMainReadOnly":true}"#,
        r#"{"allowedRoots":[],"blockedPatterns":"x","nonMainReadOnly":true}"#,
        r#"{"allowedRoots":[],"blockedPatterns":[],"nonMainReadOnly":"yes"}"#,
        "not json",
    ] {
        assert!(MountAllowlist::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn blocked_list_is_defaults_plus_file() {
    let f = fixture(true);
    for p in DEFAULT_BLOCKED {
        assert!(f.list.blocked.iter().any(|b| b == p));
    }
    assert!(f.list.blocked.iter().any(|b| b == "token"));
}

#[test]
fn tilde_expansion_and_default_container_path() {
    let f = fixture(true);
    let m = check(&f, &req("~/projects/app", None, None), true).unwrap();
    assert_eq!(m.host_path, f.home.join("projects/app"));
    assert_eq!(m.container_rel, "app");
    assert!(m.readonly, "read-only unless asked otherwise");
}

#[test]
fn container_path_rules() {
    let f = fixture(true);
    for bad in [
        "",
        "/abs",
        "../up",
        "a/../b",
        "a:b",
        "x:/etc:rw",
        "a//b",
        ".",
        "a b",
        "a\nb",
    ] {
        let r = check(&f, &req("~/projects/app", Some(bad), None), true);
        assert!(
            matches!(r, Err(MountRejection::BadContainerPath(_))),
            "{bad:?} -> {r:?}"
        );
    }
    let ok = check(&f, &req("~/projects/app", Some("code/app-1.2"), None), true).unwrap();
    assert_eq!(ok.container_rel, "code/app-1.2");
}

#[test]
fn missing_host_path_is_refused() {
    let f = fixture(true);
    let r = check(&f, &req("~/projects/nope", None, None), true);
    assert!(matches!(r, Err(MountRejection::Unresolvable(_))));
    let r = check(&f, &req("relative/path", Some("x"), None), true);
    assert!(matches!(r, Err(MountRejection::Unresolvable(_))));
    let r = check(&f, &req("~other/x", Some("x"), None), true);
    assert!(matches!(r, Err(MountRejection::Unresolvable(_))));
}

#[test]
fn blocked_patterns_match_components_not_substrings() {
    let f = fixture(true);
    // `token` is a file pattern; `tokenizer` must stay mountable (seed over-blocked it).
    let m = check(&f, &req("~/projects/tokenizer", None, None), true).unwrap();
    assert_eq!(m.container_rel, "tokenizer");
    let r = check(&f, &req("~/.ssh", Some("keys"), None), true);
    assert!(matches!(r, Err(MountRejection::Blocked { ref pattern, .. }) if pattern == ".ssh"));
    assert_eq!(
        blocked_pattern(Path::new("/h/secrets/prod/x"), &f.list.blocked),
        Some("secrets/prod")
    );
    assert_eq!(
        blocked_pattern(Path::new("/h/secrets/dev"), &f.list.blocked),
        None
    );
    assert_eq!(
        blocked_pattern(Path::new("/h/.SSH"), &f.list.blocked),
        Some(".ssh")
    );
}

#[test]
fn symlink_into_a_blocked_dir_is_refused() {
    let f = fixture(true);
    symlink(f.home.join(".ssh"), f.home.join("projects/innocent")).unwrap();
    let r = check(&f, &req("~/projects/innocent", None, None), true);
    assert!(matches!(r, Err(MountRejection::Blocked { .. })), "{r:?}");
}

#[test]
fn symlink_out_of_the_roots_is_refused() {
    let f = fixture(true);
    let target = tempfile::tempdir().unwrap();
    symlink(target.path(), f.home.join("projects/escape")).unwrap();
    let r = check(&f, &req("~/projects/escape", None, None), true);
    assert!(matches!(r, Err(MountRejection::NotAllowed(_))), "{r:?}");
}

#[test]
fn dotdot_in_host_path_is_resolved_before_containment() {
    let f = fixture(true);
    let target = tempfile::tempdir().unwrap();
    let sneaky = format!(
        "{}/projects/../../{}",
        f.home.display(),
        target.path().file_name().unwrap().to_string_lossy()
    );
    let r = check(&f, &req(&sneaky, Some("x"), None), true);
    assert!(
        matches!(
            r,
            Err(MountRejection::NotAllowed(_) | MountRejection::Unresolvable(_))
        ),
        "{r:?}"
    );
}

#[test]
fn data_dir_and_allowlist_are_never_mountable() {
    let f = fixture(true);
    // `~` is an allowed root, but the data dir under it is protected, and so is any ancestor.
    let r = check(&f, &req("~/data/tenants", Some("t"), None), true);
    assert!(matches!(r, Err(MountRejection::Protected { .. })), "{r:?}");
    let r = check(&f, &req("~", Some("home"), None), true);
    assert!(matches!(r, Err(MountRejection::Protected { .. })), "{r:?}");
}

#[test]
fn read_write_needs_root_permission_request_and_group_right() {
    let f = fixture(true);
    // rw root, rw request, main -> rw
    assert!(
        !check(&f, &req("~/projects/app", None, Some(false)), true)
            .unwrap()
            .readonly
    );
    // non-main with nonMainReadOnly -> ro
    assert!(
        check(&f, &req("~/projects/app", None, Some(false)), false)
            .unwrap()
            .readonly
    );
    // ro root -> ro even for main
    assert!(
        check(&f, &req("~/docs/manual", None, Some(false)), true)
            .unwrap()
            .readonly
    );
    // no request -> ro
    assert!(
        check(&f, &req("~/projects/app", None, None), true)
            .unwrap()
            .readonly
    );
    let g = fixture(false);
    // non-main allowed to write when nonMainReadOnly is false
    assert!(
        !check(&g, &req("~/projects/app", None, Some(false)), false)
            .unwrap()
            .readonly
    );
}

#[test]
fn valid_container_paths() {
    assert!(valid_container_path("a"));
    assert!(valid_container_path("a/b.c_d-e"));
    assert!(!valid_container_path("a/"));
    assert!(!valid_container_path("a/./b"));
}

#[test]
fn a_read_write_mount_holding_a_blocked_name_is_refused() {
    let f = fixture(false);
    std::fs::create_dir_all(f.home.join("projects/keys/.ssh")).unwrap();
    std::fs::create_dir_all(f.home.join("projects/web")).unwrap();
    std::fs::write(f.home.join("projects/web/.ENV"), "TOKEN=x").unwrap();
    std::fs::create_dir_all(f.home.join("projects/deep/sub/.gnupg")).unwrap();
    for (path, inside, pattern) in [
        ("~/projects/keys", "projects/keys/.ssh", ".ssh"),
        ("~/projects/web", "projects/web/.ENV", ".env"),
    ] {
        let r = check(&f, &req(path, Some("p"), Some(false)), true);
        let Err(MountRejection::BlockedInside {
            path: p,
            inside: i,
            pattern: pat,
        }) = &r
        else {
            panic!("{path}: {r:?}");
        };
        assert_eq!(p, &f.home.join(path.trim_start_matches("~/")));
        assert_eq!(i, &f.home.join(inside));
        assert_eq!(pat, pattern);
        assert!(
            r.clone()
                .unwrap_err()
                .to_string()
                .contains(&i.display().to_string()),
            "the error names the blocked path"
        );
        // Read-only, or read-write refused anyway by the group's rights: as before.
        assert!(
            check(&f, &req(path, Some("p"), Some(true)), true)
                .unwrap()
                .readonly
        );
        let g = fixture(true);
        std::fs::create_dir_all(g.home.join("projects/keys/.ssh")).unwrap();
        assert!(
            check(&g, &req("~/projects/keys", Some("p"), Some(false)), false)
                .unwrap()
                .readonly
        );
    }
    // Only one level down: a blocked name deeper is the run's business, as before.
    assert!(
        !check(&f, &req("~/projects/deep", Some("p"), Some(false)), true)
            .unwrap()
            .readonly
    );
    // The root itself, read-write, holds `keys` and `web`, not `.ssh`: accepted.
    assert!(
        !check(&f, &req("~/projects", Some("p"), Some(false)), true)
            .unwrap()
            .readonly
    );
}

#[test]
fn config_file_and_binary_are_protected_both_ways() {
    let f = fixture(true);
    std::fs::create_dir_all(f.home.join("etc/cambot")).unwrap();
    let config = f.home.join("etc/cambot/cambot.toml");
    std::fs::write(&config, "").unwrap();
    let allowlist = f.home.join("allow.json");
    std::fs::write(
        &allowlist,
        r#"{"allowedRoots":[{"path":"/","allowReadWrite":false}],"blockedPatterns":[],"nonMainReadOnly":true}"#,
    )
    .unwrap();
    let list = MountAllowlist::load(&allowlist, &[&f.home.join("data"), &config]);
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
    assert!(list.protected.contains(&exe), "{:?}", list.protected);
    let refused = |path: &Path, protected: &Path| {
        let r = validate_mount(
            &req(&path.display().to_string(), Some("x"), None),
            &list,
            true,
            Some(&f.home),
        );
        let Err(MountRejection::Protected { protected: p, .. }) = &r else {
            panic!("{}: {r:?}", path.display());
        };
        assert_eq!(p, protected);
    };
    // Being it, containing it, lying inside it.
    refused(&config, &config);
    refused(&f.home.join("etc"), &config);
    refused(&f.home.join("data/tenants"), &f.home.join("data"));
    refused(&exe, &exe);
    refused(exe.parent().unwrap(), &exe);
    refused(&allowlist, &allowlist);
    // A sibling of all of them is fine.
    assert!(
        validate_mount(
            &req("~/docs/manual", Some("m"), None),
            &list,
            true,
            Some(&f.home)
        )
        .is_ok()
    );
}
