//! `cambot-runner`: the agent inside a cambot sandbox. Reads JSON Lines on stdin, writes JSON
//! Lines on stdout, logs to stderr. (`cambot-runner extract ...` is the document extractor
//! instead: see `cambot_runner::documents` and `cambot_protocol::documents`.) Exit codes: 0 after `close` or end of input, 1 when the run
//! failed (an `error` event was sent), 2 when input ended before `start`, 3 when the
//! self-protection below could not be applied (an `error` event was sent, nothing was read).
//!
//! Environment: `CAMBOT_HOST_SOCKET` (default `/run/cambot/host.sock`), `CAMBOT_WORKSPACE`
//! (default `/workspace`), `RUST_LOG` (default `info`), `CAMBOT_LANDLOCK_RW` (set by the sandbox
//! plan: confine this process with Landlock, writable only beneath these `:`-separated paths),
//! `CAMBOT_STDIO_FDS` (`in,out,err`: take the protocol's stdin and stdout and the log from these
//! descriptors instead of 0, 1 and 2, so that bwrap's pid 1, which keeps 0, 1 and 2, holds
//! nothing of the run's; the backend sets it when it hands them over that way).
//!
//! Self-protection, before anything is read: the process becomes non-dumpable (its tools, same
//! uid, cannot take its stdout or touch its memory through `/proc`), adopts the handed-over
//! stdio, marks every other inherited descriptor close-on-exec, then applies the Landlock
//! ruleset of `CAMBOT_LANDLOCK_RW` itself (no init shim involved). Decision: when the plan asks
//! for Landlock it is required. The host asks only when its kernel has Landlock, so a ruleset
//! that cannot be enforced at all (or cannot be built) refuses the run with exit 3; a ruleset
//! only partly enforced (an older Landlock ABI: write confinement holds, newer rights do not)
//! is a warning. Without the variable (Landlock off in the config, or a kernel without it) the
//! runner runs unconfined by Landlock and says nothing: that was the operator's or kernel's
//! call, reported by `cambot doctor`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use cambot_protocol::RunnerToHost;
use cambot_providers::HttpProvider;
use cambot_providers::ProviderConfig;
use cambot_runner::RunnerEnv;
use cambot_runner::confine;
use cambot_runner::confine::Confinement;
use cambot_runner::confine::RulesetStatus;
use cambot_runner::driver;
use cambot_runner::io;

/// Exit code when the self-protection could not be applied.
const EXIT_UNPROTECTED: u8 = 3;

fn main() -> ExitCode {
    // `cambot-runner extract ...`: the document extractor (see `cambot_runner::documents`). It
    // writes its status line as the last line of stderr, so no logger is set up for it.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(cambot_protocol::documents::EXTRACT_SUBCOMMAND) {
        if let Err(e) = confine::protect_self(|k| std::env::var(k).ok()) {
            let line = cambot_protocol::documents::StatusLine {
                status: cambot_protocol::documents::ExtractStatus::Internal,
                format: None,
                parts: None,
                truncated: false,
                detail: Some(e),
                process: None,
            };
            let _ = std::io::stderr().write_all(line.to_line().as_bytes());
            return ExitCode::from(line.status.exit_code());
        }
        return ExitCode::from(cambot_runner::documents::main(&args[1..]));
    }
    // First, before any input is read or any thread or child exists: no access to this
    // process through /proc, then the Landlock confinement the sandbox plan asked for.
    let protected = confine::protect_self(|k| std::env::var(k).ok());
    let confinement = confine::confine_from_env(|k| std::env::var(k).ok());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = protected {
        return refuse(&e);
    }
    match confinement {
        Confinement::NotRequested | Confinement::Applied(RulesetStatus::FullyEnforced) => {}
        Confinement::Applied(status) => {
            tracing::warn!(?status, "Landlock is only partly enforced by this kernel");
        }
        Confinement::Unavailable(reason) => {
            return refuse(&format!(
                "the sandbox plan requires Landlock but it cannot be enforced: {reason}"
            ));
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run());
    // The stdin reader may be parked in a blocking read (tokio reads stdin on a blocking
    // thread); waiting for it would keep the run alive until the host closes our stdin.
    runtime.shutdown_background();
    code
}

/// Ends the run before it reads anything: one `error` line for the host, one log line.
fn refuse(message: &str) -> ExitCode {
    tracing::error!("{message}; refusing to start");
    let line = RunnerToHost::Error {
        message: format!("runner: {message}"),
        retryable: false,
    }
    .to_line();
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    ExitCode::from(EXIT_UNPROTECTED)
}

async fn run() -> ExitCode {
    let env = RunnerEnv::from_lookup(|k| std::env::var(k).ok());
    let (mut inputs, _reader) = io::spawn_reader(tokio::io::BufReader::new(tokio::io::stdin()));
    let (events, writer) = io::spawn_writer(tokio::io::stdout());
    let code = drive(env, &mut inputs, &events).await;
    // Everything queued reaches stdout before the process exits.
    drop(events);
    writer.join().await;
    code
}

async fn drive(
    env: RunnerEnv,
    inputs: &mut tokio::sync::mpsc::Receiver<io::Inbound>,
    events: &tokio::sync::mpsc::Sender<RunnerToHost>,
) -> ExitCode {
    let Some(start) = driver::wait_for_start(inputs, events).await else {
        tracing::error!("stdin ended before a start line");
        let _ = events
            .send(RunnerToHost::Error {
                message: "protocol: input ended before start".into(),
                retryable: false,
            })
            .await;
        return ExitCode::from(2);
    };
    let provider = ProviderConfig::for_model_choice(&start.model)
        .and_then(|config| HttpProvider::via_gateway(config, &env.host_socket, &start.host_token));
    let provider = match provider {
        Ok(p) => p,
        Err(e) => {
            let _ = events
                .send(RunnerToHost::Error {
                    message: format!("model configuration: {e}"),
                    retryable: false,
                })
                .await;
            return ExitCode::from(1);
        }
    };
    let agent = match driver::build_agent(provider, start, env, events.clone()) {
        Ok(a) => a,
        Err(e) => {
            let _ = events
                .send(RunnerToHost::Error {
                    message: e.to_string(),
                    retryable: e.retryable(),
                })
                .await;
            return ExitCode::from(1);
        }
    };
    match driver::run(agent, inputs, events).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
