//! Tenant administration: add, list with counts, state, remove, purge (every row of one tenant,
//! nothing of another), and a disabled tenant's tasks paused by its state.
#![allow(clippy::disallowed_methods)] // Counts rows with a connection of its own, as another process would.

use cambot_core::Claim;
use cambot_core::ContextMode;
use cambot_core::GroupRegistration;
use cambot_core::MissedRunPolicy;
use cambot_core::MountRootStore;
use cambot_core::NewReply;
use cambot_core::RefreshTokenRow;
use cambot_core::ScheduledTask;
use cambot_core::SigningKeyRow;
use cambot_core::TaskRunStatus;
use cambot_core::TaskStatus;
use cambot_core::TenantRemoval;
use cambot_core::TenantState;
use cambot_core::TenantStore;
use cambot_core::VaultDekRow;
use cambot_core::VaultSecretRow;
use cambot_core::VaultStore;
use cambot_core::WebSessionRow;
use cambot_core::WorkflowStore;
use cambot_protocol::GroupFolder;
use cambot_protocol::TaskId;
use pretty_assertions::assert_eq;

use super::*;

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn file_store() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let s = SqliteStore::open(&path).unwrap();
    (dir, path, s)
}

fn task(tenant: &TenantId, task_id: &str, due_ms: i64) -> ScheduledTask {
    ScheduledTask {
        id: TaskId::new(task_id).unwrap(),
        tenant: tenant.clone(),
        group_folder: GroupFolder::new("g1").unwrap(),
        chat_jid: jid("x@g.us"),
        prompt: "do something".into(),
        schedule_type: "once".into(),
        schedule_value: "2026-06-01T00:00:00Z".into(),
        timezone: "UTC".into(),
        context_mode: ContextMode::Isolated,
        missed_policy: MissedRunPolicy::Skip,
        next_run_ms: Some(due_ms),
        last_run: None,
        last_result: None,
        status: TaskStatus::Active,
        created_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

/// Gives `t` a row in every table a tenant has rows in, with the same folder and chat jid as
/// any other tenant seeded here (the ids collide on purpose: only the tenant tells them apart).
async fn seed(s: &SqliteStore, t: &TenantId) {
    assert!(s.add_tenant(t, "seeded").await.unwrap());
    let folder = GroupFolder::new("g1").unwrap();
    s.register_group(GroupRegistration {
        tenant: t.clone(),
        jid: jid("x@g.us"),
        name: "x".into(),
        folder: folder.clone(),
        trigger: "@Andy".into(),
        requires_trigger: None,
        container_config: None,
    })
    .await
    .unwrap();
    let mut m = msg("x@g.us", "m1", "hello", "2024-01-01T00:00:01.000Z");
    m.tenant = t.clone();
    let seq = stored_seq(s, m).await;
    s.set_session(t, &folder, "sess").await.unwrap();
    s.commit_reply(NewReply {
        tenant: t.clone(),
        chat_jid: jid("x@g.us"),
        text: "hi".into(),
        origin: "router".into(),
        advance_to: Some(seq),
    })
    .await
    .unwrap();
    let task_id = format!("task-{t}");
    s.create_task(&task(t, &task_id, 1_000)).await.unwrap();
    let claimed = s
        .claim_firings(&[Claim {
            task_id: TaskId::new(&task_id).unwrap(),
            expected_next_run_ms: 1_000,
            new_next_run_ms: Some(2_000),
            scheduled_for_ms: 1_000,
            run_status: TaskRunStatus::Claimed,
            note: None,
        }])
        .await
        .unwrap();
    assert!(claimed[0].is_some());
    assert!(s.add_user(t, "alice", "$argon2id$x").await.unwrap());
    s.add_signing_key(&SigningKeyRow {
        kid: format!("kid-{t}"),
        tenant: t.clone(),
        algorithm: "EdDSA".into(),
        private_key: vec![1],
        public_key: vec![2],
        created_ms: 1,
        sealed: true,
    })
    .await
    .unwrap();
    s.insert_refresh(&RefreshTokenRow {
        hash: format!("hash-{t}"),
        family: format!("family-{t}"),
        tenant: t.clone(),
        user_id: "alice".into(),
        expires_ms: i64::MAX,
        family_created_ms: 0,
    })
    .await
    .unwrap();
    s.insert_web_session(&WebSessionRow {
        tenant: t.clone(),
        user_id: "alice".into(),
        id: format!("session-{t}"),
        folder,
        chat_jid: jid("x@g.us"),
        title: String::new(),
        created_ms: 1,
        last_active_ms: 1,
    })
    .await
    .unwrap();
    s.set_mount_root(t, &format!("/srv/roots/{t}"), false)
        .await
        .unwrap();
    let check = s.init_vault_check(b"check".to_vec()).await.unwrap();
    s.insert_vault_dek(
        VaultDekRow {
            tenant: t.clone(),
            nonce: vec![0; 24],
            wrapped: vec![1; 48],
            created_ms: 1,
        },
        check,
    )
    .await
    .unwrap()
    .unwrap();
    s.put_vault_secret(VaultSecretRow {
        tenant: t.clone(),
        name: "api".into(),
        nonce: vec![0; 24],
        ciphertext: vec![2; 40],
        created_ms: 1,
        updated_ms: 1,
        expires_ms: None,
    })
    .await
    .unwrap();
    s.put_workflow_def(cambot_core::WorkflowDefRow {
        tenant: t.clone(),
        name: "digest".into(),
        toml: "name = \"digest\"".into(),
        created_ms: 1,
        updated_ms: 1,
    })
    .await
    .unwrap();
    s.create_workflow_run(super::workflows::run(t.as_str(), &format!("run-{t}"), 1))
        .await
        .unwrap();
}

/// Rows of `tenant` per table (every table with a `tenant` column, the task run log through
/// its task, and the `tenants` row), read with a connection of its own.
fn rows_of(path: &std::path::Path, tenant: &str) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c
             WHERE m.type = 'table' AND c.name = 'tenant' ORDER BY m.name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut out = Vec::new();
    for table in tables {
        let n: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE tenant = ?1"),
                [tenant],
                |r| r.get(0),
            )
            .unwrap();
        out.push((table, n));
    }
    let runs: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM task_runs r JOIN scheduled_tasks t ON t.id = r.task_id
             WHERE t.tenant = ?1",
            [tenant],
            |r| r.get(0),
        )
        .unwrap();
    out.push(("task_runs".into(), runs));
    let steps: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM workflow_steps s JOIN workflow_runs r ON r.id = s.run_id
             WHERE r.tenant = ?1",
            [tenant],
            |r| r.get(0),
        )
        .unwrap();
    out.push(("workflow_steps".into(), steps));
    let row: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM tenants WHERE id = ?1",
            [tenant],
            |r| r.get(0),
        )
        .unwrap();
    out.push(("tenants".into(), row));
    out
}

#[tokio::test]
async fn tenants_are_added_listed_with_counts_and_change_state() {
    let s = store();
    let acme = id("acme");
    assert!(s.add_tenant(&acme, "Acme Corp").await.unwrap());
    assert!(
        !s.add_tenant(&acme, "again").await.unwrap(),
        "the id is taken"
    );
    assert!(
        !s.add_tenant(&tenant(), "x").await.unwrap(),
        "default always exists"
    );
    assert!(s.add_user(&acme, "alice", "$argon2id$x").await.unwrap());
    assert!(s.add_user(&acme, "bob", "$argon2id$x").await.unwrap());
    s.register_group(GroupRegistration {
        tenant: acme.clone(),
        jid: jid("x@g.us"),
        name: "x".into(),
        folder: GroupFolder::new("g1").unwrap(),
        trigger: "@Andy".into(),
        requires_trigger: None,
        container_config: None,
    })
    .await
    .unwrap();

    let list = s.tenant_summaries().await.unwrap();
    let view: Vec<_> = list
        .iter()
        .map(|t| {
            (
                t.tenant.id.to_string(),
                t.tenant.name.clone(),
                t.tenant.state,
                t.groups,
                t.users,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            ("acme".into(), "Acme Corp".into(), TenantState::Active, 1, 2),
            ("default".into(), String::new(), TenantState::Active, 0, 0),
        ]
    );

    assert!(
        s.set_tenant_state(&acme, TenantState::Disabled)
            .await
            .unwrap()
    );
    assert_eq!(
        s.tenant(&acme).await.unwrap().unwrap().state,
        TenantState::Disabled
    );
    assert_eq!(s.disabled_tenants().await.unwrap(), vec![acme.clone()]);
    assert!(
        !s.set_tenant_state(&id("nobody"), TenantState::Disabled)
            .await
            .unwrap()
    );
    assert!(s.tenant(&id("nobody")).await.unwrap().is_none());
    assert!(
        s.set_tenant_state(&acme, TenantState::Active)
            .await
            .unwrap()
    );
    assert!(s.disabled_tenants().await.unwrap().is_empty());
}

#[tokio::test]
async fn remove_refuses_a_tenant_with_groups_or_users_and_never_default() {
    let s = store();
    let acme = id("acme");
    assert_eq!(
        s.remove_tenant(&tenant()).await.unwrap(),
        TenantRemoval::Protected
    );
    assert_eq!(
        s.remove_tenant(&acme).await.unwrap(),
        TenantRemoval::NotFound
    );
    seed(&s, &acme).await;
    assert_eq!(
        s.remove_tenant(&acme).await.unwrap(),
        TenantRemoval::NotEmpty {
            groups: 1,
            users: 1,
            secrets: 1,
        }
    );
    assert!(s.tenant(&acme).await.unwrap().is_some(), "nothing removed");
    assert!(s.purge_tenant(&tenant()).await.is_err(), "default is kept");

    let empty = id("empty");
    assert!(s.add_tenant(&empty, "").await.unwrap());
    assert_eq!(
        s.remove_tenant(&empty).await.unwrap(),
        TenantRemoval::Removed
    );
    assert!(s.tenant(&empty).await.unwrap().is_none());
}

/// Two tenants with the same folder, chat jid and user name: purging one deletes each of its
/// rows in every table and leaves every row of the other.
#[tokio::test]
async fn purge_deletes_every_row_of_one_tenant_and_nothing_of_another() {
    let (_dir, path, s) = file_store();
    let (acme, beta) = (id("acme"), id("beta"));
    seed(&s, &acme).await;
    seed(&s, &beta).await;
    let beta_before = rows_of(&path, "beta");
    let acme_before = rows_of(&path, "acme");
    assert_eq!(acme_before, beta_before);
    assert!(
        beta_before.iter().all(|(_, n)| *n > 0),
        "every table has a row to lose: {beta_before:?}"
    );
    let default_before = rows_of(&path, "default");

    let deleted = s.purge_tenant(&acme).await.unwrap().unwrap();
    let expected: i64 = acme_before.iter().map(|(_, n)| n).sum();
    assert_eq!(i64::try_from(deleted).unwrap(), expected);
    assert!(
        rows_of(&path, "acme").iter().all(|(_, n)| *n == 0),
        "{:?}",
        rows_of(&path, "acme")
    );
    assert_eq!(rows_of(&path, "beta"), beta_before);
    assert_eq!(rows_of(&path, "default"), default_before);
    assert_eq!(s.purge_tenant(&acme).await.unwrap(), None);
    // Beta's data still reads back.
    assert_eq!(s.registered_groups(&beta).await.unwrap().len(), 1);
    assert!(s.user(&beta, "alice").await.unwrap().is_some());
}

/// A disabled tenant's tasks are neither due nor claimable; they stay `active` and are due
/// again once it is enabled. Another tenant's tasks are unaffected.
#[tokio::test]
async fn a_disabled_tenants_tasks_are_not_due_and_come_back_on_enable() {
    let s = store();
    let (acme, beta) = (id("acme"), id("beta"));
    for t in [&acme, &beta] {
        assert!(s.add_tenant(t, "").await.unwrap());
    }
    s.create_task(&task(&acme, "task-a", 1_000)).await.unwrap();
    s.create_task(&task(&beta, "task-b", 2_000)).await.unwrap();
    assert!(
        s.set_tenant_state(&acme, TenantState::Disabled)
            .await
            .unwrap()
    );

    let due: Vec<String> = s
        .due_tasks(10_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due, vec!["task-b".to_owned()]);
    assert_eq!(s.next_due_ms().await.unwrap(), Some(2_000));
    let claim = Claim {
        task_id: TaskId::new("task-a").unwrap(),
        expected_next_run_ms: 1_000,
        new_next_run_ms: None,
        scheduled_for_ms: 1_000,
        run_status: TaskRunStatus::Claimed,
        note: None,
    };
    assert_eq!(
        s.claim_firings(std::slice::from_ref(&claim)).await.unwrap(),
        vec![None],
        "a claim read before the disable does not go through"
    );
    let stored = s
        .task(&TaskId::new("task-a").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status, stored.next_run_ms),
        (TaskStatus::Active, Some(1_000))
    );

    assert!(
        s.set_tenant_state(&acme, TenantState::Active)
            .await
            .unwrap()
    );
    assert_eq!(s.next_due_ms().await.unwrap(), Some(1_000));
    assert_eq!(s.due_tasks(10_000, 10).await.unwrap().len(), 2);
    assert!(s.claim_firings(&[claim]).await.unwrap()[0].is_some());
}

/// Tenants that existed only through their rows before tenants were administered become
/// known (active) tenants on upgrade.
#[tokio::test]
async fn the_upgrade_makes_tenants_of_existing_rows_known() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                             applied_at TEXT NOT NULL);",
        )
        .unwrap();
        for (version, sql) in [
            (
                1,
                include_str!("../../src/sqlite/migrations/0001_initial.sql"),
            ),
            (2, include_str!("../../src/sqlite/migrations/0002_web.sql")),
        ] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, 'old', 'x')",
                [version],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO registered_groups (tenant, jid, name, folder, trigger_pattern, added_at)
                 VALUES ('acme', 'x@g.us', 'x', 'g1', '@Andy', 'x');
             INSERT INTO web_users (tenant, id, password_hash, created_ms, updated_ms)
                 VALUES ('beta', 'alice', 'h', 1, 1);",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let ids: Vec<String> = s
        .tenant_summaries()
        .await
        .unwrap()
        .into_iter()
        .map(|t| format!("{} {} {}", t.tenant.id, t.tenant.state, t.groups + t.users))
        .collect();
    assert_eq!(ids, ["acme active 1", "beta active 1", "default active 0"]);
}

#[tokio::test]
async fn a_chat_held_by_one_tenant_is_not_claimed_by_another() {
    use cambot_core::GroupStore;
    let (_dir, _path, s) = file_store();
    let reg = |tenant: &str, folder: &str| GroupRegistration {
        tenant: id(tenant),
        jid: jid("shared@g.us"),
        name: "x".into(),
        folder: GroupFolder::new(folder).unwrap(),
        trigger: "@Andy".into(),
        requires_trigger: None,
        container_config: None,
    };
    let acme = s.register_group_unclaimed(reg("acme", "g1")).await.unwrap();
    assert_eq!(acme.map(|g| g.tenant), Some(id("acme")));
    assert_eq!(
        s.register_group_unclaimed(reg("beta", "g1")).await.unwrap(),
        None,
        "beta may not claim acme's chat"
    );
    assert_eq!(
        s.registered_group(&id("beta"), &jid("shared@g.us"))
            .await
            .unwrap(),
        None
    );
    // The holder itself may update its registration.
    let again = s
        .register_group_unclaimed(GroupRegistration {
            name: "renamed".into(),
            ..reg("acme", "g1")
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.name, "renamed");
}

#[tokio::test]
async fn a_tenant_provider_is_stored_shown_and_cleared() {
    let (_dir, _path, s) = file_store();
    let acme = id("acme");
    assert!(s.add_tenant(&acme, "Acme").await.unwrap());
    assert_eq!(s.tenant(&acme).await.unwrap().unwrap().provider, None);
    assert!(s.set_tenant_provider(&acme, Some("second")).await.unwrap());
    assert_eq!(
        s.tenant(&acme).await.unwrap().unwrap().provider.as_deref(),
        Some("second")
    );
    let listed = s.tenant_summaries().await.unwrap();
    let row = listed.iter().find(|t| t.tenant.id == acme).unwrap();
    assert_eq!(row.tenant.provider.as_deref(), Some("second"));
    // Another tenant keeps the global choice.
    let default = listed.iter().find(|t| t.tenant.id.is_default()).unwrap();
    assert_eq!(default.tenant.provider, None);
    assert!(s.set_tenant_provider(&acme, None).await.unwrap());
    assert_eq!(s.tenant(&acme).await.unwrap().unwrap().provider, None);
    assert!(
        !s.set_tenant_provider(&id("nobody"), Some("x"))
            .await
            .unwrap()
    );
}
