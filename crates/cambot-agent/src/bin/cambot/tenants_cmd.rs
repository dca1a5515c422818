//! `cambot tenants add|list|show|update|disable|enable|rm`. Works while the daemon runs: it
//! notices a state change (SQLite `data_version`) within a second; a disabled tenant starts no
//! run, fires no task and accepts no sign-in, and its messages wait until it is enabled.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use anyhow::Result;
use cambot_agent::config::Config;
use cambot_core::GroupStore;
use cambot_core::Store;
use cambot_core::TenantRemoval;
use cambot_core::TenantState;
use cambot_core::TenantStore;
use cambot_core::UserStore;
use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Add a tenant (id: 1-63 characters from a-z 0-9 -).
    Add {
        id: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tenants with their state and how many groups and users they have.
    List,
    /// A tenant's groups, users and web issuers.
    Show { id: String },
    /// Change a tenant's settings: the model provider its runs use.
    Update {
        id: String,
        /// A `[providers.<name>]` entry, `local` (the embedded model), or `default` (the
        /// global choice again).
        #[arg(long, conflicts_with = "clear_provider")]
        provider: Option<String>,
        /// Use the global choice (`[model] provider`) again.
        #[arg(long)]
        clear_provider: bool,
    },
    /// Stop serving a tenant: no run, no task firing, no sign-in; messages wait.
    Disable { id: String },
    /// Serve a disabled tenant again; what waited is answered.
    Enable { id: String },
    /// Remove a tenant without groups or users; with `--purge --yes`, everything it has.
    Rm {
        id: String,
        /// Delete every row of the tenant and its directory.
        #[arg(long)]
        purge: bool,
        /// Confirm `--purge`.
        #[arg(long)]
        yes: bool,
    },
    #[command(flatten)]
    Mounts(crate::tenant_mounts_cmd::TenantMountCommand),
}

/// Parses `id` and checks that the tenant exists: what every `--tenant` flag goes through.
pub(crate) async fn known_tenant(store: &dyn TenantStore, id: &str) -> Result<TenantId> {
    let tenant = TenantId::new(id)?;
    anyhow::ensure!(
        store.tenant(&tenant).await?.is_some(),
        "unknown tenant {tenant}: add it with `cambot tenants add {tenant}` (see `cambot tenants list`)"
    );
    Ok(tenant)
}

/// [`known_tenant`] for an optional flag.
pub(crate) async fn known_tenant_opt(
    store: &dyn TenantStore,
    id: Option<&str>,
) -> Result<Option<TenantId>> {
    match id {
        Some(id) => Ok(Some(known_tenant(store, id).await?)),
        None => Ok(None),
    }
}

pub(crate) async fn run(config: &Config, cmd: TenantsCommand) -> Result<ExitCode> {
    if let TenantsCommand::Mounts(cmd) = cmd {
        return crate::tenant_mounts_cmd::run(config, cmd).await;
    }
    let layout = DataLayout::new(&config.data_dir);
    let store = cambot_agent::database::open_store(&layout).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        TenantsCommand::Add { id, name } => {
            let tenant = TenantId::new(&id)?;
            anyhow::ensure!(
                !name.chars().any(char::is_control),
                "the tenant name must not contain control characters"
            );
            anyhow::ensure!(
                store.add_tenant(&tenant, &name).await?,
                "tenant {tenant} already exists"
            );
            writeln!(out, "added tenant {tenant}")?;
        }
        TenantsCommand::List => {
            writeln!(
                out,
                "{:<24} {:<24} {:<9} {:>6} {:>6}  PROVIDER",
                "TENANT", "NAME", "STATE", "GROUPS", "USERS"
            )?;
            for t in store.tenant_summaries().await? {
                writeln!(
                    out,
                    "{:<24} {:<24} {:<9} {:>6} {:>6}  {}",
                    t.tenant.id,
                    t.tenant.name,
                    t.tenant.state,
                    t.groups,
                    t.users,
                    t.tenant.provider.as_deref().unwrap_or("-")
                )?;
            }
        }
        TenantsCommand::Update {
            id,
            provider,
            clear_provider,
        } => {
            let tenant = known_tenant(store.as_ref(), &id).await?;
            let provider = match (provider, clear_provider) {
                (Some(name), false) if name != "default" => Some(checked_provider(config, name)?),
                (Some(_), false) | (None, true) => None,
                (None, false) => {
                    anyhow::bail!("nothing to update: give --provider NAME or --clear-provider")
                }
                (Some(_), true) => {
                    anyhow::bail!("--provider and --clear-provider exclude each other")
                }
            };
            anyhow::ensure!(
                store
                    .set_tenant_provider(&tenant, provider.as_deref())
                    .await?,
                "tenant {tenant} was removed meanwhile"
            );
            match provider {
                Some(name) => writeln!(
                    out,
                    "tenant {tenant} now uses provider {name} (from its next run)"
                )?,
                None => writeln!(
                    out,
                    "tenant {tenant} now uses the global provider (from its next run)"
                )?,
            }
        }
        TenantsCommand::Show { id } => {
            let tenant = known_tenant(store.as_ref(), &id).await?;
            let row = store
                .tenant(&tenant)
                .await?
                .with_context(|| format!("tenant {tenant} was removed meanwhile"))?;
            writeln!(out, "tenant:    {}", row.id)?;
            writeln!(out, "name:      {}", row.name)?;
            writeln!(out, "state:     {}", row.state)?;
            writeln!(
                out,
                "provider:  {}",
                row.provider.as_deref().unwrap_or("global choice")
            )?;
            writeln!(out, "created:   {}", row.created_at)?;
            writeln!(out, "directory: {}", layout.tenant_dir(&tenant).display())?;
            let groups = store.registered_groups(&tenant).await?;
            writeln!(out, "groups:    {}", groups.len())?;
            for g in groups {
                writeln!(out, "  {} -> {} ({})", g.jid, g.folder, g.name)?;
            }
            let users = store.users(Some(&tenant)).await?;
            writeln!(out, "users:     {}", users.len())?;
            for u in users {
                let status = if u.disabled { " (disabled)" } else { "" };
                writeln!(out, "  {}{status}", u.id)?;
            }
            let issuers = web_issuers_of(config, &tenant);
            writeln!(out, "web issuers: {}", issuers.len())?;
            for issuer in issuers {
                writeln!(out, "  {issuer}")?;
            }
        }
        TenantsCommand::Disable { id } => {
            let tenant = known_tenant(store.as_ref(), &id).await?;
            anyhow::ensure!(
                !tenant.is_default(),
                "the default tenant cannot be disabled"
            );
            store
                .set_tenant_state(&tenant, TenantState::Disabled)
                .await?;
            writeln!(
                out,
                "tenant {tenant} disabled: no runs, task firings or sign-ins until `cambot tenants enable {tenant}`"
            )?;
        }
        TenantsCommand::Enable { id } => {
            let tenant = known_tenant(store.as_ref(), &id).await?;
            store.set_tenant_state(&tenant, TenantState::Active).await?;
            writeln!(out, "tenant {tenant} enabled")?;
        }
        // Dispatched above, before this store is opened.
        TenantsCommand::Mounts(_) => {}
        TenantsCommand::Rm { id, purge, yes } => {
            let tenant = TenantId::new(&id)?;
            anyhow::ensure!(!tenant.is_default(), "the default tenant cannot be removed");
            if purge {
                anyhow::ensure!(
                    yes,
                    "--purge deletes every message, group, task, user and file of tenant {tenant}: add --yes to confirm"
                );
                let rows = store
                    .purge_tenant(&tenant)
                    .await?
                    .with_context(|| format!("unknown tenant {tenant}"))?;
                let dir = layout.tenant_dir(&tenant);
                remove_tenant_dir(&dir)?;
                writeln!(
                    out,
                    "purged tenant {tenant}: {rows} rows and {} deleted",
                    dir.display()
                )?;
            } else {
                match store.remove_tenant(&tenant).await? {
                    TenantRemoval::Removed => writeln!(out, "removed tenant {tenant}")?,
                    TenantRemoval::NotFound => anyhow::bail!("unknown tenant {tenant}"),
                    TenantRemoval::Protected => {
                        anyhow::bail!("the default tenant cannot be removed")
                    }
                    TenantRemoval::NotEmpty {
                        groups,
                        users,
                        secrets,
                    } => anyhow::bail!("{}", not_empty(&tenant, groups, users, secrets)),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `tenants rm` without `--purge` refuses, naming what the tenant still holds.
fn not_empty(tenant: &TenantId, groups: usize, users: usize, secrets: usize) -> String {
    let mut held = Vec::new();
    let mut how = Vec::new();
    if groups > 0 || users > 0 {
        held.push(format!("{groups} group(s) and {users} user(s)"));
        how.push("remove them".to_owned());
    }
    if secrets > 0 {
        let plural = if secrets == 1 { "" } else { "s" };
        held.push(format!("{secrets} secret{plural}"));
        how.push(format!(
            "remove them with `cambot secrets rm --tenant {tenant} NAME`"
        ));
    }
    format!(
        "tenant {tenant} has {}; {} or use --purge --yes to delete everything of it",
        held.join(" and "),
        how.join(", ")
    )
}

/// `name` when a tenant may choose it: a `[providers.<name>]` entry or the embedded model.
fn checked_provider(config: &Config, name: String) -> Result<String> {
    let local = cambot_agent::model_config::LOCAL_PROVIDER;
    if name == local || config.providers.contains_key(&name) {
        return Ok(name);
    }
    let known: Vec<&str> = config
        .providers
        .keys()
        .map(String::as_str)
        .chain([local])
        .collect();
    anyhow::bail!(
        "unknown provider {name:?}: a tenant may use {} (the [providers.*] entries of the config, \
         and `local` for the embedded model), or `default` for the global choice",
        known.join(", ")
    )
}

/// The external token issuers whose tokens sign in to `tenant`.
pub(crate) fn web_issuers_of(config: &Config, tenant: &TenantId) -> Vec<String> {
    config
        .channels
        .web
        .all_issuers()
        .into_iter()
        .filter(|e| &e.tenant == tenant)
        .map(|e| format!("{} (audience {})", e.issuer, e.audience))
        .collect()
}

/// Deletes a purged tenant's directory. A symlink in its place is removed, never followed.
fn remove_tenant_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(dir)
            .with_context(|| format!("deleting {} (its rows are gone)", dir.display())),
        Ok(_) => std::fs::remove_file(dir)
            .with_context(|| format!("deleting {} (its rows are gone)", dir.display())),
    }
}

/// `cambot doctor`, per tenant: its state and size, and what would break its runs (a mount
/// root gone or moved since it was allowed, a web issuer naming a tenant that does not exist).
pub(crate) async fn doctor_lines(
    config: &Config,
    layout: &DataLayout,
    store: &dyn Store,
) -> Vec<(bool, String, String)> {
    let mut lines = Vec::new();
    let summaries = match store.tenant_summaries().await {
        Ok(s) => s,
        Err(e) => return vec![(false, "tenants".to_owned(), e.to_string())],
    };
    let roots = match store.mount_roots(None).await {
        Ok(r) => r,
        Err(e) => {
            lines.push((false, "tenant mount roots".to_owned(), e.to_string()));
            Vec::new()
        }
    };
    for t in &summaries {
        let id = &t.tenant.id;
        let mine: Vec<_> = roots.iter().filter(|r| &r.tenant == id).collect();
        let broken: Vec<&str> = mine
            .iter()
            .filter(|r| {
                std::fs::canonicalize(&r.path).map_or(true, |p| p != std::path::Path::new(&r.path))
            })
            .map(|r| r.path.as_str())
            .collect();
        let issuers = web_issuers_of(config, id);
        let mut detail = format!(
            "{}, {} group(s), {} user(s), {} mount root(s), dir {}",
            t.tenant.state,
            t.groups,
            t.users,
            mine.len(),
            layout.tenant_dir(id).display()
        );
        if !issuers.is_empty() {
            detail.push_str(&format!(", web issuers: {}", issuers.join(", ")));
        }
        if !broken.is_empty() {
            detail.push_str(&format!(
                "; mount root(s) missing or moved since allowed: {} (their mounts are refused; \
                 `cambot tenants deny-mount {id} PATH`)",
                broken.join(", ")
            ));
        }
        lines.push((broken.is_empty(), format!("tenant {id}"), detail));
    }
    let issuers = if config.channels.web.enabled {
        config.channels.web.all_issuers()
    } else {
        Vec::new()
    };
    for issuer in issuers {
        if !summaries.iter().any(|t| t.tenant.id == issuer.tenant) {
            lines.push((
                false,
                "web issuer".to_owned(),
                format!(
                    "{} names tenant {}, which does not exist (cambot tenants add {})",
                    issuer.issuer, issuer.tenant, issuer.tenant
                ),
            ));
        }
    }
    lines
}
