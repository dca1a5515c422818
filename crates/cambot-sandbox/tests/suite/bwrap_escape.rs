//! The escape suite against the real bwrap backend: every attempt must be refused.

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::symlink;

use cambot_protocol::GroupFolder;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;

use super::common::*;

/// `t CMD...` prints yes when the command succeeded.
const T: &str = "t() { if \"$@\" >/dev/null 2>&1; then echo yes; else echo no; fi; }\n";

fn status_script() -> String {
    format!(
        "{T}while read -r k v _; do case $k in CapEff:) echo capeff=$v;; CapPrm:) echo capprm=$v;; \
         CapBnd:) echo capbnd=$v;; NoNewPrivs:) echo nnp=$v;; Seccomp:) echo seccomp=$v;; esac; \
         done < /proc/self/status\necho uid=$(id -u)\necho gid=$(id -g)\necho home=$HOME\n\
         echo pwd=$(pwd)\necho nested_userns=$(t unshare -U true)\necho nested_root=$(t unshare -r true)\n"
    )
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn not_root_no_capabilities_no_new_privileges() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::not_root_no_capabilities", &cfg).await else {
        return;
    };
    let env = Env::new();
    let out = run(&*b, &env.plan("fam", &cfg, &status_script())).await;
    assert_eq!(out.exit.code, Some(0), "{out:#?}");
    assert_eq!(
        out.expect("uid"),
        "10000",
        "root-owned folder -> sandbox uid"
    );
    assert_eq!(out.expect("gid"), "10000");
    assert_eq!(out.expect("capeff"), "0000000000000000");
    assert_eq!(out.expect("capprm"), "0000000000000000");
    assert_eq!(out.expect("nnp"), "1");
    assert_eq!(out.expect("seccomp"), "2", "seccomp filter installed");
    assert_eq!(out.expect("home"), "/workspace/group");
    assert_eq!(out.expect("pwd"), "/workspace/group");
    assert_eq!(out.expect("nested_userns"), "no");
    assert_eq!(out.expect("nested_root"), "no");
    // The root-owned folder was handed to the sandbox uid.
    let g = env
        .layout
        .group_dir(&env.tenant, &GroupFolder::new("fam").unwrap());
    assert_eq!(std::fs::metadata(&g).unwrap().uid(), 10000);
    report("SUITE bwrap escape: ran");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn runs_as_the_owner_of_the_group_folder() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::runs_as_the_owner", &cfg).await else {
        return;
    };
    let env = Env::new();
    let g = env
        .layout
        .group_dir(&env.tenant, &GroupFolder::new("owned").unwrap());
    std::fs::create_dir_all(&g).unwrap();
    std::os::unix::fs::chown(&g, Some(1500), Some(1600)).unwrap();
    let out = run(
        &*b,
        &env.plan(
            "owned",
            &cfg,
            "echo uid=$(id -u); echo gid=$(id -g); touch /workspace/group/f",
        ),
    )
    .await;
    assert_eq!(out.expect("uid"), "1500");
    assert_eq!(out.expect("gid"), "1600");
    let meta = std::fs::metadata(g.join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1500, 1600));
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn filesystem_is_confined_to_the_group() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::filesystem_is_confined", &cfg).await else {
        return;
    };
    let env = Env::new();
    let data = env.layout.root().display().to_string();
    let g = env
        .layout
        .group_dir(&env.tenant, &GroupFolder::new("fam").unwrap());
    std::fs::create_dir_all(&g).unwrap();
    // Planted links: they resolve inside the sandbox's own view, never the host's.
    symlink("/etc", g.join("planted")).unwrap();
    symlink(
        env.layout
            .group_dir(&env.tenant, &GroupFolder::new("other").unwrap()),
        g.join("planted2"),
    )
    .unwrap();
    symlink("/root", g.join("planted3")).unwrap();
    let script = format!(
        "{T}echo read_other=$(t cat {data}/tenants/acme/groups/other/secret.txt)
echo see_data=$(t test -e {data})
echo read_db=$(t cat {data}/cambot.db)
echo read_shadow=$(t cat /etc/shadow)
echo see_root=$(t ls /root)
echo see_vault=$(grep -rs -l VAULT-SECRET /workspace /tmp /etc /run /opt | head -1)
echo w_root=$(t touch /x)
echo w_usr=$(t touch /usr/x)
echo w_etc=$(t touch /etc/x)
echo w_passwd=$(t sh -c 'echo x >> /etc/passwd')
echo w_workspace=$(t mkdir /workspace/x)
echo w_run=$(t touch /run/cambot/x)
echo w_global=$(t touch /workspace/global/x)
echo w_opt=$(t touch /opt/x)
echo w_devshm=$(t touch /dev/shm/x)
echo w_group=$(t touch /workspace/group/made-inside)
echo w_tmp=$(t touch /tmp/ok)
echo w_session=$(t touch /workspace/session/s)
echo read_global=$(cat /workspace/global/CLAUDE.md)
echo workspace=$(ls /workspace | tr '\\n' ,)
echo link_etc=$(t cat /workspace/group/planted/shadow)
echo link_other=$(t cat /workspace/group/planted2/secret.txt)
echo link_root=$(t ls /workspace/group/planted3/)
echo etc=$(ls /etc | tr '\\n' ,)
echo top=$(ls / | tr '\\n' ,)
"
    );
    let plan = env.plan("fam", &cfg, &script);
    let out = run(&*b, &plan).await;
    assert_eq!(out.exit.code, Some(0), "{out:#?}");
    for key in [
        "read_other",
        "see_data",
        "read_db",
        "read_shadow",
        "see_root",
        "w_root",
        "w_usr",
        "w_etc",
        "w_passwd",
        "w_workspace",
        "w_run",
        "w_global",
        "w_opt",
        "w_devshm",
        "link_etc",
        "link_other",
        "link_root",
    ] {
        assert_eq!(out.expect(key), "no", "{key} must be refused: {out:#?}");
    }
    assert_eq!(out.expect("see_vault"), "");
    for key in ["w_group", "w_tmp", "w_session"] {
        assert_eq!(out.expect(key), "yes", "{key} must work: {out:#?}");
    }
    assert_eq!(out.expect("read_global"), "global memory");
    assert_eq!(out.expect("workspace"), "global,group,session,");
    assert_eq!(
        out.expect("etc"),
        "group,hostname,hosts,nsswitch.conf,passwd,resolv.conf,"
    );
    assert_eq!(
        out.expect("top"),
        "bin,dev,etc,lib,lib64,opt,proc,run,sbin,tmp,usr,workspace,"
    );
    // What the run wrote lives in the group folder, owned by the sandbox uid; nothing else.
    let made = std::fs::metadata(g.join("made-inside")).unwrap();
    assert_eq!(made.uid(), 10000);
    assert!(!std::path::Path::new("/x").exists());
    assert!(!env.layout.run_dir(&plan.run_id).join("x").exists());
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn network_is_loopback_only() {
    for (name, cfg) in [
        ("full policy", test_config()),
        (
            "namespaces alone (no seccomp, no landlock)",
            SandboxConfig {
                seccomp: false,
                landlock: false,
                ..test_config()
            },
        ),
    ] {
        let Some(b) = bwrap("bwrap::network_is_loopback_only", &cfg).await else {
            return;
        };
        let env = Env::new();
        let script = format!(
            "{T}echo tcp=$(t bash -c 'exec 3<>/dev/tcp/1.1.1.1/80')
echo tcp6=$(t bash -c 'exec 3<>/dev/tcp/2606:4700:4700::1111/80')
echo udp=$(t bash -c 'echo x > /dev/udp/1.1.1.1/53')
echo dns=$(t getent hosts example.com)
echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,)
"
        );
        let out = run(&*b, &env.plan("net", &cfg, &script)).await;
        for key in ["tcp", "tcp6", "udp", "dns"] {
            assert_eq!(out.expect(key), "no", "{name}: {key}: {out:#?}");
        }
        assert_eq!(out.expect("ifaces"), "lo,", "{name}");
    }
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn only_the_granted_unix_socket_is_reachable() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::only_the_granted_unix_socket", &cfg).await else {
        return;
    };
    if require(
        "bwrap::only_the_granted_unix_socket",
        std::path::Path::new("/usr/bin/python3")
            .exists()
            .then_some(())
            .ok_or_else(|| "python3 is not installed (scripts/setup/sandbox.sh)".to_owned()),
    )
    .is_none()
    {
        return;
    }
    let env = Env::new();
    let plan = env.plan(
        "sock",
        &cfg,
        &format!(
            "/usr/bin/python3 - <<'PY'
import socket
def t(addr):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(5)
        s.connect(addr)
        return s.recv(5).decode()
    except Exception as e:
        return 'refused'
print('granted=' + t('/run/cambot/host.sock'))
print('abstract=' + t('\\0cambot-test-abstract-{pid}'))
print('host_path=' + t('{other}'))
print('docker=' + t('/var/run/docker.sock'))
print('docker2=' + t('/run/docker.sock'))
PY",
            pid = std::process::id(),
            other = env.layout.root().join("other.sock").display()
        ),
    );
    let run_dir = env.layout.run_dir(&plan.run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let granted = tokio::net::UnixListener::bind(run_dir.join("host.sock")).unwrap();
    let other = tokio::net::UnixListener::bind(env.layout.root().join("other.sock")).unwrap();
    let abstract_addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            format!("cambot-test-abstract-{}", std::process::id()).as_bytes(),
        )
        .unwrap();
    let abs = std::os::unix::net::UnixListener::bind_addr(&abstract_addr).unwrap();
    abs.set_nonblocking(true).unwrap();
    let abs = tokio::net::UnixListener::from_std(abs).unwrap();
    let serve = |l: tokio::net::UnixListener| async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"hello").await;
        }
    };
    let servers = [
        tokio::spawn(serve(granted)),
        tokio::spawn(serve(other)),
        tokio::spawn(serve(abs)),
    ];
    let out = run(&*b, &plan).await;
    for s in servers {
        s.abort();
    }
    assert_eq!(out.expect("granted"), "hello", "{out:#?}");
    assert_eq!(out.expect("abstract"), "refused");
    assert_eq!(out.expect("host_path"), "refused");
    assert_eq!(out.expect("docker"), "refused");
    assert_eq!(out.expect("docker2"), "refused");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn environment_holds_no_daemon_variable() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::environment_holds_no_daemon_variable", &cfg).await else {
        return;
    };
    // SAFETY: set once by this test; other tests only read the environment through the child
    // processes, which the sandbox clears anyway.
    unsafe { std::env::set_var("CAMBOT_TEST_DAEMON_SECRET", "hunter2-sekrit") };
    let env = Env::new();
    let script =
        "echo leaks=$(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c sekrit)
echo keys=$(env | cut -d= -f1 | sort | tr '\\n' ,)
echo procs=$(ls -d /proc/[0-9]* | wc -l)
echo see_host=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c -e 'al[l]-' -e 'carg[o]')";
    let out = run(&*b, &env.plan("envy", &cfg, script)).await;
    assert_eq!(out.expect("leaks"), "0", "{out:#?}");
    assert_eq!(out.expect("see_host"), "0", "host processes are invisible");
    let procs: usize = out.expect("procs").parse().unwrap();
    assert!(procs <= 8, "only the sandbox's processes: {procs}");
    let allowed = [
        "CAMBOT_GROUP",
        "CAMBOT_HOST_SOCK",
        "CAMBOT_IS_MAIN",
        "CAMBOT_RUN_ID",
        "CAMBOT_TENANT",
        "HOME",
        "LANG",
        "LOGNAME",
        "OLDPWD",
        "PATH",
        "PWD",
        "SHLVL",
        "TMPDIR",
        "TZ",
        "USER",
        "_",
    ];
    for k in out.expect("keys").split(',').filter(|k| !k.is_empty()) {
        assert!(allowed.contains(&k), "unexpected variable {k} inside");
    }
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn tmp_is_size_capped() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::tmp_is_size_capped", &cfg).await else {
        return;
    };
    let env = Env::new();
    let out = run(
        &*b,
        &env.plan(
            "tmpcap",
            &cfg,
            "dd if=/dev/zero of=/tmp/big bs=1M count=32 2>/dev/null; echo dd=$?; echo size=$(stat -c %s /tmp/big)",
        ),
    )
    .await;
    assert_ne!(out.expect("dd"), "0", "{out:#?}");
    let size: u64 = out.expect("size").parse().unwrap();
    assert!(size <= 8 * 1024 * 1024, "{size}");
}

/// System calls through the x32 ABI (`nr | 0x40000000`, same arch value as x86_64), which an
/// exact-number deny list would let through.
const X32: &str = r#"/usr/bin/python3 - <<'PY'
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]
X32 = 0x40000000
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
print('getpid=' + call(39))
print('x32_getpid=' + call(X32 | 39))
print('x32_unshare=' + call(X32 | 272, CLONE_NEWUSER))
print('x32_clone=' + call(X32 | 56, CLONE_NEWUSER | CLONE_NEWNS, 0, 0, 0, 0))
print('unshare=' + call(272, CLONE_NEWUSER))
PY"#;

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn x32_system_calls_are_refused() {
    if !cfg!(target_arch = "x86_64") {
        report("SKIPPED bwrap::x32_system_calls_are_refused: not x86_64");
        return;
    }
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::x32_system_calls_are_refused", &cfg).await else {
        return;
    };
    let env = Env::new();
    let out = run(&*b, &env.plan("x32", &cfg, X32)).await;
    assert_eq!(out.expect("getpid"), "ok", "{out:#?}");
    // EPERM is the filter; a kernel without x32 would answer ENOSYS, one with it would run them.
    for key in ["x32_getpid", "x32_unshare", "x32_clone", "unshare"] {
        assert_eq!(out.expect(key), "EPERM", "{key}: {out:#?}");
    }
    // Control: without the filter the same calls reach the kernel (ENOSYS here, or success
    // where x32 is built in), so the EPERM above is the filter's.
    let off = SandboxConfig {
        seccomp: false,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::x32_system_calls_are_refused", &off).await else {
        return;
    };
    let out = run(&*b, &env.plan("x32", &off, X32)).await;
    assert_eq!(out.expect("getpid"), "ok", "{out:#?}");
    assert_ne!(out.expect("x32_getpid"), "EPERM", "{out:#?}");
}

/// `pidfd_getfd` on its own process (always allowed by the kernel's access check), so a
/// refusal is the filter's.
const PIDFD_GETFD: &str = r#"/usr/bin/python3 - <<'PY'
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
pfd = os.pidfd_open(os.getpid())
r = libc.syscall(ctypes.c_long(438), pfd, 1, 0)
print('pidfd_getfd=' + ('ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]))
PY"#;

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn pidfd_getfd_is_refused() {
    let test = "bwrap::pidfd_getfd_is_refused";
    let env = Env::new();
    for (seccomp, expected) in [(true, "EPERM"), (false, "ok")] {
        let cfg = SandboxConfig {
            seccomp,
            ..test_config()
        };
        let Some(b) = bwrap(test, &cfg).await else {
            return;
        };
        let out = run(&*b, &env.plan("pidfd", &cfg, PIDFD_GETFD)).await;
        assert_eq!(
            out.expect("pidfd_getfd"),
            expected,
            "seccomp {seccomp}: {out:#?}"
        );
    }
}

/// Every command line, environment and in-memory file (bwrap's data descriptors) of every
/// process the sandbox can see.
const PROC_DUMP: &str = r#"for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do
  tr '\0' '\n' < "$f" 2>/dev/null | sed "s|^|seen=$f |"
done
for f in /proc/[0-9]*/fd/*; do
  case $(readlink "$f" 2>/dev/null) in
    /memfd:*) cat "$f" 2>/dev/null | tr '\0' '\n' | sed "s|^|seen=$f |";;
  esac
done
echo done=1"#;

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn no_host_path_is_readable_from_proc() {
    let test = "bwrap::no_host_path_is_readable_from_proc";
    let warm_cfg = test_config();
    let direct_cfg = SandboxConfig {
        warm_launchers: 0,
        ..test_config()
    };
    let Some(_) = bwrap(test, &warm_cfg).await else {
        return;
    };
    let env = Env::new();
    for (name, cfg) in [("warm", &warm_cfg), ("direct", &direct_cfg)] {
        let b = cambot_sandbox::BwrapBackend::new(cfg.clone()).unwrap();
        b.probe().await.unwrap();
        let plan = env.plan("procs", cfg, PROC_DUMP);
        let out = run(&b, &plan).await;
        assert_eq!(b.warm_launches(), u64::from(name == "warm"), "{name}");
        assert_eq!(out.expect("done"), "1", "{name}: {out:#?}");
        let seen: Vec<&str> = out
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("seen="))
            .collect();
        assert!(
            seen.iter().any(|l| l.starts_with("/proc/1/cmdline ")),
            "{name}: pid 1 (a fork of bwrap) was not readable: {seen:#?}"
        );
        let mut host_paths: Vec<String> = plan
            .mounts
            .iter()
            .map(|m| m.src.display().to_string())
            .collect();
        host_paths.push(env.layout.root().display().to_string());
        host_paths.extend(plan.init.iter().map(|p| p.display().to_string()));
        for line in &seen {
            for p in &host_paths {
                assert!(
                    !line.contains(p.as_str()),
                    "{name}: host path {p} readable inside: {line}"
                );
            }
            // A root daemon stages its sources at /tmp/<n> first, so as root the options
            // themselves are the tell; a non-root daemon's would name the host paths.
            assert!(!line.contains("--bind"), "{name}: bwrap options: {line}");
        }
        // What pid 1 shows instead: only the descriptor and the command.
        assert!(
            seen.contains(&"/proc/1/cmdline --args"),
            "{name}: {seen:#?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn protected_and_credential_holding_mounts_never_reach_the_sandbox() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::protected_mounts", &cfg).await else {
        return;
    };
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let host = host.path().canonicalize().unwrap();
    for d in ["clean", "keys/.ssh", "etc"] {
        std::fs::create_dir_all(host.join(d)).unwrap();
    }
    let config = host.join("etc/cambot.toml");
    std::fs::write(&config, "").unwrap();
    let allowlist = host.join("allowlist.json");
    std::fs::write(
        &allowlist,
        r#"{"allowedRoots":[{"path":"/","allowReadWrite":true}],"blockedPatterns":[],"nonMainReadOnly":true}"#,
    )
    .unwrap();
    // As the agent builds it: the data dir and the config file protected, the binary added.
    let list = cambot_sandbox::MountAllowlist::load(&allowlist, &[env.layout.root(), &config]);
    let exe = std::env::current_exe().unwrap();
    let mount = |path: &std::path::Path, name: &str| cambot_protocol::message::AdditionalMount {
        host_path: path.display().to_string(),
        container_path: Some(name.to_owned()),
        readonly: Some(false),
    };
    // The default tenant: only the operator's allowlist applies (no tenant mount roots), so
    // every refusal below is the operator-level rule under test.
    let mut input = cambot_sandbox::PlanInput::new(
        env.layout.clone(),
        cambot_protocol::TenantId::default_tenant(),
        GroupFolder::main(),
        fresh_run_id(),
    );
    input.command = Some(vec![
        "/bin/bash".into(),
        "-c".into(),
        "echo extra=$(ls /workspace/extra | tr '\\n' ,)".into(),
    ]);
    input.init = Some(init_shim());
    input.container_config = Some(cambot_protocol::message::ContainerConfig {
        additional_mounts: vec![
            mount(&host.join("clean"), "clean"),
            mount(&host.join("keys"), "keys"),
            mount(&host.join("etc"), "config-dir"),
            mount(&config, "config"),
            mount(env.layout.root(), "data"),
            mount(env.layout.root().parent().unwrap(), "data-parent"),
            mount(&env.layout.root().join("tenants"), "inside-data"),
            mount(exe.parent().unwrap(), "binary-dir"),
        ],
        ..Default::default()
    });
    let plan = cambot_sandbox::build_plan(input, &cfg, &list).unwrap();
    let why: Vec<(String, String)> = plan
        .rejected_mounts
        .iter()
        .map(|(m, e)| (m.container_path.clone().unwrap(), e.to_string()))
        .collect();
    let names: Vec<&str> = why.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "keys",
            "config-dir",
            "config",
            "data",
            "data-parent",
            "inside-data",
            "binary-dir"
        ],
        "{why:#?}"
    );
    assert!(
        why[0]
            .1
            .contains(&host.join("keys/.ssh").display().to_string()),
        "{why:#?}"
    );
    for (name, e) in &why[1..] {
        assert!(e.contains("overlaps"), "{name}: {e}");
    }
    let out = run(&*b, &plan).await;
    assert_eq!(out.expect("extra"), "clean,", "{out:#?}");
}
