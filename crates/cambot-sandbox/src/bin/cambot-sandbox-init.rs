//! `cambot-sandbox-init`: the first program inside a bwrap sandbox. It restricts itself with
//! Landlock (read and execute everywhere it can see, write only under the `--rw` paths, plus
//! writes to existing `/dev` nodes; abstract Unix sockets and signals scoped to the sandbox),
//! then execs the command. Usage: `cambot-sandbox-init [--rw PATH]... [--require] -- CMD ARGS...`
//!
//! Best effort by default: on a kernel without Landlock it warns on stderr and runs the command
//! anyway (the namespaces are the boundary; this is depth). `--require` turns that into exit 126.

use std::io::Write;
use std::os::unix::process::CommandExt;

use landlock::ABI;
use landlock::Access;
use landlock::AccessFs;
use landlock::Ruleset;
use landlock::RulesetAttr;
use landlock::RulesetCreatedAttr;
use landlock::RulesetStatus;
use landlock::Scope;
use landlock::path_beneath_rules;

fn fail(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "cambot-sandbox-init: {msg}");
    std::process::exit(126)
}

fn restrict(rw: &[String]) -> Result<RulesetStatus, landlock::RulesetError> {
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

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rw = Vec::new();
    let mut require = false;
    let mut command = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rw" => match args.next() {
                Some(p) => rw.push(p),
                None => fail("--rw needs a path"),
            },
            "--require" => require = true,
            "--" => {
                command.extend(args.by_ref());
                break;
            }
            other => fail(&format!("unknown option {other:?}")),
        }
    }
    let Some((program, rest)) = command.split_first() else {
        fail("no command after --");
    };
    match restrict(&rw) {
        Ok(RulesetStatus::FullyEnforced) => {}
        Ok(status) => {
            if require {
                fail(&format!("Landlock is not fully enforced ({status:?})"));
            }
            if status == RulesetStatus::NotEnforced {
                let _ = writeln!(
                    std::io::stderr(),
                    "cambot-sandbox-init: warning: Landlock is not available; running without it"
                );
            }
        }
        Err(e) => {
            if require {
                fail(&format!("Landlock: {e}"));
            }
            let _ = writeln!(
                std::io::stderr(),
                "cambot-sandbox-init: warning: Landlock failed ({e}); running without it"
            );
        }
    }
    let err = std::process::Command::new(program).args(rest).exec();
    fail(&format!("exec {program}: {err}"));
}
