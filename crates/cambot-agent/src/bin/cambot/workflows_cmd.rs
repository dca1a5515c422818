//! `cambot workflows`: a tenant's workflow definitions and runs in the data directory's
//! database. The CLI never runs a step: `run` stores the run and the daemon (`cambot run`)
//! notices it within a fraction of a second and drives it; `--wait` follows the stored state.
//! `cancel` stores the cancel; a daemon driving the run stops its live step when it notices.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;
use cambot_agent::config::Config;
use cambot_core::Store;
use cambot_core::WorkflowRunRow;
use cambot_core::WorkflowRunState;
use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;
use cambot_workflows::Engine;
use cambot_workflows::StepCall;
use cambot_workflows::StepExecutor;
use cambot_workflows::StepFailure;
use cambot_workflows::StepFuture;
use chrono::DateTime;
use chrono::Utc;
use clap::Args;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

/// How often `run --wait` re-reads the run.
const POLL: Duration = Duration::from_millis(100);
/// After this long without any progress, `--wait` says a daemon must be running.
const HINT_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct WorkflowsArgs {
    /// The tenant (must exist).
    #[arg(long, global = true, default_value = TenantId::DEFAULT)]
    tenant: String,
    #[command(subcommand)]
    command: WorkflowsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowsCommand {
    /// Check a definition (TOML file) and store it, replacing one of the same name.
    Add { file: std::path::PathBuf },
    /// List the tenant's workflows.
    List,
    /// Print a workflow's definition.
    Show { name: String },
    /// Remove a workflow (its runs stay).
    Rm { name: String },
    /// Start a run (driven by the running daemon); prints the run id.
    Run {
        name: String,
        /// An input, KEY=VALUE (repeatable).
        #[arg(long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// Follow the run: print each step's state, then the last step's output. Exits
        /// non-zero when the run fails or is cancelled.
        #[arg(long)]
        wait: bool,
    },
    /// The tenant's runs (of one workflow when given), newest first.
    Runs {
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Cancel a run.
    Cancel { run_id: String },
}

/// The CLI's engine stores and reads; it never executes a step (the daemon does).
struct NoSteps;

impl StepExecutor for NoSteps {
    fn execute(&self, _call: StepCall, _cancel: CancellationToken) -> StepFuture<'_> {
        Box::pin(async { Err(StepFailure::fatal("the CLI does not run steps")) })
    }
}

pub(crate) async fn run(config: &Config, args: WorkflowsArgs) -> Result<ExitCode> {
    let layout = DataLayout::new(&config.data_dir);
    let store: Arc<dyn Store> = cambot_agent::database::open_store(&layout)
        .await
        .with_context(|| format!("opening {}", layout.database().display()))?;
    let tenant = crate::tenants_cmd::known_tenant(store.as_ref(), &args.tenant).await?;
    let engine = cambot_agent::workflows::engine(store, Arc::new(NoSteps));
    let mut out = std::io::stdout().lock();
    match args.command {
        WorkflowsCommand::Add { file } => {
            let toml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let (def, replaced) = engine.add(&tenant, &toml).await?;
            let verb = if replaced { "replaced" } else { "added" };
            writeln!(
                out,
                "{verb} workflow {} ({} steps)",
                def.name,
                def.steps.len()
            )?;
        }
        WorkflowsCommand::List => {
            for row in engine.definitions(&tenant).await? {
                let summary = match cambot_workflows::Definition::parse(&row.toml) {
                    Ok(def) => {
                        let steps: Vec<String> = def
                            .steps
                            .iter()
                            .map(|s| format!("{}:{}@{}", s.id, s.kind.as_str(), s.group))
                            .collect();
                        let schedule = def
                            .schedule
                            .map(|s| format!("  schedule {s:?}"))
                            .unwrap_or_default();
                        format!("{}{schedule}", steps.join(" -> "))
                    }
                    Err(e) => format!("(no longer valid: {e})"),
                };
                writeln!(out, "{}  {summary}", row.name)?;
            }
        }
        WorkflowsCommand::Show { name } => match engine.definition(&tenant, &name).await? {
            Some(def) => write!(out, "{}", def.toml)?,
            None => bail!("no workflow {name:?} in tenant {tenant}"),
        },
        WorkflowsCommand::Rm { name } => {
            if !engine.remove(&tenant, &name).await? {
                bail!("no workflow {name:?} in tenant {tenant}");
            }
            writeln!(out, "removed workflow {name}")?;
        }
        WorkflowsCommand::Run { name, inputs, wait } => {
            let inputs = parse_inputs(&inputs)?;
            let id = engine.start(&tenant, &name, inputs).await?;
            writeln!(out, "{id}")?;
            out.flush()?;
            if wait {
                drop(out);
                return follow(&engine, &tenant, &id).await;
            }
        }
        WorkflowsCommand::Runs { name, limit } => {
            for run in engine.runs(&tenant, name.as_deref(), limit).await? {
                let done = run.steps.iter().filter(|s| s.output.is_some()).count();
                writeln!(
                    out,
                    "{}  {}  {}  {}/{} steps  {}{}",
                    run.id,
                    run.workflow,
                    run.state.as_str(),
                    done,
                    run.steps.len(),
                    when(run.created_ms),
                    run.error.map(|e| format!("  {e}")).unwrap_or_default()
                )?;
            }
        }
        WorkflowsCommand::Cancel { run_id } => {
            if engine.run(&tenant, &run_id).await?.is_none() {
                bail!("no run {run_id:?} in tenant {tenant}");
            }
            if !engine.cancel(&tenant, &run_id).await? {
                bail!("run {run_id} has already ended");
            }
            writeln!(out, "cancelled {run_id}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_inputs(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut inputs = BTreeMap::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--input {pair:?}: use KEY=VALUE");
        };
        if inputs.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("--input {k} given twice");
        }
    }
    Ok(inputs)
}

fn when(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Prints each step's state as it changes until the run ends, then the last step's output.
async fn follow(engine: &Engine, tenant: &TenantId, id: &str) -> Result<ExitCode> {
    let mut shown: Vec<(String, u32)> = Vec::new();
    let mut last_change = tokio::time::Instant::now();
    let mut hinted = false;
    loop {
        let run: WorkflowRunRow = engine
            .run(tenant, id)
            .await?
            .with_context(|| format!("run {id} disappeared"))?;
        let now: Vec<(String, u32)> = run
            .steps
            .iter()
            .map(|s| (s.state.as_str().to_owned(), s.attempt))
            .collect();
        {
            let mut out = std::io::stdout().lock();
            for (step, state) in run.steps.iter().zip(&now) {
                if shown.get(step.idx as usize) != Some(state) {
                    let detail = match (&step.error, step.state.as_str()) {
                        (Some(e), "failed" | "pending") => format!(": {e}"),
                        _ => String::new(),
                    };
                    writeln!(
                        out,
                        "step {}: {} (attempt {}){detail}",
                        step.step_id, state.0, step.attempt
                    )?;
                    last_change = tokio::time::Instant::now();
                }
            }
            out.flush()?;
        }
        shown = now;
        if run.state.is_finished() {
            let mut out = std::io::stdout().lock();
            writeln!(out, "run {id}: {}", run.state.as_str())?;
            return Ok(match run.state {
                WorkflowRunState::Succeeded => {
                    if let Some(output) = run.steps.last().and_then(|s| s.output.as_deref()) {
                        writeln!(out, "{output}")?;
                    }
                    ExitCode::SUCCESS
                }
                _ => {
                    if let Some(e) = &run.error {
                        eprintln!("error: {e}");
                    }
                    ExitCode::FAILURE
                }
            });
        }
        if !hinted && last_change.elapsed() > HINT_AFTER {
            eprintln!("(no progress yet: runs are driven by the daemon; is `cambot run` running?)");
            hinted = true;
        }
        tokio::time::sleep(POLL).await;
    }
}
