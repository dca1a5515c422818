//! A PDF uploaded through the web chat (real HTTP on loopback) is read by the agent with
//! `read_document` inside its bwrap sandbox and quoted in the reply (wire-exact stand-in
//! model). The extractor reports who it was: a child of the runner in the sandbox's pid
//! namespace, as the sandbox uid, never this process.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::daemon::ChannelFactory;
use cambot_agent::daemon::Daemon;
use cambot_agent::production::production_runner;
use cambot_channels::Channel;
use cambot_channels::WebChannel;
use cambot_channels::WebConfig;
use cambot_channels::web::passwords::hash_password;
use cambot_protocol::TenantId;
use cambot_testkit::documents as corpus;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::ToolCall;
use serde_json::Value;
use serde_json::json;

use super::cross_tenant_world::tool_results;
use super::sandboxed::sandbox_tools;
use super::support::config;

const CANARY: &str = "QUARTERLY-CANARY revenue grew by 42 percent";
const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_pdf_uploaded_in_the_web_chat_is_read_in_the_sandbox_and_quoted() {
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let standin = Standin::anthropic().start_tcp().await.unwrap();
    let toml_text = format!(
        "[sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n\
         timeout_secs = 120\nidle_timeout_secs = 60\n[router]\nidle_timeout_ms = 300\n\
         [uploads]\nmax_file_mb = 1\nmax_group_mb = 3\n",
        runner_bin.display(),
        init_bin.display(),
    );
    let mut cfg = config(dir.path(), &toml_text);
    cfg.channels.cli.enabled = false;
    let web_cfg = WebConfig {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        ..WebConfig::default()
    };
    // The daemon opens the vault (which seals the web signing keys) when web is on.
    cfg.channels.web = web_cfg.clone();
    let env: cambot_agent::production::EnvLookup = {
        let base = standin.root_url();
        Arc::new(move |k: &str| match k {
            "ANTHROPIC_API_KEY" => Some("sk-ant-test-0123456789".to_owned()),
            "ANTHROPIC_BASE_URL" => Some(base.clone()),
            "ANTHROPIC_MODEL" => Some("claude-test".to_owned()),
            _ => None,
        })
    };
    let slot: Arc<Mutex<Option<Arc<WebChannel>>>> = Arc::new(Mutex::new(None));
    let factory: ChannelFactory = {
        let slot = Arc::clone(&slot);
        Box::new(move |opts| {
            Box::pin(async move {
                let web = Arc::new(WebChannel::new(opts, &web_cfg)?);
                web.connect().await?;
                *slot.lock().unwrap() = Some(Arc::clone(&web));
                Ok(vec![web as Arc<dyn Channel>])
            })
        })
    };
    let daemon = Daemon::start_with(&cfg, production_runner(&cfg, env), factory)
        .await
        .unwrap();
    let web = slot.lock().unwrap().clone().unwrap();
    let base = format!("http://{}", web.local_addr().unwrap());
    let tenant = TenantId::default_tenant();
    let hash = hash_password(PASSWORD).unwrap();
    assert!(
        daemon
            .router()
            .store()
            .add_user(&tenant, "alice", &hash)
            .await
            .unwrap()
    );
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"tenant": "default", "user": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let session: Value = http
        .post(format!("{base}/api/sessions"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = session["id"].as_str().unwrap().to_owned();

    // The upload: real HTTP, the declared type in Content-Type, a name with a control character.
    let pdf = corpus::pdf_pages(&[CANARY, "second page text"]);
    let up = http
        .post(format!(
            "{base}/api/sessions/{sid}/uploads?name=Quarterly%0Areport.pdf"
        ))
        .bearer_auth(&token)
        .header("content-type", "application/pdf")
        .body(pdf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    let info: Value = up.json().await.unwrap();
    let id = info["id"].as_str().unwrap().to_owned();
    let path = info["path"].as_str().unwrap().to_owned();
    assert_eq!(path, format!("/workspace/uploads/{id}/file.pdf"));
    assert_eq!(info["type"], "application/pdf");
    assert_eq!(info["name"], "Quarterlyreport.pdf");
    let row = daemon
        .router()
        .store()
        .web_session(&tenant, "alice", &sid)
        .await
        .unwrap()
        .unwrap();
    let layout = daemon.layout().clone();
    let stored = layout.uploads_dir(&tenant, &row.folder).join(&id);
    assert_eq!(std::fs::read(stored.join("file.pdf")).unwrap(), pdf);
    assert!(
        std::fs::read_to_string(stored.join("upload.toml"))
            .unwrap()
            .contains("original_name = \"Quarterlyreport.pdf\"")
    );

    // Over the per-file limit: a precise refusal, nothing stored.
    let big = http
        .post(format!("{base}/api/sessions/{sid}/uploads?name=big.txt"))
        .bearer_auth(&token)
        .body(vec![b'a'; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let why: Value = big.json().await.unwrap();
    assert!(
        why["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 1.0 MiB per file"),
        "{why}"
    );
    assert_eq!(
        std::fs::read_dir(layout.uploads_dir(&tenant, &row.folder))
            .unwrap()
            .count(),
        1
    );

    // The message names the attachment; the model reads it and quotes the tool's text.
    standin.push(Script::tool_calls([ToolCall::new(
        "read_document",
        json!({"path": path, "page": 1}),
    )
    .id("doc")]));
    standin.push(Script::quote_tool_result(4000));
    let sent = http
        .post(format!("{base}/api/sessions/{sid}/messages"))
        .bearer_auth(&token)
        .json(&json!({"text": "What does the report say?", "attachments": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let mut reply = String::new();
    for _ in 0..2400 {
        let h: Value = http
            .get(format!("{base}/api/sessions/{sid}/history"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(r) = h["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["role"] == "assistant")
        {
            reply = r["text"].as_str().unwrap().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reply.starts_with("quote: "), "no reply: {reply:?}");
    assert!(reply.contains(CANARY), "{reply}");

    // The agent saw the attachment's path and sniffed type under the message.
    let first = standin.request(0).unwrap().body.to_string();
    assert!(
        first.contains(&format!(
            "[attachment: {path} — application/pdf (pdf; read it with read_document)"
        )),
        "{first}"
    );
    assert!(
        first.contains("sent as &quot;Quarterlyreport.pdf&quot;"),
        "{first}"
    );
    // The tool's answer: page 1 only, and the extractor's own report of where it ran.
    let r = tool_results(&standin.request(1).unwrap().body);
    let doc = &r["doc"];
    assert!(
        doc.contains(CANARY) && !doc.contains("second page text"),
        "{doc}"
    );
    let marker = doc
        .lines()
        .find_map(|l| l.strip_prefix("[parsed by the extractor child process: pid "))
        .unwrap_or_else(|| panic!("no provenance line: {doc}"));
    let (pid, rest) = marker.split_once(", uid ").unwrap();
    let (uid, ns) = rest.split_once(", ").unwrap();
    let ns = ns.trim_end_matches(']');
    let pid: u32 = pid.parse().unwrap();
    let uid: u32 = uid.parse().unwrap();
    let host_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert!(ns.starts_with("pid:["), "{marker}");
    assert_ne!(
        ns,
        host_ns.to_string_lossy(),
        "the extractor ran in the host's pid namespace"
    );
    assert_eq!(uid, cfg.sandbox.sandbox_uid, "the extractor ran as {uid}");
    // In a fresh pid namespace: bwrap's init, the shim, the runner, then the extractor.
    assert!(
        pid < 100,
        "pid {pid} is not from the sandbox's own namespace"
    );
    daemon.shutdown().await;
}
