//! `cambot tenants allow-mount` and `cambot tenants deny-mount`: each tenant's mount roots,
//! inside the operator's allowlist file (the ceiling).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use anyhow::bail;
use cambot_agent::config::Config;
use cambot_agent::tenant_mounts::all_roots;
use cambot_agent::tenant_mounts::operator_allowlist;
use cambot_core::GroupStore;
use cambot_core::MountRootStore;
use cambot_protocol::DataLayout;
use cambot_sandbox::TenantMounts;
use cambot_sandbox::tenant_mounts::validate_new_root;
use cambot_sandbox::tenant_mounts::validate_tenant_mount;
use clap::Subcommand;

/// The tenant mount verbs; flattened into `cambot tenants` beside the administration verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum TenantMountCommand {
    /// Let a tenant's groups mount directories below PATH (read-only unless --rw). PATH must lie
    /// inside the operator's mount allowlist; two tenants' roots may overlap only when both are
    /// read-only.
    AllowMount {
        /// Tenant id.
        id: String,
        path: String,
        /// Groups may mount below it read-write (only if the operator's root allows it).
        #[arg(long)]
        rw: bool,
    },
    /// Remove a tenant's mount root; its groups' mounts below it are refused from their next run.
    DenyMount {
        /// Tenant id.
        id: String,
        path: String,
    },
}

pub(crate) async fn run(config: &Config, cmd: TenantMountCommand) -> Result<ExitCode> {
    let layout = DataLayout::new(&config.data_dir);
    let store = cambot_agent::database::open_store(&layout).await?;
    let allowlist = operator_allowlist(&config.sandbox, &layout, config.source.as_deref());
    let home = cambot_sandbox::config::home_dir();
    let mut out = std::io::stdout().lock();
    match cmd {
        TenantMountCommand::AllowMount { id, path, rw } => {
            let tenant = crate::tenants_cmd::known_tenant(store.as_ref(), &id).await?;
            let roots = all_roots(store.as_ref()).await?;
            let root = validate_new_root(&tenant, &path, rw, &allowlist, &roots, home.as_deref())
                .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
            let path = root.path.to_string_lossy();
            store.set_mount_root(&tenant, &path, rw).await?;
            writeln!(
                out,
                "tenant {tenant} may mount below {path} ({})",
                if rw { "read-write" } else { "read-only" }
            )?;
        }
        TenantMountCommand::DenyMount { id, path } => {
            let tenant = crate::tenants_cmd::known_tenant(store.as_ref(), &id).await?;
            let stored = store.mount_roots(Some(&tenant)).await?;
            let resolved = cambot_sandbox::config::expand_tilde(&path, home.as_deref())
                .and_then(|p| std::fs::canonicalize(p).ok());
            let Some(found) = stored
                .iter()
                .find(|r| r.path == path || resolved.as_deref() == Some(Path::new(&r.path)))
            else {
                let known: Vec<&str> = stored.iter().map(|r| r.path.as_str()).collect();
                bail!(
                    "tenant {tenant} has no mount root {path} (its roots: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            };
            store.remove_mount_root(&tenant, &found.path).await?;
            writeln!(
                out,
                "tenant {tenant} may no longer mount below {}",
                found.path
            )?;
            let mounts = TenantMounts::for_tenant(&tenant, all_roots(store.as_ref()).await?);
            for g in store.registered_groups(&tenant).await? {
                let Some(cc) = &g.container_config else {
                    continue;
                };
                for m in &cc.additional_mounts {
                    if let Err(e) =
                        validate_tenant_mount(m, &allowlist, &mounts, g.is_main(), home.as_deref())
                    {
                        writeln!(
                            out,
                            "  group {} ({}): mount {} is now refused at its next run: {e}",
                            g.folder, g.jid, m.host_path
                        )?;
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
