//! The embedded local model: `llama-server` with a GGUF file, run in its own sandbox (no
//! network, the model mounted read-only) and listening on a Unix socket in the data dir. The
//! gateway reaches it as a `unix:` upstream, so agents talk to it exactly as they would to a
//! remote API, through their run's host socket.
//!
//! Landlock: unlike the runner, `llama-server` cannot confine itself, so the init shim
//! (`cambot-sandbox-init`) applies it before exec. Without the shim the server runs with the
//! namespaces, seccomp and its read-only mounts only; that is logged as a warning at every
//! start (see `landlock_shim`), never silent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_providers::models::Manifest;
use cambot_providers::models::PinnedFile;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::MountMode;
use cambot_sandbox::PlanInput;
use cambot_sandbox::PlanMount;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxChild;
use cambot_sandbox::SandboxConfig;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::model_config::LocalModelSpec;

/// Where the server's files appear inside its sandbox.
const BIN: &str = "/opt/model/llama-server";
const MODEL: &str = "/opt/model/model.gguf";
const TEMPLATE: &str = "/opt/model/template.jinja";
const SOCKET_DIR: &str = "/run/model";

/// The Landlock shim for the server's sandbox, or `None` with a warning when Landlock is wanted
/// but the shim is not installed (the server then runs without Landlock).
fn landlock_shim(sandbox: &SandboxConfig) -> Option<PathBuf> {
    let init = sandbox.init_path();
    if init.is_file() {
        return Some(init);
    }
    if sandbox.landlock {
        tracing::warn!(
            shim = %init.display(),
            "no Landlock shim: the local model server runs WITHOUT Landlock (install \
             cambot-sandbox-init next to cambot, or set [sandbox] init_path)"
        );
    }
    None
}

/// How long the server may take to load the model.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the local model could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalModelError {
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {path} failed verification: {reason}")]
    Verification { path: PathBuf, reason: String },
    /// The file does not match its pin (or cannot be read to check it).
    #[error("model file {path} failed verification: {source}")]
    Mismatch {
        path: PathBuf,
        #[source]
        source: cambot_providers::models::ModelError,
    },
    /// The check itself panicked or was cancelled.
    #[error("model file {path} failed verification: the check did not finish: {source}")]
    Unchecked {
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("cannot plan the model server's sandbox: {0}")]
    Plan(#[source] cambot_sandbox::PlanError),
    /// The server's tenant or folder name is not a valid id.
    #[error("cannot plan the model server's sandbox: {0}")]
    Identity(#[source] cambot_protocol::IdError),
    #[error("cannot start the model server: {0}")]
    Spawn(#[source] cambot_sandbox::SandboxError),
    #[error("the model server exited before it was ready: {0}")]
    Exited(String),
    #[error("the model server did not answer /health within {0:?}")]
    NotReady(Duration),
}

/// A running local model server. Stopped by the daemon's cancellation token.
#[derive(Debug)]
pub struct LocalModelServer {
    socket: PathBuf,
}

impl LocalModelServer {
    /// Verifies the model files against the pinned manifest (an unpinned file is refused when
    /// `require_pinned`, as in air-gapped mode), starts the server in a
    /// sandbox and waits until it answers `/health`. The server is killed when `cancel` fires;
    /// `tasks` owns its supervision.
    pub async fn start(
        backend: Arc<dyn SandboxBackend>,
        sandbox: &SandboxConfig,
        layout: &DataLayout,
        spec: &LocalModelSpec,
        require_pinned: bool,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Self, LocalModelError> {
        let socket_dir = spec.socket.parent().map(Path::to_owned).unwrap_or_default();
        std::fs::create_dir_all(&socket_dir).map_err(|source| LocalModelError::Io {
            path: socket_dir.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(&spec.socket);
        // Checked before the server starts: an unpinned or altered file never loads.
        for file in std::iter::once(&spec.model_file).chain(spec.chat_template.as_ref()) {
            match pinned_file_for(file) {
                Some(pin) => verify_pinned(file, pin).await?,
                None if require_pinned => {
                    return Err(LocalModelError::Verification {
                        path: file.clone(),
                        reason: "air-gapped mode loads only files of the pinned manifest"
                            .to_owned(),
                    });
                }
                None => {
                    tracing::warn!(file = %file.display(), "model file is not in the pinned manifest; loading it unverified")
                }
            }
        }

        let (tenant, group) = server_identity()?;
        let run_id = RunId::from_bytes(rand::random());
        let mut input = PlanInput::new(layout.clone(), tenant.clone(), group.clone(), run_id);
        std::fs::create_dir_all(layout.group_dir(&tenant, &group)).map_err(|source| {
            LocalModelError::Io {
                path: layout.group_dir(&tenant, &group),
                source,
            }
        })?;
        let socket_name = spec
            .socket
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local.sock".to_owned());
        let mut command = vec![
            BIN.to_owned(),
            "-m".to_owned(),
            MODEL.to_owned(),
            "--host".to_owned(),
            format!("{SOCKET_DIR}/{socket_name}"),
            "-t".to_owned(),
            spec.threads.to_string(),
            "-c".to_owned(),
            spec.context_tokens.to_string(),
            "-a".to_owned(),
            "smollm2".to_owned(),
            "--no-webui".to_owned(),
        ];
        if spec.chat_template.is_some() {
            command.extend([
                "--jinja".to_owned(),
                "--chat-template-file".to_owned(),
                TEMPLATE.to_owned(),
            ]);
        }
        input.command = Some(command);
        input.init = landlock_shim(sandbox);
        let mut config = sandbox.clone();
        // A model server is long-lived and memory-hungry compared with an agent run.
        config.timeout_secs = u64::MAX / 4;
        config.max_run_secs = u64::MAX / 4;
        config.memory_mb = config.memory_mb.max(2048);
        let mut plan =
            cambot_sandbox::build_plan(input, &config, &MountAllowlist::none("model server"))
                .map_err(LocalModelError::Plan)?;
        plan.mounts
            .push(mount(&spec.llama_server, BIN, MountMode::ReadOnly));
        plan.mounts
            .push(mount(&spec.model_file, MODEL, MountMode::ReadOnly));
        if let Some(template) = &spec.chat_template {
            plan.mounts
                .push(mount(template, TEMPLATE, MountMode::ReadOnly));
        }
        plan.mounts
            .push(mount(&socket_dir, SOCKET_DIR, MountMode::ReadWrite));
        plan.writable.push(SOCKET_DIR.to_owned());
        let (uid, gid) = (plan.identity.uid, plan.identity.gid);
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| LocalModelError::Io {
                path: socket_dir.clone(),
                source,
            },
        )?;
        if nix::unistd::geteuid().is_root() && uid != 0 {
            std::os::unix::fs::chown(&socket_dir, Some(uid), Some(gid)).map_err(|source| {
                LocalModelError::Io {
                    path: socket_dir.clone(),
                    source,
                }
            })?;
        }

        let mut child = backend.spawn(&plan).await.map_err(LocalModelError::Spawn)?;
        let stderr_tail = Arc::new(std::sync::Mutex::new(String::new()));
        tasks.spawn(forward_logs(
            std::mem::replace(&mut child.stderr, Box::new(tokio::io::empty())),
            Arc::clone(&stderr_tail),
        ));
        tasks.spawn(forward_logs(
            std::mem::replace(&mut child.stdout, Box::new(tokio::io::empty())),
            Arc::clone(&stderr_tail),
        ));
        let (exited_tx, mut exited_rx) = tokio::sync::oneshot::channel::<String>();
        tasks.spawn(supervise_server(child, cancel.clone(), exited_tx));

        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if health(&spec.socket).await {
                tracing::info!(socket = %spec.socket.display(), "local model server ready");
                return Ok(Self {
                    socket: spec.socket.clone(),
                });
            }
            if let Ok(status) = exited_rx.try_recv() {
                let tail = crate::locks::lock("local model log", &stderr_tail).clone();
                return Err(LocalModelError::Exited(format!("{status}; log: {tail}")));
            }
            if tokio::time::Instant::now() >= deadline {
                cancel.cancel();
                return Err(LocalModelError::NotReady(READY_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

fn server_identity() -> Result<(TenantId, GroupFolder), LocalModelError> {
    let tenant = TenantId::new("system").map_err(LocalModelError::Identity)?;
    let group = GroupFolder::new("model-server").map_err(LocalModelError::Identity)?;
    Ok((tenant, group))
}

fn mount(src: &Path, dst: &str, mode: MountMode) -> PlanMount {
    PlanMount {
        src: src.to_owned(),
        dst: dst.to_owned(),
        mode,
        optional: false,
        create: false,
    }
}

async fn supervise_server(
    mut child: SandboxChild,
    cancel: CancellationToken,
    exited: tokio::sync::oneshot::Sender<String>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = cancel.cancelled() => {
            if let Err(e) = child.kill().await {
                tracing::warn!(error = %e, "killing the local model server failed");
            }
            child.wait().await
        }
    };
    let text = match status {
        Ok(info) => format!("exit code {:?}, signal {:?}", info.code, info.signal),
        Err(e) => e.to_string(),
    };
    if !cancel.is_cancelled() {
        tracing::error!(status = %text, "local model server stopped");
    }
    let _ = exited.send(text);
}

async fn forward_logs(
    stream: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    tail: Arc<std::sync::Mutex<String>>,
) {
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "cambot::local_model", "{line}");
        {
            let mut t = crate::locks::lock("local model log", &tail);
            t.push_str(&line);
            t.push('\n');
            if t.len() > 2000 {
                let cut = t.len() - 2000;
                let cut = (cut..t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(0);
                t.drain(..cut);
            }
        }
    }
}

/// `GET /health` over the Unix socket; true on HTTP 200.
async fn health(socket: &Path) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::UnixStream::connect(socket),
    )
    .await
    else {
        return false;
    };
    let request = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut head = [0u8; 32];
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut head)).await {
        Ok(Ok(n)) => head[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

/// The manifest entry of a model file, by its file name, from the built-in manifest of
/// `cambot_providers::models`.
pub fn pinned_file_for(path: &Path) -> Option<PinnedFile> {
    let name = path.file_name()?.to_str()?;
    Manifest::builtin()
        .models()
        .iter()
        .flat_map(|m| m.files.iter())
        .find(|f| f.file_name == name)
        .cloned()
}

/// Checks `path` against its pin (size, then SHA-256) off the async threads.
pub async fn verify_pinned(path: &Path, pin: PinnedFile) -> Result<(), LocalModelError> {
    let owned = path.to_owned();
    let checked = tokio::task::spawn_blocking(move || pin.verify(&owned))
        .await
        .map_err(|source| LocalModelError::Unchecked {
            path: path.to_owned(),
            source,
        })?;
    checked
        .map(|_| ())
        .map_err(|source| LocalModelError::Mismatch {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Log output of `f` at `warn` and above.
    fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
        (out, text)
    }

    #[test]
    fn a_missing_shim_runs_the_model_server_without_landlock_but_never_silently() {
        let missing = SandboxConfig {
            init_path: Some(PathBuf::from("/nonexistent/cambot-sandbox-init")),
            ..SandboxConfig::default()
        };
        let (shim, log) = warnings_of(|| landlock_shim(&missing));
        assert_eq!(shim, None);
        assert!(log.contains("runs WITHOUT Landlock"), "{log}");
        assert!(log.contains("/nonexistent/cambot-sandbox-init"), "{log}");

        // Landlock off in the config: the operator's choice, nothing to warn about.
        let off = SandboxConfig {
            landlock: false,
            ..missing
        };
        let (shim, log) = warnings_of(|| landlock_shim(&off));
        assert_eq!(shim, None);
        assert_eq!(log, "");

        // An installed shim is used.
        let exe = std::env::current_exe().unwrap();
        let present = SandboxConfig {
            init_path: Some(exe.clone()),
            ..SandboxConfig::default()
        };
        let (shim, log) = warnings_of(|| landlock_shim(&present));
        assert_eq!(shim, Some(exe));
        assert_eq!(log, "");
    }
}
