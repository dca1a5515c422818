//! Mounts filtered by tenant: each tenant has its own mount roots inside the operator's
//! allowlist (the ceiling). A group's extra mount must pass the operator checks
//! ([`validate_mount`]) and lie inside a root of its own tenant; the root itself is checked
//! again every time (realpath, blocked names, protected paths, operator root, and no overlap
//! with another tenant's root unless both are read-only), so a root that went bad since it was
//! allowed stops serving mounts at the next run start.

use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::TenantId;
use cambot_protocol::message::AdditionalMount;

use crate::config::expand_tilde;
use crate::error::MountRejection;
use crate::mounts::MountAllowlist;
use crate::mounts::ValidatedMount;
use crate::mounts::blocked_one_level_down;
use crate::mounts::blocked_pattern;
use crate::mounts::overlaps;
use crate::mounts::realpath;
use crate::mounts::validate_mount;

/// One tenant's mount root as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoot {
    pub tenant: TenantId,
    pub path: PathBuf,
    pub rw: bool,
}

/// Which roots bind a tenant's extra mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantMounts {
    /// The `default` tenant with no roots of its own: the operator allowlist (the behaviour
    /// before tenants had roots), minus what lies inside or holds another tenant's root.
    OperatorOnly { others: Vec<TenantRoot> },
    /// Mounts must lie inside one of `own`; `others` are every other tenant's roots (the
    /// overlap rule).
    Roots {
        tenant: TenantId,
        own: Vec<TenantRoot>,
        others: Vec<TenantRoot>,
    },
}

impl TenantMounts {
    /// Splits every tenant's roots into `tenant`'s and the others'. Any tenant but `default`
    /// without roots gets no extra mount at all.
    pub fn for_tenant(tenant: &TenantId, all: Vec<TenantRoot>) -> Self {
        let (own, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| &r.tenant == tenant);
        if own.is_empty() && tenant.as_str() == TenantId::DEFAULT {
            return Self::OperatorOnly { others };
        }
        Self::Roots {
            tenant: tenant.clone(),
            own,
            others,
        }
    }

    /// No root is known (the store could not be read): nothing is mounted, for any tenant.
    pub fn none(tenant: &TenantId) -> Self {
        Self::Roots {
            tenant: tenant.clone(),
            own: Vec::new(),
            others: Vec::new(),
        }
    }
}

/// The operator root holding `real` (resolved), and whether any holding root allows write.
fn operator_root(
    real: &Path,
    allowlist: &MountAllowlist,
    home: Option<&Path>,
) -> Option<(PathBuf, bool)> {
    let holding: Vec<(PathBuf, bool)> = allowlist
        .roots
        .iter()
        .filter_map(|r| Some((realpath(&expand_tilde(&r.path, home)?)?, r.allow_read_write)))
        .filter(|(root, _)| real.starts_with(root))
        .collect();
    let first = holding.first()?.0.clone();
    Some((first, holding.iter().any(|(_, rw)| *rw)))
}

/// Checks a tenant root now: it resolves, is not blocked or protected, lies inside an operator
/// root (read-write only if that root allows it) and overlaps no other tenant's root unless
/// both are read-only. Returns its resolved path.
pub fn check_tenant_root(
    root: &TenantRoot,
    others: &[TenantRoot],
    allowlist: &MountAllowlist,
    home: Option<&Path>,
) -> Result<PathBuf, MountRejection> {
    if let Some(reason) = &allowlist.unavailable {
        return Err(MountRejection::NoAllowlist(reason.clone()));
    }
    let written = expand_tilde(&root.path.to_string_lossy(), home)
        .filter(|p| p.is_absolute())
        .ok_or_else(|| MountRejection::Unresolvable(root.path.display().to_string()))?;
    let real = realpath(&written)
        .ok_or_else(|| MountRejection::Unresolvable(written.display().to_string()))?;
    for p in [&written, &real] {
        if let Some(pattern) = blocked_pattern(p, &allowlist.blocked) {
            return Err(MountRejection::Blocked {
                path: p.clone(),
                pattern: pattern.to_owned(),
            });
        }
    }
    for prot in &allowlist.protected {
        let prot_real = realpath(prot).unwrap_or_else(|| prot.clone());
        if overlaps(&real, &prot_real) || overlaps(&real, prot) {
            return Err(MountRejection::Protected {
                path: real,
                protected: prot.clone(),
            });
        }
    }
    let Some((op_root, op_rw)) = operator_root(&real, allowlist, home) else {
        return Err(MountRejection::NotAllowed(real));
    };
    if root.rw && !op_rw {
        return Err(MountRejection::RootNotWritable {
            path: real,
            root: op_root,
        });
    }
    for other in others.iter().filter(|o| o.tenant != root.tenant) {
        if !(root.rw || other.rw) {
            continue;
        }
        // The stored path and its current resolution: either may be what a mount reaches.
        let other_real = realpath(&other.path);
        let hit = overlaps(&real, &other.path)
            || other_real.as_deref().is_some_and(|o| overlaps(&real, o));
        if hit {
            return Err(MountRejection::TenantOverlap {
                path: real,
                tenant: root.tenant.to_string(),
                other_tenant: other.tenant.to_string(),
                other_root: other.path.clone(),
            });
        }
    }
    if root.rw {
        blocked_one_level_down(&real, &allowlist.blocked)?;
    }
    Ok(real)
}

/// Validates a new root for `tenant` (`cambot tenants allow-mount`) against the operator
/// allowlist and every stored root. Returns the root to store (resolved path).
pub fn validate_new_root(
    tenant: &TenantId,
    path: &str,
    rw: bool,
    allowlist: &MountAllowlist,
    all_roots: &[TenantRoot],
    home: Option<&Path>,
) -> Result<TenantRoot, MountRejection> {
    let candidate = TenantRoot {
        tenant: tenant.clone(),
        path: PathBuf::from(path),
        rw,
    };
    let real = check_tenant_root(&candidate, all_roots, allowlist, home)?;
    Ok(TenantRoot {
        path: real,
        ..candidate
    })
}

/// Validates a group's extra mount: the operator checks, then a root of its own tenant that
/// still passes [`check_tenant_root`]. The mount is read-only unless that root allows write.
pub fn validate_tenant_mount(
    req: &AdditionalMount,
    allowlist: &MountAllowlist,
    tenant_mounts: &TenantMounts,
    is_main: bool,
    home: Option<&Path>,
) -> Result<ValidatedMount, MountRejection> {
    let mount = validate_mount(req, allowlist, is_main, home)?;
    let (tenant, own, others) = match tenant_mounts {
        TenantMounts::OperatorOnly { others } => {
            // Another tenant's data stays its own, even from the operator's tenant: only a
            // read-only mount of a read-only root may share it (the overlap rule of roots).
            for other in others {
                let other_real = realpath(&other.path).unwrap_or_else(|| other.path.clone());
                if overlaps(&mount.host_path, &other_real) && (other.rw || !mount.readonly) {
                    return Err(MountRejection::OtherTenantsRoot {
                        path: mount.host_path,
                        other_tenant: other.tenant.to_string(),
                        other_root: other.path.clone(),
                    });
                }
            }
            return Ok(mount);
        }
        TenantMounts::Roots {
            tenant,
            own,
            others,
        } => (tenant, own, others),
    };
    let mut stale = None;
    for root in own {
        match check_tenant_root(root, others, allowlist, home) {
            Ok(real) if mount.host_path.starts_with(&real) => {
                return Ok(ValidatedMount {
                    readonly: mount.readonly || !root.rw,
                    ..mount
                });
            }
            Ok(_) => {}
            // A root that holds the mount but went bad explains the refusal better than
            // "outside every root".
            Err(e) if mount.host_path.starts_with(&root.path) => {
                stale = Some(MountRejection::StaleTenantRoot {
                    path: root.path.clone(),
                    tenant: tenant.to_string(),
                    reason: Box::new(e),
                });
            }
            Err(_) => {}
        }
    }
    Err(stale.unwrap_or(MountRejection::OutsideTenantRoots {
        path: mount.host_path,
        tenant: tenant.to_string(),
    }))
}

#[cfg(test)]
#[path = "tenant_mounts_tests.rs"]
mod tests;
