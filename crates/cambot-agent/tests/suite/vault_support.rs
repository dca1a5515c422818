//! Shared set-up for the vault suites: the real `cambot` binary run with a master key file of
//! the test's own (never the user's or `/etc/cambot`), and the vault opened in-process.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use cambot_agent::vault;
use cambot_agent::vault::Vault;
use cambot_core::SqliteStore;
use cambot_protocol::TenantId;

use super::support::CliOut;

/// A data dir and a key file location (in a directory that does not exist yet).
pub(crate) struct VaultDirs {
    pub(crate) _root: tempfile::TempDir,
    pub(crate) data: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) home: PathBuf,
}

impl VaultDirs {
    pub(crate) fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let key = root.path().join("keys/master.key");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Self {
            data,
            key,
            home,
            _root: root,
        }
    }

    /// `cambot` on this data dir, `CAMBOT_MASTER_KEY_FILE` naming `key` (unless `None`), with
    /// no systemd credentials and a private HOME.
    pub(crate) fn command(&self, key: Option<&Path>, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cambot"));
        cmd.arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env_remove("CAMBOT_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("CAMBOT_MASTER_KEY_FILE")
            .env("HOME", &self.home)
            .env("CAMBOT_LOG", "trace");
        if let Some(key) = key {
            cmd.env("CAMBOT_MASTER_KEY_FILE", key);
        }
        cmd
    }

    pub(crate) fn run_with(
        &self,
        key: Option<&Path>,
        args: &[&str],
        stdin: &str,
        extra_env: &[(&str, &Path)],
    ) -> CliOut {
        use std::io::Write;
        let mut cmd = self.command(key, args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        CliOut {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub(crate) fn run(&self, args: &[&str], stdin: &str) -> CliOut {
        self.run_with(Some(&self.key), args, stdin, &[])
    }

    pub(crate) fn store(&self) -> Arc<SqliteStore> {
        std::fs::create_dir_all(&self.data).unwrap();
        Arc::new(SqliteStore::open(&self.data.join("cambot.db")).unwrap())
    }

    /// The vault opened in-process from the key file(s) on disk, as the daemon would.
    pub(crate) async fn open(&self, store: &Arc<SqliteStore>, create: bool) -> Vault {
        let location = key_location(&self.key);
        let key = vault::load_key(store.as_ref(), location, create, None)
            .await
            .unwrap()
            .unwrap();
        Vault::open(store.clone(), key).await.unwrap()
    }
}

pub(crate) fn key_location(path: &Path) -> vault::KeyLocation {
    vault::KeyLocation {
        source: vault::KeySource::EnvFile,
        path: path.to_owned(),
        looked: vec![format!("CAMBOT_MASTER_KEY_FILE={}", path.display())],
    }
}

pub(crate) fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

#[track_caller]
pub(crate) fn ok(cli: CliOut) -> String {
    assert!(cli.ok, "stdout: {}\nstderr: {}", cli.stdout, cli.stderr);
    cli.stdout
}

#[track_caller]
pub(crate) fn fails_with(cli: &CliOut, text: &str) {
    assert!(!cli.ok, "succeeded: {}", cli.stdout);
    assert!(
        cli.stderr.contains(text),
        "expected {text:?} in: {}",
        cli.stderr
    );
}

/// Every file under `dir` whose bytes contain `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}
