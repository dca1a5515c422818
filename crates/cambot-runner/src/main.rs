//! `cambot-runner`: the agent inside a cambot sandbox. Reads JSON Lines on stdin, writes JSON
//! Lines on stdout, logs to stderr. Exit codes: 0 after `close` or end of input, 1 when the run
//! failed (an `error` event was sent), 2 when input ended before `start`.
//!
//! Environment: `CAMBOT_HOST_SOCKET` (default `/run/cambot/host.sock`), `CAMBOT_WORKSPACE`
//! (default `/workspace`), `RUST_LOG` (default `info`), `CAMBOT_LANDLOCK_RW` (set by the sandbox
//! plan: confine this process with Landlock, writable only beneath these `:`-separated paths).
#![forbid(unsafe_code)]

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

fn main() -> ExitCode {
    // First, before any input is read: the Landlock confinement the sandbox plan asked for.
    let confinement = confine::confine_from_env(|k| std::env::var(k).ok());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match confinement {
        Confinement::NotRequested | Confinement::Applied(RulesetStatus::FullyEnforced) => {}
        Confinement::Applied(status) => {
            tracing::warn!(?status, "Landlock is only partly enforced by this kernel");
        }
        Confinement::Unavailable(reason) => {
            tracing::warn!(reason = %reason, "Landlock is unavailable; running without it");
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
