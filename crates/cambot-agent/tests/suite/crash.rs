//! Crash test: SIGKILL the daemon 200 times while messages are pending and arriving, restart it
//! each time, and check that every message got exactly one reply in the end.
//!
//! The daemon runs in a child process: this test binary re-executed with `--ignored` and
//! [`CHILD_ENV`] set, so `crash_child_daemon` becomes a real daemon (real SQLite file, the fake
//! channel logging each delivery to a file, a scripted runner that answers each batch with the
//! ids of the messages it saw). Replies carry their outbox id as a delivery id; a reply the child
//! delivered but had no time to mark delivered is delivered again after the restart with the same
//! id (at-least-once delivery, deduplicated by id — the idempotency contract channels get).

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use cambot_agent::daemon::Daemon;
use cambot_core::GroupRegistration;
use cambot_core::GroupStore;
use cambot_core::MessageStore;
use cambot_core::SqliteStore;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use rand::Rng;
use rand::SeedableRng;

use super::support::config;
use super::support::fake_factory;
use super::support::tenant;

const CHILD_ENV: &str = "CAMBOT_CRASH_CHILD_DIR";
const GROUPS: usize = 20;
const INITIAL_PER_GROUP: usize = 10;
const KILLS: usize = 200;

fn message_ids(prompt: &str) -> Vec<String> {
    prompt
        .split("</message>")
        .filter_map(|part| part.rsplit('>').next())
        .filter(|id| id.starts_with("m-"))
        .map(str::to_owned)
        .collect()
}

/// The child: a daemon that runs until it is killed.
#[tokio::test]
#[ignore = "entry point of the crash test's child process, not a test by itself"]
async fn crash_child_daemon() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir).to_owned();
    let seed: u64 = rand::random();
    let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)));
    let runner = ScriptedRunner::new(move |_, prompt| {
        let delay = rng.lock().unwrap().gen_range(2..30);
        Turn::reply(format!("ack {}", message_ids(prompt).join(" ")))
            .after(Duration::from_millis(delay))
    });
    let cfg = config(
        &dir,
        "max_concurrent_runs = 4\n[router]\nidle_timeout_ms = 30\nrecovery_sweep_secs = 1\ndelivery_retry_secs = 1\n",
    );
    let slot = Arc::new(Mutex::new(None));
    let daemon = Daemon::start(
        &cfg,
        runner,
        fake_factory(slot, Some(dir.join("deliveries.log"))),
    )
    .await
    .unwrap();
    // Run until SIGTERM (the parent's final stop) or SIGKILL.
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    std::fs::write(dir.join(format!("ready-{}", std::process::id())), b"").unwrap();
    term.recv().await;
    daemon.shutdown().await;
}

/// The parent drives the store from plain threads (it sleeps and kills); store calls run on
/// this runtime.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
        .block_on(f)
}

fn seed_messages(store: &SqliteStore, first: usize, count: usize, all: &mut Vec<String>) {
    for g in 0..GROUPS {
        for k in first..first + count {
            let id = format!("m-{g}-{k}");
            block_on(store.store_message(InboundMessage {
                tenant: tenant(),
                chat_jid: ChatJid::new(&format!("fake:g{g}")).unwrap(),
                id: id.clone(),
                sender: "u@fake".into(),
                sender_name: "U".into(),
                content: id.clone(),
                timestamp: cambot_core::time::now_rfc3339(),
                is_from_me: false,
                is_bot_message: false,
                attachments: Vec::new(),
            }))
            .unwrap();
            all.push(id);
        }
    }
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::crash::crash_child_daemon",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn all_answered(store: &SqliteStore) -> bool {
    (0..GROUPS).all(|g| {
        let jid = ChatJid::new(&format!("fake:g{g}")).unwrap();
        block_on(store.cursor(&tenant(), &jid)).unwrap()
            == block_on(store.latest_message_seq(&tenant(), &jid)).unwrap()
    }) && block_on(store.pending_outbox(1)).unwrap().is_empty()
}

#[test]
fn sigkill_while_messages_are_pending_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = DataLayout::new(dir.path());
    let mut all_ids = Vec::new();
    {
        let store = SqliteStore::open(&layout.database()).unwrap();
        for g in 0..GROUPS {
            block_on(store.register_group(GroupRegistration {
                tenant: tenant(),
                jid: ChatJid::new(&format!("fake:g{g}")).unwrap(),
                name: format!("g{g}"),
                folder: GroupFolder::new(&format!("g{g}")).unwrap(),
                trigger: "@Andy".into(),
                requires_trigger: Some(false),
                container_config: None,
            }))
            .unwrap();
        }
        seed_messages(&store, 0, INITIAL_PER_GROUP, &mut all_ids);
    }
    let seed: u64 = std::env::var("CAMBOT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed {seed} (set CAMBOT_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next_batch = INITIAL_PER_GROUP;
    let store = SqliteStore::open(&layout.database()).unwrap();
    for round in 0..KILLS {
        let mut child = spawn_child(dir.path());
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..150)));
        // New messages arrive while the daemon runs (another process writing the same
        // database, as a second channel host or the admin CLI would), or while it is down.
        if round % 3 == 0 {
            seed_messages(&store, next_batch, 1, &mut all_ids);
            next_batch += 1;
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..100)));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        if round % 7 == 0 {
            seed_messages(&store, next_batch, 1, &mut all_ids);
            next_batch += 1;
        }
    }
    // A last start: let it finish everything, then stop it gracefully.
    let mut child = spawn_child(dir.path());
    let ready = dir.path().join(format!("ready-{}", child.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "the last daemon never became ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_answered(&store) {
        assert!(
            Instant::now() < deadline,
            "not everything was answered in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());

    // Every delivery line: "<delivery id>\t<jid>\t<text>".
    let log = std::fs::read_to_string(dir.path().join("deliveries.log")).unwrap();
    let mut by_delivery: HashMap<i64, String> = HashMap::new();
    let mut redeliveries = 0;
    for line in log.lines() {
        let mut parts = line.splitn(3, '\t');
        let id: i64 = parts.next().unwrap().parse().unwrap();
        let _jid = parts.next().unwrap();
        let text = parts.next().unwrap().to_owned();
        if let Some(previous) = by_delivery.insert(id, text.clone()) {
            assert_eq!(previous, text, "a redelivery must carry the same reply");
            redeliveries += 1;
        }
    }
    let mut answered: HashMap<String, usize> = HashMap::new();
    for text in by_delivery.values() {
        for id in text
            .trim_start_matches("ack ")
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            *answered.entry(id.to_owned()).or_default() += 1;
        }
    }
    let expected: HashSet<&String> = all_ids.iter().collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !answered.contains_key(id.as_str()))
        .collect();
    let duplicated: Vec<_> = answered.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "crash test: {} messages, {} kills, {} replies, {} redeliveries of an already-sent reply (same delivery id)",
        all_ids.len(),
        KILLS,
        by_delivery.len(),
        redeliveries
    );
    assert!(missing.is_empty(), "messages never answered: {missing:?}");
    assert!(
        duplicated.is_empty(),
        "messages answered twice: {duplicated:?}"
    );
    assert_eq!(answered.len(), all_ids.len());
}
