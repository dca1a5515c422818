//! The router end to end through a real daemon: store, trigger gate, queue, piping, replies,
//! retries, delivery and recovery.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cambot_core::MessageStore;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use pretty_assertions::assert_eq;

use super::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A runner's script that answers each turn with the chat it answers.
fn reply_to_chat(req: &cambot_agent::agent_run::RunRequest, _: &str) -> Turn {
    Turn::reply(format!("to {}", req.chat_jid))
}

/// A daemon with `chats` registered in one `folder` (default idle timeout unless `extra_toml`).
async fn folder_of_chats(
    runner: Arc<ScriptedRunner>,
    extra_toml: &str,
    folder: &str,
    chats: &[&str],
) -> TestDaemon {
    let t = start(runner, extra_toml).await;
    for chat in chats {
        t.channel
            .register(&tenant(), chat, folder, None)
            .await
            .unwrap();
    }
    t
}

/// `fake:one` and `fake:two` each got exactly the reply addressed to them (`reply_to_chat`).
async fn each_chat_got_its_own_reply(t: &TestDaemon) {
    let sent = t.channel.wait_sent(2, WAIT).await;
    let mut pairs: Vec<_> = sent
        .iter()
        .map(|d| (d.chat_jid.clone(), d.text.clone()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("fake:one".to_owned(), "to fake:one".to_owned()),
            ("fake:two".to_owned(), "to fake:two".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_message_gets_one_reply_with_internal_text_stripped() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("<internal>plan</internal>Hello there"));
    let t = start(runner.clone(), "").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hi")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(1, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "Hello there");
    assert_eq!(sent[0].chat_jid, "fake:main");
    let run = &runner.started()[0];
    assert!(run.request.prompt.contains("<message sender=\"Alice\""));
    assert!(run.request.prompt.contains(">hi</message>"));
    let store = t.daemon.router().store();
    let jid = ChatJid::new("fake:main").unwrap();
    assert_eq!(
        store.cursor(&tenant(), &jid).await.unwrap(),
        store.latest_message_seq(&tenant(), &jid).await.unwrap()
    );
    assert_eq!(
        store
            .session(&tenant(), &GroupFolder::main())
            .await
            .unwrap()
            .as_deref(),
        Some("session-main")
    );
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn non_main_groups_need_the_trigger_and_keep_earlier_messages_as_context() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("ok"));
    let t = start(runner.clone(), "").await;
    t.channel
        .register(&tenant(), "fake:family", "family", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:family", "Bob", "just chatting")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(runner.started().is_empty(), "no trigger, no run");
    t.channel
        .inject(&tenant(), "fake:family", "Bob", "@Andy what do you think?")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    let prompt = &runner.started()[0].request.prompt;
    assert!(
        prompt.contains("just chatting"),
        "earlier message kept as context: {prompt}"
    );
    assert!(prompt.contains("@Andy what do you think?"));
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn a_message_during_a_live_run_is_piped_into_it() {
    let runner = ScriptedRunner::new(|_, prompt| {
        if prompt.contains("first") {
            Turn::reply("answer one").after(Duration::from_millis(300))
        } else {
            Turn::reply("answer two")
        }
    });
    let t = start(runner.clone(), "").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "first")
        .await
        .unwrap();
    eventually("run started", || runner.live_runs() == 1).await;
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "second")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(2, WAIT).await;
    assert_eq!(
        sent.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        vec!["answer one", "answer two"]
    );
    assert_eq!(
        runner.started().len(),
        1,
        "the follow-up went into the same run"
    );
    let prompts = runner.started()[0].prompts.lock().unwrap().clone();
    assert_eq!(prompts.len(), 2);
    assert!(prompts[1].contains("second") && !prompts[1].contains("first"));
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn a_live_run_gets_untriggered_messages_as_context_but_never_bot_rows_or_repeats() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("ok"));
    let t = start(runner.clone(), "[router]\nidle_timeout_ms = 60000\n").await;
    t.channel
        .register(&tenant(), "fake:family", "family", None)
        .await
        .unwrap();
    t.channel
        .inject_with_id(&tenant(), "fake:family", "m1", "Bob", "@Andy hello")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    assert_eq!(runner.live_runs(), 1);
    t.channel
        .inject(&tenant(), "fake:family", "Bob", "just chatting")
        .await
        .unwrap();
    // The assistant's own message, stored as channels echo it: never part of a prompt.
    let store = t.daemon.router().store();
    let bot = cambot_protocol::InboundMessage {
        tenant: tenant(),
        chat_jid: ChatJid::new("fake:family").unwrap(),
        id: "bot-1".into(),
        sender: "andy@fake".into(),
        sender_name: "Andy".into(),
        content: "Andy: ok".into(),
        timestamp: "2024-01-01T00:00:00.000Z".into(),
        is_from_me: true,
        is_bot_message: true,
        attachments: Vec::new(),
    };
    store.store_message(bot).await.unwrap();
    // A repeated delivery of a message the run already has.
    t.channel
        .inject_with_id(&tenant(), "fake:family", "m1", "Bob", "@Andy hello")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runner.started()[0].prompts.lock().unwrap().len(), 1);
    t.channel
        .inject(&tenant(), "fake:family", "Bob", "@Andy and now?")
        .await
        .unwrap();
    t.channel.wait_sent(2, WAIT).await;
    assert_eq!(runner.started().len(), 1, "piped into the live run");
    let prompts = runner.started()[0].prompts.lock().unwrap().clone();
    assert_eq!(prompts.len(), 2);
    assert!(prompts[1].contains("just chatting"), "{}", prompts[1]);
    assert!(prompts[1].contains("@Andy and now?"), "{}", prompts[1]);
    assert!(!prompts[1].contains("Andy: ok"), "{}", prompts[1]);
    assert!(!prompts[1].contains("@Andy hello"), "{}", prompts[1]);
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn a_run_closes_after_the_idle_timeout() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("ok"));
    let t = start(runner.clone(), "[router]\nidle_timeout_ms = 100\n").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hi")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    eventually("idle run closed", || runner.live_runs() == 0).await;
    // A later message starts a new run that resumes the session.
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "again")
        .await
        .unwrap();
    t.channel.wait_sent(2, WAIT).await;
    let started = runner.started();
    assert_eq!(started.len(), 2);
    assert_eq!(
        started[1].request.session_id.as_deref(),
        Some("session-main")
    );
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn typing_goes_off_when_the_reply_arrives_not_when_the_run_exits() {
    // Seed DEFECT (c): typing stayed on until the container exited (up to the idle timeout).
    let runner = ScriptedRunner::new(|_, _| Turn::reply("ok"));
    let t = start(runner.clone(), "").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hi")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    eventually("typing off", || {
        t.channel.typing().last() == Some(&("fake:main".to_owned(), false))
    })
    .await;
    assert_eq!(
        runner.live_runs(),
        1,
        "the run is still alive (idle), typing is already off"
    );
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn a_failed_run_is_retried_and_replies_once() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&attempts);
    let runner = ScriptedRunner::new(move |_, _| {
        if a.fetch_add(1, Ordering::SeqCst) == 0 {
            Turn::fail("model overloaded")
        } else {
            Turn::reply("finally")
        }
    });
    let t = start(runner.clone(), "").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hi")
        .await
        .unwrap();
    // The first retry waits 5 s (real time here; the schedule itself is tested under paused time).
    let sent = t.channel.wait_sent(1, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "finally");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn replies_wait_for_a_refusing_channel_and_keep_their_order() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&counter);
    let runner = ScriptedRunner::new(move |_, _| {
        Turn::reply(format!("reply {}", c.fetch_add(1, Ordering::SeqCst)))
    });
    let t = start(runner.clone(), "[router]\ndelivery_retry_secs = 1\n").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel.set_refusing(true);
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "one")
        .await
        .unwrap();
    eventually_async("first reply committed", || async {
        t.daemon
            .router()
            .store()
            .pending_outbox(10)
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "two")
        .await
        .unwrap();
    eventually_async("second reply committed", || async {
        t.daemon
            .router()
            .store()
            .pending_outbox(10)
            .await
            .unwrap()
            .len()
            == 2
    })
    .await;
    assert!(t.channel.sent().is_empty());
    t.channel.set_refusing(false);
    let sent = t.channel.wait_sent(2, WAIT).await;
    assert_eq!(
        sent.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        vec!["reply 0", "reply 1"]
    );
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn messages_stored_before_start_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let runner =
            ScriptedRunner::new(|_, _| Turn::reply("never").after(Duration::from_secs(3600)));
        let t = start_in(dir, runner, "").await;
        t.channel
            .register(&tenant(), "fake:main", "main", None)
            .await
            .unwrap();
        t.channel
            .inject(&tenant(), "fake:main", "Alice", "are you there?")
            .await
            .unwrap();
        let dir = t.dir;
        // Simulate a crash: drop everything without a graceful shutdown.
        t.daemon.force_stop().await;
        drop(t.daemon);
        let runner = ScriptedRunner::echo();
        let t2 = start_in(dir, runner.clone(), "").await;
        let sent = t2.channel.wait_sent(1, WAIT).await;
        assert_eq!(sent.len(), 1);
        assert!(sent[0].text.contains("are you there?"));
        t2.daemon.shutdown().await;
    }
}

#[tokio::test]
async fn groups_run_in_parallel_but_one_run_per_group() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("ok").after(Duration::from_millis(200)));
    let t = start(runner.clone(), "[router]\nidle_timeout_ms = 50\n").await;
    for g in ["a", "b", "c"] {
        t.channel
            .register(&tenant(), &format!("fake:{g}"), g, Some(false))
            .await
            .unwrap();
    }
    for g in ["a", "b", "c"] {
        t.channel
            .inject(&tenant(), &format!("fake:{g}"), "U", "hello")
            .await
            .unwrap();
    }
    t.channel.wait_sent(3, WAIT).await;
    assert_eq!(runner.max_live_runs(), 3);
    let folders: std::collections::HashSet<_> = runner
        .started()
        .iter()
        .map(|r| r.request.group.folder.to_string())
        .collect();
    assert_eq!(folders.len(), 3);
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn two_chats_in_one_folder_get_their_own_replies() {
    let runner = ScriptedRunner::new(reply_to_chat);
    let t = folder_of_chats(
        runner.clone(),
        "[router]\nidle_timeout_ms = 50\n",
        "main",
        &["fake:one", "fake:two"],
    )
    .await;
    t.channel
        .inject(&tenant(), "fake:one", "U", "hello one")
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:two", "U", "hello two")
        .await
        .unwrap();
    each_chat_got_its_own_reply(&t).await;
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn streamed_text_reaches_the_channel() {
    let runner = ScriptedRunner::new(|_, _| {
        let mut turn = Turn::reply("Hello world");
        turn.deltas = vec!["Hel".into(), "lo world".into()];
        turn
    });
    let t = start(runner, "").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hi")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    assert_eq!(
        t.channel.deltas(),
        vec![
            ("fake:main".to_owned(), "Hel".to_owned()),
            ("fake:main".to_owned(), "lo world".to_owned())
        ]
    );
    t.daemon.shutdown().await;
}

#[tokio::test]
async fn unregistered_chats_are_stored_but_not_answered() {
    let runner = ScriptedRunner::echo();
    let t = start(runner.clone(), "").await;
    t.channel
        .inject(&tenant(), "fake:stranger", "Eve", "hello?")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(runner.started().is_empty());
    let jid = ChatJid::new("fake:stranger").unwrap();
    assert_eq!(
        t.daemon
            .router()
            .store()
            .messages_since(&tenant(), &jid, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    t.daemon.shutdown().await;
}

/// A refresh that read the registrations just before a registration committed used to swap in
/// a cache without it: the new chat's messages were stored but not routed until the next
/// refresh (a second later; the first refresh comes right at start, while channels register).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_never_lost_to_a_concurrent_refresh() {
    let t = start(ScriptedRunner::echo(), "").await;
    let router = Arc::clone(t.daemon.router());
    // Enough registrations that reading them all takes a while: the race is in that window.
    for g in 0..2000 {
        let jid = format!("fake:bulk{g}");
        t.channel
            .register(&tenant(), &jid, &format!("bulk{g}"), Some(false))
            .await
            .unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let registered: Arc<std::sync::Mutex<Vec<ChatJid>>> = Arc::default();
    let refresher = {
        let router = Arc::clone(&router);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut refreshes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                router.refresh_groups().await.unwrap();
                refreshes += 1;
                // Not a pure spin: the registrations must get their turn at the lock.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            refreshes
        })
    };
    // Watches every chat registered so far: once registered, it must never leave the cache.
    let watcher = {
        let router = Arc::clone(&router);
        let stop = Arc::clone(&stop);
        let registered = Arc::clone(&registered);
        std::thread::spawn(move || {
            let mut lost = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let chats = registered.lock().unwrap().clone();
                for chat in chats {
                    if router.group_for(&tenant(), &chat).is_none() {
                        lost.insert(chat.to_string());
                    }
                }
            }
            lost
        })
    };
    for g in 0..100 {
        let jid = format!("fake:race{g}");
        t.channel
            .register(&tenant(), &jid, &format!("race{g}"), Some(false))
            .await
            .unwrap();
        registered.lock().unwrap().push(ChatJid::new(&jid).unwrap());
    }
    // A last refresh cycle or two with everything registered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let refreshes = refresher.await.unwrap();
    let lost = watcher.join().unwrap();
    assert!(refreshes > 3, "the refresher barely ran ({refreshes})");
    assert!(
        lost.is_empty(),
        "registrations that left the cache: {lost:?}"
    );
    t.daemon.shutdown().await;
}

/// A message that arrives while its chat's run is still starting (a sandbox takes ~100 ms) is
/// piped into that run once it is up. It used to wait for the run's idle timeout (30 minutes by
/// default): the run could not take it yet, and a message check only runs after the run ends.
#[tokio::test]
async fn a_message_sent_while_the_run_starts_is_answered_by_that_run() {
    let runner = ScriptedRunner::slow_start(Duration::from_millis(300), |_, prompt| {
        Turn::reply(format!("{} new", prompt.matches("</message>").count()))
    });
    let t = start(runner.clone(), "").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "one")
        .await
        .unwrap();
    eventually("the run is starting", || runner.started().len() == 1).await;
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "two")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(2, WAIT).await;
    let texts: Vec<&str> = sent.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["1 new", "1 new"]);
    assert_eq!(runner.started().len(), 1, "the starting run took it");
    let prompts = runner.started()[0].prompts.lock().unwrap().clone();
    assert!(prompts[1].contains(">two</message>"), "{prompts:?}");
    t.daemon.shutdown().await;
}

/// Two chats share a folder (the CLI and a self-chat both on `main`), and a run answers one chat.
/// A message for the other chat while that run idles used to wait for the idle timeout (30
/// minutes by default); now it closes the idle run, as a pending task does, and gets its own.
#[tokio::test]
async fn a_message_for_another_chat_of_the_folder_does_not_wait_for_the_idle_run() {
    let runner = ScriptedRunner::new(reply_to_chat);
    let t = folder_of_chats(runner.clone(), "", "main", &["fake:one", "fake:two"]).await;
    t.channel
        .inject(&tenant(), "fake:one", "U", "hello one")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    // The run for `one` now idles; `two` must not wait for it to time out.
    t.channel
        .inject(&tenant(), "fake:two", "U", "hello two")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(2, WAIT).await;
    assert_eq!(sent[1].chat_jid, "fake:two");
    assert_eq!(sent[1].text, "to fake:two");
    t.channel
        .inject(&tenant(), "fake:two", "U", "and again")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(3, WAIT).await;
    assert_eq!(sent[2].text, "to fake:two");
    assert_eq!(runner.started().len(), 2, "the second message was piped");
    t.daemon.shutdown().await;
}

/// Only messages that will be answered close another chat's idle run: an untriggered message in
/// a chat that needs the trigger stays as context and leaves the run alone.
#[tokio::test]
async fn an_untriggered_message_in_another_chat_leaves_the_idle_run_alone() {
    let runner = ScriptedRunner::new(reply_to_chat);
    let t = folder_of_chats(runner.clone(), "", "team", &["fake:a", "fake:b"]).await;
    t.channel
        .inject(&tenant(), "fake:a", "U", "@Andy hi")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    t.channel
        .inject(&tenant(), "fake:b", "U", "just chatting")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runner.live_runs(), 1, "the idle run of fake:a is still up");
    assert_eq!(runner.started().len(), 1);
    t.channel
        .inject(&tenant(), "fake:b", "U", "@Andy and you?")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(2, WAIT).await;
    assert_eq!(sent[1].text, "to fake:b");
    let prompt = &runner.started()[1].request.prompt;
    assert!(
        prompt.contains("just chatting"),
        "kept as context: {prompt}"
    );
    t.daemon.shutdown().await;
}

/// The two cases together: another chat's message arrives while the run is still starting. Once
/// the run is up and idle, it makes way for that chat instead of idling for 30 minutes.
#[tokio::test]
async fn another_chats_message_while_the_run_starts_gets_its_own_run() {
    let runner = ScriptedRunner::slow_start(Duration::from_millis(300), reply_to_chat);
    let t = folder_of_chats(runner.clone(), "", "main", &["fake:one", "fake:two"]).await;
    t.channel
        .inject(&tenant(), "fake:one", "U", "hello one")
        .await
        .unwrap();
    eventually("the run is starting", || runner.started().len() == 1).await;
    t.channel
        .inject(&tenant(), "fake:two", "U", "hello two")
        .await
        .unwrap();
    each_chat_got_its_own_reply(&t).await;
    t.daemon.shutdown().await;
}

/// SQLite is the only journal: another process (the admin CLI) may store messages while the
/// daemon runs, and an old config that still names `router.ingest_journal` starts with a
/// warning instead of failing.
#[tokio::test]
async fn other_stores_may_write_messages_while_the_daemon_runs() {
    let t = start(ScriptedRunner::echo(), "[router]\ningest_journal = true\n").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hello")
        .await
        .unwrap();
    assert_eq!(t.channel.wait_sent(1, WAIT).await.len(), 1);
    let admin = cambot_core::SqliteStore::open(&t.dir.path().join("cambot.db")).unwrap();
    admin
        .store_message(cambot_protocol::InboundMessage {
            tenant: tenant(),
            chat_jid: ChatJid::new("fake:other").unwrap(),
            id: "admin-1".into(),
            sender: "admin".into(),
            sender_name: "Admin".into(),
            content: "from another process".into(),
            timestamp: "2026-12-01T00:00:00.000Z".into(),
            is_from_me: false,
            is_bot_message: false,
            attachments: Vec::new(),
        })
        .await
        .unwrap();
    t.daemon.shutdown().await;
}

/// Runs that answer silently and close at once: each run's cursor moves (queued, not awaited
/// one by one) must be committed before its group looks for more messages, or the next run
/// would be handed a message that was answered already.
#[tokio::test]
async fn silent_answers_are_never_handed_to_a_second_run() {
    const GROUPS: usize = 20;
    const PER_GROUP: usize = 15;
    let runner = ScriptedRunner::new(|_, _| Turn::silent());
    let t = start(runner.clone(), "[router]\nidle_timeout_ms = 0\n").await;
    for g in 0..GROUPS {
        t.channel
            .register(
                &tenant(),
                &format!("fake:g{g}"),
                &format!("g{g}"),
                Some(false),
            )
            .await
            .unwrap();
    }
    for n in 0..GROUPS * PER_GROUP {
        let id = format!("m{n}");
        t.channel
            .inject_with_id(&tenant(), &format!("fake:g{}", n % GROUPS), &id, "u", &id)
            .await
            .unwrap();
    }
    let seen = || -> Vec<String> {
        runner
            .started()
            .iter()
            .flat_map(|run| run.prompts.lock().unwrap().clone())
            .flat_map(|prompt| {
                prompt
                    .split("</message>")
                    .filter_map(|part| part.rsplit('>').next().map(str::to_owned))
                    .filter(|id| id.starts_with('m'))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    eventually("every message was handed to a run", || {
        let mut ids = seen();
        ids.sort();
        ids.dedup();
        ids.len() == GROUPS * PER_GROUP
    })
    .await;
    eventually("every run has ended", || runner.live_runs() == 0).await;
    let mut ids = seen();
    let handed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(handed, ids.len(), "a message was handed to two runs");
    t.daemon.shutdown().await;
}
