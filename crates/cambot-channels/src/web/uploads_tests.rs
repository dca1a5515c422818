use super::*;

#[test]
fn upload_names_are_sanitized() {
    assert_eq!(sanitize_upload_name("../../etc/passwd"), "passwd");
    assert_eq!(sanitize_upload_name("..hidden"), "hidden");
    assert_eq!(sanitize_upload_name("a b$c.pdf"), "a_b_c.pdf");
    assert_eq!(sanitize_upload_name(""), "upload");
    assert_eq!(sanitize_upload_name("C:\\x\\y.txt"), "y.txt");
}

#[tokio::test]
async fn uploads_land_in_the_sessions_uploads_dir() {
    let dir = tempfile::tempdir().unwrap();
    let layout = DataLayout::new(dir.path());
    let tenant = TenantId::default_tenant();
    let folder = GroupFolder::new("web-abc").unwrap();
    let info = save_upload(&layout, &tenant, &folder, "../x y.txt", Bytes::from("hi"))
        .await
        .unwrap();
    assert_eq!(info.name, "x_y.txt");
    assert_eq!(info.size, 2);
    assert_eq!(
        info.sandbox_path,
        format!("/workspace/uploads/{}/x_y.txt", info.id)
    );
    let stored = layout
        .uploads_dir(&tenant, &folder)
        .join(&info.id)
        .join("x_y.txt");
    assert_eq!(std::fs::read(stored).unwrap(), b"hi");
}

#[test]
fn an_existing_file_or_symlink_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "keep").unwrap();
    std::fs::create_dir_all(dir.path().join("id1")).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("id1/a.txt")).unwrap();
    assert!(write_upload(dir.path(), "id1", "a.txt", b"evil").is_err());
    std::fs::write(dir.path().join("id1/b.txt"), "keep").unwrap();
    assert!(write_upload(dir.path(), "id1", "b.txt", b"evil").is_err());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("id1/b.txt")).unwrap(),
        "keep"
    );
}
