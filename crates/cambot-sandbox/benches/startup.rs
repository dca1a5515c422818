//! Cold sandbox start: spawn to the first stdout byte of `echo x`, for each backend, next to a
//! plain fork/exec of the same binary in the same run. Each sandboxed sample is a full run
//! (plan, cgroups, mounts, seccomp, Landlock shim; container create/attach/start for Docker) and
//! is torn down (waited, cgroups or container removed) before the next one.
//!
//! `cargo bench -p cambot-sandbox --bench startup` (env: BENCH_RUNS, default 50; needs root for
//! the bwrap uid drop and cgroups as agents get them; Docker when its socket answers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_sandbox::BwrapBackend;
use cambot_sandbox::DockerBackend;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::PlanInput;
use cambot_sandbox::RunPlan;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::build_plan;
use tokio::io::AsyncReadExt;

const CMD: &[&str] = &["/usr/bin/echo", "x"];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn print(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} n={:<4} p50={:>8.2} ms  p95={:>8.2} ms  min={:>8.2} ms  max={:>8.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.95)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
}

/// Spawn to the first stdout byte of `program args... CMD`, `runs` times.
fn first_byte(runs: usize, program: &str, args: &[&str]) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let mut child = std::process::Command::new(program)
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut b = [0u8; 1];
            child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
            let t = start.elapsed();
            child.wait().unwrap();
            t
        })
        .collect()
}

fn baseline(runs: usize) -> Vec<Duration> {
    first_byte(runs, CMD[0], &CMD[1..])
}

/// bwrap with the minimal profile of sandbox-probes.md, as a reference for the machine's state.
fn bare_bwrap(runs: usize) -> Vec<Duration> {
    let mut args = vec![
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ];
    args.extend_from_slice(CMD);
    first_byte(runs, "bwrap", &args)
}

fn run_id(n: usize) -> RunId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n as u64).to_le_bytes());
    id[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    RunId::from_bytes(id)
}

/// `command`: an operator command (through the Landlock shim), or `None` for the agent runner.
fn plan(layout: &DataLayout, cfg: &SandboxConfig, n: usize, command: Option<&[&str]>) -> RunPlan {
    let mut input = PlanInput::new(
        layout.clone(),
        TenantId::default_tenant(),
        GroupFolder::new("bench").unwrap(),
        run_id(n),
    );
    input.command = command.map(|c| c.iter().map(|s| (*s).to_owned()).collect());
    input.init = cfg.init_path.clone();
    build_plan(input, cfg, &MountAllowlist::none("bench")).unwrap()
}

async fn sandboxed(
    backend: &dyn SandboxBackend,
    layout: &DataLayout,
    cfg: &SandboxConfig,
    runs: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(runs);
    for n in 0..runs {
        let p = plan(layout, cfg, n, Some(CMD));
        let start = Instant::now();
        let mut child = backend.spawn(&p).await.unwrap();
        let mut b = [0u8; 1];
        child.stdout.read_exact(&mut b).await.unwrap();
        out.push(start.elapsed());
        drop(child.take_stdin());
        let info = child.wait().await.unwrap();
        assert_eq!(info.code, Some(0), "{info:?}");
        let _ = std::fs::remove_dir(layout.run_dir(&p.run_id));
    }
    out
}

/// A workspace binary built next to this bench: target/<profile>/deps/startup-* ->
/// target/<profile>/<name>.
fn built_bin(name: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join(name)).filter(|p| p.is_file())
}

/// The `start` line an agent run begins with (the model call after `ready` fails: no gateway).
fn start_line(run_id: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "type": "start", "run_id": run_id, "tenant": "default", "group_folder": "bench",
        "chat_jid": "cli:bench", "is_main": false, "prompt": "hi", "assistant_name": "Andy",
        "timezone": "UTC", "host_token": "t",
        "model": {"provider": "p", "dialect": "anthropic", "model": "m", "max_tokens": 16}
    }))
    .unwrap();
    line.push(b'\n');
    line
}

/// Reads stdout until the runner's `ready` event.
async fn until_ready(out: &mut (impl tokio::io::AsyncBufRead + Unpin)) {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).await.unwrap() > 0,
            "no ready event"
        );
        if line.contains("\"type\":\"ready\"") {
            return;
        }
    }
}

/// Agent start as the daemon sees it: spawn the runner, send `start`, wait for `ready`.
async fn agent_ready(
    backend: &dyn SandboxBackend,
    layout: &DataLayout,
    cfg: &SandboxConfig,
    runs: usize,
) -> Vec<Duration> {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::with_capacity(runs);
    for n in 0..runs {
        let p = plan(layout, cfg, 10_000 + n, None);
        let start = Instant::now();
        let mut child = backend.spawn(&p).await.unwrap();
        child
            .stdin
            .write_all(&start_line(p.run_id.as_str()))
            .await
            .unwrap();
        let mut stdout = tokio::io::BufReader::new(std::mem::replace(
            &mut child.stdout,
            Box::new(tokio::io::empty()),
        ));
        until_ready(&mut stdout).await;
        out.push(start.elapsed());
        drop(child.take_stdin());
        let _ = child.kill().await;
        let _ = child.wait().await;
        let _ = std::fs::remove_dir(layout.run_dir(&p.run_id));
    }
    out
}

/// The same runner started with fork/exec on the host (no sandbox), to `ready`.
async fn agent_ready_baseline(runner: &std::path::Path, runs: usize) -> Vec<Duration> {
    use tokio::io::AsyncWriteExt;
    let ws = tempfile::tempdir().unwrap();
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = tokio::process::Command::new(runner)
            .env_clear()
            .env("CAMBOT_WORKSPACE", ws.path())
            .env("CAMBOT_HOST_SOCKET", ws.path().join("none.sock"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&start_line(&"0".repeat(32))).await.unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        until_ready(&mut stdout).await;
        out.push(start.elapsed());
        drop(stdin);
        let _ = child.kill().await;
    }
    out
}

/// What the direct path pays per start on this host: writing a pid into a (v1 memory)
/// cgroup 50 ms after the previous move, as a daemon starting agents does. A default kernel
/// waits for an RCU grace period here (7-15 ms); with `favordynmods` it does not.
fn cgroup_move(samples: usize) -> Option<Vec<Duration>> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = text.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
        ctrls
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.trim_start_matches('/').to_owned())
    })?;
    let dir = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(own)
        .join(format!("cambot-bench-move-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().ok()?;
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let moved = std::fs::write(dir.join("cgroup.procs"), child.id().to_string());
        let took = start.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        if moved.is_err() {
            break;
        }
        out.push(took);
    }
    for _ in 0..100 {
        if std::fs::remove_dir(&dir).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (!out.is_empty()).then_some(out)
}

/// Says how many of the runs a warm launcher started (the rest were forked directly).
fn launches(b: &BwrapBackend, runs: usize) {
    let warm = b.warm_launches();
    if warm > 0 {
        println!("{:<28} {warm} of {runs} runs", "  through a warm launcher");
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let layout = DataLayout::new(dir.path());
    let cfg = SandboxConfig {
        init_path: built_bin("cambot-sandbox-init"),
        launcher_path: built_bin("cambot-sandbox-launch"),
        ..SandboxConfig::default()
    };
    // Every breakdown row forks bwrap from this process, as before warm launchers; the full
    // plan is then measured both ways.
    let direct = SandboxConfig {
        warm_launchers: 0,
        ..cfg.clone()
    };
    println!(
        "sandbox startup: spawn -> first stdout byte of `{}`",
        CMD.join(" ")
    );
    println!(
        "(Landlock shim: {})",
        cfg.init_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "not built: run `cargo build -p cambot-sandbox` first".to_owned())
    );
    println!(
        "(warm launcher: {})",
        cfg.launcher_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| {
                "not built: run `cargo build --release -p cambot-sandbox --bins` first".to_owned()
            })
    );
    print("fork/exec (baseline)", baseline(runs));
    match cgroup_move(20) {
        Some(samples) => print("cgroup move, 50 ms apart", samples),
        None => println!("cgroup move: not measured (needs root and a v1 memory cgroup)"),
    }
    if let Ok(b) = BwrapBackend::new(direct.clone()) {
        print("bwrap bare (reference)", bare_bwrap(runs));
        // Where the time goes: the same runs without the defence-in-depth layers.
        let lean = SandboxConfig {
            init_path: None,
            landlock: false,
            seccomp: false,
            cgroups: false,
            ..direct.clone()
        };
        let lean_backend = BwrapBackend::new(lean.clone()).unwrap();
        print(
            "bwrap (no cgroups/seccomp/LL)",
            sandboxed(&lean_backend, &layout, &lean, runs).await,
        );
        for (name, variant) in [
            (
                "bwrap + cgroups only",
                SandboxConfig {
                    cgroups: true,
                    ..lean.clone()
                },
            ),
            (
                "bwrap + seccomp only",
                SandboxConfig {
                    seccomp: true,
                    ..lean.clone()
                },
            ),
            (
                "bwrap + Landlock shim only",
                SandboxConfig {
                    landlock: true,
                    init_path: cfg.init_path.clone(),
                    ..lean.clone()
                },
            ),
        ] {
            let vb = BwrapBackend::new(variant.clone()).unwrap();
            let _ = vb.probe().await;
            print(name, sandboxed(&vb, &layout, &variant, runs).await);
        }
        drop(b);
    }
    for (name, variant) in [("direct fork", &direct), ("warm launcher", &cfg)] {
        match BwrapBackend::new(variant.clone()) {
            Ok(b) => {
                let degraded = b.probe().await.map(|r| r.limits_degraded).unwrap_or(true);
                let samples = sandboxed(&b, &layout, variant, runs).await;
                print(
                    &format!(
                        "bwrap full, {name}{}",
                        if degraded { " (limits degraded)" } else { "" }
                    ),
                    samples,
                );
                launches(&b, runs);
            }
            Err(e) => println!("bwrap: skipped ({e})"),
        }
    }
    // Agent runs: the runner confines itself with Landlock (no shim), so measure it as such.
    match built_bin("cambot-runner") {
        Some(runner) => {
            print(
                "runner ready, fork/exec",
                agent_ready_baseline(&runner, runs).await,
            );
            for (name, variant) in [("direct fork", &direct), ("warm launcher", &cfg)] {
                let rcfg = SandboxConfig {
                    runner_path: Some(runner.clone()),
                    ..variant.clone()
                };
                match BwrapBackend::new(rcfg.clone()) {
                    Ok(b) => {
                        let _ = b.probe().await;
                        print(
                            &format!("runner ready, bwrap, {name}"),
                            agent_ready(&b, &layout, &rcfg, runs).await,
                        );
                        launches(&b, runs);
                    }
                    Err(e) => println!("runner ready: skipped ({e})"),
                }
            }
        }
        None => println!(
            "runner ready: skipped (build it first: cargo build --release -p cambot-runner -p cambot-sandbox --bins)"
        ),
    }
    let docker_cfg = SandboxConfig {
        init_path: None,
        landlock: false,
        docker_image: "cambot-agent:bench".to_owned(),
        ..cfg.clone()
    };
    match DockerBackend::connect(docker_cfg.clone()) {
        Ok(d) if d.client().ping().await.is_ok() => {
            if d.probe().await.is_err() {
                cambot_sandbox::docker_image::build_image(&d, None)
                    .await
                    .unwrap();
            }
            let samples = sandboxed(&d, &layout, &docker_cfg, runs).await;
            print("docker (network none)", samples);
        }
        Ok(_) => println!("docker: skipped (dockerd does not answer)"),
        Err(e) => println!("docker: skipped ({e})"),
    }
}
