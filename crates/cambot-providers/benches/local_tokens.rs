//! Local-model tokens/second: `llama-server` called directly, then the same request through
//! cambot's `HttpProvider` (OpenAI dialect), in the same run against the same server.
//!
//! `cargo bench -p cambot-providers --bench local_tokens` after sourcing
//! `scripts/setup/local-model.sh`. Both paths send byte-identical request bodies (captured
//! from the provider by a stand-in) at temperature 0, so they generate the same tokens.
//! tokens/s = completion tokens / wall time from sending the request to the end of the stream.
//! On a shared machine the load changes by the minute, so the runs are paired (direct first,
//! then through cambot, back to back) and the ratio is taken per pair; the client's own CPU
//! time per call (this process, `getrusage`) shows cambot's overhead without the noise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::time::Duration;
use std::time::Instant;

use cambot_providers::Dialect;
use cambot_providers::HttpProvider;
use cambot_providers::Message;
use cambot_providers::ModelRequest;
use cambot_providers::Provider;
use cambot_providers::ProviderConfig;
use cambot_providers::StreamEvent;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::llama::ALIAS;
use cambot_testkit::standin::llama::LlamaFiles;
use cambot_testkit::standin::llama::LlamaServer;
use futures::StreamExt;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

const PAIRS: usize = 5;
const MAX_TOKENS: u32 = 128;

struct Sample {
    tokens: u64,
    elapsed: Duration,
    server_tps: Option<f64>,
    /// CPU time this process spent on the call (user + system).
    client_cpu: Duration,
}

/// User + system CPU time of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl Sample {
    fn tps(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64()
    }
}

fn request() -> ModelRequest {
    ModelRequest {
        messages: vec![Message::user(
            "Write a long story about a robot who learns to paint. Use many details.",
        )],
        max_tokens: Some(MAX_TOKENS),
        temperature: Some(0.0),
        ..ModelRequest::default()
    }
}

fn config(base_url: &str) -> ProviderConfig {
    let mut c = ProviderConfig::new("local", Dialect::OpenAi)
        .with_base_url(base_url)
        .with_model(ALIAS);
    c.auth = Some(cambot_providers::AuthStyle::None);
    c.max_retries = 0;
    c
}

/// The exact body cambot sends, captured by a stand-in.
async fn captured_body() -> hyper::body::Bytes {
    let standin = Standin::openai()
        .reply(Script::text("x"))
        .start_tcp()
        .await
        .unwrap();
    let p = HttpProvider::direct(config(&standin.base_url()), None).unwrap();
    let mut s = p.stream(request());
    while s.next().await.is_some() {}
    standin.request(0).unwrap().raw_body
}

/// One request straight to llama-server over its socket: raw hyper, no decoding beyond
/// finding the usage and timings in the last chunks.
async fn direct(server: &LlamaServer, body: &hyper::body::Bytes) -> Sample {
    let cpu = process_cpu();
    let started = Instant::now();
    let stream = tokio::net::UnixStream::connect(server.socket())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post("/chat/completions")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Full::new(body.clone()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            all.extend_from_slice(&data);
        }
    }
    let elapsed = started.elapsed();
    driver.abort();
    let client_cpu = process_cpu() - cpu;
    let text = String::from_utf8(all).unwrap();
    let mut tokens = 0;
    let mut server_tps = None;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
            continue;
        };
        if let Some(n) = v
            .pointer("/usage/completion_tokens")
            .and_then(|n| n.as_u64())
        {
            tokens = n;
        }
        if let Some(t) = v
            .pointer("/timings/predicted_per_second")
            .and_then(|t| t.as_f64())
        {
            server_tps = Some(t);
        }
    }
    Sample {
        tokens,
        elapsed,
        server_tps,
        client_cpu,
    }
}

async fn through_cambot(p: &HttpProvider) -> Sample {
    let cpu = process_cpu();
    let started = Instant::now();
    let mut s = p.stream(request());
    let mut tokens = 0;
    while let Some(ev) = s.next().await {
        if let StreamEvent::Usage(u) = ev.unwrap() {
            tokens = u.output_tokens;
        }
    }
    let elapsed = started.elapsed();
    Sample {
        tokens,
        elapsed,
        server_tps: None,
        client_cpu: process_cpu() - cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn line(name: &str, i: usize, s: &Sample) {
    let server = s
        .server_tps
        .map(|t| format!(", server-reported generation {t:.1} tok/s"))
        .unwrap_or_default();
    println!(
        "  pair {} {name}: {} tokens in {:.3} s = {:.1} tok/s, client CPU {:.2} ms{server}",
        i + 1,
        s.tokens,
        s.elapsed.as_secs_f64(),
        s.tps(),
        s.client_cpu.as_secs_f64() * 1000.0
    );
}

fn main() {
    let files = match LlamaFiles::from_env() {
        Ok(f) => f,
        Err(reason) => {
            if std::env::var("CAMBOT_REQUIRE_ALL").is_ok_and(|v| v == "1") {
                eprintln!("local_tokens: {reason} (CAMBOT_REQUIRE_ALL=1 forbids skipping)");
                std::process::exit(1);
            }
            eprintln!("SKIPPED local_tokens: {reason}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = LlamaServer::start(&files).await.unwrap();
        let body = captured_body().await;
        let provider = HttpProvider::direct(config(&server.base_url()), None).unwrap();
        // Warm-up: first-request costs (page cache, slot setup) hit neither measurement.
        direct(&server, &body).await;
        through_cambot(&provider).await;

        println!(
            "local_tokens: SmolLM2-135M-Instruct via llama-server, {MAX_TOKENS} max tokens, \
             temperature 0, {PAIRS} pairs (direct first, then through cambot)"
        );
        let mut direct_samples = Vec::new();
        let mut cambot_samples = Vec::new();
        for i in 0..PAIRS {
            let d = direct(&server, &body).await;
            line("direct", i, &d);
            let c = through_cambot(&provider).await;
            line("cambot", i, &c);
            if d.tokens != c.tokens {
                println!("  note: token counts differ ({} vs {})", d.tokens, c.tokens);
            }
            direct_samples.push(d);
            cambot_samples.push(c);
        }
        let d = median(direct_samples.iter().map(Sample::tps).collect());
        let c = median(cambot_samples.iter().map(Sample::tps).collect());
        let pair_ratio = median(
            direct_samples
                .iter()
                .zip(&cambot_samples)
                .map(|(d, c)| c.tps() / d.tps())
                .collect(),
        );
        let cpu = |v: &[Sample]| {
            median(
                v.iter()
                    .map(|s| s.client_cpu.as_secs_f64() * 1000.0)
                    .collect(),
            )
        };
        println!("direct llama-server: {d:.1} tok/s (median)");
        println!("through cambot:      {c:.1} tok/s (median)");
        println!(
            "ratio cambot/direct: {:.1}% of medians, {:.1}% median of pairs (target >= 95%)",
            100.0 * c / d,
            100.0 * pair_ratio
        );
        println!(
            "client CPU per call: direct {:.2} ms, through cambot {:.2} ms (median)",
            cpu(&direct_samples),
            cpu(&cambot_samples)
        );
        server.stop().await.unwrap();
    });
}
