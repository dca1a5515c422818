#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::bwrap_args::bwrap_argv;
use crate::bwrap_args::bwrap_command;

fn input(daemon_uid: u32, owner: Option<(u32, u32)>) -> PlanInput {
    PlanInput {
        layout: DataLayout::new("/data"),
        tenant: TenantId::new("acme").unwrap(),
        group: GroupFolder::new("family").unwrap(),
        is_main: false,
        run_id: RunId::from_bytes([7; 16]),
        container_config: None,
        tenant_mounts: crate::TenantMounts::OperatorOnly { others: Vec::new() },
        command: Some(vec!["/bin/sh".into(), "-c".into(), "id".into()]),
        timezone: "Europe/Paris".into(),
        daemon_uid,
        daemon_gid: daemon_uid,
        group_owner: owner,
        home: Some(PathBuf::from("/home/op")),
        host: HostFs::merged_usr(),
        init: None,
    }
}

fn cfg() -> SandboxConfig {
    SandboxConfig {
        runner_path: Some(PathBuf::from("/opt/bin/cambot-runner")),
        ..SandboxConfig::default()
    }
}

fn plan(i: PlanInput) -> RunPlan {
    build_plan(i, &cfg(), &MountAllowlist::none("test")).unwrap()
}

fn mount<'a>(p: &'a RunPlan, dst: &str) -> &'a PlanMount {
    p.mounts.iter().find(|m| m.dst == dst).unwrap()
}

#[test]
fn layout_mounts_and_modes() {
    let p = plan(input(0, Some((1500, 1500))));
    let g = mount(&p, "/workspace/group");
    assert_eq!(g.src, PathBuf::from("/data/tenants/acme/groups/family"));
    assert_eq!(g.mode, MountMode::ReadWrite);
    assert!(g.create && !g.optional);
    let gl = mount(&p, "/workspace/global");
    assert_eq!(gl.src, PathBuf::from("/data/tenants/acme/global"));
    assert_eq!(gl.mode, MountMode::ReadOnly);
    assert!(gl.optional);
    let s = mount(&p, "/workspace/session");
    assert_eq!(s.src, PathBuf::from("/data/tenants/acme/sessions/family"));
    assert_eq!(s.mode, MountMode::ReadWrite);
    let u = mount(&p, "/workspace/uploads");
    assert_eq!(u.mode, MountMode::ReadOnly);
    let r = mount(&p, "/run/cambot");
    assert_eq!(
        r.src,
        PathBuf::from("/data/runs/07070707070707070707070707070707")
    );
    assert_eq!(r.mode, MountMode::ReadOnly);
    // Nothing else of the data dir, and never the vault or the database.
    for m in &p.mounts {
        assert!(!m.src.starts_with("/data/vault"), "{m:?}");
        assert_ne!(m.src, PathBuf::from("/data/cambot.db"));
        assert_ne!(m.src, PathBuf::from("/data"));
        assert_ne!(m.src, PathBuf::from("/"));
    }
    // Operator command: the runner is not bound.
    assert!(p.mounts.iter().all(|m| m.dst != sandbox_paths::RUNNER_BIN));
    assert_eq!(p.command, vec!["/bin/sh", "-c", "id"]);
    assert_eq!(p.cwd, "/workspace/group");
    assert_eq!(p.network, NetworkPolicy::None);
}

#[test]
fn runner_is_the_default_command_and_read_only() {
    let mut i = input(0, Some((1500, 1500)));
    i.command = None;
    let p = plan(i);
    assert_eq!(p.command, vec![sandbox_paths::RUNNER_BIN]);
    let r = mount(&p, sandbox_paths::RUNNER_BIN);
    assert_eq!(r.src, PathBuf::from("/opt/bin/cambot-runner"));
    assert_eq!(r.mode, MountMode::ReadOnly);
    let mut i = input(0, None);
    i.command = Some(Vec::new());
    assert!(matches!(
        build_plan(i, &cfg(), &MountAllowlist::none("x")),
        Err(PlanError::EmptyCommand)
    ));
}

#[test]
fn identity_rules() {
    // Root daemon, folder owned by a user: run as that user, no chown.
    let p = plan(input(0, Some((1500, 1600))));
    assert_eq!(
        p.identity,
        SandboxUser {
            uid: 1500,
            gid: 1600,
            drop_privileges: true,
            chown_writable: false
        }
    );
    // Root daemon, root-owned or missing folder: the configured sandbox uid, chown first.
    for owner in [Some((0, 0)), None] {
        let p = plan(input(0, owner));
        assert_eq!(
            p.identity,
            SandboxUser {
                uid: 10000,
                gid: 10000,
                drop_privileges: true,
                chown_writable: true
            }
        );
    }
    // Unprivileged daemon: itself.
    let p = plan(input(1001, Some((1001, 1001))));
    assert_eq!(p.identity.uid, 1001);
    assert!(!p.identity.drop_privileges && !p.identity.chown_writable);
    // Never uid 0 inside.
    let c = SandboxConfig {
        sandbox_uid: 0,
        ..cfg()
    };
    assert!(matches!(
        build_plan(input(0, None), &c, &MountAllowlist::none("x")),
        Err(PlanError::RootUid)
    ));
}

#[test]
fn env_is_an_allowlist() {
    let p = plan(input(0, Some((1500, 1500))));
    let keys: Vec<&str> = p.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "HOME",
            "PATH",
            "LANG",
            "TZ",
            "USER",
            "LOGNAME",
            "TMPDIR",
            "CAMBOT_HOST_SOCK",
            "CAMBOT_RUN_ID",
            "CAMBOT_TENANT",
            "CAMBOT_GROUP",
            "CAMBOT_IS_MAIN"
        ]
    );
    let get = |k: &str| p.env.iter().find(|(kk, _)| kk == k).unwrap().1.clone();
    assert_eq!(get("HOME"), "/workspace/group");
    assert_eq!(get("TZ"), "Europe/Paris");
    assert_eq!(get("CAMBOT_IS_MAIN"), "0");
    let mut i = input(0, None);
    i.timezone = "../../etc/shadow".into();
    let p = plan(i);
    assert!(p.env.contains(&("TZ".to_owned(), "UTC".to_owned())));
}

#[test]
fn limits_and_timeouts() {
    let p = plan(input(0, None));
    assert_eq!(p.limits.memory_bytes, 1024 * 1024 * 1024);
    assert_eq!(p.limits.pids, 256);
    assert_eq!(p.limits.tmp_bytes, 64 * 1024 * 1024);
    assert_eq!(p.limits.shm_bytes, 64 * 1024 * 1024);
    assert_eq!(p.limits.open_files, 256);
    // Defaults: max(1800 s, 1800 s + 30 s) = 1830 s (seed: 1 830 000 ms).
    assert_eq!(p.timeouts.hard, Duration::from_millis(1_830_000));
    let mut i = input(0, None);
    i.container_config = Some(ContainerConfig {
        timeout_ms: Some(3_600_000),
        memory_bytes: Some(64 * 1024 * 1024),
        ..Default::default()
    });
    let p = plan(i);
    assert_eq!(p.timeouts.hard, Duration::from_secs(3600));
    assert_eq!(p.limits.memory_bytes, 64 * 1024 * 1024);
    let mut i = input(0, None);
    i.container_config = Some(ContainerConfig {
        timeout_ms: Some(1000),
        ..Default::default()
    });
    assert_eq!(plan(i).timeouts.hard, Duration::from_secs(1830));
    assert_eq!(
        TimeoutPolicy::seed(
            Duration::from_secs(10),
            Duration::from_secs(1),
            Duration::from_secs(60)
        )
        .hard,
        Duration::from_secs(31)
    );
    let bad = SandboxConfig { pids: 0, ..cfg() };
    assert!(build_plan(input(0, None), &bad, &MountAllowlist::none("x")).is_err());
    for open_files in [0, 31, (1 << 20) + 1] {
        let bad = SandboxConfig {
            open_files,
            ..cfg()
        };
        let err = build_plan(input(0, None), &bad, &MountAllowlist::none("x")).unwrap_err();
        assert!(err.to_string().contains("open_files"), "{err}");
    }
    let bad = SandboxConfig {
        shm_size_mb: 0,
        ..cfg()
    };
    let err = build_plan(input(0, None), &bad, &MountAllowlist::none("x")).unwrap_err();
    assert!(err.to_string().contains("shm_size_mb 0"), "{err}");
    let c: SandboxConfig = toml::from_str("open_files = 1024\nshm_size_mb = 16").unwrap();
    let p = build_plan(input(0, None), &c, &MountAllowlist::none("x")).unwrap();
    assert_eq!(p.limits.open_files, 1024);
    assert_eq!(p.limits.shm_bytes, 16 * 1024 * 1024);
}

#[test]
fn rejected_extra_mounts_are_recorded_and_dropped() {
    let mut i = input(0, None);
    i.container_config = Some(ContainerConfig {
        additional_mounts: vec![AdditionalMount {
            host_path: "/etc".into(),
            container_path: None,
            readonly: None,
        }],
        ..Default::default()
    });
    let p = plan(i);
    assert_eq!(p.rejected_mounts.len(), 1);
    assert!(
        p.mounts
            .iter()
            .all(|m| !m.dst.starts_with("/workspace/extra"))
    );
}

#[test]
fn accepted_extra_mount_goes_under_extra() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("repo")).unwrap();
    let list = MountAllowlist::from_json(&format!(
        r#"{{"allowedRoots":[{{"path":"{}","allowReadWrite":true}}],"blockedPatterns":[],"nonMainReadOnly":false}}"#,
        root.display()
    ))
    .unwrap();
    let mut i = input(0, None);
    i.container_config = Some(ContainerConfig {
        additional_mounts: vec![AdditionalMount {
            host_path: root.join("repo").to_string_lossy().into_owned(),
            container_path: Some("code".into()),
            readonly: Some(false),
        }],
        ..Default::default()
    });
    let p = build_plan(i, &cfg(), &list).unwrap();
    let m = mount(&p, "/workspace/extra/code");
    assert_eq!(m.src, root.join("repo"));
    assert_eq!(m.mode, MountMode::ReadWrite);
}

#[test]
fn generated_etc_names_the_run_user() {
    let p = plan(input(0, Some((1500, 1600))));
    let passwd = &p.etc.iter().find(|(k, _)| k == "/etc/passwd").unwrap().1;
    assert!(passwd.contains("cambot:x:1500:1600:cambot:/workspace/group:"));
    let paths: Vec<&str> = p.etc.iter().map(|(k, _)| k.as_str()).collect();
    assert!(paths.contains(&"/etc/hosts") && paths.contains(&"/etc/resolv.conf"));
    assert!(!p.etc.iter().any(|(_, v)| v.contains("nameserver")));
}

fn pairs(args: &[String], flag: &str) -> Vec<(String, String)> {
    args.windows(3)
        .filter(|w| w[0] == flag)
        .map(|w| (w[1].clone(), w[2].clone()))
        .collect()
}

#[test]
fn bwrap_argv_contract() {
    let mut i = input(0, Some((1500, 1500)));
    i.init = Some(PathBuf::from("/opt/bin/cambot-sandbox-init"));
    let p = plan(i);
    let cmd = bwrap_command(&p, &[vec![1, 2, 3]]);
    let a = &cmd.args;
    for flag in [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ] {
        assert!(a.iter().any(|x| x == flag), "missing {flag}");
    }
    assert!(a.windows(2).any(|w| w[0] == "--cap-drop" && w[1] == "ALL"));
    assert!(!a.iter().any(|x| x == "--share-net"));
    // Never the host root, in any form.
    for flag in [
        "--bind",
        "--ro-bind",
        "--bind-try",
        "--ro-bind-try",
        "--dev-bind",
    ] {
        for (src, dst) in pairs(a, flag) {
            assert_ne!(src, "/", "{flag} {src} {dst}");
            assert_ne!(dst, "/", "{flag} {src} {dst}");
        }
    }
    assert!(pairs(a, "--ro-bind").contains(&("/usr".into(), "/usr".into())));
    assert!(pairs(a, "--symlink").contains(&("usr/bin".into(), "/bin".into())));
    assert!(pairs(a, "--symlink").contains(&("usr/lib".into(), "/lib".into())));
    // Size-capped /tmp: --size N --perms 1777 --tmpfs /tmp.
    let tmp = a.iter().position(|x| x == "--tmpfs").unwrap();
    assert_eq!(a[tmp + 1], "/tmp");
    assert_eq!(a[tmp - 4], "--size");
    assert_eq!(a[tmp - 3], (64u64 * 1024 * 1024).to_string());
    // And /dev/shm the same way, after /dev (whose own tmpfs has no cap).
    let shm = a.iter().rposition(|x| x == "--tmpfs").unwrap();
    assert_eq!(a[shm + 1], "/dev/shm");
    assert_eq!(
        &a[shm - 4..shm],
        &[
            "--size",
            &(64u64 * 1024 * 1024).to_string(),
            "--perms",
            "1777"
        ]
    );
    assert!(a.iter().position(|x| x == "--dev").unwrap() < shm);
    // Generated /etc through descriptors, not host files.
    let etc = pairs(a, "--ro-bind-data");
    assert!(etc.iter().any(|(_, d)| d == "/etc/passwd"));
    assert!(
        !pairs(a, "--ro-bind")
            .iter()
            .any(|(s, _)| s.starts_with("/etc"))
    );
    for (fd, _) in &etc {
        let fd: i32 = fd.parse().unwrap();
        assert!(cmd.fds.iter().any(|(f, _)| *f == fd));
    }
    assert!(pairs(a, "--bind").contains(&(
        "/data/tenants/acme/groups/family".into(),
        "/workspace/group".into()
    )));
    assert!(pairs(a, "--ro-bind").contains(&(
        "/data/runs/07070707070707070707070707070707".into(),
        "/run/cambot".into()
    )));
    // The root is sealed after the last mount and before the command.
    let remount = a.iter().position(|x| x == "--remount-ro").unwrap();
    let last_bind = a
        .iter()
        .rposition(|x| x.ends_with("bind") || x.ends_with("bind-try"))
        .unwrap();
    assert!(remount > last_bind);
    assert!(pairs(a, "--setenv").contains(&("HOME".into(), "/workspace/group".into())));
    assert_eq!(
        a.windows(2)
            .find(|w| w[0] == "--chdir")
            .map(|w| w[1].clone()),
        Some("/workspace/group".to_owned())
    );
    assert!(a.iter().any(|x| x == "--add-seccomp-fd"));
    let dd = a.iter().position(|x| x == "--").unwrap();
    assert_eq!(
        &a[dd + 1..],
        &[
            INIT_BIN,
            "--rw",
            "/workspace",
            "--rw",
            "/tmp",
            "--",
            "/bin/sh",
            "-c",
            "id"
        ]
    );
    // Descriptors are distinct and start at FIRST_DATA_FD.
    let mut fds: Vec<i32> = cmd.fds.iter().map(|(f, _)| *f).collect();
    fds.dedup();
    assert_eq!(fds.len(), cmd.fds.len());
    assert_eq!(fds[0], crate::bwrap_args::FIRST_DATA_FD);
}

#[test]
fn bwrap_argv_without_seccomp_or_shim() {
    let c = SandboxConfig {
        seccomp: false,
        ..cfg()
    };
    let p = build_plan(input(0, None), &c, &MountAllowlist::none("x")).unwrap();
    let a = bwrap_argv(&p).unwrap();
    assert!(!a.iter().any(|x| x == "--add-seccomp-fd"));
    let dd = a.iter().position(|x| x == "--").unwrap();
    assert_eq!(&a[dd + 1..], &["/bin/sh", "-c", "id"]);
    // Optional mounts use the -try form.
    assert!(
        pairs(&a, "--ro-bind-try")
            .iter()
            .any(|(_, d)| d == "/workspace/global")
    );
}

#[test]
fn seccomp_programs_compile() {
    let progs = crate::seccomp::programs(true).unwrap();
    // Deny list, clone3 -> ENOSYS, and (x86_64) the x32 ABI guard.
    let expected = if cfg!(target_arch = "x86_64") { 3 } else { 2 };
    assert_eq!(progs.len(), expected);
    for p in &progs {
        assert!(!p.is_empty() && p.len() % 8 == 0);
    }
    // bwrap_argv hands every filter over (and fails, never drops them, when one cannot be
    // compiled).
    let a = bwrap_argv(&plan(input(0, None))).unwrap();
    assert_eq!(
        a.iter().filter(|x| *x == "--add-seccomp-fd").count(),
        expected
    );
    let online = crate::seccomp::programs(false).unwrap();
    assert!(
        online[0].len() < progs[0].len(),
        "the socket rule adds code"
    );
}

#[test]
fn config_parses_with_defaults_and_rejects_unknown_fields() {
    let c: SandboxConfig = toml::from_str("").unwrap();
    assert_eq!(c, SandboxConfig::default());
    let c: SandboxConfig =
        toml::from_str("backend = \"bwrap\"\nmemory_mb = 64\ntimeout_secs = 60").unwrap();
    assert_eq!(c.backend, crate::config::BackendChoice::Bwrap);
    assert_eq!(c.memory_mb, 64);
    assert!(toml::from_str::<SandboxConfig>("memroy_mb = 1").is_err());
    assert!(toml::from_str::<SandboxConfig>("backend = \"chroot\"").is_err());
}

#[test]
fn the_runner_confines_itself_and_other_commands_go_through_the_shim() {
    let shim = PathBuf::from("/opt/bin/cambot-sandbox-init");
    let landlock_env = |p: &RunPlan| {
        p.env
            .iter()
            .find(|(k, _)| k == sandbox_paths::ENV_LANDLOCK_RW)
            .map(|(_, v)| v.clone())
    };
    let shim_bound = |p: &RunPlan| p.mounts.iter().any(|m| m.dst == INIT_BIN);

    // An agent run: no shim mounted or exec'd; the runner is told what it may write.
    let mut agent = input(0, Some((1500, 1500)));
    agent.command = None;
    agent.init = Some(shim.clone());
    let p = plan(agent);
    assert_eq!(p.init, None);
    assert!(!shim_bound(&p));
    assert_eq!(p.full_command(), [sandbox_paths::RUNNER_BIN]);
    assert_eq!(landlock_env(&p).as_deref(), Some("/workspace:/tmp"));

    // An operator's command: the shim first, with the same writable paths.
    let mut op = input(0, Some((1500, 1500)));
    op.init = Some(shim);
    let p = plan(op);
    assert!(shim_bound(&p));
    assert_eq!(landlock_env(&p), None);
    assert_eq!(
        p.full_command(),
        [
            INIT_BIN,
            "--rw",
            "/workspace",
            "--rw",
            "/tmp",
            "--",
            "/bin/sh",
            "-c",
            "id"
        ]
    );

    // Landlock off in the config: neither.
    let mut off = input(0, Some((1500, 1500)));
    off.command = None;
    off.init = Some(PathBuf::from("/opt/bin/cambot-sandbox-init"));
    let p = build_plan(
        off,
        &SandboxConfig {
            landlock: false,
            ..cfg()
        },
        &MountAllowlist::none("test"),
    )
    .unwrap();
    assert_eq!(landlock_env(&p), None);
    assert!(!shim_bound(&p));
}

#[test]
fn bwrap_options_are_handed_over_in_a_descriptor() {
    let mut i = input(0, Some((1500, 1500)));
    i.init = Some(PathBuf::from("/opt/bin/cambot-sandbox-init"));
    let p = plan(i);
    let full = bwrap_command(&p, &[vec![1, 2, 3]]);
    let hidden = full.clone().hide_options();
    let dd = full.args.iter().position(|x| x == "--").unwrap();
    let fd = hidden.fds.last().unwrap().0;
    // Visible: only the descriptor and the command inside the sandbox.
    let mut visible = vec!["--args".to_owned(), fd.to_string()];
    visible.extend(full.args[dd..].iter().cloned());
    assert_eq!(hidden.args, visible);
    assert!(!hidden.args.iter().any(|a| a.contains("/data")));
    // The descriptor holds exactly the options, NUL-terminated each, after the other data.
    let data = &hidden.fds.last().unwrap().1;
    let options: Vec<String> = data
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    assert_eq!(options, full.args[..dd]);
    assert_eq!(data.last(), Some(&0));
    assert_eq!(&hidden.fds[..full.fds.len()], &full.fds[..]);
    assert!(full.fds.iter().all(|(f, _)| *f < fd));
}

#[test]
fn an_agent_run_without_the_shim_still_confines_itself() {
    let mut agent = input(0, Some((1500, 1500)));
    agent.command = None;
    agent.init = None;
    let p = plan(agent);
    assert_eq!(p.init, None);
    assert!(p.mounts.iter().all(|m| m.dst != INIT_BIN));
    assert_eq!(
        p.env
            .iter()
            .find(|(k, _)| k == sandbox_paths::ENV_LANDLOCK_RW)
            .map(|(_, v)| v.as_str()),
        Some("/workspace:/tmp")
    );
}

#[test]
fn only_the_runner_takes_its_stdio_from_handed_over_descriptors() {
    let stdio_env = |p: &RunPlan| {
        p.env
            .iter()
            .find(|(k, _)| k == sandbox_paths::ENV_STDIO_FDS)
            .map(|(_, v)| v.clone())
    };
    let mut agent = input(0, Some((1500, 1500)));
    agent.command = None;
    let p = plan(agent);
    assert_eq!(stdio_env(&p).as_deref(), Some("6,7,8"));
    assert_eq!(p.stdio_fds(), Some(RUNNER_STDIO_FDS));
    // Nothing bwrap reads sits on them: its data descriptors (and `--args`) come after.
    let cmd = bwrap_command(&p, &[vec![1, 2, 3]]).hide_options();
    assert!(cmd.fds.iter().all(|(fd, _)| *fd > 8), "{:?}", cmd.fds);
    assert!(!RUNNER_STDIO_FDS.contains(&crate::launch::CONTROL_FD));

    // An operator's command (and the local model server) keeps plain stdio.
    let p = plan(input(0, Some((1500, 1500))));
    assert_eq!(stdio_env(&p), None);
    assert_eq!(p.stdio_fds(), None);
}
