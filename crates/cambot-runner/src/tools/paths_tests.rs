use super::*;

fn setup() -> (tempfile::TempDir, Confinement) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("group/sub")).unwrap();
    std::fs::create_dir_all(ws.join("global")).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret.txt"), "s3cret").unwrap();
    let c = Confinement::new(&ws).unwrap();
    (dir, c)
}

#[test]
fn relative_and_virtual_absolute_paths_land_in_the_workspace() {
    let (_d, c) = setup();
    let root = c.root().to_path_buf();
    assert_eq!(c.resolve("a.txt").unwrap(), root.join("group/a.txt"));
    assert_eq!(c.resolve("./sub/../b").unwrap(), root.join("group/b"));
    assert_eq!(
        c.resolve("/workspace/group/x/y.md").unwrap(),
        root.join("group/x/y.md")
    );
    assert_eq!(c.resolve("../global").unwrap(), root.join("global"));
    assert_eq!(
        c.resolve(&root.join("group/z").display().to_string())
            .unwrap(),
        root.join("group/z")
    );
    assert_eq!(c.display(&root.join("group/a")), "/workspace/group/a");
}

#[test]
fn dot_dot_escapes_are_refused() {
    let (_d, c) = setup();
    for p in [
        "../../outside/secret.txt",
        "../..",
        "/workspace/../etc/passwd",
        "/workspace/group/../../x",
        "sub/../../../x",
    ] {
        assert!(
            matches!(c.resolve(p), Err(PathError::Escape(_))),
            "{p}: {:?}",
            c.resolve(p)
        );
    }
}

#[test]
fn absolute_paths_outside_are_refused() {
    let (d, c) = setup();
    let outside = d.path().join("outside/secret.txt");
    for p in [
        "/etc/passwd",
        "/workspacex/a",
        "/run/cambot/host.sock",
        outside.to_str().unwrap(),
    ] {
        assert!(
            matches!(c.resolve(p), Err(PathError::Outside(_))),
            "{p}: {:?}",
            c.resolve(p)
        );
    }
    assert!(matches!(c.resolve("  "), Err(PathError::Empty)));
}

#[test]
fn symlinks_out_of_the_workspace_are_refused() {
    let (d, c) = setup();
    let group = c.root().join("group");
    std::os::unix::fs::symlink(d.path().join("outside"), group.join("link-dir")).unwrap();
    std::os::unix::fs::symlink(d.path().join("outside/secret.txt"), group.join("link-file"))
        .unwrap();
    std::os::unix::fs::symlink(d.path().join("nowhere"), group.join("dangling")).unwrap();
    std::os::unix::fs::symlink(group.join("sub"), group.join("inside-link")).unwrap();
    for p in [
        "link-dir/secret.txt",
        "link-dir",
        "link-dir/new-file",
        "link-file",
        "dangling",
        "dangling/x",
    ] {
        assert!(
            matches!(c.resolve(p), Err(PathError::SymlinkEscape(_))),
            "{p}: {:?}",
            c.resolve(p)
        );
    }
    // A symlink that stays inside is fine and resolves to its target.
    assert_eq!(c.resolve("inside-link/f").unwrap(), group.join("sub/f"));
}
