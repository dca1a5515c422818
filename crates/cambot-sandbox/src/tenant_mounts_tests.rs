#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    top: PathBuf,
    list: MountAllowlist,
}

/// Operator roots: `srv` (read-write) and `ro` (read-only); `data` is the protected data dir.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().canonicalize().unwrap();
    for d in [
        "srv/acme/notes",
        "srv/beta/ledger",
        "srv/shared",
        "srv/.ssh",
        "srv/data",
        "ro/docs",
        "elsewhere",
    ] {
        std::fs::create_dir_all(top.join(d)).unwrap();
    }
    let json = format!(
        r#"{{"allowedRoots":[{{"path":"{0}/srv","allowReadWrite":true}},
              {{"path":"{0}/ro","allowReadWrite":false}}],
            "blockedPatterns":[],"nonMainReadOnly":false}}"#,
        top.display()
    );
    let list = MountAllowlist::from_json(&json)
        .unwrap()
        .with_protected(top.join("srv/data"));
    Fixture {
        _dir: dir,
        top,
        list,
    }
}

fn t(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

fn root(tenant: &str, path: &Path, rw: bool) -> TenantRoot {
    TenantRoot {
        tenant: t(tenant),
        path: path.to_path_buf(),
        rw,
    }
}

fn new_root(
    f: &Fixture,
    tenant: &str,
    rel: &str,
    rw: bool,
    all: &[TenantRoot],
) -> Result<TenantRoot, MountRejection> {
    let p = f.top.join(rel);
    validate_new_root(&t(tenant), &p.to_string_lossy(), rw, &f.list, all, None)
}

fn req(path: &Path, rw: bool) -> AdditionalMount {
    AdditionalMount {
        host_path: path.to_string_lossy().into_owned(),
        container_path: None,
        readonly: Some(!rw),
    }
}

#[test]
fn a_new_root_must_lie_inside_the_operator_allowlist_with_its_write_rule() {
    let f = fixture();
    let ok = new_root(&f, "acme", "srv/acme", true, &[]).unwrap();
    assert_eq!(ok.path, f.top.join("srv/acme"));
    assert!(ok.rw);
    // Stored resolved: a symlink to the root is stored as its target.
    symlink(f.top.join("srv/acme"), f.top.join("link")).unwrap();
    let via_link = new_root(&f, "acme", "link", false, &[]);
    // The link itself sits outside every operator root, but its target does not.
    assert_eq!(via_link.unwrap().path, f.top.join("srv/acme"));

    assert!(matches!(
        new_root(&f, "acme", "elsewhere", false, &[]),
        Err(MountRejection::NotAllowed(_))
    ));
    let e = new_root(&f, "acme", "ro/docs", true, &[]).unwrap_err();
    assert!(matches!(e, MountRejection::RootNotWritable { .. }), "{e}");
    assert!(new_root(&f, "acme", "ro/docs", false, &[]).is_ok());
    assert!(matches!(
        new_root(&f, "acme", "srv/.ssh", false, &[]),
        Err(MountRejection::Blocked { .. })
    ));
    assert!(matches!(
        new_root(&f, "acme", "srv/data", false, &[]),
        Err(MountRejection::Protected { .. })
    ));
    // A parent of the data dir exposes it.
    assert!(matches!(
        new_root(&f, "acme", "srv", false, &[]),
        Err(MountRejection::Protected { .. })
    ));
    assert!(matches!(
        new_root(&f, "acme", "srv/missing", false, &[]),
        Err(MountRejection::Unresolvable(_))
    ));
    let none = validate_new_root(
        &t("acme"),
        "/tmp",
        false,
        &MountAllowlist::none("no file"),
        &[],
        None,
    );
    assert!(matches!(none, Err(MountRejection::NoAllowlist(_))));
}

#[test]
fn overlapping_roots_of_two_tenants_are_refused_unless_both_are_read_only() {
    let f = fixture();
    let acme_rw = vec![root("acme", &f.top.join("srv/acme"), true)];
    let e = new_root(&f, "beta", "srv/acme/notes", false, &acme_rw).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&f.top.join("srv/acme").display().to_string())
            && msg.contains("tenant acme")
            && msg.contains("only when both are read-only"),
        "{msg}"
    );
    // Both read-only: shared reading is allowed.
    let acme_ro = vec![root("acme", &f.top.join("srv/shared"), false)];
    assert!(new_root(&f, "beta", "srv/shared", false, &acme_ro).is_ok());
    let e = new_root(&f, "beta", "srv/shared", true, &acme_ro).unwrap_err();
    assert!(matches!(e, MountRejection::TenantOverlap { .. }), "{e}");
    // A tenant's own roots may nest.
    assert!(new_root(&f, "acme", "srv/acme/notes", true, &acme_rw).is_ok());
    // Disjoint roots of two tenants are fine.
    assert!(new_root(&f, "beta", "srv/beta", true, &acme_rw).is_ok());
}

fn two_tenants(f: &Fixture) -> Vec<TenantRoot> {
    vec![
        root("acme", &f.top.join("srv/acme"), false),
        root("beta", &f.top.join("srv/beta"), true),
    ]
}

#[test]
fn a_group_mount_must_lie_inside_a_root_of_its_own_tenant() {
    let f = fixture();
    let acme = TenantMounts::for_tenant(&t("acme"), two_tenants(&f));
    let own = validate_tenant_mount(
        &req(&f.top.join("srv/acme/notes"), true),
        &f.list,
        &acme,
        false,
        None,
    )
    .unwrap();
    assert_eq!(own.container_rel, "notes");
    // The operator root allows write, acme's root does not: read-only.
    assert!(own.readonly);

    let e = validate_tenant_mount(
        &req(&f.top.join("srv/beta/ledger"), false),
        &f.list,
        &acme,
        false,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, MountRejection::OutsideTenantRoots { .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("must lie inside a mount root of its own tenant"),
        "{e}"
    );

    // A symlink inside acme's root that leads into beta's is judged by its target.
    symlink(f.top.join("srv/beta/ledger"), f.top.join("srv/acme/peek")).unwrap();
    let e = validate_tenant_mount(
        &req(&f.top.join("srv/acme/peek"), false),
        &f.list,
        &acme,
        false,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, MountRejection::OutsideTenantRoots { .. }),
        "{e}"
    );

    let beta = TenantMounts::for_tenant(&t("beta"), two_tenants(&f));
    let m = validate_tenant_mount(
        &req(&f.top.join("srv/beta/ledger"), true),
        &f.list,
        &beta,
        false,
        None,
    )
    .unwrap();
    assert!(!m.readonly);
}

#[test]
fn a_tenant_without_roots_mounts_nothing_and_default_keeps_the_operator_list() {
    let f = fixture();
    let r = req(&f.top.join("srv/shared"), false);
    let gamma = TenantMounts::for_tenant(&t("gamma"), two_tenants(&f));
    assert!(matches!(
        validate_tenant_mount(&r, &f.list, &gamma, false, None),
        Err(MountRejection::OutsideTenantRoots { .. })
    ));
    let default = TenantMounts::for_tenant(&TenantId::default_tenant(), two_tenants(&f));
    assert!(matches!(default, TenantMounts::OperatorOnly { .. }));
    assert!(validate_tenant_mount(&r, &f.list, &default, false, None).is_ok());
    // A store that could not be read: nothing.
    assert!(
        validate_tenant_mount(
            &r,
            &f.list,
            &TenantMounts::none(&TenantId::default_tenant()),
            false,
            None
        )
        .is_err()
    );
}

#[test]
fn a_root_that_went_bad_since_it_was_allowed_serves_no_mount() {
    let f = fixture();
    let r = req(&f.top.join("srv/acme/notes"), false);
    // Another tenant's read-write root now overlaps acme's (written past the CLI's check).
    let mut roots = two_tenants(&f);
    roots.push(root("beta", &f.top.join("srv/acme"), true));
    let acme = TenantMounts::for_tenant(&t("acme"), roots);
    let e = validate_tenant_mount(&r, &f.list, &acme, false, None).unwrap_err();
    assert!(matches!(e, MountRejection::StaleTenantRoot { .. }), "{e}");
    assert!(e.to_string().contains("tenant beta"), "{e}");

    // The operator dropped the root's directory from the allowlist: the ceiling wins.
    let acme = TenantMounts::for_tenant(&t("acme"), two_tenants(&f));
    let narrowed = MountAllowlist::from_json(&format!(
        r#"{{"allowedRoots":[{{"path":"{}/srv/acme/notes","allowReadWrite":true}}],"blockedPatterns":[],"nonMainReadOnly":false}}"#,
        f.top.display()
    ))
    .unwrap();
    let e = validate_tenant_mount(&r, &narrowed, &acme, false, None).unwrap_err();
    assert!(matches!(e, MountRejection::StaleTenantRoot { .. }), "{e}");

    // The root was replaced by a link to another tenant's directory.
    std::fs::rename(f.top.join("srv/acme"), f.top.join("srv/acme.old")).unwrap();
    symlink(f.top.join("srv/beta"), f.top.join("srv/acme")).unwrap();
    let e = validate_tenant_mount(
        &req(&f.top.join("srv/acme/ledger"), false),
        &f.list,
        &acme,
        false,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            MountRejection::StaleTenantRoot { .. } | MountRejection::OutsideTenantRoots { .. }
        ),
        "{e}"
    );
}

#[test]
fn the_plan_mounts_the_tenants_own_extra_dirs_and_records_the_refused_ones() {
    use cambot_protocol::DataLayout;
    use cambot_protocol::GroupFolder;
    use cambot_protocol::RunId;
    use cambot_protocol::message::ContainerConfig;

    let f = fixture();
    let mut input = crate::PlanInput::new(
        DataLayout::new(f.top.join("srv/data")),
        t("acme"),
        GroupFolder::new("g1").unwrap(),
        RunId::from_bytes([3; 16]),
    );
    input.command = Some(vec!["/bin/true".into()]);
    input.home = None;
    input.container_config = Some(ContainerConfig {
        additional_mounts: vec![
            req(&f.top.join("srv/acme/notes"), false),
            req(&f.top.join("srv/beta/ledger"), false),
        ],
        ..Default::default()
    });
    // PlanInput::new knows no roots: a non-default tenant mounts nothing.
    let cfg = crate::SandboxConfig::default();
    let bare = crate::build_plan(input.clone(), &cfg, &f.list).unwrap();
    assert_eq!(bare.rejected_mounts.len(), 2);

    input.tenant_mounts = TenantMounts::for_tenant(&t("acme"), two_tenants(&f));
    let plan = crate::build_plan(input, &cfg, &f.list).unwrap();
    let extra: Vec<_> = plan
        .mounts
        .iter()
        .filter(|m| m.dst.starts_with("/workspace/extra/"))
        .map(|m| (m.dst.as_str(), m.src.clone()))
        .collect();
    assert_eq!(
        extra,
        vec![("/workspace/extra/notes", f.top.join("srv/acme/notes"))]
    );
    assert_eq!(plan.rejected_mounts.len(), 1);
    assert!(matches!(
        plan.rejected_mounts[0].1,
        MountRejection::OutsideTenantRoots { .. }
    ));
}

#[test]
fn the_default_tenant_never_mounts_into_another_tenants_roots() {
    let f = fixture();
    let default = TenantMounts::for_tenant(&TenantId::default_tenant(), two_tenants(&f));
    let check = |path: &Path, rw: bool| {
        validate_tenant_mount(&req(path, rw), &f.list, &default, true, None)
    };
    // beta's root is read-write: nothing of it, not even read-only.
    for rw in [false, true] {
        let err = check(&f.top.join("srv/beta/ledger"), rw).unwrap_err();
        assert!(
            matches!(&err, MountRejection::OtherTenantsRoot { other_tenant, .. } if other_tenant == "beta"),
            "{err}"
        );
        assert!(
            err.to_string().contains("a mount root of tenant beta"),
            "{err}"
        );
    }
    // A parent holding both roots exposes them (here it holds the data dir too).
    assert!(check(&f.top.join("srv"), false).is_err());
    // acme's root is read-only: a read-only mount may share it, a read-write one may not.
    assert!(check(&f.top.join("srv/acme/notes"), false).is_ok());
    assert!(matches!(
        check(&f.top.join("srv/acme/notes"), true),
        Err(MountRejection::OtherTenantsRoot { .. })
    ));
    // Control: what belongs to no tenant stays the operator's to give.
    assert!(check(&f.top.join("srv/shared"), true).is_ok());
}
