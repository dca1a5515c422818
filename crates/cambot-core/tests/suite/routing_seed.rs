//! The seed's routing.test.ts "available groups" cases.

use cambot_core::GROUP_SYNC_JID;
use cambot_core::GroupRegistration;
use cambot_protocol::GroupFolder;
use pretty_assertions::assert_eq;

use super::*;

#[tokio::test]
async fn only_group_chats_are_listed() {
    let s = store();
    s.store_chat_metadata(meta(
        "group@g.us",
        "2024-01-01T00:00:01.000Z",
        Some("Group"),
        Some(true),
    ))
    .await
    .unwrap();
    s.store_chat_metadata(meta(
        "user@s.whatsapp.net",
        "2024-01-01T00:00:02.000Z",
        Some("User"),
        Some(false),
    ))
    .await
    .unwrap();
    let groups = s.available_groups(&tenant()).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].jid, "group@g.us");
}

#[tokio::test]
async fn the_sync_marker_is_excluded() {
    let s = store();
    s.store_chat_metadata(meta(
        GROUP_SYNC_JID,
        "2024-01-01T00:00:00.000Z",
        Some("sync"),
        Some(true),
    ))
    .await
    .unwrap();
    s.store_chat_metadata(meta(
        "group@g.us",
        "2024-01-01T00:00:01.000Z",
        Some("Group"),
        Some(true),
    ))
    .await
    .unwrap();
    let groups = s.available_groups(&tenant()).await.unwrap();
    assert_eq!(
        groups.iter().map(|g| g.jid.as_str()).collect::<Vec<_>>(),
        vec!["group@g.us"]
    );
}

#[tokio::test]
async fn registration_is_flagged() {
    let s = store();
    s.store_chat_metadata(meta(
        "reg@g.us",
        "2024-01-01T00:00:01.000Z",
        Some("Registered"),
        Some(true),
    ))
    .await
    .unwrap();
    s.store_chat_metadata(meta(
        "unreg@g.us",
        "2024-01-01T00:00:02.000Z",
        Some("Unregistered"),
        Some(true),
    ))
    .await
    .unwrap();
    s.register_group(GroupRegistration {
        tenant: tenant(),
        jid: jid("reg@g.us"),
        name: "Registered".into(),
        folder: GroupFolder::new("registered").unwrap(),
        trigger: "@Andy".into(),
        requires_trigger: None,
        container_config: None,
    })
    .await
    .unwrap();
    let groups = s.available_groups(&tenant()).await.unwrap();
    let reg = groups.iter().find(|g| g.jid == "reg@g.us").unwrap();
    let unreg = groups.iter().find(|g| g.jid == "unreg@g.us").unwrap();
    assert!(reg.is_registered);
    assert_eq!(reg.folder.as_deref(), Some("registered"));
    assert!(!unreg.is_registered);
}

#[tokio::test]
async fn newest_activity_first() {
    let s = store();
    s.store_chat_metadata(meta(
        "old@g.us",
        "2024-01-01T00:00:01.000Z",
        Some("Old"),
        Some(true),
    ))
    .await
    .unwrap();
    s.store_chat_metadata(meta(
        "new@g.us",
        "2024-01-01T00:00:05.000Z",
        Some("New"),
        Some(true),
    ))
    .await
    .unwrap();
    s.store_chat_metadata(meta(
        "mid@g.us",
        "2024-01-01T00:00:03.000Z",
        Some("Mid"),
        Some(true),
    ))
    .await
    .unwrap();
    let order: Vec<_> = s
        .available_groups(&tenant())
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.jid)
        .collect();
    assert_eq!(order, vec!["new@g.us", "mid@g.us", "old@g.us"]);
}

#[tokio::test]
async fn chats_without_the_group_flag_are_excluded_whatever_their_jid() {
    let s = store();
    s.store_chat_metadata(meta(
        "looks-like@g.us",
        "2024-01-01T00:00:01.000Z",
        Some("X"),
        None,
    ))
    .await
    .unwrap();
    s.store_chat_metadata(meta(
        "real@g.us",
        "2024-01-01T00:00:02.000Z",
        Some("Y"),
        Some(true),
    ))
    .await
    .unwrap();
    let groups = s.available_groups(&tenant()).await.unwrap();
    assert_eq!(
        groups.iter().map(|g| g.jid.as_str()).collect::<Vec<_>>(),
        vec!["real@g.us"]
    );
}

#[tokio::test]
async fn empty_database_lists_nothing() {
    assert!(
        store()
            .available_groups(&tenant())
            .await
            .unwrap()
            .is_empty()
    );
}
