//! The host tools: HTTP/1.1 over the run's Unix socket, every request carrying the run token.
//! The host decides what is allowed (the socket is the caller's identity); the runner only
//! shapes requests and turns answers into text for the model.

use std::path::Path;

use bytes::Bytes;
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::ipc::FetchRequest;
use cambot_protocol::ipc::FetchResponse;
use cambot_protocol::ipc::IpcError;
use cambot_protocol::ipc::ListGroupsResponse;
use cambot_protocol::ipc::ListTasksResponse;
use cambot_protocol::ipc::ListWorkflowsResponse;
use cambot_protocol::ipc::RegisterGroupRequest;
use cambot_protocol::ipc::RunWorkflowRequest;
use cambot_protocol::ipc::RunWorkflowResponse;
use cambot_protocol::ipc::ScheduleTaskRequest;
use cambot_protocol::ipc::ScheduleTaskResponse;
use cambot_protocol::ipc::SendMessageRequest;
use cambot_protocol::ipc::TaskIdRequest;
use cambot_protocol::ipc::routes;
use cambot_providers::HttpRequest;
use cambot_providers::HttpTransport;
use cambot_providers::HyperTransport;
use futures::StreamExt;
use http::HeaderName;
use http::HeaderValue;
use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Outcome;
use super::args;
use crate::error::RunnerError;

/// Largest host answer read: a fetch answer carries up to 8 MiB of body, at most three bytes
/// of JSON per body byte.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// A client for the run's host socket.
#[derive(Debug, Clone)]
pub struct HostClient {
    transport: HyperTransport,
}

impl HostClient {
    pub fn new(socket: &Path, token: &str) -> Result<Self, RunnerError> {
        // The token itself stays out of the message: it is a credential.
        let mut value = HeaderValue::try_from(token).map_err(|_| {
            RunnerError::Protocol("the host token is not a valid header value".to_owned())
        })?;
        value.set_sensitive(true);
        let transport = HyperTransport::from_base_url(&format!("unix:{}", socket.display()))
            .map_err(RunnerError::HostSocket)?
            .with_header(HeaderName::from_static(RUN_TOKEN_HEADER), value);
        Ok(Self { transport })
    }

    /// POSTs `body` to `route`; a non-2xx answer becomes `Err` with the host's reason.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<R, String> {
        let payload = serde_json::to_vec(body).map_err(|e| format!("encode: {e}"))?;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = self
            .transport
            .send(HttpRequest {
                method: Method::POST,
                path: route.to_owned(),
                headers,
                body: Bytes::from(payload),
            })
            .await
            .map_err(|e| format!("host socket unreachable: {e}"))?;
        let mut body = response.body;
        let mut raw = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("reading the host's answer: {e}"))?;
            raw.extend_from_slice(&chunk);
            if raw.len() > MAX_RESPONSE_BYTES {
                return Err("the host's answer is too large".into());
            }
        }
        if !response.status.is_success() {
            return Err(match serde_json::from_slice::<IpcError>(&raw) {
                Ok(e) => format!(
                    "refused by the host ({} {}): {}",
                    response.status.as_u16(),
                    e.error.kind,
                    e.error.message
                ),
                Err(_) => format!(
                    "refused by the host ({}): {}",
                    response.status.as_u16(),
                    String::from_utf8_lossy(&raw)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ),
            });
        }
        serde_json::from_slice(&raw).map_err(|e| format!("unexpected answer from the host: {e}"))
    }
}

/// Runs host tool `name`.
pub(super) async fn call(host: &HostClient, name: &str, input: &Value) -> Outcome {
    match name {
        "send_message" => {
            let req: SendMessageRequest = args(name, input)?;
            let _: Value = host.post(routes::SEND_MESSAGE, &req).await?;
            Ok("message sent".into())
        }
        "schedule_task" => {
            let req: ScheduleTaskRequest = args(name, input)?;
            let r: ScheduleTaskResponse = host.post(routes::SCHEDULE_TASK, &req).await?;
            Ok(format!(
                "scheduled task {} (next run: {})",
                r.task_id,
                r.next_run.as_deref().unwrap_or("none")
            ))
        }
        "list_tasks" => {
            let r: ListTasksResponse = host
                .post(routes::LIST_TASKS, &serde_json::json!({}))
                .await?;
            if r.tasks.is_empty() {
                return Ok("no scheduled tasks".into());
            }
            Ok(r.tasks
                .iter()
                .map(|t| {
                    let prompt: String = t.prompt.chars().take(50).collect();
                    format!(
                        "- [{}] {prompt}... ({}: {}) - {}, group {}, next: {}",
                        t.id,
                        t.schedule_type,
                        t.schedule_value,
                        t.status,
                        t.group_folder,
                        t.next_run.as_deref().unwrap_or("N/A")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "pause_task" | "resume_task" | "cancel_task" => {
            let req: TaskIdRequest = args(name, input)?;
            let (route, done) = match name {
                "pause_task" => (routes::PAUSE_TASK, "paused"),
                "resume_task" => (routes::RESUME_TASK, "resumed"),
                _ => (routes::CANCEL_TASK, "cancelled"),
            };
            let _: Value = host.post(route, &req).await?;
            Ok(format!("task {} {done}", req.task_id))
        }
        "register_group" => {
            let req: RegisterGroupRequest = args(name, input)?;
            let _: Value = host.post(routes::REGISTER_GROUP, &req).await?;
            Ok(format!("registered {} as folder {}", req.jid, req.folder))
        }
        "list_groups" => {
            let r: ListGroupsResponse = host
                .post(routes::LIST_GROUPS, &serde_json::json!({}))
                .await?;
            if r.groups.is_empty() {
                return Ok("no known chats".into());
            }
            Ok(r.groups
                .iter()
                .map(|g| {
                    format!(
                        "- {} ({}){}{}",
                        g.name,
                        g.jid,
                        match &g.folder {
                            Some(f) if g.is_registered => format!(" registered as {f}"),
                            _ => " not registered".into(),
                        },
                        g.last_activity
                            .as_deref()
                            .map(|t| format!(", last active {t}"))
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "run_workflow" => {
            let req: RunWorkflowRequest = args(name, input)?;
            let r: RunWorkflowResponse = host.post(routes::RUN_WORKFLOW, &req).await?;
            Ok(format!(
                "started workflow {} as run {} (it runs in the background)",
                req.name, r.run_id
            ))
        }
        "list_workflows" => {
            let r: ListWorkflowsResponse = host
                .post(routes::LIST_WORKFLOWS, &serde_json::json!({}))
                .await?;
            if r.workflows.is_empty() {
                return Ok("no workflows this group may run".into());
            }
            Ok(r.workflows
                .iter()
                .map(workflow_line)
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "fetch" => {
            let req: FetchRequest = args(name, input)?;
            let r: FetchResponse = host.post(routes::FETCH, &req).await?;
            let mut head = format!("status {}", r.status);
            for (name, value) in &r.headers {
                head.push_str(&format!("\n{name}: {value}"));
            }
            if r.truncated {
                head.push_str("\n[body truncated: longer than the host's fetch_max_bytes]");
            }
            Ok(format!("{head}\n\n{}", r.body))
        }
        other => Err(format!("no such tool {other:?}")),
    }
}

/// `- name (inputs: a, b=default; groups: x, y; schedule: ...)`.
fn workflow_line(w: &cambot_protocol::ipc::WorkflowSummary) -> String {
    let inputs = w
        .inputs
        .iter()
        .map(|(k, d)| match d {
            Some(d) => format!("{k}={d:?}"),
            None => k.clone(),
        })
        .collect::<Vec<_>>();
    let inputs = if inputs.is_empty() {
        "none".to_owned()
    } else {
        inputs.join(", ")
    };
    let schedule = w
        .schedule
        .as_deref()
        .map(|s| format!("; schedule: {s}"))
        .unwrap_or_default();
    format!(
        "- {} (inputs: {inputs}; groups: {}{schedule})",
        w.name,
        w.groups.join(", ")
    )
}
