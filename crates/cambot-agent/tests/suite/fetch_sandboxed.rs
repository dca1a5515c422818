//! The fetch tool from inside the real bwrap sandbox, through the daemon's production runner:
//! the operator's literal opt-in is fetched, forbidden addresses (metadata, a name resolving to
//! loopback, a non-canonical spelling of the opted-in address, a redirect to a port that is not
//! opted in) are refused with their reason, and nothing but the opted-in port is connected to.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cambot_testkit::http_target::Answer;
use cambot_testkit::http_target::HttpTarget;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::ToolCall;
use serde_json::Value;
use serde_json::json;

use super::airgap::sandboxed_runner_with_stats;
use super::sandboxed::sandbox_tools;
use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_sandboxed_agent_fetches_the_opt_in_and_nothing_else() {
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let trap = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"trap"))
        .await
        .unwrap();
    let trap_port = trap.port();
    let target = HttpTarget::start(move |path| match path {
        "/ok" => Answer::ok(
            "text/plain",
            &[("set-cookie", "s=secret")],
            b"opted-in body",
        ),
        _ => Answer::redirect(&format!("http://127.0.0.1:{trap_port}/")),
    })
    .await
    .unwrap();
    let p = target.port();
    let urls = [
        format!("http://127.0.0.1:{p}/ok"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://localhost:{p}/ok"),
        format!("http://2130706433:{p}/ok"),
        format!("http://127.0.0.1:{p}/elsewhere"),
    ];
    let standin = Standin::anthropic()
        .reply(Script::tool_calls(
            urls.iter()
                .map(|u| ToolCall::new("fetch", json!({ "url": u }))),
        ))
        .reply(Script::text("fetched"))
        .start_tcp()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
            [model]
            fetch_allow_hosts = ["http://127.0.0.1:{p}", "http://localhost:{p}"]
            fetch_timeout_secs = 10
            [sandbox]
            backend = "bwrap"
            runner_path = "{}"
            init_path = "{}"
            [router]
            idle_timeout_ms = 300
            "#,
            runner_bin.display(),
            init_bin.display()
        ),
    );
    let (factory, stats) = sandboxed_runner_with_stats(&cfg, standin.root_url());
    let (daemon, channel) = start_with_main(&cfg, factory).await;
    channel
        .inject(&tenant(), "fake:main", "Alice", "fetch these")
        .await
        .unwrap();
    let sent = channel.wait_sent(1, Duration::from_secs(60)).await;
    assert_eq!(sent[0].text, "fetched");

    let body = standin.request(1).unwrap().body;
    let results: Vec<String> = body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let refused = "refused by the host (403 forbidden): fetch refused: ";
    assert_eq!(
        results[0],
        "status 200\ncontent-length: 13\ncontent-type: text/plain\n\nopted-in body"
    );
    assert_eq!(
        results[1],
        format!("{refused}169.254.169.254 is a link-local address")
    );
    assert!(
        results[2].starts_with(&format!("{refused}localhost resolves to 127.0.0.1")),
        "{}",
        results[2]
    );
    assert_eq!(
        results[3],
        format!("{refused}2130706433 is a non-canonical spelling of the address 127.0.0.1")
    );
    assert!(
        results[4].starts_with(&format!(
            "{refused}redirect 1 to http://127.0.0.1:{trap_port}/: 127.0.0.1 is a loopback address"
        )),
        "{}",
        results[4]
    );
    assert_eq!(target.paths(), ["/ok", "/elsewhere"]);
    assert_eq!(trap.accepted(), 0);
    let stats = stats.lock().unwrap().clone().unwrap();
    assert_eq!(stats.non_local(), 0);
    daemon.shutdown().await;
}
