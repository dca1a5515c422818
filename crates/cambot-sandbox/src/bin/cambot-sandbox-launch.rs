//! `cambot-sandbox-launch`: a warm launcher. The bwrap backend starts it ahead of time inside a
//! spare run cgroup; it waits for one run's bwrap command on descriptor 3 and execs it (see
//! `cambot_sandbox::launch`). Not meant to be started by hand.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cambot_sandbox::launch::launcher_main()
}
