//! `cambot secrets set|list|rm|rotate-master|verify`: each tenant's credentials in the
//! encrypted vault. Values are read from stdin (not echoed on a terminal) and never printed.
//! Works while the daemon runs: its next lookup reads the changed row.

use std::io::BufRead;
use std::io::IsTerminal;
use std::io::Read;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use anyhow::Result;
use cambot_agent::config::Config;
use cambot_agent::vault;
use cambot_agent::vault::Vault;
use cambot_core::Store;
use cambot_core::VaultStore;
use cambot_gateway::Secret;
use cambot_protocol::DataLayout;
use clap::Subcommand;
use zeroize::Zeroizing;

use crate::tenants_cmd::known_tenant;

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Store a tenant's secret (replacing it). The value is read from stdin; on a terminal it
    /// is prompted for and not echoed. One trailing newline is stripped.
    Set {
        /// 1-64 characters from A-Z a-z 0-9 . _ -
        name: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// A tenant's secrets: names and times, never values.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Delete a tenant's secret.
    Rm {
        name: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Replace the master key: re-wraps every tenant's data key under a new key, then
    /// replaces the key file. Safe to interrupt.
    RotateMaster,
    /// Decrypt every secret of every tenant with the master key; name the first that fails.
    Verify,
}

pub(crate) async fn run(config: &Config, cmd: SecretsCommand) -> Result<ExitCode> {
    let layout = DataLayout::new(&config.data_dir);
    let sqlite = cambot_agent::database::open_store(&layout).await?;
    let store: Arc<dyn VaultStore> = sqlite.clone();
    let mut out = std::io::stdout().lock();
    match cmd {
        SecretsCommand::Set { name, tenant } => {
            let tenant = known_tenant(sqlite.as_ref(), &tenant).await?;
            anyhow::ensure!(
                vault::valid_secret_name(&name),
                "invalid secret name {name:?}: use 1-64 characters from A-Z a-z 0-9 . _ -"
            );
            let value = read_value(&name, tenant.as_str())?;
            let vault = open(store, config, true).await?;
            vault.set(&tenant, &name, &value, None).await?;
            writeln!(out, "stored secret {name} for tenant {tenant}")?;
        }
        SecretsCommand::List { tenant } => {
            let tenant = known_tenant(sqlite.as_ref(), &tenant).await?;
            writeln!(
                out,
                "{:<32} {:<20} {:<20} EXPIRES",
                "NAME", "CREATED", "UPDATED"
            )?;
            for s in vault::list_rows(store.as_ref(), &tenant).await? {
                writeln!(
                    out,
                    "{:<32} {:<20} {:<20} {}",
                    s.name,
                    time(s.created_ms),
                    time(s.updated_ms),
                    s.expires_ms.map_or_else(|| "-".to_owned(), time)
                )?;
            }
        }
        SecretsCommand::Rm { name, tenant } => {
            let tenant = known_tenant(sqlite.as_ref(), &tenant).await?;
            anyhow::ensure!(
                vault::valid_secret_name(&name)
                    && store.delete_vault_secret(&tenant, &name).await?,
                "tenant {tenant} has no secret {name:?} (see `cambot secrets list --tenant {tenant}`)"
            );
            writeln!(out, "removed secret {name} of tenant {tenant}")?;
        }
        SecretsCommand::RotateMaster => {
            let vault = open(store, config, false).await?;
            let rotation = vault.rotate_master().await?;
            let location = vault.key_location();
            writeln!(
                out,
                "rotated the master key ({}): {} data key(s) re-wrapped; keep a copy of the new key offline, and the old one only as long as older backups",
                location.path.display(),
                rotation.tenants
            )?;
        }
        SecretsCommand::Verify => {
            let vault = open(store, config, false).await?;
            let count = vault.verify().await?;
            let location = vault.key_location();
            writeln!(
                out,
                "{count} secret(s) decrypt with the master key from {} ({})",
                location.source,
                location.path.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the vault; without `create`, a vault never used and without a key is an error.
async fn open(store: Arc<dyn VaultStore>, config: &Config, create: bool) -> Result<Vault> {
    vault::open_configured(store, &config.data_dir, create)
        .await?
        .context("the vault is empty and has no master key yet: `cambot secrets set` creates one")
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// The value: prompted for without echo on a terminal, else all of stdin; one trailing
/// newline stripped; empty refused.
fn read_value(name: &str, tenant: &str) -> Result<Secret> {
    let stdin = std::io::stdin();
    let mut raw = Zeroizing::new(String::new());
    if stdin.is_terminal() {
        use nix::sys::termios;
        eprint!("value of {name} for tenant {tenant} (not echoed): ");
        let saved = termios::tcgetattr(&stdin)?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(termios::LocalFlags::ECHO);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &quiet)?;
        let read = stdin.lock().read_line(&mut raw);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &saved)?;
        eprintln!();
        read.context("reading the value from the terminal")?;
    } else {
        stdin
            .lock()
            .read_to_string(&mut raw)
            .context("reading the value from stdin (it must be UTF-8 text)")?;
    }
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    anyhow::ensure!(
        !value.is_empty(),
        "empty value for secret {name}: pipe it on stdin (e.g. `cambot secrets set --tenant {tenant} {name} < file`)"
    );
    Ok(Secret::new(value))
}

/// `cambot doctor`, the vault's part: where the master key comes from (source, path, mode,
/// outside the data directory), whether it opens the vault with every secret decrypting, and
/// whether every web signing key is sealed and opens.
pub(crate) async fn doctor_lines(
    config: &Config,
    store: Arc<dyn Store>,
) -> Vec<(bool, String, String)> {
    let mut lines = Vec::new();
    let mut line = |ok: bool, what: &str, detail: String| lines.push((ok, what.to_owned(), detail));
    let vault_store = Arc::clone(&store) as Arc<dyn VaultStore>;
    let in_use = matches!(vault_store.vault_check().await, Ok(Some(_)));
    let Some(location) = config.master_key.clone() else {
        line(
            !in_use,
            "vault master key",
            vault::VaultError::NoHome.to_string(),
        );
        line(
            true,
            "web signing keys",
            signing_keys(None, store.as_ref()).await.1,
        );
        return lines;
    };
    let path = location.path.display().to_string();
    let mode = vault::master_key::key_file_mode(&location.path);
    let key = format!(
        "from {} {path} ({})",
        location.source,
        mode.map_or_else(|| "missing".to_owned(), |m| format!("mode {m:04o}"))
    );
    let inside = vault::master_key::inside_data_dir(&location.path, &config.data_dir);
    let loose = mode.is_some_and(|m| m & 0o077 != 0);
    line(
        !inside && !loose && (mode.is_some() || !in_use),
        "vault master key",
        if inside {
            format!(
                "{key} lies inside the data directory: a copy of it opens every secret; move it out and set CAMBOT_MASTER_KEY_FILE"
            )
        } else if loose {
            format!("{key}: group and others must have no access (chmod 600 {path})")
        } else if mode.is_none() && in_use {
            format!("{key}: the vault holds secrets but its key is gone; restore the key file")
        } else if mode.is_none() {
            format!(
                "{key}: not created yet (the first `cambot secrets set`, or the first start with the web channel, creates it)"
            )
        } else {
            format!("{key}, outside the data directory")
        },
    );
    let opened = match vault::load_key(
        vault_store.as_ref(),
        location,
        false,
        Some(&config.data_dir),
    )
    .await
    {
        Err(e) => Err(e.to_string()),
        Ok(None) => Ok(None),
        Ok(Some(master)) => Vault::open(Arc::clone(&vault_store), master)
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
    };
    let vault = match opened {
        Err(e) => {
            line(false, "vault", e);
            None
        }
        Ok(None) => {
            line(true, "vault", "no secrets yet".to_owned());
            None
        }
        Ok(Some(v)) => {
            match v.verify().await {
                Ok(n) => line(true, "vault", format!("opens; {n} secret(s) decrypt")),
                Err(e) => line(false, "vault", format!("opens, but {e}")),
            }
            Some(v)
        }
    };
    let (ok, detail) = signing_keys(vault.as_ref(), store.as_ref()).await;
    line(ok, "web signing keys", detail);
    lines
}

/// Whether every web signing key is sealed and opens with `vault`.
async fn signing_keys(vault: Option<&Vault>, store: &dyn Store) -> (bool, String) {
    match vault::check_signing_keys(vault, store).await {
        Err(e) => (false, e.to_string()),
        Ok(found) if found.plaintext > 0 => (
            false,
            format!(
                "{} key(s) stored in plaintext (from before the vault): the next daemon start seals them",
                found.plaintext
            ),
        ),
        Ok(found) if found.sealed == 0 => (true, "none yet".to_owned()),
        Ok(found) => (
            true,
            format!(
                "{} sealed, each opens with the vault; none in plaintext",
                found.sealed
            ),
        ),
    }
}
