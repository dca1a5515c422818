//! A workflow `command` step: `sh -c <line>` under the group's own sandbox plan (its mounts,
//! uid, network, limits), as `cambot sandbox run --tenant T --group G` runs a command. Its
//! stdout, bounded, is the step's output; a non-zero exit fails the step with its stderr tail.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::pipe_read::read_head;
use crate::pipe_read::read_tail;
use cambot_core::MountRootStore;
use cambot_protocol::DataLayout;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::RunId;
use cambot_sandbox::PlanInput;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_workflows::MAX_OUTPUT_BYTES;
use cambot_workflows::StepFailure;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// stderr kept for a failed command's error.
const STDERR_TAIL: usize = 2048;

/// Runs command steps in their group's sandbox. The backend is chosen on first use, so a daemon
/// whose workflows run no command never needs one.
pub struct SandboxCommands {
    sandbox: SandboxConfig,
    layout: DataLayout,
    config_file: Option<PathBuf>,
    timezone: String,
    mount_roots: Arc<dyn MountRootStore>,
    backend: OnceCell<Arc<dyn SandboxBackend>>,
}

impl std::fmt::Debug for SandboxCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCommands").finish_non_exhaustive()
    }
}

impl SandboxCommands {
    pub fn new(
        sandbox: SandboxConfig,
        layout: DataLayout,
        config_file: Option<PathBuf>,
        timezone: String,
        mount_roots: Arc<dyn MountRootStore>,
    ) -> Self {
        Self {
            sandbox,
            layout,
            config_file,
            timezone,
            mount_roots,
            backend: OnceCell::new(),
        }
    }

    /// Runs `sh -c line` as `group` would run it, for at most `timeout` (and the plan's own
    /// limit); stops it when `cancel` fires.
    pub async fn run(
        &self,
        group: &RegisteredGroup,
        line: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<String, StepFailure> {
        let backend = self
            .backend
            .get_or_try_init(|| cambot_sandbox::select_backend(&self.sandbox))
            .await
            .map_err(|e| StepFailure::retryable(format!("no sandbox backend: {e}")))?;
        let tenant = &group.tenant;
        let group_dir = self.layout.group_dir(tenant, &group.folder);
        std::fs::create_dir_all(&group_dir).map_err(|e| {
            StepFailure::retryable(format!("cannot create {}: {e}", group_dir.display()))
        })?;
        let run_id = RunId::from_bytes(rand::random());
        let mut input = PlanInput::new(
            self.layout.clone(),
            tenant.clone(),
            group.folder.clone(),
            run_id.clone(),
        )
        .with_init_from(&self.sandbox);
        input.is_main = group.is_main();
        input.container_config = group.container_config.clone();
        input.timezone = self.timezone.clone();
        input.tenant_mounts =
            crate::tenant_mounts::tenant_mounts(self.mount_roots.as_ref(), tenant)
                .await
                .map_err(|e| StepFailure::retryable(format!("reading mount roots: {e}")))?;
        input.command = Some(vec!["sh".into(), "-c".into(), line.to_owned()]);
        let allowlist = crate::tenant_mounts::operator_allowlist(
            &self.sandbox,
            &self.layout,
            self.config_file.as_deref(),
        );
        let plan = cambot_sandbox::build_plan(input, &self.sandbox, &allowlist)
            .map_err(|e| StepFailure::fatal(format!("cannot plan the sandbox: {e}")))?;
        let run_dir = self.layout.run_dir(&run_id);
        let result = run_plan(backend.as_ref(), &plan, timeout, cancel).await;
        // The run dir was only a mount point for this command.
        if let Err(e) = std::fs::remove_dir_all(&run_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %run_dir.display(), error = %e, "cannot remove a command step's run directory");
        }
        result
    }
}

async fn run_plan(
    backend: &dyn SandboxBackend,
    plan: &cambot_sandbox::RunPlan,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<String, StepFailure> {
    let mut child = backend
        .spawn(plan)
        .await
        .map_err(|e| StepFailure::retryable(format!("the sandbox did not start: {e}")))?;
    drop(child.take_stdin());
    let stdout = std::mem::replace(&mut child.stdout, Box::new(tokio::io::empty()));
    let stderr = std::mem::replace(&mut child.stderr, Box::new(tokio::io::empty()));
    let limit = timeout.min(plan.timeouts.hard);
    let work = async {
        let (out, err) = tokio::join!(
            async {
                read_head(stdout, MAX_OUTPUT_BYTES + 1)
                    .await
                    .map(|(head, _)| head)
            },
            read_tail(stderr, STDERR_TAIL)
        );
        (out, err, child.wait().await)
    };
    let stop = tokio::select! {
        r = tokio::time::timeout(limit, work) => match r {
            Ok(done) => Ok(done),
            Err(_) => Err(format!("timed out after {} s", limit.as_secs())),
        },
        () = cancel.cancelled() => Err("cancelled".to_owned()),
    };
    let (out, err, info) = match stop {
        Ok(done) => done,
        Err(why) => {
            if let Err(e) = child.kill().await {
                tracing::warn!(error = %e, "cannot kill a command step's sandbox");
            }
            let _ = child.wait().await;
            return Err(StepFailure::retryable(why));
        }
    };
    let info = info.map_err(|e| StepFailure::retryable(format!("waiting for the sandbox: {e}")))?;
    let stdout = out.map_err(|e| StepFailure::retryable(format!("reading stdout: {e}")))?;
    let stderr = err.unwrap_or_default();
    let tail = String::from_utf8_lossy(&stderr).trim().to_owned();
    if info.code == Some(0) {
        return Ok(String::from_utf8_lossy(&stdout).into_owned());
    }
    let how = match (info.code, info.signal) {
        _ if info.oom_killed => "killed by the memory limit".to_owned(),
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "no exit status".to_owned(),
    };
    Err(StepFailure::fatal(if tail.is_empty() {
        how
    } else {
        format!("{how}: {tail}")
    }))
}
