//! `cambot tenants` through the real binary: add, list, show, disable, enable, rm and purge, and
//! every `--tenant` flag refusing a tenant that does not exist.

use std::path::Path;

use cambot_core::SqliteStore;
use cambot_core::TenantState;
use cambot_core::TenantStore;
use cambot_protocol::TenantId;

use super::support::CliOut;
use super::support::run_cambot;

type Cli = CliOut;

fn cambot_with_stdin(data_dir: &Path, args: &[&str], stdin: &str) -> Cli {
    run_cambot(None, data_dir, args, stdin)
}

fn cambot(data_dir: &Path, args: &[&str]) -> Cli {
    cambot_with_stdin(data_dir, args, "")
}

#[track_caller]
fn ok(cli: Cli) -> String {
    assert!(cli.ok, "stdout: {}\nstderr: {}", cli.stdout, cli.stderr);
    cli.stdout
}

#[track_caller]
fn fails_with(cli: Cli, text: &str) {
    assert!(!cli.ok, "succeeded: {}", cli.stdout);
    assert!(
        cli.stderr.contains(text),
        "expected {text:?} in: {}",
        cli.stderr
    );
}

/// A tenant with a registered group `g1` (same folder in every tenant) and a user `alice`.
fn populated(dir: &Path, tenant: &str) {
    ok(cambot(dir, &["tenants", "add", tenant]));
    ok(cambot(
        dir,
        &[
            "groups", "register", "--jid", "x@g.us", "--name", "X", "--folder", "g1", "--tenant",
            tenant,
        ],
    ));
    ok(cambot_with_stdin(
        dir,
        &["users", "add", "alice", "--tenant", tenant],
        "correct horse battery\n",
    ));
}

fn list_line<'a>(listing: &'a str, tenant: &str) -> Vec<&'a str> {
    listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tenant))
        .unwrap_or_else(|| panic!("{tenant} not in:\n{listing}"))
        .split_whitespace()
        .collect()
}

#[test]
fn tenants_are_added_listed_shown_disabled_enabled_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        cambot(d, &["tenants", "add", "Acme_Corp"]),
        "use 1-63 characters from a-z 0-9 -",
    );
    ok(cambot(d, &["tenants", "add", "acme", "--name", "AcmeCorp"]));
    fails_with(cambot(d, &["tenants", "add", "acme"]), "already exists");
    populated(d, "beta");

    let listing = ok(cambot(d, &["tenants", "list"]));
    assert_eq!(
        list_line(&listing, "acme"),
        ["acme", "AcmeCorp", "active", "0", "0", "-"]
    );
    assert_eq!(
        list_line(&listing, "beta"),
        ["beta", "active", "1", "1", "-"],
        "no name: the column is empty"
    );
    assert_eq!(list_line(&listing, "default")[1], "active");

    let shown = ok(cambot(d, &["tenants", "show", "beta"]));
    assert!(shown.contains("state:     active"), "{shown}");
    assert!(shown.contains("x@g.us -> g1 (X)"), "{shown}");
    assert!(shown.contains("users:     1\n  alice\n"), "{shown}");
    assert!(shown.contains("web issuers: 0"), "{shown}");
    fails_with(
        cambot(d, &["tenants", "show", "nope"]),
        "unknown tenant nope",
    );

    ok(cambot(d, &["tenants", "disable", "beta"]));
    assert_eq!(
        list_line(&ok(cambot(d, &["tenants", "list"])), "beta")[1],
        "disabled"
    );
    fails_with(
        cambot(d, &["tenants", "disable", "default"]),
        "the default tenant cannot be disabled",
    );
    ok(cambot(d, &["tenants", "enable", "beta"]));
    assert_eq!(
        list_line(&ok(cambot(d, &["tenants", "list"])), "beta")[1],
        "active"
    );

    fails_with(
        cambot(d, &["tenants", "rm", "beta"]),
        "tenant beta has 1 group(s) and 1 user(s); remove them",
    );
    fails_with(
        cambot(d, &["tenants", "rm", "beta", "--purge"]),
        "add --yes to confirm",
    );
    fails_with(
        cambot(d, &["tenants", "rm", "default", "--purge", "--yes"]),
        "the default tenant cannot be removed",
    );
    fails_with(cambot(d, &["tenants", "rm", "nope"]), "unknown tenant nope");
    ok(cambot(d, &["tenants", "rm", "acme"]));
    let listing = ok(cambot(d, &["tenants", "list"]));
    assert!(!listing.contains("acme"), "{listing}");
    assert!(listing.contains("beta"), "{listing}");
}

#[test]
fn every_tenant_flag_refuses_an_unknown_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Without a database, only `default` exists (the sandbox command runs without one).
    fails_with(
        cambot(
            d,
            &[
                "sandbox", "run", "--tenant", "nope", "--group", "g1", "--", "true",
            ],
        ),
        "unknown tenant nope",
    );
    ok(cambot(d, &["tenants", "list"]));
    let register = [
        "groups", "register", "--jid", "x@g.us", "--name", "X", "--folder", "g1", "--tenant",
        "nope",
    ];
    let cases: Vec<Vec<&str>> = vec![
        vec!["groups", "list", "--tenant", "nope"],
        register.to_vec(),
        vec!["users", "add", "alice", "--tenant", "nope"],
        vec!["users", "list", "--tenant", "nope"],
        vec!["users", "disable", "alice", "--tenant", "nope"],
        vec!["users", "enable", "alice", "--tenant", "nope"],
        vec!["users", "passwd", "alice", "--tenant", "nope"],
        vec!["tasks", "list", "--tenant", "nope"],
        vec![
            "sandbox", "run", "--tenant", "nope", "--group", "g1", "--", "true",
        ],
        vec![
            "documents",
            "extract",
            "--tenant",
            "nope",
            "--group",
            "g1",
            "/dev/null",
        ],
    ];
    for args in &cases {
        let cli = cambot_with_stdin(d, args, "correct horse battery\n");
        assert!(!cli.ok, "{args:?} succeeded: {}", cli.stdout);
        assert!(
            cli.stderr
                .contains("unknown tenant nope: add it with `cambot tenants add nope`"),
            "{args:?}: {}",
            cli.stderr
        );
    }
    // An id that could never be a tenant says why.
    fails_with(
        cambot(d, &["groups", "list", "--tenant", "Nope"]),
        "a-z 0-9 -",
    );
    // The same commands work for a tenant that exists.
    ok(cambot(d, &["groups", "list", "--tenant", "default"]));
    ok(cambot(d, &["users", "list", "--tenant", "default"]));
    ok(cambot(d, &["tasks", "list", "--tenant", "default"]));
}

/// Two tenants with a group of the same folder, a user of the same name and files in their
/// directories: purging one removes its rows and its directory, and every row and file of the
/// other stays.
#[tokio::test]
async fn purge_removes_one_tenants_rows_and_directory_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    populated(d, "acme");
    populated(d, "beta");
    let acme_dir = d.join("tenants/acme");
    let beta_file = d.join("tenants/beta/groups/g1/notes.txt");
    std::fs::write(acme_dir.join("groups/g1/notes.txt"), "acme").unwrap();
    std::fs::write(&beta_file, "beta").unwrap();
    let default_dir = d.join("tenants/default/groups/main");
    std::fs::create_dir_all(&default_dir).unwrap();

    let out = ok(cambot(d, &["tenants", "rm", "acme", "--purge", "--yes"]));
    assert!(out.contains("purged tenant acme"), "{out}");
    assert!(!acme_dir.exists());
    assert_eq!(std::fs::read_to_string(&beta_file).unwrap(), "beta");
    assert!(default_dir.is_dir());

    let store = SqliteStore::open(&d.join("cambot.db")).unwrap();
    let summaries: Vec<(String, usize, usize)> = store
        .tenant_summaries()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.tenant.id.to_string(), t.groups, t.users))
        .collect();
    assert_eq!(
        summaries,
        [("beta".to_owned(), 1, 1), ("default".to_owned(), 0, 0)]
    );
    let beta = TenantId::new("beta").unwrap();
    assert_eq!(
        store.tenant(&beta).await.unwrap().unwrap().state,
        TenantState::Active
    );
    let groups = ok(cambot(d, &["groups", "list", "--tenant", "beta"]));
    assert!(groups.contains("x@g.us"), "{groups}");
    fails_with(
        cambot(d, &["groups", "list", "--tenant", "acme"]),
        "unknown tenant acme",
    );
}

#[tokio::test]
async fn doctor_reports_each_tenant_and_a_mount_root_that_went_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    populated(d, "acme");
    populated(d, "beta");
    ok(cambot(d, &["tenants", "disable", "beta"]));
    let root = tempfile::tempdir().unwrap();
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    {
        use cambot_core::MountRootStore;
        let store = SqliteStore::open(&d.join("cambot.db")).unwrap();
        store
            .set_mount_root(
                &TenantId::new("acme").unwrap(),
                root_path.to_str().unwrap(),
                false,
            )
            .await
            .unwrap();
    }
    // The doctor's other checks (sandbox, model) depend on the machine: only its tenant lines
    // are asserted.
    let line = |out: &str, tenant: &str| {
        out.lines()
            .find(|l| l.contains(&format!("] tenant {tenant}:")))
            .unwrap_or_else(|| panic!("no line for {tenant} in:\n{out}"))
            .to_owned()
    };
    let out = cambot(d, &["doctor"]).stdout;
    let acme = line(&out, "acme");
    assert!(acme.starts_with("[ ok ]"), "{acme}");
    assert!(
        acme.contains("active, 1 group(s), 1 user(s), 1 mount root(s)"),
        "{acme}"
    );
    let beta = line(&out, "beta");
    assert!(
        beta.starts_with("[ ok ]") && beta.contains("disabled"),
        "{beta}"
    );
    assert!(line(&out, "default").starts_with("[ ok ]"));

    drop(root);
    let out = cambot(d, &["doctor"]).stdout;
    let acme = line(&out, "acme");
    assert!(acme.starts_with("[FAIL]"), "{acme}");
    assert!(
        acme.contains(&format!(
            "missing or moved since allowed: {}",
            root_path.display()
        )),
        "{acme}"
    );
    assert!(line(&out, "beta").starts_with("[ ok ]"));
}

const TWO_PROVIDERS: &str = r#"
[model]
provider = "first"

[providers.first]
dialect = "anthropic"
base_url = "http://127.0.0.1:9"
model = "one"

[providers.second]
dialect = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "two"
"#;

#[test]
fn a_tenant_switches_provider_to_a_configured_entry_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let config = dir.path().join("cambot.toml");
    std::fs::write(&config, TWO_PROVIDERS).unwrap();
    let run = |args: &[&str]| run_cambot(Some(&config), &d, args, "");
    ok(run(&["tenants", "add", "acme"]));
    let shown = ok(run(&["tenants", "show", "acme"]));
    assert!(shown.contains("provider:  global choice"), "{shown}");

    ok(run(&["tenants", "update", "acme", "--provider", "second"]));
    let shown = ok(run(&["tenants", "show", "acme"]));
    assert!(shown.contains("provider:  second"), "{shown}");
    let listing = ok(run(&["tenants", "list"]));
    assert_eq!(list_line(&listing, "acme").last(), Some(&"second"));
    assert_eq!(list_line(&listing, "default").last(), Some(&"-"));

    // An unknown name is refused with the names a tenant may use; nothing changes.
    fails_with(
        run(&["tenants", "update", "acme", "--provider", "third"]),
        "unknown provider \"third\": a tenant may use first, second, local",
    );
    assert!(ok(run(&["tenants", "show", "acme"])).contains("provider:  second"));
    fails_with(
        run(&["tenants", "update", "nope", "--provider", "second"]),
        "unknown tenant nope",
    );
    fails_with(run(&["tenants", "update", "acme"]), "nothing to update");

    ok(run(&["tenants", "update", "acme", "--provider", "local"]));
    assert!(ok(run(&["tenants", "show", "acme"])).contains("provider:  local"));
    ok(run(&["tenants", "update", "acme", "--provider", "default"]));
    assert!(ok(run(&["tenants", "show", "acme"])).contains("provider:  global choice"));
    ok(run(&["tenants", "update", "acme", "--provider", "first"]));
    ok(run(&["tenants", "update", "acme", "--clear-provider"]));
    assert!(ok(run(&["tenants", "show", "acme"])).contains("provider:  global choice"));
}

#[test]
fn chat_refuses_an_unknown_or_disabled_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        cambot(d, &["chat", "--tenant", "nope"]),
        "unknown tenant nope",
    );
    ok(cambot(d, &["tenants", "add", "beta"]));
    ok(cambot(d, &["tenants", "disable", "beta"]));
    fails_with(
        cambot_with_stdin(d, &["chat", "--tenant", "beta"], "hello\n"),
        "tenant beta is disabled",
    );
    // Nothing was registered for either.
    let groups = ok(cambot(d, &["groups", "list"]));
    assert!(!groups.contains("cli:"), "{groups}");
}
