//! `cambot groups update`: a group's extra mounts, timeout and trigger, validated with the
//! rules a run start applies (operator allowlist, the tenant's own mount roots, realpath,
//! blocked names), stored through the store.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use anyhow::Result;
use anyhow::anyhow;
use anyhow::bail;
use cambot_agent::config::Config;
use cambot_agent::tenant_mounts::operator_allowlist;
use cambot_agent::tenant_mounts::tenant_mounts;
use cambot_core::GroupRegistration;
use cambot_core::GroupStore;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::message::AdditionalMount;
use cambot_sandbox::tenant_mounts::validate_tenant_mount;
use clap::Args;

/// Longest per-group timeout accepted (a run's absolute lifetime still caps it).
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[arg(long)]
    jid: String,
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Extra mount `HOST[:CONTAINER][:rw]`, seen at /workspace/extra/CONTAINER (default: the
    /// host directory's name). Repeatable.
    #[arg(long, value_name = "HOST[:CONTAINER][:rw]")]
    add_mount: Vec<String>,
    /// Remove the extra mount seen at /workspace/extra/CONTAINER. Repeatable.
    #[arg(long, value_name = "CONTAINER")]
    remove_mount: Vec<String>,
    /// Hard timeout of the group's runs, in seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    #[arg(long)]
    trigger: Option<String>,
    #[arg(long, value_name = "true|false")]
    requires_trigger: Option<bool>,
}

/// `HOST[:CONTAINER][:rw|:ro]`: the host path may not hold `:`.
fn parse_mount(spec: &str) -> Result<AdditionalMount> {
    let mut parts: Vec<&str> = spec.split(':').collect();
    let rw = match parts.last() {
        Some(&"rw") if parts.len() > 1 => {
            parts.pop();
            true
        }
        Some(&"ro") if parts.len() > 1 => {
            parts.pop();
            false
        }
        _ => false,
    };
    let (host, container) = match parts.as_slice() {
        [host] => (*host, None),
        [host, container] => (*host, Some(*container)),
        _ => bail!("invalid mount {spec:?}: use HOST[:CONTAINER][:rw]"),
    };
    if host.is_empty() {
        bail!("invalid mount {spec:?}: empty host path");
    }
    let container = match container {
        Some(c) => c.to_owned(),
        None => std::path::Path::new(host.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("invalid mount {spec:?}: name it with HOST:CONTAINER"))?,
    };
    // One name under /workspace/extra: nested names would hide one mount inside another.
    if container.contains('/') || !cambot_sandbox::mounts::valid_container_path(&container) {
        bail!("invalid container name {container:?}: one name of [A-Za-z0-9._-], not `.` or `..`");
    }
    Ok(AdditionalMount {
        host_path: host.to_owned(),
        container_path: Some(container),
        readonly: Some(!rw),
    })
}

pub(crate) async fn update(config: &Config, args: UpdateArgs) -> Result<ExitCode> {
    let layout = DataLayout::new(&config.data_dir);
    let store = cambot_agent::database::open_store(&layout).await?;
    let tenant = crate::tenants_cmd::known_tenant(store.as_ref(), &args.tenant).await?;
    let jid = ChatJid::new(&args.jid)?;
    let group: RegisteredGroup = store
        .registered_group(&tenant, &jid)
        .await?
        .ok_or_else(|| anyhow!("no group is registered for {jid} in tenant {tenant}"))?;
    let mut out = std::io::stdout().lock();

    let mut cc = group.container_config.clone().unwrap_or_default();
    for name in &args.remove_mount {
        let before = cc.additional_mounts.len();
        cc.additional_mounts
            .retain(|m| m.container_path.as_deref() != Some(name.as_str()));
        if cc.additional_mounts.len() == before {
            bail!(
                "group {} has no mount at /workspace/extra/{name}",
                group.folder
            );
        }
        writeln!(out, "removed /workspace/extra/{name}")?;
    }
    if !args.add_mount.is_empty() {
        let allowlist = operator_allowlist(&config.sandbox, &layout, config.source.as_deref());
        let mounts = tenant_mounts(store.as_ref(), &tenant).await?;
        let home = cambot_sandbox::config::home_dir();
        for spec in &args.add_mount {
            let req = parse_mount(spec)?;
            let name = req.container_path.clone().unwrap_or_default();
            if cc
                .additional_mounts
                .iter()
                .any(|m| m.container_path.as_deref() == Some(name.as_str()))
            {
                bail!("/workspace/extra/{name} is already mounted: --remove-mount {name} first");
            }
            let valid =
                validate_tenant_mount(&req, &allowlist, &mounts, group.is_main(), home.as_deref())
                    .map_err(|e| anyhow!("mount {spec} refused: {e}"))?;
            let wanted_rw = req.readonly == Some(false);
            writeln!(
                out,
                "mount {} at /workspace/extra/{name} ({}{})",
                valid.host_path.display(),
                if valid.readonly {
                    "read-only"
                } else {
                    "read-write"
                },
                if wanted_rw && valid.readonly {
                    ": the operator's or the tenant's root, or the group, does not allow write"
                } else {
                    ""
                }
            )?;
            // The resolved path: a later symlink swap cannot redirect it (every run checks
            // it again anyway).
            cc.additional_mounts.push(AdditionalMount {
                host_path: valid.host_path.to_string_lossy().into_owned(),
                ..req
            });
        }
    }
    if let Some(secs) = args.timeout {
        if secs == 0 || secs > MAX_TIMEOUT_SECS {
            bail!("invalid --timeout {secs}: between 1 and {MAX_TIMEOUT_SECS} seconds");
        }
        cc.timeout_ms = Some(secs * 1000);
        writeln!(out, "timeout {secs}s")?;
    }
    let cc_changed = group.container_config.clone().unwrap_or_default() != cc;
    if cc_changed {
        store
            .set_container_config(&tenant, &jid, Some(cc))
            .await
            .context("storing the group's settings")?;
    }
    if args.trigger.is_some() || args.requires_trigger.is_some() {
        let trigger = args.trigger.unwrap_or_else(|| group.trigger.clone());
        if trigger.trim().is_empty() {
            bail!("invalid --trigger: empty");
        }
        let g = store
            .register_group(GroupRegistration {
                tenant: tenant.clone(),
                jid: jid.clone(),
                name: group.name.clone(),
                folder: group.folder.clone(),
                trigger,
                requires_trigger: args.requires_trigger,
                container_config: None,
            })
            .await?;
        writeln!(
            out,
            "trigger {} (required: {})",
            g.trigger,
            if cambot_agent::formatting::requires_trigger(g.is_main(), g.requires_trigger) {
                "yes"
            } else {
                "no"
            }
        )?;
    }
    writeln!(out, "updated {jid} in tenant {tenant}")?;
    Ok(ExitCode::SUCCESS)
}

/// The group's sandbox settings under its line in `cambot groups list`.
pub(crate) fn print_settings(out: &mut impl Write, g: &RegisteredGroup) -> std::io::Result<()> {
    let Some(cc) = &g.container_config else {
        return Ok(());
    };
    if let Some(ms) = cc.timeout_ms {
        writeln!(out, "    timeout {}s", ms / 1000)?;
    }
    for m in &cc.additional_mounts {
        let name = m.container_path.as_deref().unwrap_or("?");
        let mode = if m.readonly == Some(false) {
            "rw"
        } else {
            "ro"
        };
        writeln!(
            out,
            "    mount /workspace/extra/{name} <- {} ({mode})",
            m.host_path
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_mount;

    #[test]
    fn mount_specs_parse_and_bad_names_are_refused() {
        let m = parse_mount("/srv/acme/notes").unwrap();
        assert_eq!(m.container_path.as_deref(), Some("notes"));
        assert_eq!(m.readonly, Some(true));
        let m = parse_mount("/srv/acme/notes:n2:rw").unwrap();
        assert_eq!(
            (
                m.host_path.as_str(),
                m.container_path.as_deref(),
                m.readonly
            ),
            ("/srv/acme/notes", Some("n2"), Some(false))
        );
        let m = parse_mount("/srv/acme/notes:rw").unwrap();
        assert_eq!(m.container_path.as_deref(), Some("notes"));
        assert_eq!(m.readonly, Some(false));
        for bad in [
            "/srv/x:a/b",
            "/srv/x:..",
            "/srv/x:.",
            ":x",
            "/srv/x:a:b:rw",
            "/",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }
}
