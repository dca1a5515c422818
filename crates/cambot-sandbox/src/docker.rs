//! The Docker backend (bollard; also drives Podman through its Docker-compatible socket). It
//! applies the same [`RunPlan`]: no network, read-only root, no capabilities,
//! no-new-privileges, a non-root user, memory/pids/cpu limits, the plan's binds, a
//! size-capped `/tmp` and `/dev/shm`, and the plan's `nofile`/`core` rlimits. Containers are named `cambot-<run id>`, labelled, and killed and removed
//! through the API (killing a client never stops a container).

use std::collections::HashMap;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use bollard::models::HostConfig;
use bollard::models::Mount;
use bollard::models::MountTypeEnum;
use bollard::models::ResourcesUlimits;
use bollard::query_parameters::AttachContainerOptions;
use bollard::query_parameters::CreateContainerOptions;
use bollard::query_parameters::KillContainerOptions;
use bollard::query_parameters::ListContainersOptions;
use bollard::query_parameters::RemoveContainerOptions;
use bollard::query_parameters::WaitContainerOptions;
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use cambot_protocol::layout::sandbox_paths;

use crate::backend::BackendReport;
use crate::backend::ChildControl;
use crate::backend::ExitInfo;
use crate::backend::SandboxBackend;
use crate::backend::SandboxChild;
use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::plan::MountMode;
use crate::plan::RunPlan;

/// Label on every container this backend creates (orphan cleanup finds them by it).
pub const RUN_LABEL: &str = "cambot.run";
const PIPE: usize = 64 * 1024;

fn derr(e: bollard::errors::Error) -> SandboxError {
    SandboxError::DockerApi(e)
}

/// `cambot-<run id>`.
pub fn container_name(plan: &RunPlan) -> String {
    format!("cambot-{}", plan.run_id)
}

/// The container the plan describes. Mounts whose source is missing and optional are left out
/// (`exists` tells which sources exist). Landlock is not used here (neither the shim nor the
/// runner's own): the engine's own seccomp profile applies, and it predates the Landlock
/// syscalls.
pub fn container_spec(
    plan: &RunPlan,
    image: &str,
    exists: &dyn Fn(&std::path::Path) -> bool,
) -> ContainerCreateBody {
    let mounts: Vec<Mount> = plan
        .mounts
        .iter()
        .filter(|m| !m.dst.starts_with("/opt/cambot/cambot-sandbox-init"))
        .filter(|m| !m.optional || exists(&m.src))
        .map(|m| Mount {
            target: Some(m.dst.clone()),
            source: Some(m.src.to_string_lossy().into_owned()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(m.mode == MountMode::ReadOnly),
            ..Default::default()
        })
        .collect();
    let memory = i64::try_from(plan.limits.memory_bytes).unwrap_or(i64::MAX);
    let mut tmpfs = HashMap::new();
    tmpfs.insert(
        "/tmp".to_owned(),
        format!("rw,nosuid,nodev,size={},mode=1777", plan.limits.tmp_bytes),
    );
    let host = HostConfig {
        network_mode: Some("none".to_owned()),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        memory: Some(memory),
        memory_swap: Some(memory),
        pids_limit: Some(i64::try_from(plan.limits.pids).unwrap_or(i64::MAX)),
        nano_cpus: Some((plan.limits.cpus * 1e9) as i64),
        tmpfs: Some(tmpfs),
        shm_size: Some(i64::try_from(plan.limits.shm_bytes).unwrap_or(i64::MAX)),
        // As in bwrap: no core dumps, few descriptors (`--ulimit nofile=N:N --ulimit core=0`).
        ulimits: Some(vec![
            ulimit("nofile", plan.limits.open_files),
            ulimit("core", 0),
        ]),
        mounts: Some(mounts),
        ipc_mode: Some("private".to_owned()),
        auto_remove: Some(false),
        ..Default::default()
    };
    let mut labels = HashMap::new();
    labels.insert(RUN_LABEL.to_owned(), plan.run_id.to_string());
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(plan.command.clone()),
        entrypoint: Some(Vec::new()),
        user: Some(format!("{}:{}", plan.identity.uid, plan.identity.gid)),
        env: Some(
            plan.env
                .iter()
                // Landlock is not used here (see above): the runner must not try it. Docker
                // runs the runner on plain stdio (no bwrap pid 1 holding them).
                .filter(|(k, _)| {
                    k != sandbox_paths::ENV_LANDLOCK_RW && k != sandbox_paths::ENV_STDIO_FDS
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        working_dir: Some(plan.cwd.clone()),
        hostname: Some("cambot".to_owned()),
        network_disabled: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        labels: Some(labels),
        host_config: Some(host),
        ..Default::default()
    }
}

fn ulimit(name: &str, value: u64) -> ResourcesUlimits {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(value),
        hard: Some(value),
    }
}

/// Docker (or Podman) through its API socket.
#[derive(Debug, Clone)]
pub struct DockerBackend {
    cfg: SandboxConfig,
    docker: Docker,
}

impl DockerBackend {
    /// Connects lazily (no request yet) to the configured socket.
    pub fn connect(cfg: SandboxConfig) -> Result<Self, SandboxError> {
        let sock = cfg.docker_socket();
        if !sock.exists() {
            return Err(SandboxError::Unavailable(format!(
                "no Docker socket at {} (start dockerd or Podman's service, or set [sandbox] docker_socket)",
                sock.display()
            )));
        }
        let docker =
            Docker::connect_with_unix(&sock.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)
                .map_err(derr)?;
        Ok(Self { cfg, docker })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.cfg
    }

    /// Kills and removes every container a previous daemon left behind.
    pub async fn cleanup_orphans(&self) -> usize {
        let mut filters = HashMap::new();
        filters.insert("label".to_owned(), vec![RUN_LABEL.to_owned()]);
        let list = match self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listing orphan sandbox containers failed");
                return 0;
            }
        };
        let mut removed = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            match remove(&self.docker, &id).await {
                Ok(()) => removed.push(c.names.unwrap_or_default().join(",")),
                Err(e) => tracing::warn!(container = %id, error = %e, "removing an orphan failed"),
            }
        }
        if !removed.is_empty() {
            tracing::info!(count = removed.len(), names = ?removed, "removed orphan sandbox containers");
        }
        removed.len()
    }

    async fn probe_inner(&self) -> Result<BackendReport, SandboxError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(SandboxError::DockerUnavailable)?;
        self.docker
            .inspect_image(&self.cfg.docker_image)
            .await
            .map_err(|_| {
                SandboxError::Unavailable(format!(
                    "image {} is missing: run `cambot image build`",
                    self.cfg.docker_image
                ))
            })?;
        Ok(BackendReport {
            name: "docker",
            version: v.version.unwrap_or_default(),
            limits_degraded: false,
            details: vec![
                (
                    "socket".to_owned(),
                    self.cfg.docker_socket().display().to_string(),
                ),
                ("image".to_owned(), self.cfg.docker_image.clone()),
                ("api".to_owned(), v.api_version.unwrap_or_default()),
            ],
        })
    }

    async fn spawn_inner(&self, plan: &RunPlan) -> Result<SandboxChild, SandboxError> {
        let prep = plan.clone();
        tokio::task::spawn_blocking(move || crate::bwrap::prepare_host_dirs(&prep))
            .await
            .map_err(SandboxError::Blocking)??;
        let name = container_name(plan);
        let spec = container_spec(plan, &self.cfg.docker_image, &|p| p.exists());
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                spec,
            )
            .await
            .map_err(derr)?;
        let mut control = DockerControl {
            docker: self.docker.clone(),
            name: name.clone(),
            pump: None,
            removed: false,
            oom: false,
        };
        let attached = match self
            .docker
            .attach_container(
                &name,
                Some(AttachContainerOptions {
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    stream: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                control.remove_now().await;
                return Err(derr(e));
            }
        };
        let (out_w, out_r) = tokio::io::duplex(PIPE);
        let (err_w, err_r) = tokio::io::duplex(PIPE);
        control.pump = Some(tokio::spawn(pump(attached.output, out_w, err_w)));
        if let Err(e) = self
            .docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            control.remove_now().await;
            return Err(derr(e));
        }
        tracing::debug!(run = %plan.run_id, container = %name, "docker sandbox started");
        Ok(SandboxChild {
            stdin: Box::new(attached.input),
            stdout: Box::new(out_r),
            stderr: Box::new(err_r),
            limits_degraded: false,
            backend: "docker",
            output_cap_bytes: plan.limits.output_cap_bytes,
            max_line_bytes: plan.limits.max_line_bytes,
            control: Box::new(control),
        })
    }
}

/// Demultiplexes the attach stream into the two pipes; ends (closing both) with the stream.
async fn pump(
    mut output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    mut out: tokio::io::DuplexStream,
    mut err: tokio::io::DuplexStream,
) {
    while let Some(Ok(chunk)) = output.next().await {
        let r = match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                out.write_all(&message).await
            }
            LogOutput::StdErr { message } => err.write_all(&message).await,
            LogOutput::StdIn { .. } => Ok(()),
        };
        if r.is_err() {
            break;
        }
    }
}

async fn remove(docker: &Docker, name: &str) -> Result<(), bollard::errors::Error> {
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
}

struct DockerControl {
    docker: Docker,
    name: String,
    pump: Option<tokio::task::JoinHandle<()>>,
    removed: bool,
    oom: bool,
}

impl DockerControl {
    async fn remove_now(&mut self) {
        if self.removed {
            return;
        }
        match remove(&self.docker, &self.name).await {
            Ok(()) => self.removed = true,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => self.removed = true,
            Err(e) => {
                tracing::warn!(container = %self.name, error = %e, "removing a sandbox container failed")
            }
        }
    }
}

impl ChildControl for DockerControl {
    fn wait(&mut self) -> BoxFuture<'_, Result<ExitInfo, SandboxError>> {
        async move {
            let mut stream = self.docker.wait_container(
                &self.name,
                Some(WaitContainerOptions {
                    condition: "not-running".to_owned(),
                }),
            );
            let code = match stream.next().await {
                Some(Ok(r)) => r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(derr(e)),
                None => return Err(SandboxError::Docker("wait stream ended".to_owned())),
            };
            if let Ok(info) = self
                .docker
                .inspect_container(
                    &self.name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            {
                self.oom = info.state.and_then(|s| s.oom_killed).unwrap_or(false);
            }
            // Let the attach stream deliver what is left before the container goes away.
            if let Some(p) = self.pump.as_mut() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p).await;
            }
            self.remove_now().await;
            let code = i32::try_from(code).unwrap_or(-1);
            Ok(ExitInfo {
                code: Some(code),
                signal: (code > 128).then_some(code - 128),
                oom_killed: self.oom,
                ..ExitInfo::default()
            })
        }
        .boxed()
    }

    fn kill(&mut self) -> BoxFuture<'_, Result<(), SandboxError>> {
        async move {
            match self
                .docker
                .kill_container(
                    &self.name,
                    Some(KillContainerOptions {
                        signal: "SIGKILL".to_owned(),
                    }),
                )
                .await
            {
                Ok(()) => Ok(()),
                // Not running any more (409) or already gone (404).
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => Ok(()),
                Err(e) => Err(derr(e)),
            }
        }
        .boxed()
    }
}

impl Drop for DockerControl {
    fn drop(&mut self) {
        if let Some(p) = self.pump.take() {
            p.abort();
        }
        if !self.removed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // A container must not outlive its run even when nobody waited for it.
            let docker = self.docker.clone();
            let name = self.name.clone();
            rt.spawn(async move {
                let _ = remove(&docker, &name).await;
            });
        }
    }
}

impl SandboxBackend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn spawn(&self, plan: &RunPlan) -> BoxFuture<'_, Result<SandboxChild, SandboxError>> {
        let plan = plan.clone();
        async move { self.spawn_inner(&plan).await }.boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<BackendReport, SandboxError>> {
        self.probe_inner().boxed()
    }
}

#[cfg(test)]
#[path = "docker_tests.rs"]
mod tests;
