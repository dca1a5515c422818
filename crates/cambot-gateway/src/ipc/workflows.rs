//! `run_workflow` and `list_workflows`: the tenant's main group may run and see every workflow
//! of its tenant; another group only workflows whose steps all run in that group itself.
//! Workflows are looked up in the caller's tenant only, so another tenant's workflow answers
//! exactly like a missing one.

use std::collections::BTreeMap;

use cambot_protocol::TenantId;
use cambot_protocol::ipc::ListWorkflowsResponse;
use cambot_protocol::ipc::RunWorkflowRequest;
use cambot_protocol::ipc::RunWorkflowResponse;
use cambot_protocol::ipc::WorkflowSummary;
use futures::future::BoxFuture;

use super::HostToolError;
use super::IpcService;
use super::RunIdentity;

/// The daemon's workflows, as the host tools need them (in cambot, the agent's `Workflows`).
/// Errors are already [`HostToolError`]s: a missing workflow `NotFound`, bad inputs
/// `BadRequest` with the engine's message.
pub trait WorkflowHost: Send + Sync {
    /// The tenant's workflows.
    fn list(&self, tenant: TenantId) -> BoxFuture<'_, Result<Vec<WorkflowSummary>, HostToolError>>;

    /// Starts (and drives) a run of the tenant's workflow `name`. Returns the run id.
    fn start(
        &self,
        tenant: TenantId,
        name: String,
        inputs: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<String, HostToolError>>;
}

/// Whether `who` may run `wf`: main always, another group when every step is its own.
fn may_run(who: &RunIdentity, wf: &WorkflowSummary) -> bool {
    who.is_main() || wf.groups.iter().all(|g| g == who.folder.as_str())
}

fn not_found(name: &str) -> HostToolError {
    HostToolError::NotFound(format!("no workflow named {name:?}"))
}

impl IpcService {
    fn workflow_host(&self) -> Result<&dyn WorkflowHost, HostToolError> {
        self.workflows.get().map(|w| w.as_ref()).ok_or_else(|| {
            HostToolError::BadRequest("workflows are not available on this host".into())
        })
    }

    /// `list_workflows`: the workflows the caller may run.
    pub async fn list_workflows(
        &self,
        who: &RunIdentity,
    ) -> Result<ListWorkflowsResponse, HostToolError> {
        let all = self.workflow_host()?.list(who.tenant.clone()).await?;
        Ok(ListWorkflowsResponse {
            workflows: all.into_iter().filter(|w| may_run(who, w)).collect(),
        })
    }

    /// `run_workflow`: starts a run and answers its id without waiting for it.
    pub async fn run_workflow(
        &self,
        who: &RunIdentity,
        req: RunWorkflowRequest,
    ) -> Result<RunWorkflowResponse, HostToolError> {
        let host = self.workflow_host()?;
        let all = host.list(who.tenant.clone()).await?;
        let Some(wf) = all.iter().find(|w| w.name == req.name) else {
            return Err(not_found(&req.name));
        };
        if !may_run(who, wf) {
            return Err(HostToolError::Forbidden(format!(
                "workflow {:?} runs steps in other groups ({}); only the main group may run it",
                wf.name,
                wf.groups.join(", ")
            )));
        }
        let run_id = host
            .start(who.tenant.clone(), req.name.clone(), req.inputs)
            .await?;
        tracing::info!(
            tenant = %who.tenant,
            group = %who.folder,
            workflow = %req.name,
            run = %run_id,
            "workflow run started by an agent"
        );
        Ok(RunWorkflowResponse { run_id })
    }
}
