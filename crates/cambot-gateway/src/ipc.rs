//! The agent's host tools (seed-spec section 4), with the seed's authorization made
//! tenant-aware: the caller is the run whose socket the request arrived on ([`RunIdentity`]);
//! a tenant's main group may act on any group of its own tenant, every other group only on
//! itself; nothing ever crosses tenants; identity claims inside a payload are ignored.
//!
//! Across tenants: a chat registered to another tenant is refused (403) to every verb and the
//! attempt is logged with both tenants; another tenant's task id answers exactly like a task
//! that does not exist (404), so its existence does not leak.

mod groups;
mod workflows;

pub use workflows::WorkflowHost;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use cambot_core::ContextMode;
use cambot_core::MissedRunPolicy;
use cambot_core::NewReply;
use cambot_core::ScheduledTask;
use cambot_core::Store;
use cambot_core::StoreError;
use cambot_core::TaskStatus;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::IdError;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::RunId;
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;
use cambot_protocol::ipc::ListTasksResponse;
use cambot_protocol::ipc::ScheduleTaskRequest;
use cambot_protocol::ipc::ScheduleTaskResponse;
use cambot_protocol::ipc::SendMessageRequest;
use cambot_protocol::ipc::TaskIdRequest;
use cambot_protocol::ipc::TaskSummary;
use chrono::DateTime;
use chrono::Utc;
use futures::future::BoxFuture;
use tokio::time::Instant;

use cambot_protocol::reply::format_outbound;
use cambot_scheduler::TaskChangeError;
use cambot_scheduler::cron::Schedule;
use cambot_scheduler::cron::ScheduleError;

/// Who is calling: fixed when the run's socket is created, never read from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIdentity {
    pub run_id: RunId,
    pub tenant: TenantId,
    pub folder: GroupFolder,
    /// The chat the run answers (the default target of `send_message` and `schedule_task`).
    pub chat_jid: ChatJid,
    /// The provider entry the run's model choice names: the only `/v1/model/<name>/` the
    /// run may call. `None` lets it call any configured upstream (IPC-only test rigs).
    pub model_provider: Option<String>,
}

impl RunIdentity {
    pub fn is_main(&self) -> bool {
        self.folder.is_main()
    }
}

/// Why a host-tool call was refused. Each [`kind`](Self::kind) maps to one HTTP status in the
/// gateway; the message (with its cause) is what the agent is told.
#[derive(Debug, thiserror::Error)]
pub enum HostToolError {
    #[error("{0}")]
    BadRequest(String),
    /// The request body is not the route's JSON.
    #[error("malformed request body: {0}")]
    MalformedBody(#[source] serde_json::Error),
    /// A chat, folder or task id in the request is not valid.
    #[error("{0}")]
    InvalidId(#[from] IdError),
    /// The schedule in the request does not parse.
    #[error("{0}")]
    InvalidSchedule(#[from] ScheduleError),
    /// The task's stored schedule no longer parses, so it cannot be resumed.
    #[error("{0}")]
    Unresumable(#[source] TaskChangeError),
    /// The outbound fetch failed (the policy allowed it).
    #[error("{0}")]
    Fetch(#[source] crate::fetch::FetchError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("too many messages: wait {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Store(#[from] StoreError),
    /// A host service other than the store failed (the message is for the agent).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("internal error: creating {}: {source}", path.display())]
    GroupDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HostToolError {
    /// `bad_request`, `forbidden`, `not_found`, `rate_limited` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_)
            | Self::MalformedBody(_)
            | Self::InvalidId(_)
            | Self::InvalidSchedule(_)
            | Self::Unresumable(_)
            | Self::Fetch(_) => "bad_request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Store(_) | Self::GroupDir { .. } | Self::Internal(_) => "internal",
        }
    }
}

/// Takes a lock even when a panic poisoned it, saying so: the rate limiter's state is a few
/// numbers per group that stay usable, and refusing every later message would be worse.
fn lock_recovering<'a, T>(lock: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    lock.lock().unwrap_or_else(|poisoned| {
        tracing::error!(lock = what, "a lock was poisoned by a panic; recovering it");
        lock.clear_poison();
        poisoned.into_inner()
    })
}

/// Outbound-message limits per group (token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Messages allowed in a burst.
    pub burst: u32,
    /// One more message allowed every `refill`.
    pub refill: Duration,
}

impl Default for SendLimits {
    fn default() -> Self {
        Self {
            burst: 10,
            refill: Duration::from_secs(3),
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Called after a registration so the router's cache sees it at once; `register_group` answers
/// after the returned future completes.
pub type OnRegistered = Arc<dyn Fn(RegisteredGroup) -> BoxFuture<'static, ()> + Send + Sync>;

/// Called after a task was created, paused, resumed or cancelled, so the scheduler re-checks
/// its next due time at once ([`cambot_scheduler::Scheduler::waker`]).
pub type OnTasksChanged = Arc<dyn Fn() + Send + Sync>;

/// Called after `send_message` committed a reply to the outbox, so its delivery starts at once
/// (in cambot, the agent's outbox kick).
pub type OnReplyQueued = Arc<dyn Fn() + Send + Sync>;

/// The host tools, shared by every run's gateway.
pub struct IpcService {
    store: Arc<dyn Store>,
    layout: DataLayout,
    on_reply_queued: OnReplyQueued,
    timezone: chrono_tz::Tz,
    on_registered: OnRegistered,
    on_tasks_changed: Option<OnTasksChanged>,
    /// Set once, after the daemon's workflows exist (they need the runner, which needs this).
    workflows: std::sync::OnceLock<Arc<dyn WorkflowHost>>,
    limits: SendLimits,
    buckets: Mutex<HashMap<(TenantId, GroupFolder), Bucket>>,
}

impl std::fmt::Debug for IpcService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcService").finish_non_exhaustive()
    }
}

impl IpcService {
    /// The host tools over `store`. `on_reply_queued` wakes reply delivery; `on_registered`
    /// tells the router about a new group; `timezone` is the zone of new tasks.
    pub fn new(
        store: Arc<dyn Store>,
        layout: DataLayout,
        on_reply_queued: OnReplyQueued,
        timezone: chrono_tz::Tz,
        on_registered: OnRegistered,
        limits: SendLimits,
    ) -> Self {
        Self {
            store,
            layout,
            on_reply_queued,
            timezone,
            on_registered,
            on_tasks_changed: None,
            workflows: std::sync::OnceLock::new(),
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes the scheduler after every task change (without it a new task due soon waits for
    /// the scheduler's next timer, up to minutes).
    #[must_use]
    pub fn with_on_tasks_changed(mut self, on_tasks_changed: OnTasksChanged) -> Self {
        self.on_tasks_changed = Some(on_tasks_changed);
        self
    }

    /// Enables `run_workflow` and `list_workflows`; a second call is ignored (returns false).
    pub fn set_workflows(&self, workflows: Arc<dyn WorkflowHost>) -> bool {
        self.workflows.set(workflows).is_ok()
    }

    fn tasks_changed(&self) {
        if let Some(wake) = &self.on_tasks_changed {
            wake();
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// `send_message`: main may write to any chat of its tenant (registered or not), others only
    /// to chats registered to their own folder. The text is cleaned like any reply
    /// (`<internal>` removed); an empty result sends nothing.
    pub async fn send_message(
        &self,
        who: &RunIdentity,
        req: SendMessageRequest,
    ) -> Result<Option<i64>, HostToolError> {
        let target = match req.chat_jid.as_deref() {
            None | Some("") => who.chat_jid.clone(),
            Some(j) => ChatJid::new(j)?,
        };
        self.authorize_chat(who, &target).await?;
        let text = format_outbound(&req.text);
        if text.is_empty() {
            return Ok(None);
        }
        self.take_send_token(who)?;
        let id = self
            .store
            .commit_reply(NewReply {
                tenant: who.tenant.clone(),
                chat_jid: target,
                text,
                origin: "ipc".to_owned(),
                advance_to: None,
            })
            .await?;
        (self.on_reply_queued)();
        Ok(Some(id))
    }

    async fn authorize_chat(
        &self,
        who: &RunIdentity,
        target: &ChatJid,
    ) -> Result<(), HostToolError> {
        let registration = self.store.registered_group(&who.tenant, target).await?;
        match registration {
            Some(g) if g.folder == who.folder => Ok(()),
            Some(_) if who.is_main() => Ok(()),
            Some(_) => Err(HostToolError::Forbidden(format!(
                "{target} belongs to another group; only the main group may write there"
            ))),
            None => {
                self.refuse_other_tenants(who, target, "send_message")
                    .await?;
                if who.is_main() {
                    // Main may reach unregistered chats of its own tenant.
                    Ok(())
                } else {
                    Err(HostToolError::Forbidden(format!(
                        "{target} is not registered to this group"
                    )))
                }
            }
        }
    }

    /// Refuses (403, logged with both tenants) a chat that another tenant has registered; the
    /// caller has already found it unregistered in its own tenant.
    async fn refuse_other_tenants(
        &self,
        who: &RunIdentity,
        target: &ChatJid,
        verb: &str,
    ) -> Result<(), HostToolError> {
        let owner = self
            .store
            .registrations_of_jid(target)
            .await?
            .into_iter()
            .find(|g| g.tenant != who.tenant);
        match owner {
            Some(g) => {
                tracing::warn!(
                    verb,
                    tenant = %who.tenant,
                    group = %who.folder,
                    target_tenant = %g.tenant,
                    chat = %target,
                    "refused a host-tool call on another tenant's chat"
                );
                Err(HostToolError::Forbidden(format!(
                    "{target} belongs to another tenant"
                )))
            }
            None => Ok(()),
        }
    }

    fn take_send_token(&self, who: &RunIdentity) -> Result<(), HostToolError> {
        let mut buckets = lock_recovering(&self.buckets, "send_message rate limiter");
        let now = Instant::now();
        let burst = f64::from(self.limits.burst.max(1));
        let per_sec = 1.0 / self.limits.refill.as_secs_f64().max(0.001);
        let b = buckets
            .entry((who.tenant.clone(), who.folder.clone()))
            .or_insert(Bucket {
                tokens: burst,
                at: now,
            });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / per_sec).ceil();
            tracing::warn!(tenant = %who.tenant, group = %who.folder, "send_message rate limit hit");
            Err(HostToolError::RateLimited {
                retry_after_secs: wait as u64,
            })
        }
    }

    /// `schedule_task`. `target_group_jid` is honoured for main (any registered chat of its
    /// tenant) and for a group naming one of its own chats.
    pub async fn schedule_task(
        &self,
        who: &RunIdentity,
        req: ScheduleTaskRequest,
        now: DateTime<Utc>,
    ) -> Result<ScheduleTaskResponse, HostToolError> {
        if req.prompt.trim().is_empty() {
            return Err(HostToolError::BadRequest("prompt must not be empty".into()));
        }
        let (folder, chat) = match req.target_group_jid.as_deref().filter(|s| !s.is_empty()) {
            None => (who.folder.clone(), who.chat_jid.clone()),
            Some(j) => {
                let jid = ChatJid::new(j)?;
                let Some(group) = self.store.registered_group(&who.tenant, &jid).await? else {
                    self.refuse_other_tenants(who, &jid, "schedule_task")
                        .await?;
                    return Err(HostToolError::NotFound(format!(
                        "no registered group has chat {jid}"
                    )));
                };
                if group.folder != who.folder && !who.is_main() {
                    return Err(HostToolError::Forbidden(
                        "only the main group may schedule tasks for another group".into(),
                    ));
                }
                (group.folder, group.jid)
            }
        };
        let schedule =
            Schedule::parse(&req.schedule_type, &req.schedule_value, self.timezone, now)?;
        let next_run = schedule.first_run(now);
        let id = new_task_id(now);
        let task = ScheduledTask {
            id: id.clone(),
            tenant: who.tenant.clone(),
            group_folder: folder,
            chat_jid: chat,
            prompt: req.prompt,
            schedule_type: schedule.schedule_type().to_owned(),
            schedule_value: schedule.canonical_value(),
            timezone: self.timezone.name().to_owned(),
            context_mode: ContextMode::parse_lenient(req.context_mode.as_deref()),
            missed_policy: MissedRunPolicy::Skip,
            next_run_ms: next_run.map(|t| t.timestamp_millis()),
            last_run: None,
            last_result: None,
            status: TaskStatus::Active,
            created_at: cambot_core::time::rfc3339(now),
        };
        self.store.create_task(&task).await?;
        self.tasks_changed();
        Ok(ScheduleTaskResponse {
            task_id: id.to_string(),
            next_run: next_run.map(cambot_core::time::rfc3339),
        })
    }

    /// Tasks the caller may see: all of its tenant for main, its own folder's otherwise.
    pub async fn list_tasks(&self, who: &RunIdentity) -> Result<ListTasksResponse, HostToolError> {
        let folder = (!who.is_main()).then_some(&who.folder);
        let tasks = self.store.tasks(&who.tenant, folder).await?;
        Ok(ListTasksResponse {
            tasks: tasks
                .into_iter()
                .map(|t| TaskSummary {
                    id: t.id.to_string(),
                    group_folder: t.group_folder.to_string(),
                    prompt: t.prompt,
                    schedule_type: t.schedule_type,
                    schedule_value: t.schedule_value,
                    status: t.status.to_string(),
                    next_run: t.next_run_ms.map(cambot_core::time::ms_to_rfc3339),
                })
                .collect(),
        })
    }

    /// Finds a task the caller may change. Another tenant's task does not exist for the caller.
    async fn owned_task(
        &self,
        who: &RunIdentity,
        req: &TaskIdRequest,
    ) -> Result<ScheduledTask, HostToolError> {
        let id = TaskId::new(&req.task_id)?;
        let task = match self.store.task(&id).await? {
            Some(t) if t.tenant == who.tenant => t,
            Some(t) => {
                // Logged for the operator; the caller gets the answer of a missing task.
                tracing::warn!(
                    tenant = %who.tenant,
                    group = %who.folder,
                    target_tenant = %t.tenant,
                    task = %id,
                    "refused a task verb on another tenant's task"
                );
                return Err(HostToolError::NotFound(format!("no task {id}")));
            }
            None => return Err(HostToolError::NotFound(format!("no task {id}"))),
        };
        if !who.is_main() && task.group_folder != who.folder {
            return Err(HostToolError::Forbidden(format!(
                "task {id} belongs to another group"
            )));
        }
        Ok(task)
    }

    pub async fn pause_task(
        &self,
        who: &RunIdentity,
        req: &TaskIdRequest,
    ) -> Result<(), HostToolError> {
        let task = self.owned_task(who, req).await?;
        cambot_scheduler::pause_task(self.store.as_ref(), &task)
            .await
            .map_err(change_error)?;
        self.tasks_changed();
        Ok(())
    }

    /// Resumes a paused task and recomputes its next run from now.
    pub async fn resume_task(
        &self,
        who: &RunIdentity,
        req: &TaskIdRequest,
        now: DateTime<Utc>,
    ) -> Result<(), HostToolError> {
        let task = self.owned_task(who, req).await?;
        cambot_scheduler::resume_task(self.store.as_ref(), &task, now)
            .await
            .map_err(change_error)?;
        self.tasks_changed();
        Ok(())
    }

    pub async fn cancel_task(
        &self,
        who: &RunIdentity,
        req: &TaskIdRequest,
    ) -> Result<(), HostToolError> {
        let task = self.owned_task(who, req).await?;
        cambot_scheduler::cancel_task(self.store.as_ref(), &task)
            .await
            .map_err(change_error)?;
        self.tasks_changed();
        Ok(())
    }
}

fn change_error(e: TaskChangeError) -> HostToolError {
    match e {
        TaskChangeError::NotFound(id) => HostToolError::NotFound(format!("no task {id}")),
        TaskChangeError::Refused(why) => HostToolError::BadRequest(why),
        e @ TaskChangeError::InvalidSchedule { .. } => HostToolError::Unresumable(e),
        TaskChangeError::Store(e) => HostToolError::Store(e),
    }
}

/// `task-<epochms>-<6 base36>`.
fn new_task_id(now: DateTime<Utc>) -> TaskId {
    TaskId::generate(now.timestamp_millis(), rand::random())
}
