//! Each seed DEFECT the store fixes, with a test that fails under the seed's behaviour.

use cambot_core::GroupRegistration;
use cambot_core::NewReply;
use cambot_protocol::AdditionalMount;
use cambot_protocol::ContainerConfig;
use cambot_protocol::GroupFolder;
use pretty_assertions::assert_eq;

use super::*;

/// Seed DEFECT 1(a): the cursor was a timestamp compared with `>`, so a message stored after the
/// cursor moved but carrying the *same* timestamp (1 s resolution) was never seen. Cursors are
/// seqs now.
#[tokio::test]
async fn message_sharing_the_cursor_timestamp_is_not_lost() {
    let s = store();
    let ts = "2024-01-01T00:00:01.000Z";
    let first = stored_seq(&s, msg("g@g.us", "m1", "first", ts)).await;
    s.advance_cursor(&tenant(), &jid("g@g.us"), first)
        .await
        .unwrap();
    s.store_message(msg("g@g.us", "m2", "same second", ts))
        .await
        .unwrap();
    let cursor = s.cursor(&tenant(), &jid("g@g.us")).await.unwrap();
    let pending = s
        .messages_since(&tenant(), &jid("g@g.us"), cursor, 100)
        .await
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
#[tokio::test]
async fn user_message_starting_with_the_assistant_name_is_kept() {
    let s = store();
    s.store_message(msg(
        "g@g.us",
        "m1",
        "Andy: are you there?",
        "2024-01-01T00:00:01.000Z",
    ))
    .await
    .unwrap();
    let rows = s
        .messages_since(&tenant(), &jid("g@g.us"), 0, 100)
        .await
        .unwrap();
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
#[tokio::test]
async fn re_registering_keeps_the_container_config() {
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
    s.register_group(registration("cli:console", "main", Some(config.clone())))
        .await
        .unwrap();
    let again = s
        .register_group(registration("cli:console", "main", None))
        .await
        .unwrap();
    assert_eq!(again.container_config, Some(config));
}

/// Seed DEFECT 2: the UNIQUE folder column made registering a second chat into an existing
/// folder delete the first registration.
#[tokio::test]
async fn second_chat_in_a_folder_keeps_the_first() {
    let s = store();
    s.register_group(registration("cli:console", "main", None))
        .await
        .unwrap();
    s.register_group(registration("15551234@s.whatsapp.net", "main", None))
        .await
        .unwrap();
    let in_main = s
        .groups_in_folder(&tenant(), &GroupFolder::main())
        .await
        .unwrap();
    let jids: Vec<_> = in_main.iter().map(|g| g.jid.as_str().to_owned()).collect();
    assert_eq!(jids, vec!["15551234@s.whatsapp.net", "cli:console"]);
}

#[tokio::test]
async fn tenants_are_separate() {
    let s = store();
    let other = TenantId::new("acme").unwrap();
    s.store_message(msg(
        "g@g.us",
        "m1",
        "default tenant",
        "2024-01-01T00:00:01.000Z",
    ))
    .await
    .unwrap();
    let mut m = msg("g@g.us", "m1", "acme tenant", "2024-01-01T00:00:01.000Z");
    m.tenant = other.clone();
    s.store_message(m).await.unwrap();
    let d = s
        .messages_since(&tenant(), &jid("g@g.us"), 0, 10)
        .await
        .unwrap();
    let a = s
        .messages_since(&other, &jid("g@g.us"), 0, 10)
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(a.len(), 1);
    assert_eq!(d[0].content, "default tenant");
    assert_eq!(a[0].content, "acme tenant");
    let mut reg = registration("g@g.us", "team", None);
    reg.tenant = other.clone();
    s.register_group(reg).await.unwrap();
    assert!(s.registered_groups(&tenant()).await.unwrap().is_empty());
    assert_eq!(s.registered_groups(&other).await.unwrap().len(), 1);
}

#[tokio::test]
async fn reply_and_cursor_commit_together_and_deliver_once() {
    let s = store();
    let seq = stored_seq(&s, msg("g@g.us", "m1", "hi", "2024-01-01T00:00:01.000Z")).await;
    let id = s
        .commit_reply(NewReply {
            tenant: tenant(),
            chat_jid: jid("g@g.us"),
            text: "hello".into(),
            origin: "router".into(),
            advance_to: Some(seq),
        })
        .await
        .unwrap();
    assert_eq!(s.cursor(&tenant(), &jid("g@g.us")).await.unwrap(), seq);
    let pending = s.pending_outbox(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, id);
    s.mark_delivery_failed(id, "offline").await.unwrap();
    assert_eq!(s.pending_outbox(10).await.unwrap()[0].attempts, 1);
    s.mark_delivered(id).await.unwrap();
    assert!(s.pending_outbox(10).await.unwrap().is_empty());
    assert_eq!(
        s.delivered_replies(&tenant(), &jid("g@g.us"))
            .await
            .unwrap(),
        vec![(id, "hello".to_owned())]
    );
    // The cursor never moves backwards.
    s.advance_cursor(&tenant(), &jid("g@g.us"), 0)
        .await
        .unwrap();
    assert_eq!(s.cursor(&tenant(), &jid("g@g.us")).await.unwrap(), seq);
}

/// Eight writers, each storing its messages one after the other, as eight concurrent callers
/// (tasks on a multi-thread runtime) do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("c.db")).unwrap();
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..250 {
                    seqs.push(
                        stored_seq(
                            &s,
                            msg(
                                &format!("g{}@g.us", t % 3),
                                &format!("t{t}-{i}"),
                                "x",
                                "2024-01-01T00:00:00.000Z",
                            ),
                        )
                        .await,
                    );
                }
                seqs
            })
        })
        .collect();
    let mut seqs: Vec<i64> = Vec::new();
    for w in writers {
        seqs.extend(w.await.unwrap());
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 2000, "every message got its own seq");
    let mut total = 0;
    for g in 0..3 {
        total += s
            .messages_since(&tenant(), &jid(&format!("g{g}@g.us")), 0, 10_000)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(total, 2000);
}
