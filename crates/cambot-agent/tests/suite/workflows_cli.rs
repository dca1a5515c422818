//! `cambot workflows` through the real binary: add (a valid and an invalid file), list, show,
//! run, runs, rm, and an unknown tenant refused.

use std::path::Path;

use super::support::CliOut;
use super::support::run_cambot;

fn cambot(data_dir: &Path, args: &[&str]) -> CliOut {
    run_cambot(None, data_dir, args, "")
}

#[track_caller]
fn ok(cli: CliOut) -> String {
    assert!(cli.ok, "stdout: {}\nstderr: {}", cli.stdout, cli.stderr);
    cli.stdout
}

#[track_caller]
fn fails_with(cli: CliOut, texts: &[&str]) {
    assert!(!cli.ok, "succeeded: {}", cli.stdout);
    for text in texts {
        assert!(
            cli.stderr.contains(text),
            "expected {text:?} in: {}",
            cli.stderr
        );
    }
}

const VALID: &str = r#"name = "digest"
[inputs]
topic = { default = "news" }
[[steps]]
id = "summarize"
type = "agent"
group = "team"
prompt = "Summarize {{ inputs.topic }}."
[[steps]]
id = "post"
type = "send"
group = "team"
text = "{{ steps.summarize.output }}"
"#;

/// Step `post` has a key a send step does not know.
const INVALID: &str = r#"name = "broken"
[[steps]]
id = "post"
type = "send"
group = "team"
text = "hi"
colour = "blue"
"#;

#[test]
fn workflows_are_added_listed_shown_run_and_removed_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(cambot(
        d,
        &[
            "groups",
            "register",
            "--jid",
            "team@g.us",
            "--name",
            "Team",
            "--folder",
            "team",
        ],
    ));
    let valid = d.join("digest.toml");
    let invalid = d.join("broken.toml");
    std::fs::write(&valid, VALID).unwrap();
    std::fs::write(&invalid, INVALID).unwrap();

    let added = ok(cambot(d, &["workflows", "add", valid.to_str().unwrap()]));
    assert_eq!(added.trim(), "added workflow digest (2 steps)");
    fails_with(
        cambot(d, &["workflows", "add", invalid.to_str().unwrap()]),
        &["steps[0] (id \"post\")", "\"colour\""],
    );

    let list = ok(cambot(d, &["workflows", "list"]));
    assert_eq!(
        list.trim(),
        "digest  summarize:agent@team -> post:send@team",
        "the invalid file was not stored"
    );
    assert_eq!(ok(cambot(d, &["workflows", "show", "digest"])), VALID);
    fails_with(
        cambot(d, &["workflows", "show", "broken"]),
        &["no workflow"],
    );

    assert_eq!(ok(cambot(d, &["workflows", "runs"])).trim(), "");
    let run_id = ok(cambot(
        d,
        &["workflows", "run", "digest", "--input", "topic=rust"],
    ));
    let run_id = run_id.trim();
    assert!(!run_id.is_empty());
    fails_with(
        cambot(d, &["workflows", "run", "digest", "--input", "colour=red"]),
        &["\"colour\""],
    );
    let runs = ok(cambot(d, &["workflows", "runs", "digest"]));
    let line: Vec<&str> = runs.split_whitespace().collect();
    assert_eq!(
        &line[..5],
        [run_id, "digest", "running", "0/2", "steps"],
        "{runs}"
    );

    assert_eq!(
        ok(cambot(d, &["workflows", "rm", "digest"])).trim(),
        "removed workflow digest"
    );
    assert_eq!(ok(cambot(d, &["workflows", "list"])).trim(), "");
    fails_with(cambot(d, &["workflows", "rm", "digest"]), &["no workflow"]);
    // Its run stays.
    assert!(ok(cambot(d, &["workflows", "runs"])).contains(run_id));
}

#[test]
fn an_unknown_tenant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("digest.toml");
    std::fs::write(&file, VALID).unwrap();
    for args in [
        vec!["workflows", "--tenant", "nobody", "list"],
        vec![
            "workflows",
            "--tenant",
            "nobody",
            "add",
            file.to_str().unwrap(),
        ],
        vec!["workflows", "--tenant", "nobody", "runs"],
    ] {
        fails_with(cambot(d, &args), &["nobody"]);
    }
}
