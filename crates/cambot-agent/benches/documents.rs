//! Document extraction sandboxed vs direct, in one run: a generated 100-page PDF and a 1-page
//! PDF through the real `extract_document` path (bwrap one-shot run of the group's plan,
//! tightened, staging copy included) and through the same extractor run directly on the host
//! (`cambot-runner extract`, which runs poppler's `pdftotext`), plus bare `pdftotext`.
//! Interleaved sample by sample; prints each variant's p50 per round and overall, the ratio
//! and the fixed cost per document (sandboxed 1 page minus direct 1 page).
//!
//! `cargo build --release --bins && cargo bench -p cambot-agent --bench documents`
//! (env: BENCH_ROUNDS, default 5; BENCH_RUNS per round, default 20; needs root and bwrap).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;
use cambot_agent::config::Config;
use cambot_agent::documents::DocumentJob;
use cambot_agent::documents::extract_document;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_protocol::documents::DocKind;
use cambot_protocol::documents::ExtractArgs;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::PlanInput;
use cambot_testkit::documents as corpus;

fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.parent())
        .context("no target dir")?;
    for profile in ["release", "debug"] {
        let p = target.join(profile).join(name);
        if p.is_file() {
            if profile == "debug" {
                eprintln!(
                    "note: using the debug build of {name}: run `cargo build --release --bins` for real figures"
                );
            }
            return Ok(p);
        }
    }
    bail!("{name} is not built: run `cargo build --release --bins` first")
}

fn p50(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// `cambot-runner extract` directly on the host, with the arguments the sandboxed run gets.
fn direct(runner: &Path, file: &Path, cfg: &Config) -> usize {
    let args = ExtractArgs {
        kind: DocKind::Pdf,
        max_pages: cfg.documents.max_pages,
        max_output_bytes: cfg.documents.max_output_bytes,
        memory_bytes: cfg.documents.memory_mb << 20,
        cpu_secs: cfg.documents.cpu_secs,
        path: file.to_string_lossy().into_owned(),
    };
    let out = std::process::Command::new(runner)
        .args(args.to_argv())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.len()
}

fn pdftotext(file: &Path) -> usize {
    let out = std::process::Command::new("pdftotext")
        .args(["-l", "501", "-enc", "UTF-8"])
        .arg(file)
        .arg("-")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let runner = bin("cambot-runner")?;
    let init = bin("cambot-sandbox-init")?;
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let runs = env_usize("BENCH_RUNS", 20);
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let toml_text = format!(
        "[sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n",
        runner.display(),
        init.display()
    );
    let cfg = Config::resolve(toml::from_str(&toml_text)?, None, Some(dir.path()), &|k| {
        (k == "TZ").then(|| "UTC".to_owned())
    })?;
    let backend = cambot_sandbox::select_backend(&cfg.sandbox).await?;
    let layout = DataLayout::new(&cfg.data_dir);
    let pages: Vec<String> = (1..=100)
        .map(|i| {
            (0..40)
                .map(|l| format!("page {i} line {l} the quick brown fox jumps over the lazy dog"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
    let big = dir.path().join("100.pdf");
    std::fs::write(&big, corpus::pdf_pages(&refs))?;
    let one = dir.path().join("1.pdf");
    std::fs::write(&one, corpus::pdf_pages(&refs[..1]))?;
    let allowlist = MountAllowlist::none("no extra mounts in this bench");

    let sandboxed = |file: PathBuf| {
        let plan = PlanInput::new(
            layout.clone(),
            TenantId::default_tenant(),
            GroupFolder::new("main").unwrap(),
            RunId::from_bytes(rand::random()),
        );
        let (backend, cfg, allowlist) = (&backend, &cfg, &allowlist);
        async move {
            let t = Instant::now();
            let r = extract_document(
                backend.as_ref(),
                &cfg.sandbox,
                allowlist,
                &cfg.documents,
                DocumentJob {
                    plan,
                    file,
                    declared: Some(DocKind::Pdf),
                },
            )
            .await
            .unwrap();
            (t.elapsed().as_secs_f64() * 1000.0, r.text.len())
        }
    };
    // Warm-up and a check that all paths agree on the size of the text.
    let (_, sb_len) = sandboxed(big.clone()).await;
    let d_len = direct(&runner, &big, &cfg);
    println!(
        "100-page PDF: {} bytes; text {sb_len} bytes sandboxed, {d_len} direct, {} pdftotext",
        std::fs::metadata(&big)?.len(),
        pdftotext(&big)
    );
    assert_eq!(sb_len, d_len);

    let names = [
        "sandboxed 100 p",
        "direct 100 p",
        "pdftotext 100 p",
        "sandboxed 1 p",
        "direct 1 p",
    ];
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 1..=rounds {
        let mut r: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for _ in 0..runs {
            r[0].push(sandboxed(big.clone()).await.0);
            let t = Instant::now();
            direct(&runner, &big, &cfg);
            r[1].push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            pdftotext(&big);
            r[2].push(t.elapsed().as_secs_f64() * 1000.0);
            r[3].push(sandboxed(one.clone()).await.0);
            let t = Instant::now();
            direct(&runner, &one, &cfg);
            r[4].push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let line: Vec<String> = names
            .iter()
            .zip(&r)
            .map(|(n, v)| format!("{n} {:.2}", p50(v)))
            .collect();
        println!("round {round}/{rounds} p50 ms: {}", line.join(", "));
        for (a, v) in all.iter_mut().zip(r) {
            a.extend(v);
        }
    }
    let m: Vec<f64> = all.iter().map(|v| p50(v)).collect();
    println!("\noverall p50 over {} samples each:", all[0].len());
    for (n, v) in names.iter().zip(&m) {
        println!("  {n:<16} {v:8.2} ms");
    }
    println!(
        "ratio sandboxed / direct, 100 pages: {:.2} (goal <= 1.2); vs bare pdftotext {:.2}",
        m[0] / m[1],
        m[0] / m[2]
    );
    println!(
        "fixed cost per document (sandboxed 1 p - direct 1 p): {:.2} ms (goal <= 30 ms)",
        m[3] - m[4]
    );
    Ok(())
}
