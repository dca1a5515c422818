//! The agent tools `run_workflow` and `list_workflows` against the daemon's real `Workflows`
//! (real store and engine, steps answered by a stand-in executor) behind a real gateway run
//! socket: the run is stored and driven, input errors carry the engine's message, and a group
//! sees only workflows of its own.

use std::sync::Arc;
use std::time::Duration;

use cambot_agent::workflows::Workflows;
use cambot_core::GroupRegistration;
use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_core::WorkflowRunState;
use cambot_gateway::Gateway;
use cambot_gateway::GatewayPolicy;
use cambot_gateway::IpcService;
use cambot_gateway::RunBudget;
use cambot_gateway::RunIdentity;
use cambot_gateway::RunSocket;
use cambot_gateway::SendLimits;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::RunId;
use cambot_protocol::ipc::routes;
use cambot_testkit::uds;
use cambot_workflows::StepCall;
use cambot_workflows::StepExecutor;
use cambot_workflows::StepFuture;
use serde_json::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::support::tenant;

struct Echo;

impl StepExecutor for Echo {
    fn execute(&self, call: StepCall, _cancel: CancellationToken) -> StepFuture<'_> {
        Box::pin(async move { Ok(format!("done {}", call.step_id)) })
    }
}

const TEAM_ONLY: &str = "name = \"team-only\"\n[inputs]\ntopic = {}\n[[steps]]\nid = \"post\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"{{ inputs.topic }}\"\n";
const BOTH: &str = "name = \"both\"\n[[steps]]\nid = \"a\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"a\"\n[[steps]]\nid = \"b\"\ntype = \"send\"\ngroup = \"main\"\ntext = \"b\"\n";

async fn call(socket: &RunSocket, route: &str, body: Value) -> (u16, Value) {
    let r = uds::request(
        socket.path(),
        "POST",
        route,
        &[(RUN_TOKEN_HEADER, socket.token())],
        Some(&body),
    )
    .await
    .unwrap();
    (r.status, r.body)
}

#[tokio::test]
async fn the_tools_start_real_runs_of_the_callers_workflows() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
    for folder in ["main", "team"] {
        store
            .register_group(GroupRegistration {
                tenant: tenant(),
                jid: ChatJid::new(&format!("fake:{folder}")).unwrap(),
                name: folder.into(),
                folder: GroupFolder::new(folder).unwrap(),
                trigger: "@Andy".into(),
                requires_trigger: None,
                container_config: None,
            })
            .await
            .unwrap();
    }
    let engine = Arc::new(cambot_agent::workflows::engine(
        store.clone(),
        Arc::new(Echo),
    ));
    engine.add(&tenant(), TEAM_ONLY).await.unwrap();
    engine.add(&tenant(), BOTH).await.unwrap();
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let workflows = Workflows::new(
        Arc::clone(&engine),
        store.clone(),
        tracker.clone(),
        cancel.clone(),
    );
    let ipc = Arc::new(IpcService::new(
        store.clone(),
        DataLayout::new(dir.path()),
        Arc::new(|| {}),
        chrono_tz::UTC,
        Arc::new(|_| Box::pin(async {})),
        SendLimits::default(),
    ));
    assert!(ipc.set_workflows(Arc::new(workflows)));
    let gateway = Gateway::new(ipc, Vec::new(), GatewayPolicy::standard()).unwrap();
    let socket = |folder: &str| {
        let run_id = RunId::from_bytes(rand::random());
        let path = dir.path().join(format!("{run_id}.sock"));
        RunSocket::bind(
            Arc::clone(&gateway),
            RunIdentity {
                run_id,
                tenant: tenant(),
                folder: GroupFolder::new(folder).unwrap(),
                chat_jid: ChatJid::new(&format!("fake:{folder}")).unwrap(),
                model_provider: None,
            },
            &path,
            None,
            RunBudget::default(),
        )
        .unwrap()
    };
    let team = socket("team");

    let (status, body) = call(&team, routes::LIST_WORKFLOWS, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"workflows": [{"name": "team-only", "inputs": {"topic": null}, "groups": ["team"], "schedule": null}]})
    );

    let (status, body) = call(&team, routes::RUN_WORKFLOW, json!({"name": "team-only"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "input \"topic\" of workflow \"team-only\" has no default and was not given"
    );
    let (status, body) = call(&team, routes::RUN_WORKFLOW, json!({"name": "both"})).await;
    assert_eq!(status, 403, "{body}");

    let (status, body) = call(
        &team,
        routes::RUN_WORKFLOW,
        json!({"name": "team-only", "inputs": {"topic": "rust"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    // Driven on the daemon's tracker: it ends without anyone waiting on the tool call.
    // A guard against hanging, not a timing expectation.
    let run = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let run = engine.run(&tenant(), &run_id).await.unwrap().unwrap();
            if run.state.is_finished() {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the run ends");
    assert_eq!(run.state, WorkflowRunState::Succeeded);
    assert_eq!(run.steps[0].output.as_deref(), Some("done post"));

    let main = socket("main");
    let (status, body) = call(&main, routes::RUN_WORKFLOW, json!({"name": "both"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&main, routes::RUN_WORKFLOW, json!({"name": "gone"})).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (404, &json!("no workflow named \"gone\""))
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}
