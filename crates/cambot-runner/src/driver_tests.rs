#![allow(clippy::unwrap_used, clippy::expect_used)]

use cambot_protocol::RunLimits;
use pretty_assertions::assert_eq;
use tokio::sync::oneshot;

use super::*;
use crate::testing::*;

struct Live {
    inputs: mpsc::Sender<Inbound>,
    events: mpsc::Receiver<RunnerToHost>,
    task: tokio::task::JoinHandle<Result<(), RunnerError>>,
}

fn spawn(w: &World, p: Scripted, start: StartInput) -> Live {
    let (in_tx, mut in_rx) = mpsc::channel(16);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let agent = build_agent(p, start, w.env.clone(), ev_tx.clone()).unwrap();
    let task = tokio::spawn(async move { run(agent, &mut in_rx, &ev_tx).await });
    Live {
        inputs: in_tx,
        events: ev_rx,
        task,
    }
}

impl Live {
    /// The next event that is not a delta, usage or activity.
    async fn next_major(&mut self) -> RunnerToHost {
        loop {
            let e = self.events.recv().await.expect("event");
            if !matches!(
                e,
                RunnerToHost::TextDelta { .. }
                    | RunnerToHost::Usage { .. }
                    | RunnerToHost::Activity { .. }
            ) {
                return e;
            }
        }
    }

    async fn send(&self, m: HostToRunner) {
        self.inputs.send(Ok(m)).await.unwrap();
    }

    fn message(text: &str) -> HostToRunner {
        HostToRunner::Message { text: text.into() }
    }
}

fn result(text: &str, inputs: u32, session: &str) -> RunnerToHost {
    RunnerToHost::Result {
        text: Some(text.into()),
        session_id: Some(session.into()),
        inputs,
    }
}

#[tokio::test]
async fn follow_up_messages_queue_into_the_next_turn_and_close_ends_the_run() {
    let w = World::new();
    let (gate, gated) = oneshot::channel();
    let p = Scripted::new([Reply::Gated(gated, text_events("first")), text("second")]);
    let mut live = spawn(&w, p.clone(), start_input(RunLimits::default()));
    assert_eq!(live.next_major().await, RunnerToHost::Ready);
    // Both arrive while the first turn is still thinking.
    live.send(Live::message("m1")).await;
    live.send(Live::message("m2")).await;
    live.inputs
        .send(Err("input line 4 is not a valid host message".into()))
        .await
        .unwrap();
    // The malformed line is reported at once, and the run goes on.
    assert_eq!(
        live.next_major().await,
        RunnerToHost::Warning {
            message: "input line 4 is not a valid host message".into(),
        }
    );
    gate.send(()).unwrap();
    let RunnerToHost::Result { session_id, .. } = live.next_major().await else {
        panic!("expected a result");
    };
    let sid = session_id.unwrap();
    assert_eq!(live.next_major().await, result("second", 2, &sid));
    let reqs = p.requests();
    assert_eq!(reqs[1].messages.last().unwrap().text(), "m1\nm2");
    live.send(HostToRunner::Close).await;
    live.task.await.unwrap().unwrap();
    assert!(live.events.recv().await.is_none(), "nothing after close");
}

#[tokio::test]
async fn close_during_a_turn_finishes_that_turn_only() {
    let w = World::new();
    let (gate, gated) = oneshot::channel();
    let p = Scripted::new([Reply::Gated(gated, text_events("answer"))]);
    let mut live = spawn(&w, p.clone(), start_input(RunLimits::default()));
    assert_eq!(live.next_major().await, RunnerToHost::Ready);
    live.send(Live::message("late")).await;
    live.send(HostToRunner::Close).await;
    gate.send(()).unwrap();
    let RunnerToHost::Result { text, inputs, .. } = live.next_major().await else {
        panic!("expected a result");
    };
    assert_eq!((text.as_deref(), inputs), (Some("answer"), 1));
    live.task.await.unwrap().unwrap();
    assert!(live.events.recv().await.is_none());
    assert_eq!(
        p.requests().len(),
        1,
        "the queued message was left for the host"
    );
}

#[tokio::test]
async fn end_of_input_while_idle_ends_the_run() {
    let w = World::new();
    let p = Scripted::new([text("hi")]);
    let mut live = spawn(&w, p, start_input(RunLimits::default()));
    assert_eq!(live.next_major().await, RunnerToHost::Ready);
    assert!(matches!(
        live.next_major().await,
        RunnerToHost::Result { .. }
    ));
    drop(live.inputs);
    live.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn scheduled_task_prompts_carry_the_marker() {
    let w = World::new();
    let p = Scripted::new([text("done")]);
    let mut start = start_input(RunLimits::default());
    start.is_scheduled_task = true;
    start.prompt = "water the plants".into();
    let mut live = spawn(&w, p.clone(), start);
    assert_eq!(live.next_major().await, RunnerToHost::Ready);
    assert!(matches!(
        live.next_major().await,
        RunnerToHost::Result { .. }
    ));
    let first = p.requests()[0].messages[0].text();
    assert_eq!(
        first,
        format!("{SCHEDULED_TASK_PREFIX}\n\nwater the plants")
    );
}

#[tokio::test]
async fn a_model_failure_is_a_fatal_error_event() {
    let w = World::new();
    let p = Scripted::new([Reply::Fail(cambot_providers::ProviderError::Decode(
        "garbage".into(),
    ))]);
    let mut live = spawn(&w, p, start_input(RunLimits::default()));
    assert_eq!(live.next_major().await, RunnerToHost::Ready);
    let RunnerToHost::Error { message, retryable } = live.next_major().await else {
        panic!("expected an error");
    };
    assert!(message.contains("malformed response: garbage"), "{message}");
    assert!(!retryable);
    assert!(live.task.await.unwrap().is_err());
}

#[tokio::test]
async fn a_resumed_session_continues_the_transcript() {
    let w = World::new();
    let p = Scripted::new([text("nice to meet you, Ada")]);
    let mut live = spawn(&w, p, start_input(RunLimits::default()));
    live.next_major().await;
    let RunnerToHost::Result { session_id, .. } = live.next_major().await else {
        panic!()
    };
    drop(live.inputs);
    live.task.await.unwrap().unwrap();
    let p2 = Scripted::new([text("you are Ada")]);
    let mut start = start_input(RunLimits::default());
    start.session_id = session_id.clone();
    start.prompt = "who am I?".into();
    let mut live = spawn(&w, p2.clone(), start);
    live.next_major().await;
    assert_eq!(
        live.next_major().await,
        result("you are Ada", 1, session_id.as_deref().unwrap())
    );
    let texts: Vec<String> = p2.requests()[0].messages.iter().map(|m| m.text()).collect();
    assert_eq!(texts, ["hello", "nice to meet you, Ada", "who am I?"]);
}

#[tokio::test]
async fn wait_for_start_reports_what_came_before_it() {
    let (in_tx, mut in_rx) = mpsc::channel(8);
    let (ev_tx, mut ev_rx) = mpsc::channel(8);
    in_tx.send(Ok(HostToRunner::Close)).await.unwrap();
    in_tx.send(Err("bad line".into())).await.unwrap();
    in_tx
        .send(Ok(HostToRunner::Start(Box::new(start_input(
            RunLimits::default(),
        )))))
        .await
        .unwrap();
    let start = wait_for_start(&mut in_rx, &ev_tx).await.unwrap();
    assert_eq!(start.prompt, "hello");
    let e1 = ev_rx.recv().await.unwrap();
    assert!(
        matches!(e1, RunnerToHost::Warning { message } if message.contains("close before start"))
    );
    let e2 = ev_rx.recv().await.unwrap();
    assert!(matches!(e2, RunnerToHost::Warning { message } if message == "bad line"));
    drop(in_tx);
    assert!(wait_for_start(&mut in_rx, &ev_tx).await.is_none());
}
