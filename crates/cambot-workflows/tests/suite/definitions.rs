//! Definitions: the issue's example parses as written, and every refusal names where it is
//! (the step by index and id) and the key.

use std::time::Duration;

use cambot_workflows::DEFAULT_RETRIES;
use cambot_workflows::Definition;
use cambot_workflows::Location;
use cambot_workflows::Problem;
use cambot_workflows::SessionMode;
use cambot_workflows::StepKind;
use pretty_assertions::assert_eq;

pub(crate) const EXAMPLE: &str = r#"
name = "daily-digest"
[inputs]
topic = { default = "our open issues" }
[trigger]
schedule = "0 8 * * 1-5"          # optional; fired by the existing scheduler, exactly once
[[steps]]
id = "summarize"
type = "agent"                    # agent | command | send
group = "team"                    # folder of a group of the workflow's tenant
prompt = "Summarize {{ inputs.topic }} in five lines."
timeout_secs = 600
retries = 1
[[steps]]
id = "count"
type = "command"
group = "team"
command = "grep -c . summary.md"  # a shell command line, run with sh -c in the sandbox
[[steps]]
id = "post"
type = "send"
group = "team"
text = "{{ steps.summarize.output }}"
"#;

/// The messages of a refused definition.
fn errors(toml: &str) -> Vec<String> {
    match Definition::parse(toml) {
        Ok(def) => panic!("accepted: {def:?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// Three steps around one changed line of the middle step (index 1, id "count").
fn with_middle(lines: &str) -> String {
    format!(
        r#"
name = "w"
[inputs]
topic = {{ default = "x" }}
[[steps]]
id = "first"
type = "agent"
group = "team"
prompt = "hi"
[[steps]]
{lines}
[[steps]]
id = "last"
type = "send"
group = "team"
text = "done"
"#
    )
}

fn assert_has(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e == expected),
        "expected {expected:?} among {errors:#?}"
    );
}

#[test]
fn the_issue_example_parses_as_written() {
    let def = Definition::parse(EXAMPLE).unwrap();
    assert_eq!(def.name, "daily-digest");
    assert_eq!(def.inputs["topic"].as_deref(), Some("our open issues"));
    assert_eq!(def.schedule.as_deref(), Some("0 8 * * 1-5"));
    let kinds: Vec<_> = def.steps.iter().map(|s| (s.id.as_str(), s.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("summarize", StepKind::Agent),
            ("count", StepKind::Command),
            ("post", StepKind::Send)
        ]
    );
    let s = &def.steps[0];
    assert_eq!(s.group.as_str(), "team");
    assert_eq!((s.timeout, s.retries), (Duration::from_secs(600), 1));
    assert_eq!(s.session, SessionMode::Run);
    assert_eq!(def.steps[1].retries, DEFAULT_RETRIES);
    assert_eq!(def.toml, EXAMPLE);
}

#[test]
fn a_misspelled_key_names_the_step_and_the_key() {
    let errs = errors(&with_middle(
        "id = \"count\"\ntype = \"command\"\ngroup = \"team\"\ncomand = \"ls\"",
    ));
    assert_has(&errs, r#"steps[1] (id "count"): unknown key "comand""#);
    assert_has(&errs, r#"steps[1] (id "count"): missing key "command""#);
}

#[test]
fn every_missing_required_key_is_named() {
    let errs = errors(&with_middle("timeout_secs = 5"));
    for key in ["id", "type", "group"] {
        assert_has(&errs, &format!(r#"steps[1]: missing key "{key}""#));
    }
    let errs = errors(&with_middle(
        "id = \"count\"\ntype = \"agent\"\ngroup = \"team\"",
    ));
    assert_eq!(errs, [r#"steps[1] (id "count"): missing key "prompt""#]);
    let errs = errors(&with_middle(
        "id = \"count\"\ntype = \"send\"\ngroup = \"team\"",
    ));
    assert_eq!(errs, [r#"steps[1] (id "count"): missing key "text""#]);
}

#[test]
fn a_duplicate_id_names_both_steps() {
    let errs = errors(&with_middle(
        "id = \"first\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"x\"",
    ));
    assert_eq!(
        errs,
        [r#"steps[1] (id "first"): key "id": duplicate step id (first used by steps[0])"#]
    );
}

#[test]
fn an_unknown_type_is_named() {
    let errs = errors(&with_middle(
        "id = \"count\"\ntype = \"webhook\"\ngroup = \"team\"",
    ));
    assert_eq!(
        errs,
        [
            r#"steps[1] (id "count"): key "type": unknown type "webhook" (use agent, command or send)"#
        ]
    );
}

#[test]
fn a_template_may_name_only_declared_inputs_and_earlier_steps() {
    let step = |text: &str| {
        with_middle(&format!(
            "id = \"count\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"{text}\""
        ))
    };
    assert_eq!(
        errors(&step("{{ inputs.nope }}")),
        [
            r#"steps[1] (id "count"): key "text": {{ inputs.nope }} names no input declared in [inputs]"#
        ]
    );
    assert_eq!(
        errors(&step("{{ steps.last.output }}")),
        [
            r#"steps[1] (id "count"): key "text": {{ steps.last.output }} names a step that does not run before this one"#
        ]
    );
    assert_eq!(
        errors(&step("{{ steps.count.output }}")),
        [
            r#"steps[1] (id "count"): key "text": {{ steps.count.output }} names a step that does not run before this one"#
        ]
    );
    assert_eq!(
        errors(&step("{{ steps.ghost.output }}")),
        [r#"steps[1] (id "count"): key "text": {{ steps.ghost.output }} names no step"#]
    );
    let bad = errors(&step("{{ env.HOME }}"));
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].starts_with(
            r#"steps[1] (id "count"): key "text": "{{ env.HOME }}" is not a reference"#
        ),
        "{bad:?}"
    );
    let unclosed = errors(&step("{{ inputs.topic"));
    assert!(
        unclosed[0]
            .starts_with(r#"steps[1] (id "count"): key "text": "{{" at byte 0 is not closed"#),
        "{unclosed:?}"
    );
    // Earlier steps and declared inputs are fine.
    Definition::parse(&step("{{ steps.first.output }} {{inputs.topic}}")).unwrap();
}

#[test]
fn a_group_must_be_a_valid_folder_name() {
    for (group, why) in [
        ("../etc", "is invalid"),
        ("global", "is reserved"),
        ("", "must not be empty"),
    ] {
        let errs = errors(&with_middle(&format!(
            "id = \"count\"\ntype = \"send\"\ngroup = \"{group}\"\ntext = \"x\""
        )));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(r#"steps[1] (id "count"): key "group": group folder"#)
                && errs[0].contains(why),
            "{errs:?}"
        );
    }
}

#[test]
fn keys_of_another_step_type_and_bad_values_are_named() {
    let errs = errors(&with_middle(
        "id = \"count\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"x\"\nprompt = \"y\"\nsession = \"group\"",
    ));
    assert_eq!(
        errs,
        [
            r#"steps[1] (id "count"): key "prompt" does not apply to a send step"#,
            r#"steps[1] (id "count"): key "session" does not apply to a send step"#
        ]
    );
    let errs = errors(&with_middle(
        "id = \"count\"\ntype = \"agent\"\ngroup = \"team\"\nprompt = \"x\"\nretries = \"2\"\ntimeout_secs = 0\nsession = \"forever\"",
    ));
    assert_eq!(
        errs,
        [
            r#"steps[1] (id "count"): key "timeout_secs": 0 is out of range (1..=86400)"#,
            r#"steps[1] (id "count"): key "retries": expected an integer"#,
            r#"steps[1] (id "count"): key "session": unknown session "forever" (use "group", or leave it out)"#
        ]
    );
    let errs = errors(&with_middle(
        "id = \"no/slash\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"x\"",
    ));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(r#"steps[1]: key "id": step id "no/slash" is invalid"#),
        "{errs:?}"
    );
}

#[test]
fn session_group_is_kept_for_an_agent_step() {
    let def = Definition::parse(&with_middle(
        "id = \"count\"\ntype = \"agent\"\ngroup = \"team\"\nprompt = \"x\"\nsession = \"group\"",
    ))
    .unwrap();
    assert_eq!(def.steps[1].session, SessionMode::Group);
}

#[test]
fn a_command_reference_where_quoting_would_not_hold_is_refused() {
    let errs = errors(&with_middle(
        "id = \"count\"\ntype = \"command\"\ngroup = \"team\"\ncommand = 'echo \"{{ inputs.topic }}\"'",
    ));
    assert_eq!(
        errs,
        [
            r#"steps[1] (id "count"): key "command": {{ inputs.topic }} is inside double quotes, where shell quoting would not hold; write it as a word of its own (it is quoted for you)"#
        ]
    );
}

#[test]
fn top_level_inputs_and_trigger_problems_are_named() {
    let errs = errors("name = \"w\"\nstep = []\n");
    assert_eq!(
        errs,
        [
            r#"definition: unknown key "step""#,
            r#"definition: missing key "steps""#
        ]
    );
    assert_eq!(
        errors("[[steps]]\nid = \"a\"\ntype = \"send\"\ngroup = \"g\"\ntext = \"x\""),
        [r#"definition: missing key "name""#]
    );
    let errs = errors("name = \"a b\"\nsteps = []\n");
    assert!(errs[0].starts_with(r#"definition: key "name": workflow name "a b" is invalid"#));
    assert_eq!(
        errs[1],
        r#"definition: key "steps": a workflow needs at least one step"#
    );
    let errs = errors(
        "name = \"w\"\n[inputs]\ntopic = { defualt = \"x\" }\nother = \"x\"\n[trigger]\ncron = \"x\"\n[[steps]]\nid = \"a\"\ntype = \"send\"\ngroup = \"g\"\ntext = \"x\"",
    );
    assert_eq!(
        errs,
        [
            r#"inputs: key "other": expected a table such as { default = "..." }"#,
            r#"inputs.topic: unknown key "defualt""#,
            r#"trigger: unknown key "cron""#,
            r#"trigger: missing key "schedule""#
        ]
    );
    let errs = errors(
        "name = \"w\"\n[trigger]\nschedule = \" \"\n[[steps]]\nid = \"a\"\ntype = \"send\"\ngroup = \"g\"\ntext = \"x\"",
    );
    assert_eq!(errs, [r#"trigger: key "schedule": must not be empty"#]);
}

#[test]
fn a_toml_syntax_error_says_where() {
    let errs = errors("name = \"w\"\n[[steps]\nid = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("definition: not valid TOML:") && errs[0].contains("line 2"),
        "{errs:?}"
    );
}

#[test]
fn errors_are_structured_as_well_as_worded() {
    let err = Definition::parse(&with_middle(
        "id = \"count\"\ntype = \"command\"\ngroup = \"team\"\ncomand = \"ls\"",
    ))
    .unwrap_err();
    assert_eq!(
        err.0[0].location,
        Location::Step {
            index: 1,
            id: Some("count".into())
        }
    );
    assert_eq!(err.0[0].key.as_deref(), Some("comand"));
    assert_eq!(err.0[0].problem, Problem::UnknownKey);
}
