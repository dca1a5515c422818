use pretty_assertions::assert_eq;

use super::*;

#[test]
fn runner_events_round_trip() {
    let events = vec![
        RunnerToHost::Ready,
        RunnerToHost::Activity {
            kind: "tool".into(),
            detail: Some("bash".into()),
        },
        RunnerToHost::TextDelta { text: "Hel".into() },
        RunnerToHost::Result {
            text: Some("Hello".into()),
            session_id: Some("s1".into()),
            inputs: 2,
        },
        RunnerToHost::Result {
            text: None,
            session_id: None,
            inputs: 1,
        },
        RunnerToHost::Error {
            message: "boom".into(),
            retryable: true,
        },
        RunnerToHost::Usage {
            input_tokens: 1,
            output_tokens: 2,
        },
    ];
    for event in events {
        let line = event.to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line per event: {line}");
        assert_eq!(RunnerToHost::parse_line(&line).unwrap(), event);
    }
}

#[test]
fn exact_shapes() {
    assert_eq!(RunnerToHost::Ready.to_line(), "{\"type\":\"ready\"}\n");
    assert_eq!(HostToRunner::Close.to_line(), "{\"type\":\"close\"}\n");
    assert_eq!(
        HostToRunner::Message { text: "hi".into() }.to_line(),
        "{\"type\":\"message\",\"text\":\"hi\"}\n"
    );
}

#[test]
fn start_round_trip_and_defaults() {
    let line = r#"{"type":"start","run_id":"0123456789abcdef0123456789abcdef","tenant":"default","group_folder":"main","chat_jid":"cli:console","is_main":true,"prompt":"<messages>\n</messages>","assistant_name":"Andy","timezone":"UTC","host_token":"t","model":{"provider":"local","dialect":"anthropic","model":"m","max_tokens":512}}"#;
    let parsed = HostToRunner::parse_line(line).unwrap();
    let HostToRunner::Start(start) = &parsed else {
        panic!("expected start")
    };
    assert_eq!(start.session_id, None);
    assert!(!start.is_scheduled_task);
    assert_eq!(start.tools, ToolPolicy::Full);
    assert_eq!(start.limits, RunLimits::default());
    assert_eq!(HostToRunner::parse_line(&parsed.to_line()).unwrap(), parsed);
}

#[test]
fn bad_lines_are_errors() {
    assert!(RunnerToHost::parse_line("not json").is_err());
    assert!(RunnerToHost::parse_line("{\"type\":\"bogus\"}").is_err());
    // Identity fields are validated on the way in.
    let bad = r#"{"type":"start","run_id":"0123456789abcdef0123456789abcdef","tenant":"default","group_folder":"../x","chat_jid":"c","is_main":true,"prompt":"","assistant_name":"A","timezone":"UTC","host_token":"t","model":{"provider":"p","dialect":"anthropic","model":"m","max_tokens":1}}"#;
    assert!(HostToRunner::parse_line(bad).is_err());
}

#[test]
fn result_inputs_defaults_to_one() {
    let parsed =
        RunnerToHost::parse_line(r#"{"type":"result","text":"hi","session_id":null}"#).unwrap();
    assert_eq!(
        parsed,
        RunnerToHost::Result {
            text: Some("hi".into()),
            session_id: None,
            inputs: 1
        }
    );
}
