//! `cambot`: the daemon and its admin commands.

// The binary's job includes talking to the terminal; library crates stay print-free.
#![allow(clippy::print_stderr, clippy::print_stdout)]
#![forbid(unsafe_code)]

mod commands;
mod documents_cmd;
mod groups_update_cmd;
mod logging;
mod models_cmd;
mod runtime;
mod sandbox_cmd;
mod secrets_cmd;
mod tasks_cmd;
mod tenant_mounts_cmd;
mod tenants_cmd;
mod users_cmd;
mod workflows_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;

/// jemalloc instead of glibc's malloc: glibc's few shared, locked arenas made threads wait for
/// each other under load and held more memory (figures in git history and docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "cambot",
    version,
    about = "A self-hosted assistant orchestrator: each chat group gets its own sandboxed agent."
)]
struct Cli {
    /// Config file (TOML). Env: CAMBOT_CONFIG. Without one, built-in defaults apply.
    #[arg(long, global = true, env = "CAMBOT_CONFIG")]
    config: Option<PathBuf>,
    /// Where all state lives. Env: CAMBOT_DATA_DIR.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon with the channels the config enables.
    Run,
    /// Talk to cambot in this terminal (the daemon in the foreground with the terminal channel).
    Chat {
        /// Talk as this tenant's terminal group (folder `terminal`, created on first use),
        /// to try the tenant's setup. Default: the configured terminal tenant's main group.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Check the installation and explain what is missing.
    Doctor,
    /// Manage registered groups.
    #[command(subcommand)]
    Groups(commands::GroupsCommand),
    /// Manage tenants: add, list, show, update (provider), disable, enable, remove.
    #[command(subcommand)]
    Tenants(tenants_cmd::TenantsCommand),
    /// Manage web chat users.
    #[command(subcommand)]
    Users(users_cmd::UsersCommand),
    /// Manage each tenant's secrets in the encrypted vault: set, list, rm, rotate-master, verify.
    #[command(subcommand)]
    Secrets(secrets_cmd::SecretsCommand),
    /// Local models of the pinned manifest: list, pull, verify.
    #[command(subcommand)]
    Models(models_cmd::ModelsCommand),
    /// Inspect and manage scheduled tasks (works while the daemon runs).
    #[command(subcommand)]
    Tasks(tasks_cmd::TasksCommand),
    /// Workflows of a tenant: add, list, show, rm, run, runs, cancel (runs are driven by the
    /// daemon).
    Workflows(workflows_cmd::WorkflowsArgs),
    /// Run commands in a group's sandbox (what an agent can see and do).
    #[command(subcommand)]
    Sandbox(sandbox_cmd::SandboxCommand),
    /// Extract a document's text inside a group's sandbox.
    #[command(subcommand)]
    Documents(documents_cmd::DocumentsCommand),
    /// Build the Docker backend's agent image locally.
    #[command(subcommand)]
    Image(sandbox_cmd::ImageCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
