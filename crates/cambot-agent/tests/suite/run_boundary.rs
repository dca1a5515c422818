//! The run boundary against the real daemon and the real bwrap sandbox, with a hostile
//! "runner" (a shell script in the runner's place): what it prints is all it controls.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::daemon::Daemon;
use cambot_agent::production::production_runner;
use cambot_testkit::fake_channel::FakeChannel;

use super::sandboxed::sandbox_tools;
use super::support::*;

const WAIT: Duration = Duration::from_secs(60);

struct Hostile {
    daemon: Daemon,
    channel: Arc<FakeChannel>,
    dir: tempfile::TempDir,
}

/// A daemon whose every run is `script` (after `#!/bin/sh`) inside bwrap.
async fn start_hostile(script: &str, sandbox_toml: &str, extra_toml: &str) -> Option<Hostile> {
    let (_runner, init_bin) = sandbox_tools()?;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let runner = dir.path().join("hostile-runner.sh");
    // What the real runner does first: take the protocol from the descriptors the sandbox
    // hands over (`CAMBOT_STDIO_FDS`); bwrap's own stdio is /dev/null.
    let adopt = r#"if [ -n "$CAMBOT_STDIO_FDS" ]; then IFS=,; set -- $CAMBOT_STDIO_FDS; unset IFS; exec 0<&"$1" 1>&"$2" 2>&"$3"; fi"#;
    std::fs::write(&runner, format!("#!/bin/sh\n{adopt}\n{script}\n")).unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let toml_text = format!(
        "[sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n\
         timeout_secs = 120\nidle_timeout_secs = 60\n{sandbox_toml}[router]\nidle_timeout_ms = 500\n{extra_toml}",
        runner.display(),
        init_bin.display()
    );
    let cfg = config(dir.path(), &toml_text);
    // A provider entry so no local model is started; the hostile runner never calls it.
    let env: cambot_agent::production::EnvLookup = Arc::new(|k: &str| match k {
        "ANTHROPIC_API_KEY" => Some("sk-unused".to_owned()),
        "ANTHROPIC_BASE_URL" => Some("http://127.0.0.1:9".to_owned()),
        "ANTHROPIC_MODEL" => Some("unused".to_owned()),
        _ => None,
    });
    let slot = Arc::new(Mutex::new(None));
    let daemon = Daemon::start_with(
        &cfg,
        production_runner(&cfg, env),
        fake_factory(Arc::clone(&slot), None),
    )
    .await
    .unwrap();
    let channel = slot.lock().unwrap().clone().unwrap();
    Some(Hostile {
        daemon,
        channel,
        dir,
    })
}

fn runs_dir_empty(data: &Path) -> bool {
    std::fs::read_dir(data.join("runs")).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_run_that_floods_results_is_cut_off_at_its_reply_cap() {
    // Answers the prompt, then keeps printing results as fast as it can.
    let script = r#"read -r start
printf '%s\n' '{"type":"ready"}' '{"type":"result","text":"flood 0","inputs":1}'
i=1; while [ $i -lt 200 ]; do printf '{"type":"result","text":"flood %d","inputs":0}\n' $i; i=$((i+1)); done
sleep 600"#;
    let Some(t) = start_hostile(script, "", "[agent]\nmax_replies_per_minute = 5\n").await else {
        return;
    };
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hello")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(5, WAIT).await;
    assert_eq!(sent.len(), 5, "{sent:?}");
    // The run is stopped (not left to its 120 s timeout) and its run directory removed.
    let data = t.daemon.layout().root().to_path_buf();
    eventually("the flooding run ends", || runs_dir_empty(&data)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = t.channel.sent();
    let texts: Vec<&str> = sent.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(
        texts,
        ["flood 0", "flood 1", "flood 2", "flood 3", "flood 4"],
        "only the replies under the cap reach the chat"
    );
    drop(t.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_run_that_keeps_printing_is_stopped_at_its_absolute_lifetime() {
    // Answers, then prints a keep-alive line every 0.2 s forever: the hard timeout (reset by
    // output) never fires; the absolute lifetime does.
    let script = r#"read -r start
printf '%s\n' '{"type":"ready"}' '{"type":"result","text":"answered","inputs":1}'
while true; do printf '%s\n' '{"type":"activity","kind":"tick","detail":null}'; sleep 0.2; done"#;
    let Some(t) = start_hostile(script, "max_run_secs = 2\n", "").await else {
        return;
    };
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    let data = t.daemon.layout().root().to_path_buf();
    for round in 1..=2 {
        t.channel
            .inject(&tenant(), "fake:main", "Alice", "hello")
            .await
            .unwrap();
        let sent = t.channel.wait_sent(round, WAIT).await;
        assert_eq!(sent.len(), round, "{sent:?}");
        // Without the lifetime, this run would print keep-alives for ever and hold the group.
        eventually("the chatty run is stopped", || runs_dir_empty(&data)).await;
    }
    drop(t.dir);
}
