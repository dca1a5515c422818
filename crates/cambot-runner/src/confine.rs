//! Landlock confinement: read and execute everywhere the process can see, write only beneath
//! the given paths (plus writes to existing `/dev` nodes), abstract Unix sockets and signals
//! scoped to the sandbox. Inherited by every child, and it cannot be lifted.
//!
//! Used two ways. `cambot-sandbox-init` applies it and then execs an operator's or the local
//! model's command. An agent run skips that extra program (one exec and one bind mount less at
//! every start): the plan sets [`ENV_LANDLOCK_RW`] and `cambot-runner` confines itself with
//! [`confine_from_env`] as its first act, before it reads any input.

use landlock::ABI;
use landlock::Access;
use landlock::AccessFs;
use landlock::Ruleset;
use landlock::RulesetAttr;
use landlock::RulesetCreatedAttr;
use landlock::Scope;
use landlock::path_beneath_rules;

pub use cambot_protocol::layout::sandbox_paths::ENV_LANDLOCK_RW;
pub use landlock::RulesetError;
pub use landlock::RulesetStatus;

/// Restricts the calling process (and its future children) as described above.
pub fn restrict_self<P: AsRef<std::path::Path>>(rw: &[P]) -> Result<RulesetStatus, RulesetError> {
    let abi = ABI::V6;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(
            ["/dev"],
            AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::IoctlDev,
        ))?
        .add_rules(path_beneath_rules(rw, AccessFs::from_all(abi)))?
        .restrict_self()?;
    Ok(status.ruleset)
}

/// What [`confine_from_env`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Confinement {
    /// [`ENV_LANDLOCK_RW`] is not set: nothing asked for.
    NotRequested,
    /// Applied (fully, or partly on an older kernel ABI).
    Applied(RulesetStatus),
    /// Asked for but impossible here; the run goes on without it (the namespaces are the
    /// boundary, Landlock is depth), and the caller says so in its log.
    Unavailable(String),
}

/// Applies the confinement the plan asked for through [`ENV_LANDLOCK_RW`].
pub fn confine_from_env(lookup: impl Fn(&str) -> Option<String>) -> Confinement {
    let Some(list) = lookup(ENV_LANDLOCK_RW) else {
        return Confinement::NotRequested;
    };
    let rw: Vec<&str> = list.split(':').filter(|p| !p.is_empty()).collect();
    match restrict_self(&rw) {
        Ok(RulesetStatus::NotEnforced) => {
            Confinement::Unavailable("the kernel does not enforce Landlock".to_owned())
        }
        Ok(status) => Confinement::Applied(status),
        Err(e) => Confinement::Unavailable(e.to_string()),
    }
}
