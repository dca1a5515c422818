//! The escape and limits suites against a real Docker engine (skipped, never passed, when
//! dockerd is not running).

use std::sync::Arc;
use std::time::Duration;

use cambot_sandbox::DockerBackend;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::SupervisorEvent;
use cambot_sandbox::TimeoutPolicy;
use cambot_sandbox::docker_image::build_image;

use super::common::*;

const IMAGE: &str = "cambot-agent:test";
static BUILT: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

fn docker_config() -> SandboxConfig {
    SandboxConfig {
        docker_image: IMAGE.to_owned(),
        landlock: false,
        ..test_config()
    }
}

async fn docker(test: &str, cfg: &SandboxConfig) -> Option<Arc<dyn SandboxBackend>> {
    // The issue's rule: where the setup script could not start Docker, the Docker suite is
    // reported skipped (even under CAMBOT_REQUIRE_ALL); where it said Docker is up, a Docker
    // that does not answer is a failure.
    if std::env::var("CAMBOT_REQUIRE_ALL").as_deref() == Ok("1")
        && std::env::var_os("CAMBOT_DOCKER_SOCK").is_none()
    {
        report(&format!(
            "SKIPPED {test}: scripts/setup/sandbox.sh could not start dockerd (CAMBOT_DOCKER_SOCK unset)"
        ));
        return None;
    }
    let found = async {
        let d = DockerBackend::connect(cfg.clone()).map_err(|e| e.to_string())?;
        d.client()
            .ping()
            .await
            .map_err(|e| format!("dockerd does not answer: {e} (run scripts/setup/sandbox.sh)"))?;
        let mut built = BUILT.lock().await;
        if !*built {
            build_image(&d, None).await.map_err(|e| e.to_string())?;
            *built = true;
        }
        Ok::<_, String>(d)
    }
    .await;
    let d = require(test, found)?;
    Some(Arc::new(d))
}

#[tokio::test]
#[ignore = "needs dockerd: run by scripts/test.sh"]
async fn docker_identity_and_confinement() {
    let cfg = docker_config();
    let Some(b) = docker("docker::identity_and_confinement", &cfg).await else {
        return;
    };
    b.probe().await.unwrap();
    let env = Env::new();
    let data = env.layout.root().display().to_string();
    let script = format!(
        "t() {{ if \"$@\" >/dev/null 2>&1; then echo yes; else echo no; fi; }}
while read -r k v _; do case $k in CapEff:) echo capeff=$v;; NoNewPrivs:) echo nnp=$v;; Seccomp:) echo seccomp=$v;; esac; done < /proc/self/status
echo uid=$(id -u)
echo read_other=$(t cat {data}/tenants/acme/groups/other/secret.txt)
echo see_data=$(t test -e {data})
echo read_shadow=$(t cat /etc/shadow)
echo w_root=$(t touch /x)
echo w_usr=$(t touch /usr/x)
echo w_run=$(t touch /run/cambot/x)
echo w_global=$(t touch /workspace/global/x)
echo w_group=$(t touch /workspace/group/made-inside)
echo w_tmp=$(t touch /tmp/ok)
echo read_global=$(cat /workspace/global/CLAUDE.md)
echo tcp=$(t bash -c 'exec 3<>/dev/tcp/1.1.1.1/80')
echo udp=$(t bash -c 'echo x > /dev/udp/1.1.1.1/53')
echo dns=$(t getent hosts example.com)
echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,)
echo docker_sock=$(t test -e /var/run/docker.sock)
echo leaks=$(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c sekrit)
echo procs=$(ls -d /proc/[0-9]* | wc -l)
dd if=/dev/zero of=/tmp/big bs=1M count=32 2>/dev/null; echo dd=$?
"
    );
    // SAFETY: see the bwrap environment test; the daemon's variables never reach a container.
    unsafe { std::env::set_var("CAMBOT_TEST_DAEMON_SECRET", "hunter2-sekrit") };
    let out = run(&*b, &env.plan("fam", &cfg, &script)).await;
    assert_eq!(out.exit.code, Some(0), "{out:#?}");
    assert_eq!(out.expect("uid"), "10000");
    assert_eq!(out.expect("capeff"), "0000000000000000");
    assert_eq!(out.expect("nnp"), "1");
    assert_eq!(out.expect("seccomp"), "2");
    for key in [
        "read_other",
        "see_data",
        "read_shadow",
        "w_root",
        "w_usr",
        "w_run",
        "w_global",
        "tcp",
        "udp",
        "dns",
        "docker_sock",
    ] {
        assert_eq!(out.expect(key), "no", "{key}: {out:#?}");
    }
    assert_eq!(out.expect("w_group"), "yes");
    assert_eq!(out.expect("w_tmp"), "yes");
    assert_eq!(out.expect("read_global"), "global memory");
    assert_eq!(out.expect("ifaces"), "lo,");
    assert_eq!(out.expect("leaks"), "0");
    assert_ne!(out.expect("dd"), "0", "/tmp is size capped");
    let procs: usize = out.expect("procs").parse().unwrap();
    assert!(procs <= 8, "{procs}");
    report("SUITE docker escape: ran");
}

#[tokio::test]
#[ignore = "needs dockerd: run by scripts/test.sh"]
async fn docker_limits_hold() {
    let cfg = SandboxConfig {
        memory_mb: 64,
        pids: 24,
        ..docker_config()
    };
    let Some(b) = docker("docker::limits_hold", &cfg).await else {
        return;
    };
    let env = Env::new();
    let out = run(
        &*b,
        &env.plan(
            "balloon",
            &cfg,
            "echo started=1; x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived=${#x}",
        ),
    )
    .await;
    assert_eq!(out.get("started"), Some("1"), "{out:#?}");
    assert_eq!(out.get("survived"), None, "{out:#?}");
    assert_ne!(out.exit.code, Some(0));
    let bomb = "for i in $(seq 100); do sleep 30 & done 2>/dev/null; echo running=$(ls -d /proc/[0-9]* | wc -l)";
    let out = run(&*b, &env.plan("bomb", &cfg, bomb)).await;
    let running: usize = out.expect("running").parse().unwrap();
    assert!(running <= 24, "{running} processes with pids_limit 24");
    report("SUITE docker limits: ran");
}

#[tokio::test]
#[ignore = "needs dockerd: run by scripts/test.sh"]
async fn docker_timeout_kills_and_removes_the_container() {
    let cfg = docker_config();
    let Some(b) = docker("docker::timeout", &cfg).await else {
        return;
    };
    let env = Env::new();
    let plan = env.plan(
        "hung",
        &cfg,
        "setsid sleep 5555 & nohup sleep 5556 >/dev/null 2>&1 & echo '{\"started\":1}'; sleep 5557",
    );
    let out = run_with(
        &*b,
        &plan,
        TimeoutPolicy {
            hard: Duration::from_secs(3),
            lifetime: Duration::from_secs(3600),
        },
    )
    .await;
    assert!(
        out.exit.timed_out && out.exit.had_output && out.exit.is_success(),
        "{:?}",
        out.exit
    );
    assert!(matches!(out.events.first(), Some(SupervisorEvent::Line(_))));
    let d = DockerBackend::connect(cfg.clone()).unwrap();
    let gone = d
        .client()
        .inspect_container(
            &format!("cambot-{}", plan.run_id),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await;
    assert!(gone.is_err(), "container removed after the timeout");
    assert_eq!(host_processes_with("sleep 555"), Vec::<i32>::new());
}

#[tokio::test]
#[ignore = "needs dockerd: run by scripts/test.sh"]
async fn docker_orphans_are_cleaned_up() {
    let cfg = docker_config();
    let Some(b) = docker("docker::orphans", &cfg).await else {
        return;
    };
    let env = Env::new();
    let plan = env.plan("orphan", &cfg, "echo '{}'; sleep 4444");
    let child = b.spawn(&plan).await.unwrap();
    // A daemon that died without cleaning up: the child's handles are leaked, not dropped.
    std::mem::forget(child);
    let d = DockerBackend::connect(cfg.clone()).unwrap();
    assert!(d.cleanup_orphans().await >= 1);
    let gone = d
        .client()
        .inspect_container(
            &format!("cambot-{}", plan.run_id),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await;
    assert!(gone.is_err());
}

#[tokio::test]
#[ignore = "needs dockerd: run by scripts/test.sh"]
async fn docker_descriptors_core_dumps_and_shm_are_capped() {
    let cfg = SandboxConfig {
        shm_size_mb: 4,
        ..docker_config()
    };
    let Some(b) = docker("docker::descriptors_core_dumps_and_shm", &cfg).await else {
        return;
    };
    let env = Env::new();
    let script = r#"echo nofile=$(ulimit -n); echo nofile_hard=$(ulimit -Hn)
echo core=$(ulimit -c); echo core_hard=$(ulimit -Hc)
r=$( n=0; while [ $n -lt 300 ]; do exec {fd}</dev/null || break; n=$((n+1)); done 2>&1; echo "opened=$n" )
echo "$r" | tail -1
case $r in *'Too many open files'*) echo emfile=yes;; *) echo emfile=no;; esac
err=$(dd if=/dev/zero of=/dev/shm/big bs=1M count=32 2>&1 >/dev/null); echo dd=$?
case $err in *'No space left on device'*) echo enospc=yes;; *) echo enospc=no;; esac
echo shm=$(stat -c %s /dev/shm/big)"#;
    let out = run(&*b, &env.plan("caps", &cfg, script)).await;
    assert_eq!(out.expect("nofile"), "256", "{out:#?}");
    assert_eq!(out.expect("nofile_hard"), "256");
    assert_eq!(out.expect("core"), "0");
    assert_eq!(out.expect("core_hard"), "0");
    assert_eq!(out.expect("emfile"), "yes", "{out:#?}");
    let opened: u32 = out.expect("opened").parse().unwrap();
    assert!(opened < 256, "{opened}");
    assert_ne!(out.expect("dd"), "0", "{out:#?}");
    assert_eq!(out.expect("enospc"), "yes", "{out:#?}");
    let shm: u64 = out.expect("shm").parse().unwrap();
    assert!(shm <= 4 * 1024 * 1024, "{shm}");
}
