//! `run_workflow` and `list_workflows` over real run sockets, with a fake workflow host: the
//! main group may run any workflow of its tenant, another group only workflows whose steps
//! all name itself, and another tenant's workflow answers like a missing one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;

use cambot_gateway::HostToolError;
use cambot_gateway::WorkflowHost;
use cambot_protocol::TenantId;
use cambot_protocol::ipc::WorkflowSummary;
use cambot_protocol::ipc::routes;
use futures::future::BoxFuture;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::ipc_world::*;

/// (tenant, workflow, inputs) of one start.
type Started = (String, String, BTreeMap<String, String>);

/// Workflows per tenant; records every start.
#[derive(Default)]
struct FakeWorkflows {
    defs: Vec<(String, WorkflowSummary)>,
    started: Mutex<Vec<Started>>,
}

fn summary(name: &str, groups: &[&str]) -> WorkflowSummary {
    WorkflowSummary {
        name: name.into(),
        inputs: BTreeMap::from([("topic".to_owned(), None)]),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        schedule: None,
    }
}

impl WorkflowHost for FakeWorkflows {
    fn list(&self, tenant: TenantId) -> BoxFuture<'_, Result<Vec<WorkflowSummary>, HostToolError>> {
        let list = self
            .defs
            .iter()
            .filter(|(t, _)| t == tenant.as_str())
            .map(|(_, w)| w.clone())
            .collect();
        Box::pin(async move { Ok(list) })
    }

    fn start(
        &self,
        tenant: TenantId,
        name: String,
        inputs: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<String, HostToolError>> {
        Box::pin(async move {
            if !inputs.contains_key("topic") {
                return Err(HostToolError::BadRequest(format!(
                    "input \"topic\" of workflow {name:?} has no default and was not given"
                )));
            }
            let mut started = self.started.lock().unwrap();
            started.push((tenant.to_string(), name, inputs));
            Ok(format!("run-{}", started.len()))
        })
    }
}

struct World {
    rig: IpcRig,
    host: Arc<FakeWorkflows>,
}

impl World {
    async fn new() -> Self {
        let rig = IpcRig::new();
        rig.register("acme", "main@g.us", "main", "Main").await;
        rig.register("acme", "team@g.us", "team", "Team").await;
        rig.register("beta", "bmain@g.us", "main", "Beta main")
            .await;
        let host = Arc::new(FakeWorkflows {
            defs: vec![
                ("acme".into(), summary("team-only", &["team"])),
                ("acme".into(), summary("both", &["team", "main"])),
                ("beta".into(), summary("beta-secret", &["main"])),
            ],
            ..Default::default()
        });
        assert!(
            rig.ipc
                .set_workflows(Arc::clone(&host) as Arc<dyn WorkflowHost>)
        );
        Self { rig, host }
    }

    fn started(&self) -> Vec<Started> {
        self.host.started.lock().unwrap().clone()
    }
}

async fn run_wf(run: &Run, name: &str) -> (u16, Value) {
    run.call(
        routes::RUN_WORKFLOW,
        json!({"name": name, "inputs": {"topic": "rust"}}),
    )
    .await
}

fn names(body: &Value) -> Vec<String> {
    body["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn main_group_runs_and_lists_every_workflow_of_its_tenant() {
    let w = World::new().await;
    let main = w.rig.run("acme", "main", "main@g.us");
    let (status, body) = main.call(routes::LIST_WORKFLOWS, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), vec!["team-only", "both"]);

    for name in ["team-only", "both"] {
        let (status, body) = run_wf(&main, name).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["run_id"].as_str().unwrap().starts_with("run-"));
    }
    let started = w.started();
    assert_eq!(started.len(), 2);
    assert!(
        started
            .iter()
            .all(|(t, _, i)| t == "acme" && i["topic"] == "rust")
    );
}

#[tokio::test]
async fn other_group_runs_only_workflows_of_its_own() {
    let w = World::new().await;
    let team = w.rig.run("acme", "team", "team@g.us");
    let (status, body) = team.call(routes::LIST_WORKFLOWS, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), vec!["team-only"]);

    let (status, body) = run_wf(&team, "team-only").await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = run_wf(&team, "both").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["kind"], "forbidden");
    assert!(body["error"]["message"].as_str().unwrap().contains("main"));
    assert_eq!(w.started().len(), 1, "the refused run was not started");
}

#[tokio::test]
async fn another_tenants_workflow_is_not_found_like_a_missing_one() {
    let w = World::new().await;
    let main = w.rig.run("acme", "main", "main@g.us");
    let (status, other) = run_wf(&main, "beta-secret").await;
    assert_eq!(status, 404, "{other}");
    let (status, missing) = run_wf(&main, "nothing-here").await;
    assert_eq!(status, 404, "{missing}");
    let strip = |v: &Value, n: &str| v["error"]["message"].as_str().unwrap().replace(n, "X");
    assert_eq!(
        strip(&other, "beta-secret"),
        strip(&missing, "nothing-here")
    );
    assert_eq!(strip(&other, "beta-secret"), "no workflow named \"X\"");
    assert!(w.started().is_empty());

    // beta's own main group does see and run it.
    let beta = w.rig.run("beta", "main", "bmain@g.us");
    let (status, body) = beta.call(routes::LIST_WORKFLOWS, json!({})).await;
    assert_eq!(
        (status, names(&body)),
        (200, vec!["beta-secret".to_owned()])
    );
    assert_eq!(run_wf(&beta, "beta-secret").await.0, 200);
}

#[tokio::test]
async fn input_errors_come_back_as_the_hosts_message() {
    let w = World::new().await;
    let main = w.rig.run("acme", "main", "main@g.us");
    let (status, body) = main
        .call(routes::RUN_WORKFLOW, json!({"name": "both"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "input \"topic\" of workflow \"both\" has no default and was not given"
    );
}

#[tokio::test]
async fn without_workflows_the_tools_say_so() {
    let rig = IpcRig::new();
    rig.register("acme", "main@g.us", "main", "Main").await;
    let main = rig.run("acme", "main", "main@g.us");
    let (status, body) = run_wf(&main, "x").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not available")
    );
}
