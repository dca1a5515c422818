//! `cambot-sandbox-init`: the first program inside a bwrap sandbox that runs an operator's or
//! the local model's command. It restricts itself with Landlock (`cambot_runner::confine`: read
//! and execute everywhere it can see, write only under the `--rw` paths, plus writes to existing
//! `/dev` nodes; abstract Unix sockets and signals scoped to the sandbox), then execs the
//! command. (Agent runs do not need it: `cambot-runner` applies the same ruleset to itself.)
//!
//! Usage: `cambot-sandbox-init [--rw PATH]... [--require] -- CMD ARGS...`
//!
//! Best effort by default: on a kernel without Landlock it warns on stderr and runs the command
//! anyway (the namespaces are the boundary; this is depth). `--require` turns that into exit 126.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;

use cambot_runner::confine::RulesetStatus;
use cambot_runner::confine::restrict_self;

fn fail(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "cambot-sandbox-init: {msg}");
    std::process::exit(126)
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
    match restrict_self(&rw) {
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
