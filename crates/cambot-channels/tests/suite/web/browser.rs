//! The web chat in a real headless Chromium, driven over the DevTools protocol: sign in, send a
//! message, watch the reply stream in, reload and find the same session and history, and fail
//! to open another user's session by editing the URL.

use std::path::PathBuf;
use std::time::Duration;

use cambot_agent::agent_run::RunRequest;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use futures::SinkExt;
use futures::StreamExt;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::support::PASSWORD;
use super::support::start;
use super::support::tokens_in;
use super::support::web_config;

/// The browser, from `CHROMIUM` or the PATH (`scripts/setup/browser.sh` installs Debian's).
/// Missing: a failure under `CAMBOT_REQUIRE_ALL=1`, else a printed skip.
fn chromium(test: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os("CHROMIUM").map(PathBuf::from);
    let found = from_env.filter(|p| p.is_file()).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let reason = "chromium not found (run scripts/setup/browser.sh or set CHROMIUM)";
        if std::env::var("CAMBOT_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{test}: {reason}");
        }
        eprintln!("SKIPPED {test}: {reason}");
    }
    found
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A page in a headless Chromium, over one DevTools WebSocket.
struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    session: String,
    next_id: u64,
}

impl Browser {
    async fn launch(binary: &PathBuf) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Chromium writes its DevTools port and browser path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let mut text = String::new();
        for _ in 0..600 {
            if let Ok(t) = std::fs::read_to_string(&port_file)
                && t.lines().count() >= 2
            {
                text = t;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut lines = text.lines();
        let port = lines.next().expect("chromium did not start");
        let path = lines.next().unwrap();
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        let mut b = Self {
            _child: child,
            _profile: profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = b
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call("Page.enable", json!({})).await;
        b.call("Runtime.enable", json!({})).await;
        b
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .expect("devtools timeout")
                .unwrap()
                .unwrap();
            if let Message::Text(t) = frame {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls a JS predicate until it is true (60 s at most: a stuck page fails, a slow one
    /// does not).
    async fn wait_for(&mut self, what: &str, js: &str) {
        let guarded =
            format!("(() => {{ try {{ return !!({js}); }} catch (e) {{ return false; }} }})()");
        for _ in 0..1200 {
            if self.eval(&guarded).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = self.eval("document.body.innerText").await;
        panic!("browser: {what} never happened; page text: {body}");
    }

    async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }
}

#[tokio::test]
#[ignore = "needs chromium (scripts/setup/browser.sh): run by scripts/test.sh"]
async fn sign_in_chat_stream_reload_and_no_access_to_another_users_session() {
    let test = "web::browser::sign_in_chat_stream_reload";
    let Some(binary) = chromium(test) else { return };
    let runner = ScriptedRunner::new(|req: &RunRequest, prompt: &str| {
        let text = format!(
            "**Hello** from `{}`: got={} <script>window.__xss=1</script>",
            req.group.folder,
            tokens_in(prompt).join(",")
        );
        let mut turn = Turn::reply(text.clone());
        let cut = text.find(':').unwrap();
        turn.deltas = vec![text[..cut].to_owned(), text[cut..].to_owned()];
        turn
    });
    let d = start(runner, web_config()).await;
    d.add_user("default", "alice").await;
    d.add_user("default", "bob").await;
    let (bob, _) = d.login("default", "bob").await;
    let bob_session = d.new_session(&bob).await;
    let res = d
        .post(
            &bob,
            &format!("/api/sessions/{bob_session}/messages"),
            json!({"text": "tok-bob-secret"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    d.wait_replies(&bob, &bob_session, 1).await;

    let mut b = Browser::launch(&binary).await;
    b.navigate(&format!("{}/", d.base)).await;
    b.wait_for("sign-in form", "!document.getElementById('login').hidden")
        .await;
    b.eval(&format!(
        "document.getElementById('login-user').value = 'alice';
         document.getElementById('login-password').value = '{PASSWORD}';
         document.getElementById('login-submit').click(); true"
    ))
    .await;
    b.wait_for(
        "a session opens after sign-in",
        "!document.getElementById('app').hidden && /^#\\/s\\/[0-9a-f]{32}$/.test(location.hash)
         && document.getElementById('status').dataset.state === 'online'
         && !document.getElementById('composer-send').disabled",
    )
    .await;
    let hash = b.eval("location.hash").await;
    let session = hash.as_str().unwrap()["#/s/".len()..].to_owned();
    assert_ne!(session, bob_session);

    // Record whether a reply was ever shown while still streaming.
    b.eval(
        "window.__sawStreaming = false;
         new MutationObserver(() => {
           if (document.querySelector('#messages .msg.assistant.streaming')) window.__sawStreaming = true;
         }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true, attributes: true});
         true",
    )
    .await;
    b.eval(
        "document.getElementById('composer-input').value = 'hi there tok-browser-1';
         document.getElementById('composer-send').click(); true",
    )
    .await;
    b.wait_for(
        "the streamed reply",
        "[...document.querySelectorAll('#messages .msg.assistant[data-reply-id]')]
           .some(m => m.textContent.includes('got=tok-browser-1'))",
    )
    .await;
    assert_eq!(b.eval("window.__sawStreaming").await, json!(true));
    // Markdown rendered; the script in the reply is shown as text, never run.
    assert_eq!(
        b.eval("!!document.querySelector('#messages .msg.assistant strong') && !!document.querySelector('#messages .msg.assistant code')").await,
        json!(true)
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#messages script').length === 0 && window.__xss === undefined && document.getElementById('messages').textContent.includes('<script>')").await,
        json!(true)
    );

    // Reload: same session, same history (the refresh cookie signs the page back in).
    b.call("Page.reload", json!({})).await;
    b.wait_for(
        "the same session after reload",
        &format!(
            "!document.getElementById('app').hidden && location.hash === '#/s/{session}'
             && document.querySelectorAll('#messages .msg').length === 2"
        ),
    )
    .await;
    let texts = b
        .eval("[...document.querySelectorAll('#messages .msg')].map(m => m.textContent)")
        .await;
    assert_eq!(texts[0], "hi there tok-browser-1");
    assert!(texts[1].as_str().unwrap().contains("got=tok-browser-1"));
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('#sessions li[data-session-id=\"{session}\"]') !== null"
        ))
        .await,
        json!(true)
    );

    // Editing the URL to bob's session: not found, nothing of bob's shown, cannot send.
    for reload in [false, true] {
        // Marks this document, so the wait below cannot pass on the page before the reload.
        b.eval("window.__before = 1; true").await;
        b.navigate(&format!("{}/#/s/{bob_session}", d.base)).await;
        if reload {
            b.call("Page.reload", json!({})).await;
        }
        let fresh = if reload {
            "window.__before === undefined && "
        } else {
            ""
        };
        b.wait_for(
            "not found for another user's session",
            &format!("{fresh}!document.getElementById('app').hidden && !document.getElementById('notfound').hidden"),
        )
        .await;
        let seen = b
            .eval(
                "({secret: document.body.innerText.includes('tok-bob-secret'),
                   messages: document.querySelectorAll('#messages .msg').length,
                   composer: !document.getElementById('composer-send').disabled,
                   hash: location.hash})",
            )
            .await;
        assert_eq!(
            seen,
            json!({"secret": false, "messages": 0, "composer": false, "hash": format!("#/s/{bob_session}")}),
            "reload={reload}"
        );
    }
    let h = d.history(&bob, &bob_session).await;
    assert_eq!(
        h["items"].as_array().unwrap().len(),
        2,
        "bob's session untouched"
    );
    d.daemon_shutdown().await;
}
