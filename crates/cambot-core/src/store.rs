//! The storage seam: what the router, scheduler, host tools, web chat and admin CLI ask of
//! persistence. [`crate::SqliteStore`] implements it today; a PostgreSQL store plugs in here
//! later, so nothing in these traits names a SQLite type.
//!
//! Contract for implementers:
//! - every method is async and must not block the caller's runtime thread (blocking I/O runs
//!   on a dedicated thread or the blocking pool);
//! - every key includes the tenant: a call never reads or writes another tenant's rows;
//! - a returned `Ok` means committed: a write acknowledged to the caller survives a crash of the
//!   process;
//! - several processes may share one store (the daemon and the admin CLI): a commit of one is
//!   seen by the next read of every other.
//!
//! The traits are object-safe (methods return boxed futures) so the binary can pick the backend
//! at run time and hand `Arc<dyn Store>` to everything else.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;

use crate::error::Result;
use crate::model::*;

/// What every store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The whole store, as the binary wires it.
pub trait Store:
    MessageStore
    + GroupStore
    + SessionStore
    + TaskStore
    + UserStore
    + TenantStore
    + MountRootStore
    + crate::vault_store::VaultStore
    + crate::workflow_store::WorkflowStore
{
    /// A number that changes whenever another process (or another handle) has committed a
    /// write since the last call; the daemon polls it to notice admin-CLI changes.
    fn data_version(&self) -> StoreFuture<'_, i64>;

    /// The schema version the database is at.
    fn schema_version(&self) -> StoreFuture<'_, u32>;
}

/// Chats, messages, the router's cursors and the reply outbox.
pub trait MessageStore: Send + Sync {
    /// Stores a message, idempotent on `(tenant, chat_jid, id)`: a repeated delivery updates the
    /// content and keeps its seq. Creates the chat if needed.
    fn store_message(&self, msg: InboundMessage) -> StoreFuture<'_, Arrival>;

    /// Records chat metadata. With a name: sets it, keeps the newest activity time, fills
    /// channel/is_group when given. Without: creates the chat named after its jid, or only
    /// advances the activity time.
    fn store_chat_metadata(&self, meta: ChatMetadata) -> StoreFuture<'_, ()>;

    /// Non-bot messages of a chat after `since_seq`, oldest first. Only `is_bot_message`
    /// decides what is a bot message.
    fn messages_since<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        since_seq: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>>;

    /// A chat's non-bot messages after its router cursor, oldest first.
    fn pending_messages<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>>;

    /// The newest non-bot message seq of a chat (0 when none).
    fn latest_message_seq<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
    ) -> StoreFuture<'a, i64>;

    /// A chat's display name.
    fn chat_name<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
    ) -> StoreFuture<'a, Option<String>>;

    /// Group chats of a tenant, newest activity first, flagged with whether registered.
    fn available_groups<'a>(&'a self, tenant: &'a TenantId)
    -> StoreFuture<'a, Vec<AvailableGroup>>;

    /// The chat's cursor: the seq of the last message whose handling is finished (0 before).
    fn cursor<'a>(&'a self, tenant: &'a TenantId, chat_jid: &'a ChatJid) -> StoreFuture<'a, i64>;

    /// Moves the cursor forward (never backward).
    fn advance_cursor<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        seq: i64,
    ) -> StoreFuture<'a, ()>;

    /// Commits a reply and the cursor move it completes (if any) in one transaction; returns
    /// the outbox id, stable and unique (channels may deduplicate deliveries on it).
    fn commit_reply(&self, reply: NewReply) -> StoreFuture<'_, i64>;

    /// Undelivered replies, oldest first.
    fn pending_outbox(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// Marks a reply delivered.
    fn mark_delivered(&self, id: i64) -> StoreFuture<'_, ()>;

    /// Records a failed delivery attempt; the reply stays pending.
    fn mark_delivery_failed<'a>(&'a self, id: i64, error: &'a str) -> StoreFuture<'a, ()>;

    /// Delivered replies to one chat, oldest first, as `(outbox id, text)`.
    fn delivered_replies<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
    ) -> StoreFuture<'a, Vec<(i64, String)>>;
}

/// Registered groups: which chat maps to which folder, with its trigger and sandbox settings.
pub trait GroupStore: Send + Sync {
    /// Registers a chat to a folder or updates its registration; fields left `None` keep their
    /// stored value. Never touches another chat's registration.
    fn register_group(&self, reg: GroupRegistration) -> StoreFuture<'_, RegisteredGroup>;

    /// [`GroupStore::register_group`] unless another tenant holds the jid and this one does not
    /// (an operator may have registered one jid in several tenants), checked in the same write
    /// transaction: two tenants registering one new jid at once cannot both win. `None` when
    /// another tenant holds it.
    fn register_group_unclaimed(
        &self,
        reg: GroupRegistration,
    ) -> StoreFuture<'_, Option<RegisteredGroup>>;

    /// Replaces a group's container settings. Returns whether the group exists.
    fn set_container_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        jid: &'a ChatJid,
        config: Option<cambot_protocol::ContainerConfig>,
    ) -> StoreFuture<'a, bool>;

    /// Removes a registration. Returns whether it existed.
    fn unregister_group<'a>(
        &'a self,
        tenant: &'a TenantId,
        jid: &'a ChatJid,
    ) -> StoreFuture<'a, bool>;

    /// One chat's registration.
    fn registered_group<'a>(
        &'a self,
        tenant: &'a TenantId,
        jid: &'a ChatJid,
    ) -> StoreFuture<'a, Option<RegisteredGroup>>;

    /// A tenant's registrations.
    fn registered_groups<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> StoreFuture<'a, Vec<RegisteredGroup>>;

    /// Every tenant's registrations (an invalid row is logged and skipped).
    fn all_registered_groups(&self) -> StoreFuture<'_, Vec<RegisteredGroup>>;

    /// The registrations of one jid in every tenant (the one cross-tenant lookup: the host
    /// tools use it to refuse a chat another tenant has registered).
    fn registrations_of_jid<'a>(
        &'a self,
        jid: &'a ChatJid,
    ) -> StoreFuture<'a, Vec<RegisteredGroup>>;

    /// The registrations of one folder of a tenant.
    fn groups_in_folder<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, Vec<RegisteredGroup>>;

    /// Tenants that have a registered group.
    fn tenants(&self) -> StoreFuture<'_, Vec<TenantId>>;
}

/// Agent sessions: which transcript a group's next run resumes.
pub trait SessionStore: Send + Sync {
    fn session<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, Option<String>>;

    fn set_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
        session_id: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// Forgets a group's session: its next run starts a fresh transcript.
    fn clear_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, ()>;
}

/// Scheduled tasks, their run log, and the claims that hand each firing out exactly once.
pub trait TaskStore: Send + Sync {
    fn create_task<'a>(&'a self, task: &'a ScheduledTask) -> StoreFuture<'a, ()>;

    fn task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, Option<ScheduledTask>>;

    /// A tenant's tasks (only `folder`'s when given), newest first.
    fn tasks<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: Option<&'a GroupFolder>,
    ) -> StoreFuture<'a, Vec<ScheduledTask>>;

    /// Every task of every tenant, oldest first.
    fn all_tasks(&self) -> StoreFuture<'_, Vec<ScheduledTask>>;

    /// Sets a task's status, and its next run when given. Returns whether the task exists.
    fn set_task_status<'a>(
        &'a self,
        id: &'a TaskId,
        status: TaskStatus,
        next_run_ms: Option<Option<i64>>,
    ) -> StoreFuture<'a, bool>;

    /// Deletes a task and its run log. Returns whether it existed.
    fn delete_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, bool>;

    /// A task's run log, newest first.
    fn task_runs<'a>(&'a self, id: &'a TaskId, limit: usize) -> StoreFuture<'a, Vec<TaskRun>>;

    /// The earliest `next_run_ms` of an active task. Here, in `due_tasks` and in `claim_firings`
    /// the tasks of a disabled tenant do not exist: they stay `active` and fall due again once
    /// the tenant is enabled (a slot missed meanwhile follows the task's missed-run policy).
    fn next_due_ms(&self) -> StoreFuture<'_, Option<i64>>;

    /// Active tasks due at `now_ms`, earliest first; an invalid row comes back as its error.
    fn due_tasks(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<DueRow>>;

    /// Ids of tasks with a firing claimed or running now.
    fn tasks_with_unfinished_runs(&self) -> StoreFuture<'_, HashSet<String>>;

    /// Claims firings in one transaction: each moves its task's `next_run` only if it still
    /// holds the value the caller read (compare-and-swap) and writes the firing's run-log row.
    /// Returns, per claim, the run-log id, or `None` when the task changed meanwhile (or its
    /// tenant was disabled).
    fn claim_firings<'a>(&'a self, claims: &'a [Claim]) -> StoreFuture<'a, Vec<Option<i64>>>;

    /// Pauses a task whose stored definition cannot run, recording why in its log.
    fn pause_invalid_task<'a>(&'a self, id: &'a str, reason: &'a str) -> StoreFuture<'a, ()>;

    /// Marks a claimed firing running (its start time becomes `run_at`).
    fn start_task_run(&self, run_id: i64) -> StoreFuture<'_, ()>;

    /// Records a firing's outcome and the task's last result; a finished one-shot becomes
    /// `completed`.
    fn finish_task_run<'a>(
        &'a self,
        run_id: i64,
        task_id: &'a TaskId,
        outcome: &'a RunOutcomeRecord,
    ) -> StoreFuture<'a, ()>;

    /// Firings that were claimed or running when the process stopped.
    fn unfinished_task_runs(&self) -> StoreFuture<'_, Vec<TaskRun>>;

    /// Sets a firing's status without touching the task.
    fn set_task_run_status<'a>(
        &'a self,
        run_id: i64,
        status: TaskRunStatus,
        note: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;

    /// The task a firing belongs to, if it still exists.
    fn task_of_run(&self, run_id: i64) -> StoreFuture<'_, Option<ScheduledTask>>;
}

/// What web chat keeps: users and their credentials, JWT signing keys, refresh tokens, web
/// chat sessions, and the history reads of a session's chat. Every read made for a user is
/// keyed by `(tenant, user)`: another user's rows are not found.
pub trait UserStore: TenantStore + Send + Sync {
    /// The newest `limit` messages of a chat (bot messages included), oldest first.
    fn chat_history<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<ChatHistoryMessage>>;

    /// Replies committed to a chat with an outbox id above `after_id`, oldest first.
    fn chat_replies_after<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        after_id: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<ChatReply>>;

    /// Adds a user. Returns false when the name is taken in that tenant.
    fn add_user<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        password_hash: &'a str,
    ) -> StoreFuture<'a, bool>;

    fn user<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> StoreFuture<'a, Option<UserRow>>;

    /// Users of one tenant, or of all.
    fn users<'a>(&'a self, tenant: Option<&'a TenantId>) -> StoreFuture<'a, Vec<UserRow>>;

    /// Returns whether the user exists.
    fn set_user_disabled<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        disabled: bool,
    ) -> StoreFuture<'a, bool>;

    /// Users (of every tenant) whose row changed at or after `since_ms`, by their `updated_ms`.
    /// The web channel polls it to notice users disabled by another process (the admin CLI).
    fn users_updated_since(&self, since_ms: i64) -> StoreFuture<'_, Vec<UserRow>>;

    /// Bumped whenever this handle changes a user (disable, enable, password), so that open
    /// connections of a disabled user end at once rather than at the next poll.
    fn user_changes(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Returns whether the user exists.
    fn set_user_password<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        password_hash: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// A tenant's signing keys, newest first.
    fn signing_keys<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<SigningKeyRow>>;

    /// One signing key by key id, whatever its tenant.
    fn signing_key<'a>(&'a self, kid: &'a str) -> StoreFuture<'a, Option<SigningKeyRow>>;

    fn add_signing_key<'a>(&'a self, key: &'a SigningKeyRow) -> StoreFuture<'a, ()>;

    /// Deletes a tenant's keys created before `before_ms`, except `keep`. Returns how many.
    fn delete_signing_keys<'a>(
        &'a self,
        tenant: &'a TenantId,
        before_ms: i64,
        keep: &'a str,
    ) -> StoreFuture<'a, usize>;

    /// Every signing key of every tenant, by tenant and key id (to seal the plaintext rows from
    /// before the vault, and to check them).
    fn all_signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRow>>;

    /// Replaces the plaintext private keys named by kid with their sealed form, in one
    /// transaction, and leaves no copy of the plaintext in the database file or its WAL.
    /// Returns how many rows changed (a row sealed meanwhile is left alone).
    fn seal_signing_keys(&self, sealed: Vec<(String, Vec<u8>)>) -> StoreFuture<'_, usize>;

    /// Stores the first refresh token of a new family (by hash).
    fn insert_refresh<'a>(&'a self, row: &'a RefreshTokenRow) -> StoreFuture<'a, ()>;

    /// Presents a refresh token (by hash): when valid, marks it used and stores its successor;
    /// when already used, revokes its whole family. A family older than `family_lifetime_ms`
    /// (from its first token) is invalid, and a successor never outlives it.
    fn rotate_refresh<'a>(
        &'a self,
        old_hash: &'a str,
        new_hash: &'a str,
        new_expires_ms: i64,
        family_lifetime_ms: i64,
        now_ms: i64,
    ) -> StoreFuture<'a, RefreshRotation>;

    /// Revokes the family of a refresh token (sign-out).
    fn revoke_refresh_family<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, ()>;

    fn insert_web_session<'a>(&'a self, session: &'a WebSessionRow) -> StoreFuture<'a, ()>;

    /// The user's sessions, most recently active first.
    fn web_sessions<'a>(
        &'a self,
        tenant: &'a TenantId,
        user_id: &'a str,
    ) -> StoreFuture<'a, Vec<WebSessionRow>>;

    /// One session, only if it belongs to `(tenant, user_id)`.
    fn web_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        user_id: &'a str,
        id: &'a str,
    ) -> StoreFuture<'a, Option<WebSessionRow>>;

    /// Marks a session active; sets its title if it has none.
    fn touch_web_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        user_id: &'a str,
        id: &'a str,
        now_ms: i64,
        title_if_empty: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;
}

/// Each tenant's mount roots (the operator's allowlist file stays the ceiling; callers validate
/// paths before adding them and again at every run start).
pub trait MountRootStore: Send + Sync {
    /// One tenant's roots, or every tenant's (to check overlaps), ordered by tenant and path.
    fn mount_roots<'a>(
        &'a self,
        tenant: Option<&'a TenantId>,
    ) -> StoreFuture<'a, Vec<TenantMountRoot>>;

    /// Adds a root or changes its read-write flag. Fails when the tenant does not exist.
    fn set_mount_root<'a>(
        &'a self,
        tenant: &'a TenantId,
        path: &'a str,
        rw: bool,
    ) -> StoreFuture<'a, TenantMountRoot>;

    /// Removes a root. Returns whether it existed.
    fn remove_mount_root<'a>(
        &'a self,
        tenant: &'a TenantId,
        path: &'a str,
    ) -> StoreFuture<'a, bool>;
}

/// Tenants: the top-level owners of groups, users and credentials. `default` always exists.
/// A tenant's rows in the other tables carry its id; a tenant without a row here is unknown to
/// the admin CLI but behaves as active (rows written before tenants were administered).
pub trait TenantStore: Send + Sync {
    /// Adds an active tenant. Returns false when the id is taken.
    fn add_tenant<'a>(&'a self, id: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool>;

    fn tenant<'a>(&'a self, id: &'a TenantId) -> StoreFuture<'a, Option<TenantRow>>;

    /// Every tenant with its counts of groups and users, by id (an invalid row is logged and
    /// skipped).
    fn tenant_summaries(&self) -> StoreFuture<'_, Vec<TenantSummary>>;

    /// Ids of the disabled tenants (the daemon keeps them in memory, refreshed on change).
    fn disabled_tenants(&self) -> StoreFuture<'_, Vec<TenantId>>;

    /// Returns whether the tenant exists.
    fn set_tenant_state<'a>(
        &'a self,
        id: &'a TenantId,
        state: TenantState,
    ) -> StoreFuture<'a, bool>;

    /// Sets the model provider the tenant's runs use (`None`: the global choice). The caller
    /// checks the name against the configuration. Returns whether the tenant exists.
    fn set_tenant_provider<'a>(
        &'a self,
        id: &'a TenantId,
        provider: Option<&'a str>,
    ) -> StoreFuture<'a, bool>;

    /// Removes a tenant that holds no groups, users or secrets, with whatever rows it still has
    /// (chats, keys, tokens), in one transaction.
    fn remove_tenant<'a>(&'a self, id: &'a TenantId) -> StoreFuture<'a, TenantRemoval>;

    /// Deletes the tenant and every row of it in every table, in one transaction; no row of
    /// another tenant is touched. Returns how many rows went, `None` when the tenant is unknown.
    /// Refuses `default`.
    fn purge_tenant<'a>(&'a self, id: &'a TenantId) -> StoreFuture<'a, Option<usize>>;
}
