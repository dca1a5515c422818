//! The real local model for tests and benchmarks: llama.cpp's `llama-server` with SmolLM2,
//! as built by `scripts/setup/local-model.sh`, listening on a Unix socket in a temp dir.
//!
//! The server is killed when the [`LlamaServer`] drops, and (through `PR_SET_PDEATHSIG`) when
//! the thread that started it exits, so a test process killed without unwinding leaves no
//! server behind. Start it from the test's own thread (any `#[tokio::test]` does).

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;

/// Where the binary, the weights and the chat template are.
#[derive(Debug, Clone)]
pub struct LlamaFiles {
    pub server: PathBuf,
    pub model: PathBuf,
    pub chat_template: PathBuf,
}

/// The environment variables `scripts/setup/local-model.sh` exports.
pub const ENV_SERVER: &str = "CAMBOT_LLAMA_SERVER";
pub const ENV_MODEL: &str = "CAMBOT_SMOLLM2_GGUF";
pub const ENV_TEMPLATE: &str = "CAMBOT_CHAT_TEMPLATE";

impl LlamaFiles {
    /// The files named by the setup script's variables, or why they are unusable.
    pub fn from_env() -> Result<Self, String> {
        let get = |name: &str| -> Result<PathBuf, String> {
            let value = std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!("{name} is not set (source scripts/setup/local-model.sh)")
                })?;
            let path = PathBuf::from(value);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{name}={} does not exist", path.display()))
            }
        };
        Ok(Self {
            server: get(ENV_SERVER)?,
            model: get(ENV_MODEL)?,
            chat_template: get(ENV_TEMPLATE)?,
        })
    }
}

/// A running `llama-server`.
#[derive(Debug)]
pub struct LlamaServer {
    child: tokio::process::Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The model name (`-a`) the server answers to.
pub const ALIAS: &str = "smollm2";

impl LlamaServer {
    /// Starts the server on a Unix socket (2 threads, 4096 tokens of context, one slot,
    /// jinja templates with tool support) and waits until `/health` says it is ready.
    pub async fn start(files: &LlamaFiles) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("llama").tempdir()?;
        // llama-server listens on a Unix socket when the host ends in `.sock`.
        let socket = dir.path().join("llama.sock");
        let log = dir.path().join("llama-server.log");
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = tokio::process::Command::new(&files.server);
        cmd.arg("-m")
            .arg(&files.model)
            .arg("--host")
            .arg(&socket)
            .args(["-t", "2", "-c", "4096", "-np", "1", "--jinja", "-a", ALIAS])
            .arg("--chat-template-file")
            .arg(&files.chat_template)
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", files.server.display()))?;
        let mut server = Self {
            child,
            socket,
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "llama-server exited with {status} while starting:\n{}",
                    self.log_tail()
                );
            }
            if self.socket.exists()
                && let Ok(r) = crate::uds::request(&self.socket, "GET", "/health", &[], None).await
                && r.status == 200
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("llama-server not ready after 120 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The socket the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:<socket>`, a base URL for cambot's providers (Anthropic and OpenAI dialects:
    /// llama-server serves `/v1/messages` and `/chat/completions`).
    pub fn base_url(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The last lines of the server's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}
