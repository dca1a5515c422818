//! The production [`AgentRunner`]: every run is `cambot-runner` inside a sandbox.
//!
//! Per run: a plan from `cambot-sandbox` (mounts of the run's group only, no network, dropped
//! uid, limits), a run directory `<data>/runs/<run-id>/` holding the run's own gateway socket
//! (seen inside as `/run/cambot/host.sock`, owned by the sandbox uid, with a random token), the
//! `start` line on stdin, then JSON Lines both ways until the runner exits. The run directory
//! and socket are removed when the run ends, whatever the outcome.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use cambot_core::MountRootStore;
use cambot_protocol::DataLayout;
use cambot_protocol::HostToRunner;
use cambot_protocol::ModelChoice;
use cambot_protocol::RunLimits;
use cambot_protocol::RunnerToHost;
use cambot_protocol::StartInput;
use cambot_protocol::ToolPolicy;
use cambot_sandbox::ExitInfo;
use cambot_sandbox::PlanInput;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::Supervised;
use cambot_sandbox::SupervisorEvent;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::agent_run::ActiveRun;
use crate::agent_run::AgentRunner;
use crate::agent_run::BoxFuture;
use crate::agent_run::RUN_CHANNEL_CAPACITY;
use crate::agent_run::RunControl;
use crate::agent_run::RunEvent;
use crate::agent_run::RunExit;
use crate::agent_run::RunInput;
use crate::agent_run::RunOutcome;
use crate::agent_run::RunRequest;
use crate::agent_run::RunStartError;
use crate::reply_caps::ReplyCaps;
use crate::reply_caps::ReplyMeter;
use crate::tenant_model::TenantModels;
use cambot_gateway::Gateway;
use cambot_gateway::RunBudget;
use cambot_gateway::RunIdentity;
use cambot_gateway::RunSocket;

/// What every run of this daemon shares.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub assistant_name: String,
    pub timezone: String,
    pub model: ModelChoice,
    pub tools: ToolPolicy,
    pub limits: RunLimits,
    pub reply_caps: ReplyCaps,
    /// The config file the daemon read: protected from extra mounts like the data dir.
    pub config_file: Option<PathBuf>,
    /// What the gateway lets each run spend on its model, whatever the runner does.
    pub budget: RunBudget,
}

/// Runs agents in sandboxes.
pub struct SandboxedRunner {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn SandboxBackend>,
    /// Each tenant's mount roots, read at every run start; `None` (tests without a store):
    /// the `default` tenant keeps the operator allowlist, other tenants mount nothing.
    mount_roots: Option<Arc<dyn MountRootStore>>,
    sandbox: SandboxConfig,
    layout: DataLayout,
    gateway: Arc<Gateway>,
    settings: RunnerSettings,
    /// Each tenant's provider, read at every run start; `None`: every run uses `settings`.
    models: Option<TenantModels>,
    pumps: TaskTracker,
}

impl std::fmt::Debug for SandboxedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxedRunner")
            .field("backend", &self.inner.backend.name())
            .finish_non_exhaustive()
    }
}

impl SandboxedRunner {
    pub fn new(
        backend: Arc<dyn SandboxBackend>,
        sandbox: SandboxConfig,
        layout: DataLayout,
        gateway: Arc<Gateway>,
        settings: RunnerSettings,
        mount_roots: Option<Arc<dyn MountRootStore>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                mount_roots,
                sandbox,
                layout,
                gateway,
                settings,
                models: None,
                pumps: TaskTracker::new(),
            }),
        }
    }

    /// Runs use their tenant's provider when it chose one (`cambot tenants update --provider`).
    #[must_use]
    pub fn with_tenant_models(mut self, models: TenantModels) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.models = Some(models),
            // Unreachable right after `new`: nothing else holds the runner yet.
            None => tracing::error!("tenant models set on a runner already in use; ignored"),
        }
        self
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.inner.gateway
    }
}

impl AgentRunner for SandboxedRunner {
    fn start(&self, request: RunRequest) -> BoxFuture<'_, Result<ActiveRun, RunStartError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.start(request).await })
    }
}

impl Inner {
    async fn start(self: Arc<Self>, request: RunRequest) -> Result<ActiveRun, RunStartError> {
        let group = &request.group;
        let tenant = group.tenant.clone();
        let folder = group.folder.clone();
        for dir in [
            self.layout.group_dir(&tenant, &folder),
            self.layout.sessions_dir(&tenant, &folder),
            self.layout.global_dir(&tenant),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| RunStartError::Io {
                what: format!("cannot create {}", dir.display()),
                source,
            })?;
        }
        let (model, tools) = match &self.models {
            Some(models) => models.for_tenant(&tenant).await?,
            None => None,
        }
        .unwrap_or_else(|| (self.settings.model.clone(), self.settings.tools));
        // A tenant without its key is answered before any sandbox starts.
        match self
            .gateway
            .missing_model_secret(&tenant, &model.provider)
            .await
        {
            Ok(None) => {}
            Ok(Some(name)) => return Err(RunStartError::MissingSecret { tenant, name }),
            Err(e) => return Err(RunStartError::Refused(e.to_string())),
        }
        let run_dir = self.layout.run_dir(&request.run_id);
        std::fs::create_dir_all(&run_dir).map_err(|source| RunStartError::Io {
            what: format!("cannot create {}", run_dir.display()),
            source,
        })?;

        let allowlist = crate::tenant_mounts::operator_allowlist(
            &self.sandbox,
            &self.layout,
            self.settings.config_file.as_deref(),
        );
        let mut input = PlanInput::new(
            self.layout.clone(),
            tenant.clone(),
            folder.clone(),
            request.run_id.clone(),
        );
        input.is_main = group.is_main();
        input.container_config = group.container_config.clone();
        if let Some(store) = &self.mount_roots {
            input.tenant_mounts = match crate::tenant_mounts::tenant_mounts(store.as_ref(), &tenant)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %e, "reading the tenant's mount roots failed; no extra mount for this run");
                    cambot_sandbox::TenantMounts::none(&tenant)
                }
            };
        }
        input.timezone = self.settings.timezone.clone();
        // The runner applies Landlock to itself; the shim matters only for other commands.
        let init = self.sandbox.init_path();
        if init.is_file() {
            input.init = Some(init);
        }
        let plan = match cambot_sandbox::build_plan(input, &self.sandbox, &allowlist) {
            Ok(plan) => plan,
            Err(e) => {
                remove_run_dir(&run_dir);
                return Err(RunStartError::Plan(e));
            }
        };
        for (mount, why) in &plan.rejected_mounts {
            tracing::warn!(
                run = %request.run_id,
                tenant = %plan.tenant,
                group = %plan.group,
                host_path = %mount.host_path,
                reason = %why,
                "extra mount refused for this run"
            );
        }
        let (uid, gid) = (plan.identity.uid, plan.identity.gid);
        // The sandbox user must reach the socket; nobody else may list the run dir.
        if let Err(e) = prepare_run_dir(&run_dir, uid, gid) {
            remove_run_dir(&run_dir);
            return Err(e);
        }
        let identity = RunIdentity {
            run_id: request.run_id.clone(),
            tenant: tenant.clone(),
            folder: folder.clone(),
            chat_jid: request.chat_jid.clone(),
            model_provider: Some(model.provider.clone()),
        };
        let socket = match RunSocket::bind(
            Arc::clone(&self.gateway),
            identity,
            &run_dir.join("host.sock"),
            Some((uid, gid)),
            self.settings.budget,
        ) {
            Ok(s) => s,
            Err(e) => {
                remove_run_dir(&run_dir);
                return Err(RunStartError::Socket(e));
            }
        };
        let provider = model.provider.clone();
        let start = HostToRunner::Start(Box::new(StartInput {
            run_id: request.run_id.clone(),
            tenant,
            group_folder: folder,
            chat_jid: request.chat_jid.clone(),
            is_main: group.is_main(),
            prompt: request.prompt.clone(),
            session_id: request.session_id.clone(),
            is_scheduled_task: request.is_scheduled_task(),
            assistant_name: self.settings.assistant_name.clone(),
            timezone: self.settings.timezone.clone(),
            local_clock: local_clock(&self.settings.timezone),
            host_token: socket.token().to_owned(),
            model,
            tools,
            limits: self.settings.limits,
        }));
        let child = match self.backend.spawn(&plan).await {
            Ok(c) => c,
            Err(e) => {
                socket.close().await;
                remove_run_dir(&run_dir);
                return Err(RunStartError::Sandbox(e));
            }
        };
        let mut supervised = cambot_sandbox::supervise(child, plan.timeouts);
        if let Err(e) = write_line(&mut supervised, &start.to_line()).await {
            supervised.kill_switch().kill();
            let info = supervised.wait().await;
            socket.close().await;
            remove_run_dir(&run_dir);
            return Err(RunStartError::StartInput {
                source: e,
                stderr: info.stderr_tail,
            });
        }
        let (event_tx, event_rx) = mpsc::channel(RUN_CHANNEL_CAPACITY);
        let (input_tx, input_rx) = mpsc::channel(RUN_CHANNEL_CAPACITY);
        tracing::info!(
            run = %request.run_id,
            backend = self.backend.name(),
            uid,
            provider = %provider,
            "run started"
        );
        self.pumps.spawn(pump(
            supervised,
            input_rx,
            event_tx,
            socket,
            run_dir,
            request.run_id.to_string(),
            ReplyMeter::new(self.settings.reply_caps),
        ));
        Ok(ActiveRun {
            events: event_rx,
            control: RunControl::new(input_tx),
        })
    }
}

fn prepare_run_dir(dir: &Path, uid: u32, gid: u32) -> Result<(), RunStartError> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        RunStartError::Io {
            what: format!("cannot set the mode of {}", dir.display()),
            source,
        }
    })?;
    let me = nix::unistd::geteuid().as_raw();
    if me == 0 && uid != 0 {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|source| {
            RunStartError::Io {
                what: format!("cannot hand {} to uid {uid}", dir.display()),
                source,
            }
        })?;
    }
    Ok(())
}

fn remove_run_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the run directory");
    }
}

async fn write_line(run: &mut Supervised, line: &str) -> std::io::Result<()> {
    run.stdin.write_all(line.as_bytes()).await?;
    run.stdin.flush().await
}

/// Moves a run's traffic both ways until the runner exits, then reports the exit.
async fn pump(
    mut run: Supervised,
    mut input: mpsc::Receiver<RunInput>,
    events: mpsc::Sender<RunEvent>,
    socket: RunSocket,
    run_dir: PathBuf,
    run_id: String,
    mut replies: ReplyMeter,
) {
    let kill = run.kill_switch();
    let mut input_open = true;
    let mut protocol_error: Option<String> = None;
    let mut flooded = false;
    loop {
        tokio::select! {
            event = run.events.recv() => {
                let Some(event) = event else { break };
                match event {
                    SupervisorEvent::Line(line) => match RunnerToHost::parse_line(&line) {
                        Ok(message) => {
                            let Some(event) = to_run_event(message, &run_id) else { continue };
                            if let RunEvent::Result { text, .. } = &event {
                                if flooded {
                                    continue;
                                }
                                let len = text.as_ref().map_or(0, String::len);
                                if let Err(why) = replies.admit(len) {
                                    tracing::warn!(run = %run_id, reason = %why, "reply cap reached: stopping the run");
                                    protocol_error = Some(format!("{why} and was stopped"));
                                    flooded = true;
                                    kill.kill();
                                    continue;
                                }
                            }
                            // A consumer that stopped listening still lets the run finish.
                            let _ = events.send(event).await;
                        }
                        Err(e) => {
                            tracing::warn!(run = %run_id, error = %e, line = %truncate(&line, 200), "runner printed a line that is not protocol");
                        }
                    },
                    SupervisorEvent::LineTooLong { bytes } => {
                        tracing::warn!(run = %run_id, bytes, "runner line over the cap dropped");
                    }
                    SupervisorEvent::OutputTruncated => {
                        protocol_error = Some("the run passed its output cap and was stopped".to_owned());
                    }
                }
            }
            command = input.recv(), if input_open => {
                let (line, last) = match command {
                    Some(RunInput::Message(text)) => (HostToRunner::Message { text }.to_line(), false),
                    Some(RunInput::Close) | None => (HostToRunner::Close.to_line(), true),
                    Some(RunInput::Kill) => {
                        kill.kill();
                        continue;
                    }
                };
                if let Err(e) = write_line(&mut run, &line).await {
                    tracing::debug!(run = %run_id, error = %e, "runner stdin closed");
                    input_open = false;
                }
                if last {
                    // Nothing follows a close: end of input tells the runner so too.
                    run.stdin = Box::new(tokio::io::sink());
                    input_open = false;
                }
            }
        }
    }
    let info = run.wait().await;
    socket.close().await;
    remove_run_dir(&run_dir);
    let outcome = outcome_of(&info, protocol_error);
    tracing::info!(run = %run_id, ?outcome, code = ?info.code, signal = ?info.signal, timed_out = info.timed_out, "run ended");
    let _ = events
        .send(RunEvent::Exited(RunExit {
            outcome,
            limits_degraded: info.limits_degraded,
        }))
        .await;
}

fn outcome_of(info: &ExitInfo, protocol_error: Option<String>) -> RunOutcome {
    if let Some(reason) = protocol_error {
        return RunOutcome::Failed { reason };
    }
    if info.is_success() {
        return RunOutcome::Success;
    }
    let how = if info.lifetime_exceeded {
        "reached the absolute run lifetime ([sandbox] max_run_secs) and was stopped".to_owned()
    } else if info.timed_out {
        "timed out before any output".to_owned()
    } else if info.killed {
        "was killed".to_owned()
    } else if let Some(signal) = info.signal {
        format!("died of signal {signal}")
    } else {
        format!("exited with code {}", info.code.unwrap_or(-1))
    };
    let tail = info.stderr_tail.trim();
    RunOutcome::Failed {
        reason: if tail.is_empty() {
            format!("the runner {how}")
        } else {
            format!("the runner {how}: {tail}")
        },
    }
}

/// The run's event for a runner message; a `warning` (an input line the runner skipped) is
/// logged here and is no event: the run goes on, and must not count as failed.
fn to_run_event(message: RunnerToHost, run_id: &str) -> Option<RunEvent> {
    Some(match message {
        RunnerToHost::Warning { message } => {
            tracing::warn!(run = %run_id, warning = %message, "the runner skipped an input line");
            return None;
        }
        RunnerToHost::Ready => RunEvent::Ready,
        RunnerToHost::Activity { kind, detail } => RunEvent::Activity { kind, detail },
        RunnerToHost::TextDelta { text } => RunEvent::TextDelta(text),
        RunnerToHost::Result {
            text,
            session_id,
            inputs,
        } => RunEvent::Result {
            text,
            session_id,
            inputs,
        },
        RunnerToHost::Error { message, retryable } => RunEvent::Error { message, retryable },
        RunnerToHost::Usage {
            input_tokens,
            output_tokens,
        } => RunEvent::Usage {
            input_tokens,
            output_tokens,
        },
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The zone's clock now, for the runner's "current time" (`None` for a zone name chrono-tz does
/// not know: the runner then shows UTC).
fn local_clock(zone: &str) -> Option<cambot_protocol::LocalClock> {
    use chrono::Offset;
    let tz: chrono_tz::Tz = zone.parse().ok()?;
    let now = chrono::Utc::now().with_timezone(&tz);
    Some(cambot_protocol::LocalClock {
        utc_offset_seconds: now.offset().fix().local_minus_utc(),
        abbreviation: now.format("%Z").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::local_clock;
    use super::to_run_event;
    use cambot_protocol::RunnerToHost;

    #[test]
    fn a_skipped_input_line_is_no_run_event_and_a_failure_still_is() {
        let warning = RunnerToHost::parse_line(
            r#"{"type": "warning", "message": "input line 3 is not a valid host message"}"#,
        )
        .expect("a warning line");
        assert_eq!(to_run_event(warning, "r1"), None);
        let error = RunnerToHost::parse_line(
            r#"{"type": "error", "message": "model call failed", "retryable": true}"#,
        )
        .expect("an error line");
        assert!(matches!(
            to_run_event(error, "r1"),
            Some(crate::agent_run::RunEvent::Error {
                retryable: true,
                ..
            })
        ));
    }

    #[test]
    fn the_runner_gets_the_zone_offset_and_abbreviation() {
        let utc = local_clock("UTC").expect("a known zone");
        assert_eq!(utc.utc_offset_seconds, 0);
        assert_eq!(utc.abbreviation, "UTC");
        let kolkata = local_clock("Asia/Kolkata").expect("a known zone");
        assert_eq!(kolkata.utc_offset_seconds, 5 * 3600 + 1800);
        assert_eq!(kolkata.abbreviation, "IST");
        assert_eq!(local_clock("Nowhere/Atlantis"), None);
    }
}
