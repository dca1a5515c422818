//! Air-gapped mode against the real sandbox: the agent's DNS, TCP and UDP attempts to outside
//! addresses fail, its fetch tool is refused, remote upstreams are refused at start, and the
//! gateway opens no non-loopback connection for the whole run.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::agent_run::AgentRunner;
use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_agent::daemon::RunnerFactory;
use cambot_agent::production::build_sandboxed_runner;
use cambot_gateway::GatewayStats;
use cambot_protocol::GroupFolder;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use serde_json::json;

use super::sandboxed::sandbox_tools;
use super::support::*;

const PROBE: &str = r#"
out=net.txt
{ getent hosts example.com && echo "dns: resolved" || echo "dns: failed"; } >> $out 2>&1
{ timeout 5 bash -c 'echo x > /dev/tcp/1.1.1.1/80' && echo "tcp: connected" || echo "tcp: failed"; } >> $out 2>&1
{ timeout 5 bash -c 'echo x > /dev/udp/8.8.8.8/53' && echo "udp: sent" || echo "udp: failed"; } >> $out 2>&1
{ printf 'ifaces:'; tail -n +3 /proc/net/dev | while IFS=: read -r name _; do printf ' %s' $name; done; echo; } >> $out 2>&1
cat $out
"#;

fn air_gapped_config(
    dir: &std::path::Path,
    runner: &std::path::Path,
    init: &std::path::Path,
) -> Config {
    config(
        dir,
        &format!(
            r#"
            [model]
            air_gapped = true
            fetch_allow_hosts = ["example.com"]
            [sandbox]
            backend = "bwrap"
            runner_path = "{}"
            init_path = "{}"
            [router]
            idle_timeout_ms = 300
            "#,
            runner.display(),
            init.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn an_air_gapped_run_has_no_way_out_and_the_gateway_stays_local() {
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let standin = Standin::anthropic()
        .reply(Script::tool_use("bash", json!({ "command": PROBE })))
        .reply(Script::tool_use(
            "fetch",
            json!({ "url": "https://example.com/" }),
        ))
        .reply(Script::text("probed"))
        .start_tcp()
        .await
        .unwrap();
    let cfg = air_gapped_config(dir.path(), &runner_bin, &init_bin);
    let (factory, stats) = sandboxed_runner_with_stats(&cfg, standin.root_url());
    let (daemon, channel) = start_with_main(&cfg, factory).await;
    channel
        .inject(&tenant(), "fake:main", "Alice", "probe the network")
        .await
        .unwrap();
    let sent = channel.wait_sent(1, Duration::from_secs(60)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "probed");

    let group = daemon.layout().group_dir(&tenant(), &GroupFolder::main());
    let net = std::fs::read_to_string(group.join("net.txt")).unwrap();
    assert!(net.contains("dns: failed"), "{net}");
    assert!(net.contains("tcp: failed"), "{net}");
    assert!(net.contains("udp: failed"), "{net}");
    let ifaces = net.lines().find(|l| l.starts_with("ifaces:")).unwrap();
    assert_eq!(ifaces.trim(), "ifaces: lo", "{net}");

    // The fetch tool's result (third request carries it) says it was refused.
    let third = standin.request(2).unwrap().body.to_string();
    assert!(
        third.contains("air-gapped") || third.contains("refused"),
        "{third}"
    );
    let stats = stats.lock().unwrap().clone().unwrap();
    assert_eq!(stats.non_local(), 0);
    assert!(
        stats
            .refused_by_policy
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn air_gapped_start_refuses_a_remote_upstream_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[model]\nair_gapped = true\n");
    let env = |k: &str| match k {
        "ANTHROPIC_API_KEY" => Some("k".to_owned()),
        "ANTHROPIC_MODEL" => Some("m".to_owned()),
        _ => None,
    };
    let factory = cambot_agent::production::production_runner(&cfg, Arc::new(env));
    let slot = Arc::new(Mutex::new(None));
    let err = Daemon::start_with(&cfg, factory, fake_factory(slot, None))
        .await
        .expect_err("an air-gapped start with a remote provider must fail")
        .to_string();
    assert!(
        err.contains("air-gapped") && err.contains("https://api.anthropic.com"),
        "{err}"
    );
}

/// The production runner against the stand-in at `base`, with a slot that receives its
/// gateway's connection counters once the daemon built it.
pub(crate) fn sandboxed_runner_with_stats(
    cfg: &Config,
    base: String,
) -> (RunnerFactory, Arc<Mutex<Option<Arc<GatewayStats>>>>) {
    let env = move |k: &str| match k {
        "ANTHROPIC_API_KEY" => Some("k".to_owned()),
        "ANTHROPIC_BASE_URL" => Some(base.clone()),
        "ANTHROPIC_MODEL" => Some("m".to_owned()),
        _ => None,
    };
    let stats = Arc::new(Mutex::new(None));
    let factory: RunnerFactory = {
        let cfg = cfg.clone();
        let stats = Arc::clone(&stats);
        Box::new(move |ctx| {
            Box::pin(async move {
                let runner = build_sandboxed_runner(&cfg, &ctx, &env).await?;
                *stats.lock().unwrap() = Some(Arc::clone(runner.gateway().stats()));
                Ok(Arc::new(runner) as Arc<dyn AgentRunner>)
            })
        })
    };
    (factory, stats)
}
