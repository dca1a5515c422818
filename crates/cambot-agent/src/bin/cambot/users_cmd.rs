//! `cambot users add|list|disable|enable|passwd`: web chat users (Argon2id password hashes).
//! Works while the daemon runs: a disabled user's tokens stop working on their next call.

use std::io::BufRead;
use std::io::IsTerminal;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use cambot_agent::config::Config;
use cambot_channels::web::passwords::hash_password;
use cambot_channels::web::tokens::valid_user_name;
use cambot_core::UserStore;
use cambot_protocol::DataLayout;
use clap::Subcommand;

use crate::tenants_cmd::known_tenant;
use crate::tenants_cmd::known_tenant_opt;

/// Shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user. The password is read from the terminal (twice, not echoed) or, when stdin
    /// is not a terminal, from the first line of stdin.
    Add {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// List users.
    List {
        /// Only this tenant (default: all).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Disable a user: sign-in, refresh and every access token stop working.
    Disable {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Re-enable a disabled user.
    Enable {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Set a new password (signs the user out everywhere).
    Passwd {
        user: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

async fn open(config: &Config) -> Result<std::sync::Arc<cambot_core::SqliteStore>> {
    Ok(cambot_agent::database::open_store(&DataLayout::new(&config.data_dir)).await?)
}

fn user_name(user: &str) -> Result<&str> {
    anyhow::ensure!(
        valid_user_name(user),
        "invalid user name {user:?}: 1-64 characters from A-Z a-z 0-9 _ . @ -, starting with a letter or digit"
    );
    Ok(user)
}

pub(crate) async fn run(config: &Config, cmd: UsersCommand) -> Result<ExitCode> {
    let store = open(config).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        UsersCommand::Add { user, tenant } => {
            let tenant = known_tenant(store.as_ref(), &tenant).await?;
            let user = user_name(&user)?;
            anyhow::ensure!(
                store.user(&tenant, user).await?.is_none(),
                "user {user} already exists in tenant {tenant}"
            );
            let hash = hash_password(&read_password()?)?;
            anyhow::ensure!(
                store.add_user(&tenant, user, &hash).await?,
                "user {user} already exists in tenant {tenant}"
            );
            writeln!(out, "added {user} (tenant {tenant})")?;
        }
        UsersCommand::List { tenant } => {
            let tenant = known_tenant_opt(store.as_ref(), tenant.as_deref()).await?;
            let users = store.users(tenant.as_ref()).await?;
            writeln!(out, "{:<16} {:<32} STATUS", "TENANT", "USER")?;
            for u in users {
                let status = if u.disabled { "disabled" } else { "active" };
                writeln!(out, "{:<16} {:<32} {status}", u.tenant.as_str(), u.id)?;
            }
        }
        UsersCommand::Disable { user, tenant } => {
            set_disabled(store.as_ref(), &mut out, &tenant, &user, true).await?
        }
        UsersCommand::Enable { user, tenant } => {
            set_disabled(store.as_ref(), &mut out, &tenant, &user, false).await?
        }
        UsersCommand::Passwd { user, tenant } => {
            let tenant = known_tenant(store.as_ref(), &tenant).await?;
            let user = user_name(&user)?;
            anyhow::ensure!(
                store.user(&tenant, user).await?.is_some(),
                "no user {user} in tenant {tenant}"
            );
            let hash = hash_password(&read_password()?)?;
            store.set_user_password(&tenant, user, &hash).await?;
            writeln!(
                out,
                "password of {user} (tenant {tenant}) changed; signed out everywhere"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_disabled(
    store: &dyn UserStore,
    out: &mut impl Write,
    tenant: &str,
    user: &str,
    disabled: bool,
) -> Result<()> {
    let tenant = known_tenant(store, tenant).await?;
    let user = user_name(user)?;
    anyhow::ensure!(
        store.set_user_disabled(&tenant, user, disabled).await?,
        "no user {user} in tenant {tenant}"
    );
    let what = if disabled {
        "disabled; its tokens no longer work"
    } else {
        "enabled"
    };
    writeln!(out, "{user} (tenant {tenant}) {what}")?;
    Ok(())
}

/// Reads a password: twice without echo from a terminal, else one line of stdin.
fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden("Password: ")?;
        let second = prompt_hidden("Again: ")?;
        anyhow::ensure!(first == second, "the passwords differ");
        first
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(
        password.chars().count() >= MIN_PASSWORD_CHARS,
        "the password must have at least {MIN_PASSWORD_CHARS} characters"
    );
    Ok(password)
}

fn prompt_hidden(prompt: &str) -> Result<String> {
    use nix::sys::termios;
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let saved = termios::tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(termios::LocalFlags::ECHO);
    termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &saved)?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
