//! The host socket's IPC routes: request and response bodies. Transport is HTTP/1.1 over the
//! per-run Unix socket at [`crate::HOST_SOCKET_PATH`], every request carrying the run token in
//! [`crate::RUN_TOKEN_HEADER`]. The socket a request arrives on is the caller's identity; nothing
//! in these bodies can claim another group or tenant.

use serde::Deserialize;
use serde::Serialize;

/// Route paths, shared by the gateway and the runner so they cannot drift apart.
pub mod routes {
    pub const SEND_MESSAGE: &str = "/v1/ipc/send_message";
    pub const SCHEDULE_TASK: &str = "/v1/ipc/schedule_task";
    pub const LIST_TASKS: &str = "/v1/ipc/list_tasks";
    pub const PAUSE_TASK: &str = "/v1/ipc/pause_task";
    pub const RESUME_TASK: &str = "/v1/ipc/resume_task";
    pub const CANCEL_TASK: &str = "/v1/ipc/cancel_task";
    pub const REGISTER_GROUP: &str = "/v1/ipc/register_group";
    pub const LIST_GROUPS: &str = "/v1/ipc/list_groups";
    pub const RUN_WORKFLOW: &str = "/v1/ipc/run_workflow";
    pub const LIST_WORKFLOWS: &str = "/v1/ipc/list_workflows";
    /// Prefix of the model proxy: `/v1/model/<provider>/<upstream path>`.
    pub const MODEL_PREFIX: &str = "/v1/model/";
    /// Policy-checked outbound fetch.
    pub const FETCH: &str = "/v1/fetch";
}

/// `send_message`: text to a chat. Without `chat_jid` it goes to the run's own chat; a non-main
/// group may only name its own chats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    pub text: String,
    #[serde(default)]
    pub chat_jid: Option<String>,
}

/// `schedule_task`. `target_group_jid` is honoured for the main group only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTaskRequest {
    pub prompt: String,
    pub schedule_type: String,
    pub schedule_value: String,
    #[serde(default)]
    pub context_mode: Option<String>,
    #[serde(default)]
    pub target_group_jid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTaskResponse {
    pub task_id: String,
    /// RFC 3339, UTC.
    pub next_run: Option<String>,
}

/// `pause_task`, `resume_task`, `cancel_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskIdRequest {
    pub task_id: String,
}

/// One task as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub id: String,
    pub group_folder: String,
    pub prompt: String,
    pub schedule_type: String,
    pub schedule_value: String,
    pub status: String,
    pub next_run: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListTasksResponse {
    pub tasks: Vec<TaskSummary>,
}

/// `register_group` (main only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterGroupRequest {
    pub jid: String,
    pub name: String,
    pub folder: String,
    pub trigger: String,
    #[serde(default)]
    pub requires_trigger: Option<bool>,
}

/// One chat as listed for the main group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub jid: String,
    pub name: String,
    pub last_activity: Option<String>,
    pub is_registered: bool,
    pub folder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListGroupsResponse {
    pub groups: Vec<GroupSummary>,
}

/// `run_workflow`: start a run of one of the tenant's stored workflows. The main group may run
/// any; another group only a workflow whose steps all run in that group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunWorkflowRequest {
    pub name: String,
    #[serde(default)]
    pub inputs: std::collections::BTreeMap<String, String>,
}

/// The run was stored and is being driven; it is not waited for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunWorkflowResponse {
    pub run_id: String,
}

/// One workflow the caller may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    pub name: String,
    /// Declared inputs and their defaults (`null`: the input must be given).
    pub inputs: std::collections::BTreeMap<String, Option<String>>,
    /// The distinct groups its steps run in.
    pub groups: Vec<String>,
    /// `[trigger] schedule`, if any.
    #[serde(default)]
    pub schedule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListWorkflowsResponse {
    pub workflows: Vec<WorkflowSummary>,
}

/// `fetch`: one outbound HTTP GET, allowed only by host policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
    /// The body was cut at the host's size cap.
    pub truncated: bool,
    /// The few response headers the host passes on (content type and length, language,
    /// last-modified, etag), lowercase names; never cookies or auth headers.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Every non-2xx answer of the host socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpcError {
    pub error: IpcErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpcErrorBody {
    /// Stable machine-readable kind: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `rate_limited`, `upstream`, `internal`.
    pub kind: String,
    pub message: String,
}

/// A plain success with nothing else to say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ok {
    pub ok: bool,
}
