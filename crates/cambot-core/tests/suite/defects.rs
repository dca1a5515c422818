//! Each seed DEFECT the store fixes, with a test that fails under the seed's behaviour.

use cambot_core::GroupRegistration;
use cambot_protocol::AdditionalMount;
use cambot_protocol::ContainerConfig;
use cambot_protocol::GroupFolder;
use pretty_assertions::assert_eq;

use super::*;

/// Seed DEFECT 1(a): the cursor was a timestamp compared with `>`, so a message stored after the
/// cursor moved but carrying the *same* timestamp (1 s resolution) was never seen. Cursors are
/// seqs now.
#[test]
fn message_sharing_the_cursor_timestamp_is_not_lost() {
    let s = store();
    let ts = "2024-01-01T00:00:01.000Z";
    let first = s.store_message(&msg("g@g.us", "m1", "first", ts)).unwrap();
    s.advance_cursor(&tenant(), &jid("g@g.us"), first).unwrap();
    s.store_message(&msg("g@g.us", "m2", "same second", ts))
        .unwrap();
    let cursor = s.cursor(&tenant(), &jid("g@g.us")).unwrap();
    let pending = s
        .messages_since(&tenant(), &jid("g@g.us"), cursor, 100)
        .unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the seed's `timestamp > cursor` returned 0 rows here"
    );
    assert_eq!(pending[0].content, "same second");
}

/// Seed DEFECT 1(b): a user message beginning with `<AssistantName>:` was treated as a bot
/// message and silently ignored. Only the flag counts now.
#[test]
fn user_message_starting_with_the_assistant_name_is_kept() {
    let s = store();
    s.store_message(&msg(
        "g@g.us",
        "m1",
        "Andy: are you there?",
        "2024-01-01T00:00:01.000Z",
    ))
    .unwrap();
    let rows = s.messages_since(&tenant(), &jid("g@g.us"), 0, 100).unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the seed's `content NOT LIKE 'Andy:%'` dropped it"
    );
}

fn registration(jid_s: &str, folder: &str, config: Option<ContainerConfig>) -> GroupRegistration {
    GroupRegistration {
        tenant: tenant(),
        jid: jid(jid_s),
        name: "Group".into(),
        folder: GroupFolder::new(folder).unwrap(),
        trigger: "@Andy".into(),
        requires_trigger: None,
        container_config: config,
    }
}

/// Seed DEFECT (registered groups) 1: `INSERT OR REPLACE` on re-registration wiped the group's
/// container config (the CLI re-registers on every connect).
#[test]
fn re_registering_keeps_the_container_config() {
    let s = store();
    let config = ContainerConfig {
        additional_mounts: vec![AdditionalMount {
            host_path: "~/projects".into(),
            container_path: Some("projects".into()),
            readonly: Some(true),
        }],
        timeout_ms: Some(60_000),
        memory_bytes: None,
    };
    s.register_group(&registration("cli:console", "main", Some(config.clone())))
        .unwrap();
    let again = s
        .register_group(&registration("cli:console", "main", None))
        .unwrap();
    assert_eq!(again.container_config, Some(config));
}

/// Seed DEFECT 2: the UNIQUE folder column made registering a second chat into an existing
/// folder delete the first registration.
#[test]
fn second_chat_in_a_folder_keeps_the_first() {
    let s = store();
    s.register_group(&registration("cli:console", "main", None))
        .unwrap();
    s.register_group(&registration("15551234@s.whatsapp.net", "main", None))
        .unwrap();
    let in_main = s.groups_in_folder(&tenant(), &GroupFolder::main()).unwrap();
    let jids: Vec<_> = in_main.iter().map(|g| g.jid.as_str().to_owned()).collect();
    assert_eq!(jids, vec!["15551234@s.whatsapp.net", "cli:console"]);
}

#[test]
fn tenants_are_separate() {
    let s = store();
    let other = TenantId::new("acme").unwrap();
    s.store_message(&msg(
        "g@g.us",
        "m1",
        "default tenant",
        "2024-01-01T00:00:01.000Z",
    ))
    .unwrap();
    let mut m = msg("g@g.us", "m1", "acme tenant", "2024-01-01T00:00:01.000Z");
    m.tenant = other.clone();
    s.store_message(&m).unwrap();
    let d = s.messages_since(&tenant(), &jid("g@g.us"), 0, 10).unwrap();
    let a = s.messages_since(&other, &jid("g@g.us"), 0, 10).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(a.len(), 1);
    assert_eq!(d[0].content, "default tenant");
    assert_eq!(a[0].content, "acme tenant");
    let mut reg = registration("g@g.us", "team", None);
    reg.tenant = other.clone();
    s.register_group(&reg).unwrap();
    assert!(s.registered_groups(&tenant()).unwrap().is_empty());
    assert_eq!(s.registered_groups(&other).unwrap().len(), 1);
}

#[test]
fn reply_and_cursor_commit_together_and_deliver_once() {
    let s = store();
    let seq = s
        .store_message(&msg("g@g.us", "m1", "hi", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    let id = s
        .commit_reply(&tenant(), &jid("g@g.us"), "hello", "router", Some(seq))
        .unwrap();
    assert_eq!(s.cursor(&tenant(), &jid("g@g.us")).unwrap(), seq);
    let pending = s.pending_outbox(10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, id);
    s.mark_delivery_failed(id, "offline").unwrap();
    assert_eq!(s.pending_outbox(10).unwrap()[0].attempts, 1);
    s.mark_delivered(id).unwrap();
    assert!(s.pending_outbox(10).unwrap().is_empty());
    assert_eq!(
        s.delivered_replies(&tenant(), &jid("g@g.us")).unwrap(),
        vec![(id, "hello".to_owned())]
    );
    // The cursor never moves backwards.
    s.advance_cursor(&tenant(), &jid("g@g.us"), 0).unwrap();
    assert_eq!(s.cursor(&tenant(), &jid("g@g.us")).unwrap(), seq);
}

#[test]
fn concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = cambot_core::Store::open(&dir.path().join("c.db")).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| {
                        s.store_message(&msg(
                            &format!("g{}@g.us", t % 3),
                            &format!("t{t}-{i}"),
                            "x",
                            "2024-01-01T00:00:00.000Z",
                        ))
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<i64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 2000, "every message got its own seq");
    let total: usize = (0..3)
        .map(|g| {
            s.messages_since(&tenant(), &jid(&format!("g{g}@g.us")), 0, 10_000)
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(total, 2000);
}
