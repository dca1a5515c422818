//! Server-side request forgery through the agent's real fetch tool: the runner binary's `fetch`
//! tool, its run socket, the real gateway. One scripted model turn makes every call; each
//! forbidden URL is refused with its one-line reason before any connection is opened (two
//! loopback servers count their connections, the gateway counts non-loopback ones), and the
//! operator's literal opt-in (`http://127.0.0.1:<port>`) is fetched.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cambot_gateway::FetchAllow;
use cambot_gateway::FetchPolicy;
use cambot_gateway::FetchResolver;
use cambot_gateway::GatewayPolicy;
use cambot_gateway::SystemResolver;
use cambot_protocol::RunnerToHost;
use cambot_testkit::http_target::Answer;
use cambot_testkit::http_target::HttpTarget;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::ToolCall;
use futures::future::BoxFuture;
use serde_json::Value;
use serde_json::json;

use super::support::*;

/// Plays rebinding names (answer sets mixing a public address with a forbidden one) and
/// counts lookups; every other name goes to the system resolver (`localhost` really resolves).
#[derive(Default)]
struct Rebinding {
    lookups: Mutex<BTreeMap<String, usize>>,
}

impl FetchResolver for Rebinding {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        *self
            .lookups
            .lock()
            .unwrap()
            .entry(host.to_owned())
            .or_default() += 1;
        let fixed: Option<&[&str]> = match host {
            "rebind.test" => Some(&["93.184.216.34", "127.0.0.1"]),
            "mixed6.test" => Some(&["2606:4700::1111", "fd00::1"]),
            "metadata.test" => Some(&["169.254.169.254"]),
            _ => None,
        };
        match fixed {
            Some(ips) => {
                let addrs = ips
                    .iter()
                    .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
                    .collect();
                Box::pin(async move { Ok(addrs) })
            }
            None => SystemResolver.lookup(host, port),
        }
    }
}

const MAX_BYTES: usize = 64 * 1024;

fn target_routes(port: u16, trap: u16) -> impl Fn(&str) -> Answer + Send + Sync + 'static {
    move |path: &str| {
        let hop = |p: &str| p.parse::<u32>().ok();
        match path {
            "/ok" => Answer::ok(
                "text/plain; charset=utf-8",
                &[
                    ("etag", "\"v1\""),
                    ("last-modified", "Wed, 01 Jan 2026 00:00:00 GMT"),
                    ("set-cookie", "session=host-secret-cookie"),
                    ("x-internal-token", "host-secret-token"),
                    ("server", "internal-build-42"),
                ],
                b"hello from the opted-in server",
            ),
            "/to-metadata" => Answer::redirect("http://169.254.169.254/latest/meta-data/"),
            "/to-trap" => Answer::redirect(&format!("http://127.0.0.1:{trap}/")),
            "/to-localhost" => Answer::redirect(&format!("http://localhost:{port}/ok")),
            "/to-hex" => Answer::redirect(&format!("//0x7f.1:{port}/ok")),
            "/to-ftp" => Answer::redirect("ftp://127.0.0.1/"),
            "/big" => Answer::ok("text/plain", &[], &vec![b'x'; 16 * MAX_BYTES]),
            "/slow" => Answer::stalled_body(1000, b"first bytes"),
            p => match p.strip_prefix("/hop/").and_then(hop) {
                Some(0) => Answer::ok("text/plain", &[], b"end of chain"),
                Some(n) => Answer::redirect(&format!("/hop/{}", n - 1)),
                None => match p.strip_prefix("/loop/").and_then(hop) {
                    Some(n) => Answer::redirect(&format!("/loop/{}", n + 1)),
                    None => Answer::not_found(),
                },
            },
        }
    }
}

/// The refused URLs with the reason each must carry (after `fetch refused: `).
fn forbidden(p: u16, trap: u16) -> Vec<(String, String)> {
    let o = format!("http://127.0.0.1:{p}");
    [
        // Spellings the url crate turns into 127.0.0.1 (the allowed address and port).
        (format!("http://2130706433:{p}/ok"), "2130706433 is a non-canonical spelling of the address 127.0.0.1".to_owned()),
        (format!("http://0x7f.1:{p}/ok"), "0x7f.1 is a non-canonical spelling of the address 127.0.0.1".into()),
        (format!("http://017700000001:{p}/ok"), "017700000001 is a non-canonical spelling of the address 127.0.0.1".into()),
        (format!("http://127.1:{p}/ok"), "127.1 is a non-canonical spelling of the address 127.0.0.1".into()),
        (format!("http://[::ffff:127.0.0.1]:{p}/ok"), "[::ffff:127.0.0.1] is a non-canonical spelling of the address [::ffff:7f00:1]".into()),
        (format!("http://[::ffff:7f00:1]:{p}/ok"), "::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address".into()),
        (format!("http://user:pw@127.0.0.1:{p}/ok"), "URLs with a user or password are not fetched".into()),
        // Address classes.
        ("http://169.254.169.254/latest/meta-data/".into(), "169.254.169.254 is a link-local address".into()),
        ("http://10.0.0.1/".into(), "10.0.0.1 is a private address".into()),
        ("http://172.16.0.1/".into(), "172.16.0.1 is a private address".into()),
        ("http://192.168.1.1/".into(), "192.168.1.1 is a private address".into()),
        ("http://100.64.0.1/".into(), "100.64.0.1 is a shared (carrier-grade NAT) address".into()),
        (format!("http://0.0.0.0:{p}/ok"), "0.0.0.0 is an unspecified address".into()),
        (format!("http://[::1]:{p}/ok"), "::1 is a loopback address".into()),
        ("http://[fc00::1]/".into(), "fc00::1 is a unique-local address".into()),
        ("http://[fe80::1]/".into(), "fe80::1 is a link-local address".into()),
        ("http://[::ffff:10.0.0.1]/".into(), "[::ffff:10.0.0.1] is a non-canonical spelling of the address [::ffff:a00:1]".into()),
        ("http://[::ffff:a00:1]/".into(), "::ffff:10.0.0.1 is an IPv4-mapped form of 10.0.0.1, a private address".into()),
        ("http://[64:ff9b::a9fe:a9fe]/".into(), "64:ff9b::a9fe:a9fe is a NAT64 form of 169.254.169.254, a link-local address".into()),
        ("http://224.0.0.1/".into(), "224.0.0.1 is a multicast address".into()),
        ("http://[ff02::1]/".into(), "ff02::1 is a multicast address".into()),
        // Names: `localhost` is a name entry, and still never reaches loopback.
        (format!("http://localhost:{p}/ok"), "localhost resolves to".into()),
        ("https://localhost/".into(), "localhost resolves to".into()),
        (format!("http://rebind.test:{p}/ok"), "rebind.test resolves to 127.0.0.1, a loopback address".into()),
        ("http://mixed6.test/".into(), "mixed6.test resolves to fd00::1, a unique-local address".into()),
        ("https://metadata.test/".into(), "metadata.test resolves to 169.254.169.254, a link-local address".into()),
        // Scheme, host and port all have to match an entry.
        (format!("http://127.0.0.1:{trap}/"), format!("127.0.0.1 is a loopback address (allowed for this host: {o})")),
        (format!("https://127.0.0.1:{p}/ok"), format!("127.0.0.1 is a loopback address (allowed for this host: {o})")),
        ("http://example.com/".into(), "http://example.com:80 is not in fetch_allow_hosts (allowed for this host: https://example.com:443)".into()),
        ("https://example.com:8443/".into(), "https://example.com:8443 is not in fetch_allow_hosts (allowed for this host: https://example.com:443)".into()),
        ("https://not-listed.example/".into(), "https://not-listed.example:443 is not in fetch_allow_hosts".into()),
        ("file:///etc/passwd".into(), "only http and https URLs are fetched, not file:".into()),
        (format!("gopher://127.0.0.1:{p}/_GET"), "only http and https URLs are fetched, not gopher:".into()),
        // Redirects from the opted-in server, each hop checked like the first.
        (format!("{o}/to-metadata"), "redirect 1 to http://169.254.169.254/latest/meta-data/: 169.254.169.254 is a link-local address".into()),
        (format!("{o}/to-trap"), format!("redirect 1 to http://127.0.0.1:{trap}/: 127.0.0.1 is a loopback address")),
        (format!("{o}/to-localhost"), format!("redirect 1 to http://localhost:{p}/ok: localhost resolves to")),
        (format!("{o}/to-hex"), format!("redirect 1 to //0x7f.1:{p}/ok: 0x7f.1 is a non-canonical spelling")),
        (format!("{o}/to-ftp"), "redirect 1 to ftp://127.0.0.1/: only http and https URLs are fetched, not ftp:".into()),
        (format!("{o}/hop/6"), "more than 5 redirects (the last to /hop/0)".into()),
        (format!("{o}/loop/0"), "more than 5 redirects (the last to /loop/6)".into()),
    ]
    .into_iter()
    .collect()
}

fn results(body: &Value) -> Vec<(String, bool)> {
    let last = body["messages"].as_array().unwrap().last().unwrap();
    last["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| {
            let text = match &b["content"] {
                Value::String(s) => s.clone(),
                other => other
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["text"].as_str())
                    .collect(),
            };
            (text, b["is_error"].as_bool().unwrap_or(false))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forbidden_url_is_refused_before_any_connection_and_the_opt_in_is_fetched() {
    let trap = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"trap"))
        .await
        .unwrap();
    let target = HttpTarget::start_with(|port| target_routes(port, trap.port()))
        .await
        .unwrap();
    let p = target.port();
    let o = format!("http://127.0.0.1:{p}");

    let forbidden = forbidden(p, trap.port());
    let allowed = [
        format!("{o}/ok"),
        format!("{o}/hop/5"),
        format!("{o}/big"),
        format!("{o}/slow"),
    ];
    let urls: Vec<&String> = forbidden.iter().map(|(u, _)| u).chain(&allowed).collect();
    let calls = urls
        .iter()
        .map(|u| ToolCall::new("fetch", json!({ "url": u })));
    let standin = Standin::anthropic()
        .reply(Script::tool_calls(calls))
        .reply(Script::text("done"));
    let policy = GatewayPolicy {
        fetch: FetchPolicy {
            allow: [
                o.as_str(),
                "localhost",
                &format!("http://localhost:{p}"),
                &format!("http://rebind.test:{p}"),
                "http://mixed6.test",
                "metadata.test",
                "example.com",
            ]
            .iter()
            .map(|e| FetchAllow::parse(e).unwrap())
            .collect(),
            max_bytes: MAX_BYTES,
            timeout: Duration::from_secs(2),
        },
        ..GatewayPolicy::standard()
    };
    let resolver = Arc::new(Rebinding::default());
    let host = Host::with_policy(standin, policy, resolver.clone()).await;
    let mut run = host
        .spawn(FOLDER, CHAT, start("fetch them all", None))
        .await;
    assert_eq!(run.next().await, RunnerToHost::Ready);
    let (text, _, _) = run.result().await;
    assert_eq!(text.as_deref(), Some("done"));
    assert_eq!(run.close().await, 0);

    let answers = results(&host.standin.request(1).unwrap().body);
    assert_eq!(answers.len(), urls.len());
    assert!(forbidden.len() >= 25);
    let mut wrong = Vec::new();
    for ((url, reason), (text, is_error)) in forbidden.iter().zip(&answers) {
        let want = format!("refused by the host (403 forbidden): fetch refused: {reason}");
        if !(*is_error && text.starts_with(&want) && !text.contains('\n')) {
            wrong.push(format!("{url}\n  want {want}\n  got  {text}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let [ok, hops, big, slow] = &answers[forbidden.len()..] else {
        panic!("{answers:?}")
    };
    assert!(!ok.1, "{ok:?}");
    assert_eq!(
        ok.0,
        "status 200\ncontent-length: 30\ncontent-type: text/plain; charset=utf-8\netag: \"v1\"\n\
         last-modified: Wed, 01 Jan 2026 00:00:00 GMT\n\nhello from the opted-in server"
    );
    assert!(!hops.1 && hops.0.ends_with("\n\nend of chain"), "{hops:?}");
    assert!(!big.1, "{:?}", &big.0[..200]);
    let (head, body) = big.0.split_once("\n\n").unwrap();
    assert!(
        head.ends_with("\n[body truncated: longer than the host's fetch_max_bytes]"),
        "{head}"
    );
    assert_eq!(body.len(), MAX_BYTES);
    assert!(slow.1, "{slow:?}");
    assert_eq!(
        slow.0,
        "refused by the host (400 bad_request): fetch failed: no complete answer within 2 s \
         (fetch_timeout_secs)"
    );

    // Only the allowed hops reached the opted-in server; nothing reached the trap or left
    // loopback, and each rebinding name was looked up once per fetch.
    let mut served = target.paths();
    served.sort();
    let mut want: Vec<String> = [
        "/ok",
        "/to-metadata",
        "/to-trap",
        "/to-localhost",
        "/to-hex",
        "/to-ftp",
        "/big",
        "/slow",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain((1..=6).map(|n| format!("/hop/{n}")))
    .chain((0..=5).map(|n| format!("/hop/{n}")))
    .chain((0..=5).map(|n| format!("/loop/{n}")))
    .collect();
    want.sort();
    assert_eq!(served, want);
    assert_eq!(target.accepted(), want.len());
    assert_eq!(trap.accepted(), 0);
    let stats = host.gateway.stats();
    assert_eq!(stats.non_local(), 0);
    assert_eq!(
        stats.refused_by_policy.load(Ordering::Relaxed),
        forbidden.len() as u64
    );
    let lookups = resolver.lookups.lock().unwrap().clone();
    assert_eq!(lookups.get("rebind.test"), Some(&1));
    assert_eq!(lookups.get("mixed6.test"), Some(&1));
    assert_eq!(lookups.get("metadata.test"), Some(&1));
    assert_eq!(lookups.get("localhost"), Some(&3), "{lookups:?}");
    assert_eq!(
        lookups.get("example.com"),
        None,
        "an unlisted port is refused unresolved"
    );
}
