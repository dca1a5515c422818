#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn att(name: &str, declared: Option<&str>, bytes: &[u8]) -> Attachment {
    Attachment {
        name: name.to_owned(),
        declared_type: declared.map(str::to_owned),
        bytes: bytes.to_vec(),
    }
}

fn setup(
    cfg: UploadsConfig,
) -> (
    tempfile::TempDir,
    DataLayout,
    Uploads,
    TenantId,
    GroupFolder,
) {
    let dir = tempfile::tempdir().unwrap();
    let layout = DataLayout::new(dir.path());
    let uploads = Uploads::new(layout.clone(), cfg);
    (
        dir,
        layout,
        uploads,
        TenantId::default_tenant(),
        GroupFolder::new("g1").unwrap(),
    )
}

#[tokio::test]
async fn an_upload_gets_a_generated_name_its_sniffed_type_and_its_metadata() {
    let (_d, layout, up, t, g) = setup(UploadsConfig::default());
    let s = up
        .store(
            &t,
            &g,
            att(
                "../../etc/re\u{7}port\n.pdf",
                Some("text/plain"),
                b"%PDF-1.4\nx",
            ),
        )
        .await
        .unwrap();
    assert_eq!(s.original_name, "report.pdf");
    assert_eq!(s.sniffed_type, "application/pdf");
    assert_eq!(s.declared_type.as_deref(), Some("text/plain"));
    assert_eq!(s.document, Some(DocKind::Pdf));
    assert_eq!(
        s.sandbox_path,
        format!("/workspace/uploads/{}/file.pdf", s.id)
    );
    let host = layout.uploads_dir(&t, &g).join(&s.id).join("file.pdf");
    assert_eq!(std::fs::read(&host).unwrap(), b"%PDF-1.4\nx");
    assert_eq!(up.lookup(&t, &g, &s.id).await.unwrap(), s);
    // Another group (or a made-up id) does not find it.
    let other = GroupFolder::new("g2").unwrap();
    assert!(matches!(
        up.lookup(&t, &other, &s.id).await,
        Err(UploadError::Unknown(_))
    ));
    assert!(matches!(
        up.lookup(&t, &g, "../x").await,
        Err(UploadError::Unknown(_))
    ));

    let md = up
        .store(&t, &g, att("notes.md", None, b"# Title\n"))
        .await
        .unwrap();
    assert_eq!(
        (md.sniffed_type.as_str(), md.document),
        ("text/markdown", Some(DocKind::Markdown))
    );
    assert!(md.sandbox_path.ends_with("/file.md"));
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0".to_vec();
    elf.resize(64, 0);
    let exe = up
        .store(&t, &g, att("x.pdf", Some("application/pdf"), &elf))
        .await
        .unwrap();
    assert_eq!(
        (exe.sniffed_type.as_str(), exe.document),
        ("application/x-executable", None)
    );
    assert!(
        exe.sandbox_path.ends_with("/file.elf"),
        "{}",
        exe.sandbox_path
    );
    let text = describe(&[s, exe]);
    assert!(
        text.contains("application/pdf (pdf; read it with read_document)"),
        "{text}"
    );
    assert!(text.contains("declared text/plain"), "{text}");
    assert!(
        text.contains(
            "application/x-executable, 64 bytes, sent as \"x.pdf\", declared application/pdf"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn per_file_and_per_group_quotas_are_enforced_with_a_clear_message() {
    let (_d, _l, up, t, g) = setup(UploadsConfig {
        max_file_mb: 1,
        max_group_mb: 2,
    });
    let mb = vec![b'a'; 1024 * 1024];
    let big = up
        .store(
            &t,
            &g,
            att("big.txt", None, &[mb.as_slice(), b"x"].concat()),
        )
        .await
        .unwrap_err();
    assert!(
        big.to_string()
            .contains("over the limit of 1.0 MiB per file"),
        "{big}"
    );
    up.store(&t, &g, att("a.txt", None, &mb)).await.unwrap();
    up.store(&t, &g, att("b.txt", None, &mb[..1024 * 1000]))
        .await
        .unwrap();
    let q = up
        .store(&t, &g, att("c.txt", None, &mb[..200 * 1024]))
        .await
        .unwrap_err();
    assert!(q.is_over_limit(), "{q}");
    assert!(q.to_string().contains("over its quota of 2.0 MiB"), "{q}");
    // Another group has its own quota.
    up.store(
        &t,
        &GroupFolder::new("g2").unwrap(),
        att("c.txt", None, &mb[..200 * 1024]),
    )
    .await
    .unwrap();
    assert!(matches!(
        up.store(&t, &g, att("e", None, b"")).await,
        Err(UploadError::Empty)
    ));
}

#[tokio::test]
async fn a_symlinked_uploads_directory_is_refused() {
    let (d, layout, up, t, g) = setup(UploadsConfig::default());
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let dir = layout.uploads_dir(&t, &g);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let e = up
        .store(&t, &g, att("a.txt", None, b"hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, UploadError::Unsafe(_)), "{e}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    // create_new + O_NOFOLLOW: a planted symlink at a file's path is not followed.
    let target = d.path().join("target");
    std::fs::write(&target, "keep").unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(create_new(&link, b"evil", 0o444).is_err());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}
