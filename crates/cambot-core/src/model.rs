//! The records the store hands out and takes in. Plain data: no SQLite type appears here, so
//! another backend can produce the same values.

use std::fmt;
use std::str::FromStr;

use cambot_protocol::ChatJid;
use cambot_protocol::ContainerConfig;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;

use crate::error::Result;
use crate::error::StoreError;

/// The special chat row the seed used to remember the last metadata sync.
pub const GROUP_SYNC_JID: &str = "__group_sync__";

/// A stored message with its arrival sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: i64,
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    pub id: String,
    pub sender: String,
    pub sender_name: String,
    pub content: String,
    pub timestamp: String,
    pub is_from_me: bool,
    pub is_bot_message: bool,
}

impl StoredMessage {
    pub(crate) fn stored(msg: InboundMessage, seq: i64) -> Self {
        Self {
            seq,
            tenant: msg.tenant,
            chat_jid: msg.chat_jid,
            id: msg.id,
            sender: msg.sender,
            sender_name: msg.sender_name,
            content: msg.content,
            timestamp: msg.timestamp,
            is_from_me: msg.is_from_me,
            is_bot_message: msg.is_bot_message,
        }
    }
}

/// A message just stored, as [`crate::MessageStore::store_message`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub message: StoredMessage,
    /// The seq of the chat's message stored just before this one, when known.
    pub previous_in_chat: Option<i64>,
}

/// A chat as listed for group registration (seed "available groups").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableGroup {
    pub jid: String,
    pub name: String,
    pub last_activity: Option<String>,
    pub is_registered: bool,
    pub folder: Option<String>,
}

/// A reply waiting for (or past) delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Unique and stable: channels may use it as an idempotency key.
    pub id: i64,
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    pub text: String,
    /// Who produced it: `router`, `ipc`, `task:<id>`.
    pub origin: String,
    pub attempts: i64,
}

/// What a caller asks to register. Fields left `None` keep their stored value on
/// re-registration (seed DEFECT 1: a channel re-registering its chat on every connect used to wipe
/// the group's container config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRegistration {
    pub tenant: TenantId,
    pub jid: ChatJid,
    pub name: String,
    pub folder: GroupFolder,
    pub trigger: String,
    pub requires_trigger: Option<bool>,
    pub container_config: Option<ContainerConfig>,
}

/// Lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Active,
    Paused,
    /// A one-shot that has run.
    Completed,
}

impl TaskStatus {
    /// Whether the scheduler fires a task in this status.
    pub fn is_active(self) -> bool {
        self == Self::Active
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "paused" => Ok(Self::Paused),
            "completed" => Ok(Self::Completed),
            other => Err(StoreError::Invalid(format!(
                "unknown task status {other:?}"
            ))),
        }
    }
}

/// Which session a task runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContextMode {
    /// The group's own session (the task sees the conversation).
    Group,
    /// A fresh session per run.
    #[default]
    Isolated,
}

impl ContextMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Isolated => "isolated",
        }
    }

    /// The seed's rule: `group` and `isolated` as given; anything else or nothing is `isolated`.
    pub fn parse_lenient(value: Option<&str>) -> Self {
        match value {
            Some("group") => Self::Group,
            _ => Self::Isolated,
        }
    }
}

/// What to do with a firing missed while cambot was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MissedRunPolicy {
    /// Skip it; the next future slot is used.
    #[default]
    Skip,
    /// Fire once now, then continue with the next future slot.
    RunOnce,
}

impl MissedRunPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
        }
    }
}

impl FromStr for MissedRunPolicy {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "skip" => Ok(Self::Skip),
            "run_once" => Ok(Self::RunOnce),
            other => Err(StoreError::Invalid(format!(
                "unknown missed-run policy {other:?} (use skip or run_once)"
            ))),
        }
    }
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledTask {
    pub id: TaskId,
    pub tenant: TenantId,
    pub group_folder: GroupFolder,
    pub chat_jid: ChatJid,
    pub prompt: String,
    pub schedule_type: String,
    pub schedule_value: String,
    /// IANA zone the schedule is read in.
    pub timezone: String,
    pub context_mode: ContextMode,
    pub missed_policy: MissedRunPolicy,
    /// Next firing, ms since the epoch; `None` = never again.
    pub next_run_ms: Option<i64>,
    pub last_run: Option<String>,
    pub last_result: Option<String>,
    pub status: TaskStatus,
    pub created_at: String,
}

/// One entry of a task's run log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRun {
    pub id: i64,
    pub task_id: String,
    pub scheduled_for_ms: Option<i64>,
    pub run_at: String,
    pub duration_ms: Option<i64>,
    pub status: TaskRunStatus,
    pub result: Option<String>,
    pub error: Option<String>,
}

/// One firing to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub task_id: TaskId,
    /// The `next_run` the scheduler read; the claim fails if it changed meanwhile.
    pub expected_next_run_ms: i64,
    /// The `next_run` to store (`None`: no further firing).
    pub new_next_run_ms: Option<i64>,
    /// The slot this firing is for.
    pub scheduled_for_ms: i64,
    /// [`TaskRunStatus::Claimed`] (will run) or [`TaskRunStatus::Skipped`] (recorded only).
    pub run_status: TaskRunStatus,
    /// Note for the run log (`skipped` reasons).
    pub note: Option<String>,
}

/// A due task as read for claiming: an invalid row comes back as its error, with its id, so
/// the scheduler can pause it instead of retrying it forever.
#[derive(Debug)]
pub struct DueRow {
    pub id: String,
    pub task: Result<ScheduledTask>,
}

/// What [`crate::TaskStore::finish_task_run`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcomeRecord {
    /// [`TaskRunStatus::Success`] or [`TaskRunStatus::Error`].
    pub status: TaskRunStatus,
    pub duration_ms: i64,
    pub result: Option<String>,
    pub error: Option<String>,
    /// The task is a one-shot: mark it `completed` when it has no further firing.
    pub completes_once: bool,
}

/// A user (web chat sign-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub tenant: TenantId,
    pub id: String,
    /// PHC string of the password hash (Argon2id).
    pub password_hash: String,
    pub disabled: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A JWT signing key of a tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub tenant: TenantId,
    pub algorithm: String,
    /// The private key: sealed by cambot's vault (`nonce ‖ ciphertext`) when `sealed`, else
    /// plaintext PKCS#8 (rows from before the vault, sealed at the daemon's next start).
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_ms: i64,
    pub sealed: bool,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("algorithm", &self.algorithm)
            .field("created_ms", &self.created_ms)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

/// A refresh token as stored (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRow {
    pub hash: String,
    pub family: String,
    pub tenant: TenantId,
    pub user_id: String,
    pub expires_ms: i64,
    /// When the family's first token was issued (ms): the family ends at this plus its
    /// absolute lifetime, however often it rotates.
    pub family_created_ms: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The token was valid and unused: it is now used, and the new one is stored with
    /// `expires_ms` (the requested expiry, cut at the end of the family's lifetime).
    Rotated {
        tenant: TenantId,
        user_id: String,
        expires_ms: i64,
    },
    /// The token was already used: its whole family is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// A web chat session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSessionRow {
    pub tenant: TenantId,
    pub user_id: String,
    pub id: String,
    pub folder: GroupFolder,
    pub chat_jid: ChatJid,
    pub title: String,
    pub created_ms: i64,
    pub last_active_ms: i64,
}

/// A reply of the assistant to a chat (an outbox row, delivered or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    pub id: i64,
    pub text: String,
    pub created_at: String,
}

/// A message of a chat as shown in its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatHistoryMessage {
    pub seq: i64,
    pub id: String,
    pub sender: String,
    pub content: String,
    pub timestamp: String,
}

/// Where one firing of a task stands in its run log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskRunStatus {
    /// Claimed by the scheduler, waiting for its group's queue slot.
    Claimed,
    Running,
    Success,
    Error,
    /// Recorded, not run (missed while down, or the previous firing still running).
    Skipped,
    /// Paused or cancelled before it started.
    Cancelled,
    /// cambot stopped during the firing and the task can no longer run it.
    Interrupted,
}

impl TaskRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Running => "running",
            Self::Success => "success",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for TaskRunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskRunStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "claimed" => Self::Claimed,
            "running" => Self::Running,
            "success" => Self::Success,
            "error" => Self::Error,
            "skipped" => Self::Skipped,
            "cancelled" => Self::Cancelled,
            "interrupted" => Self::Interrupted,
            other => {
                return Err(StoreError::Invalid(format!(
                    "unknown task run status {other:?}"
                )));
            }
        })
    }
}

/// A reply to commit ([`crate::MessageStore::commit_reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    pub text: String,
    /// Who produced it: `router`, `ipc`, `task:<id>`.
    pub origin: String,
    /// The chat's cursor moves here in the same transaction.
    pub advance_to: Option<i64>,
}

/// One mount root of a tenant: its groups' extra mounts must lie inside one of these (and
/// inside the operator's allowlist). `path` is the resolved path at the time it was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMountRoot {
    pub tenant: TenantId,
    pub path: String,
    /// Groups may mount below it read-write (still subject to the operator's root).
    pub rw: bool,
    pub added_at: String,
}

/// Whether a tenant is served. A disabled one starts no run, fires no task and accepts no
/// sign-in; what arrives for it is stored and handled once it is enabled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantState {
    Active,
    Disabled,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(StoreError::Invalid(format!(
                "unknown tenant state {other:?}"
            ))),
        }
    }
}

/// A tenant as administered by `cambot tenants`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: TenantId,
    /// Display name; empty when none was given.
    pub name: String,
    pub state: TenantState,
    /// The model provider its runs use (a `[providers.<name>]` entry or `local`); `None`: the
    /// global choice.
    pub provider: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

/// A tenant with how much it holds (`cambot tenants list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub tenant: TenantRow,
    /// Registered chats.
    pub groups: usize,
    /// Web chat users.
    pub users: usize,
}

/// What removing a tenant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRemoval {
    /// The tenant and its remaining rows (chats, keys, tokens) are gone.
    Removed,
    NotFound,
    /// `default` always exists.
    Protected,
    /// It still holds groups, users or vault secrets: only a purge removes those.
    NotEmpty {
        groups: usize,
        users: usize,
        secrets: usize,
    },
}
