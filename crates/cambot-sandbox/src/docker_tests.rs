#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;

use super::*;
use crate::mounts::MountAllowlist;
use crate::plan::HostFs;
use crate::plan::PlanInput;
use crate::plan::build_plan;

fn plan() -> RunPlan {
    let input = PlanInput {
        layout: DataLayout::new("/data"),
        tenant: TenantId::new("acme").unwrap(),
        group: GroupFolder::new("family").unwrap(),
        is_main: false,
        run_id: RunId::from_bytes([9; 16]),
        container_config: None,
        tenant_mounts: crate::TenantMounts::OperatorOnly { others: Vec::new() },
        command: Some(vec!["/bin/sh".into(), "-c".into(), "id".into()]),
        timezone: "UTC".into(),
        daemon_uid: 0,
        daemon_gid: 0,
        group_owner: Some((1500, 1600)),
        home: None,
        host: HostFs::merged_usr(),
        init: Some(PathBuf::from("/opt/bin/cambot-sandbox-init")),
    };
    let cfg = SandboxConfig {
        memory_mb: 64,
        pids: 32,
        cpus: 0.5,
        tmp_size_mb: 8,
        ..SandboxConfig::default()
    };
    build_plan(input, &cfg, &MountAllowlist::none("x")).unwrap()
}

#[test]
fn container_spec_applies_the_plan() {
    let p = plan();
    let spec = container_spec(&p, "cambot-agent:local", &|path| {
        !path.ends_with("global") && !path.ends_with("family")
            || path.starts_with("/data/tenants/acme/groups")
            || path.starts_with("/data/tenants/acme/sessions")
    });
    assert_eq!(
        container_name(&p),
        "cambot-09090909090909090909090909090909"
    );
    assert_eq!(spec.image.as_deref(), Some("cambot-agent:local"));
    assert_eq!(spec.user.as_deref(), Some("1500:1600"));
    assert_eq!(
        spec.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "id".into()])
    );
    assert_eq!(spec.working_dir.as_deref(), Some("/workspace/group"));
    assert_eq!(spec.network_disabled, Some(true));
    let env = spec.env.clone().unwrap();
    assert!(env.contains(&"HOME=/workspace/group".to_owned()));
    assert_eq!(env.len(), p.env.len());
    assert_eq!(
        spec.labels
            .as_ref()
            .unwrap()
            .get(RUN_LABEL)
            .map(String::as_str),
        Some(p.run_id.as_str())
    );
    let h = spec.host_config.unwrap();
    assert_eq!(h.network_mode.as_deref(), Some("none"));
    assert_eq!(h.readonly_rootfs, Some(true));
    assert_eq!(h.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(h.security_opt, Some(vec!["no-new-privileges".to_owned()]));
    assert_eq!(h.memory, Some(64 * 1024 * 1024));
    assert_eq!(
        h.memory_swap,
        Some(64 * 1024 * 1024),
        "no swap beyond the limit"
    );
    assert_eq!(h.pids_limit, Some(32));
    assert_eq!(h.nano_cpus, Some(500_000_000));
    assert!(h.privileged.is_none() || h.privileged == Some(false));
    assert_eq!(
        h.tmpfs.unwrap().get("/tmp").map(String::as_str),
        Some("rw,nosuid,nodev,size=8388608,mode=1777")
    );
    assert_eq!(h.shm_size, Some(64 * 1024 * 1024));
    let ulimits: Vec<(String, i64, i64)> = h
        .ulimits
        .clone()
        .unwrap()
        .into_iter()
        .map(|u| (u.name.unwrap(), u.soft.unwrap(), u.hard.unwrap()))
        .collect();
    assert_eq!(
        ulimits,
        [("nofile".to_owned(), 256, 256), ("core".to_owned(), 0, 0)]
    );
    let mounts = h.mounts.unwrap();
    let find = |dst: &str| mounts.iter().find(|m| m.target.as_deref() == Some(dst));
    let g = find("/workspace/group").unwrap();
    assert_eq!(
        g.source.as_deref(),
        Some("/data/tenants/acme/groups/family")
    );
    assert_eq!(g.read_only, Some(false));
    assert_eq!(g.typ, Some(MountTypeEnum::BIND));
    assert_eq!(find("/run/cambot").unwrap().read_only, Some(true));
    assert!(
        find("/workspace/global").is_none(),
        "missing optional source left out"
    );
    assert!(
        find("/opt/cambot/cambot-sandbox-init").is_none(),
        "no Landlock shim in Docker"
    );
    // Structured mounts only: no `-v a:b` strings that a `:` could inject into.
    assert!(h.binds.is_none());
}

#[test]
fn a_runner_container_gets_neither_landlock_nor_handed_over_stdio() {
    let input = PlanInput {
        layout: DataLayout::new("/data"),
        tenant: TenantId::new("acme").unwrap(),
        group: GroupFolder::new("family").unwrap(),
        is_main: false,
        run_id: RunId::from_bytes([9; 16]),
        container_config: None,
        tenant_mounts: crate::TenantMounts::OperatorOnly { others: Vec::new() },
        command: None,
        timezone: "UTC".into(),
        daemon_uid: 0,
        daemon_gid: 0,
        group_owner: Some((1500, 1600)),
        home: None,
        host: HostFs::merged_usr(),
        init: None,
    };
    let p = build_plan(input, &SandboxConfig::default(), &MountAllowlist::none("x")).unwrap();
    assert!(p.stdio_fds().is_some(), "the bwrap plan hands stdio over");
    let env = container_spec(&p, "cambot-agent:local", &|_| true)
        .env
        .unwrap();
    assert!(
        env.iter()
            .all(|e| !e.starts_with("CAMBOT_STDIO_FDS=") && !e.starts_with("CAMBOT_LANDLOCK_RW=")),
        "{env:?}"
    );
    assert!(env.contains(&"HOME=/workspace/group".to_owned()));
}
