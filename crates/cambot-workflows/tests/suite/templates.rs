//! Templates: values substituted into a `command` stay one shell word whatever they hold,
//! proven by running the rendered line through a real `sh -c` that prints its argv; and a
//! reference is refused where a quoted word would not stay one word.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cambot_workflows::Template;
use cambot_workflows::TemplateError;
use cambot_workflows::Values;
use pretty_assertions::assert_eq;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

const HOSTILE: &[&str] = &[
    "; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "'; touch pwned; '",
    "\"; touch pwned; \"",
    "\\'; touch pwned #",
    "a\ntouch pwned",
    "a\r\ntouch pwned\n",
    "&& touch pwned",
    "| touch pwned",
    "> pwned",
    "$((1+1)) ${HOME} $HOME ~ * ?",
    "'",
    "''",
    "\\",
    "-n",
    "",
    " ",
    "it's \"quoted\"",
    "\u{1f600} ünïcödé",
    "$'\\x41'",
    "#!/bin/sh\nexit 7",
];

/// Pieces random values are built from.
const PIECES: &[&str] = &[
    "'",
    "\"",
    "`",
    "$",
    "(",
    ")",
    "{",
    "}",
    ";",
    "&",
    "|",
    "<",
    ">",
    "\\",
    "\n",
    "\t",
    " ",
    "#",
    "*",
    "?",
    "~",
    "!",
    "touch pwned",
    "rm -rf /",
    "$(",
    "${",
    "a",
    "é",
    "\r",
    "=",
    "--",
];

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs `line` with `sh -c` in `dir`; returns stdout.
fn sh(dir: &Path, line: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{line:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Renders `template` with input `a` = `value` and output of step `s` = `other`, runs it, and
/// checks argv: exactly the two values, each one word, and nothing else ran.
fn assert_one_word_each(dir: &Path, value: &str, other: &str) {
    let t = Template::parse_command(
        "printf '[%s]' {{ inputs.a }} x{{steps.s.output}}y; x={{inputs.a}}; printf '<%s>' \"$x\"",
    )
    .unwrap();
    let (inputs, outputs) = (values(&[("a", value)]), values(&[("s", other)]));
    let line = t
        .render_command(Values {
            inputs: &inputs,
            outputs: &outputs,
        })
        .unwrap();
    let printed = sh(dir, &line);
    assert_eq!(
        printed,
        format!("[{value}][x{other}y]<{value}>"),
        "rendered: {line:?}"
    );
    assert!(
        !dir.join("pwned").exists(),
        "a value ran a command: {line:?}"
    );
}

#[test]
fn hostile_values_stay_one_word_through_a_real_shell() {
    let dir = tempfile::tempdir().unwrap();
    for value in HOSTILE {
        for other in HOSTILE {
            assert_one_word_each(dir.path(), value, other);
        }
    }
}

#[test]
fn random_values_stay_one_word_through_a_real_shell() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(0x005e_ed28);
    for _ in 0..300 {
        let mut make = || -> String {
            (0..rng.gen_range(0..12))
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect()
        };
        let (value, other) = (make(), make());
        assert_one_word_each(dir.path(), &value, &other);
    }
}

#[test]
fn a_nul_byte_cannot_be_a_shell_word_and_is_refused() {
    let t = Template::parse_command("echo {{ inputs.a }}").unwrap();
    let inputs = values(&[("a", "a\0b")]);
    let outputs = BTreeMap::new();
    let err = t
        .render_command(Values {
            inputs: &inputs,
            outputs: &outputs,
        })
        .unwrap_err();
    assert!(matches!(err, TemplateError::NulByte { .. }), "{err}");
    // Outside a command a NUL is just a character.
    let prompt = Template::parse("say {{ inputs.a }}").unwrap();
    let rendered = prompt.render(Values {
        inputs: &inputs,
        outputs: &outputs,
    });
    assert_eq!(rendered.unwrap(), "say a\0b");
}

#[test]
fn prompts_and_messages_get_the_value_verbatim() {
    let t = Template::parse("Summarize {{ inputs.a }}: {{steps.s.output}}!").unwrap();
    let (inputs, outputs) = (values(&[("a", "it's $(x)")]), values(&[("s", "`y`")]));
    let out = t.render(Values {
        inputs: &inputs,
        outputs: &outputs,
    });
    assert_eq!(out.unwrap(), "Summarize it's $(x): `y`!");
}

#[test]
fn a_reference_where_quoting_would_not_hold_is_refused() {
    for (line, context) in [
        ("echo \"{{ inputs.a }}\"", "inside double quotes"),
        ("echo '{{ inputs.a }}'", "inside single quotes"),
        ("echo \"$(echo {{ inputs.a }})\"", "inside double quotes"),
        ("echo `echo {{ inputs.a }}`", "inside backticks"),
        ("echo ok # {{ inputs.a }}", "inside a comment"),
        ("#{{ inputs.a }}", "inside a comment"),
        ("echo \\{{ inputs.a }}", "after a backslash"),
        ("echo ${{ inputs.a }}", "right after \"$\""),
        (
            "cat <<EOF\n{{ inputs.a }}\nEOF",
            "in a command with a here-document",
        ),
    ] {
        match Template::parse_command(line) {
            Err(TemplateError::UnsafeInCommand { context: c, .. }) => {
                assert_eq!(c, context, "{line:?}")
            }
            other => panic!("{line:?} gave {other:?}"),
        }
    }
}

#[test]
fn a_reference_as_a_word_or_part_of_one_is_accepted() {
    for line in [
        "echo {{ inputs.a }}",
        "echo a{{ inputs.a }}b",
        "x={{ inputs.a }}; echo \"$x\"",
        "echo '#'{{ inputs.a }}",
        "echo a#{{ inputs.a }}",
        "echo \"q\" {{ inputs.a }} 'r' # a comment after it",
        "echo $(echo {{ inputs.a }})",
        "echo {{ inputs.a }} | tr a b",
    ] {
        Template::parse_command(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    }
}

#[test]
fn an_allowed_command_form_still_holds_hostile_values() {
    let dir = tempfile::tempdir().unwrap();
    let t = Template::parse_command("printf '[%s]' $(printf '%s' {{ inputs.a }} | wc -c)").unwrap();
    for value in HOSTILE
        .iter()
        .filter(|v| !v.is_empty() && !v.ends_with('\n'))
    {
        let inputs = values(&[("a", value)]);
        let outputs = BTreeMap::new();
        let line = t
            .render_command(Values {
                inputs: &inputs,
                outputs: &outputs,
            })
            .unwrap();
        let printed = sh(dir.path(), &line);
        assert_eq!(printed, format!("[{}]", value.len()), "{line:?}");
        assert!(!dir.path().join("pwned").exists(), "{line:?}");
    }
}
