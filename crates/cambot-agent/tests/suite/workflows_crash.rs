//! Crash test for workflows on the real `cambot` binary: SIGKILL the daemon while step 2 of a
//! 3-step workflow runs, 50 times, restarting it each time. Every run must end succeeded with
//! step 1 run once, and its `send` step queued once and delivered once (the terminal channel
//! prints deliveries on the daemon's stdout, collected across restarts).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use cambot_core::GroupRegistration;
use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_core::WorkflowRunState;
use cambot_core::WorkflowStepState;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_workflows::StepCall;
use cambot_workflows::StepExecutor;
use cambot_workflows::StepFailure;
use cambot_workflows::StepFuture;
use tokio_util::sync::CancellationToken;

use super::sandboxed::sandbox_tools;
use super::support::tenant;

const KILLS: usize = 50;

const WORKFLOW: &str = r#"
name = "crashy"
[inputs]
tag = {}
[[steps]]
id = "first"
type = "command"
group = "main"
command = "echo {{ inputs.tag }} >> step1.log; echo one"
[[steps]]
id = "slow"
type = "command"
group = "main"
command = "sleep 0.3; echo x"
retries = 10
[[steps]]
id = "post"
type = "send"
group = "main"
text = "done-{{ inputs.tag }}-{{ steps.slow.output }}"
"#;

/// The test's engine only stores runs; the daemon drives them.
struct NoSteps;

impl StepExecutor for NoSteps {
    fn execute(&self, _call: StepCall, _cancel: CancellationToken) -> StepFuture<'_> {
        Box::pin(async { Err(StepFailure::fatal("not here")) })
    }
}

fn spawn_daemon(dir: &Path) -> Child {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stdout.log"))
        .unwrap();
    let err = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("--config")
        .arg(dir.join("cambot.toml"))
        .arg("--data-dir")
        .arg(dir)
        .arg("run")
        .env_remove("CAMBOT_CONFIG")
        .env("CAMBOT_LOG", "warn")
        // A remote provider that is never called: no local model server to start.
        .env("ANTHROPIC_API_KEY", "sk-ant-unused")
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("ANTHROPIC_MODEL", "claude-test")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

fn kill9(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn sigkill_during_step_two_fifty_times_reruns_nothing_finished_and_sends_once() {
    let Some((runner, init)) = sandbox_tools() else {
        return;
    };
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("cambot.toml"),
        format!(
            "[channels.cli]\nenabled = true\n[router]\ndelivery_retry_secs = 1\n\
             [sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n",
            runner.display(),
            init.display()
        ),
    )
    .unwrap();
    let layout = cambot_protocol::DataLayout::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&layout.database()).unwrap());
    store
        .register_group(GroupRegistration {
            tenant: tenant(),
            jid: ChatJid::new("cli:console").unwrap(),
            name: "CLI".into(),
            folder: GroupFolder::main(),
            trigger: "@Andy".into(),
            requires_trigger: Some(false),
            container_config: None,
        })
        .await
        .unwrap();
    let engine = cambot_agent::workflows::engine(store.clone(), Arc::new(NoSteps));
    engine.add(&tenant(), WORKFLOW).await.unwrap();

    let mut runs = Vec::new();
    for i in 0..KILLS {
        let tag = format!("t{i}");
        let id = engine
            .start(
                &tenant(),
                "crashy",
                BTreeMap::from([("tag".to_owned(), tag.clone())]),
            )
            .await
            .unwrap();
        runs.push((id.clone(), tag));
        let mut child = spawn_daemon(dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = engine.run(&tenant(), &id).await.unwrap().unwrap();
            if run.steps[1].state == WorkflowStepState::Running {
                break;
            }
            assert!(
                !run.state.is_finished(),
                "run {i} ended before its step 2 was killed: {run:#?}"
            );
            assert!(
                Instant::now() < deadline,
                "step 2 of run {i} never started; daemon log:\n{}",
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill9(&mut child);
    }

    // A last start finishes everything; then a graceful stop.
    let mut child = spawn_daemon(dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut all = true;
        for (id, _) in &runs {
            let run = engine.run(&tenant(), id).await.unwrap().unwrap();
            all &= run.state.is_finished();
        }
        let delivered = store.pending_outbox(1).await.unwrap().is_empty();
        if all && delivered {
            break;
        }
        assert!(Instant::now() < deadline, "the runs did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();

    let step1 = std::fs::read_to_string(
        layout
            .group_dir(&tenant(), &GroupFolder::main())
            .join("step1.log"),
    )
    .unwrap();
    let printed = std::fs::read_to_string(dir.join("stdout.log")).unwrap();
    for (id, tag) in &runs {
        let run = engine.run(&tenant(), id).await.unwrap().unwrap();
        assert_eq!(run.state, WorkflowRunState::Succeeded, "{run:#?}");
        assert_eq!(run.steps[0].attempt, 1, "step 1 re-ran: {run:#?}");
        assert!(
            run.steps[1].attempt >= 2,
            "step 2 was not interrupted: {run:#?}"
        );
        assert_eq!(
            step1.lines().filter(|l| l == tag).count(),
            1,
            "step 1 of {tag} ran more than once"
        );
        let text = format!("done-{tag}-x");
        assert_eq!(
            printed.matches(&format!("{text}\n")).count(),
            1,
            "{text} delivered {} times",
            printed.matches(&text).count()
        );
    }
    eprintln!(
        "workflow crash test: {KILLS} kills, {} runs, {:.1} s",
        runs.len(),
        began.elapsed().as_secs_f64()
    );
}
