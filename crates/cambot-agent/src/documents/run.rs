//! One extraction: stage, sniff, plan, run, map the outcome.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use crate::pipe_read::read_head;
use crate::pipe_read::read_tail;
use cambot_protocol::documents::DOCUMENT_PATH;
use cambot_protocol::documents::DocKind;
use cambot_protocol::documents::ExtractArgs;
use cambot_protocol::documents::ExtractStatus;
use cambot_protocol::documents::StatusLine;
use cambot_protocol::layout::sandbox_paths;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::MountMode;
use cambot_sandbox::PlanInput;
use cambot_sandbox::PlanMount;
use cambot_sandbox::RunPlan;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::TimeoutPolicy;

use super::DocumentError;
use super::DocumentsConfig;
use super::Extracted;
use super::one_line;
use super::sniff::SNIFF_BYTES;
use super::sniff::sniff;

const MIB: u64 = 1024 * 1024;
/// Processes the extractor may have (itself, `pdftotext`, the shim).
const MAX_PIDS: u64 = 16;
/// stderr kept: the status line is its last line.
const STDERR_KEEP: usize = 16 * 1024;
/// The staged copy's name inside the run directory.
const STAGED_NAME: &str = "document";

/// One document to extract under a group's sandbox plan.
#[derive(Debug, Clone)]
pub struct DocumentJob {
    /// The group's plan input (tenant, group, its container config and its tenant's mount
    /// roots), as a run of that group gets it; its run id names this one-shot run.
    pub plan: PlanInput,
    /// The file on the host.
    pub file: PathBuf,
    /// The type the sender declared (or the file name's extension implies), if any.
    pub declared: Option<DocKind>,
}

/// Extracts the text of `job.file` inside the group's sandbox. The run directory (staged copy
/// included) is removed whatever the outcome.
pub async fn extract_document(
    backend: &dyn SandboxBackend,
    sandbox: &SandboxConfig,
    allowlist: &MountAllowlist,
    cfg: &DocumentsConfig,
    job: DocumentJob,
) -> Result<Extracted, DocumentError> {
    let run_dir = job.plan.layout.run_dir(&job.plan.run_id);
    let result = extract_in(backend, sandbox, allowlist, cfg, job, &run_dir).await;
    if let Err(e) = std::fs::remove_dir_all(&run_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %run_dir.display(), error = %e, "cannot remove the extraction's run directory");
    }
    result
}

async fn extract_in(
    backend: &dyn SandboxBackend,
    sandbox: &SandboxConfig,
    allowlist: &MountAllowlist,
    cfg: &DocumentsConfig,
    job: DocumentJob,
    run_dir: &Path,
) -> Result<Extracted, DocumentError> {
    let max = cfg.max_file_mb.saturating_mul(MIB);
    let (file, dir) = (job.file.clone(), run_dir.to_owned());
    let (staged, head) = tokio::task::spawn_blocking(move || stage(&file, &dir, max))
        .await
        .map_err(|e| DocumentError::Internal(format!("staging task: {e}")))??;
    let kind = sniff(&head, job.declared)?;
    let runner = sandbox.runner_path();
    if !runner.is_file() {
        return Err(DocumentError::Internal(format!(
            "no extractor: the runner binary {} does not exist ([sandbox] runner_path)",
            runner.display()
        )));
    }
    let args = ExtractArgs {
        kind,
        max_pages: cfg.max_pages,
        max_output_bytes: cfg.max_output_bytes,
        memory_bytes: cfg.memory_mb.saturating_mul(MIB),
        cpu_secs: cfg.cpu_secs,
        path: DOCUMENT_PATH.to_owned(),
    };
    let plan = document_plan(job.plan, sandbox, allowlist, cfg, &args, runner, staged)?;
    tracing::debug!(run = %plan.run_id, tenant = %plan.tenant, group = %plan.group, %kind, "document extraction started");
    run_plan(backend, &plan, cfg).await
}

/// Copies the file (at most `max` bytes) into the run directory, read-only: the sandbox reads
/// exactly the bytes sniffed here, under a name the sender did not choose. Returns the copy
/// and its first bytes.
fn stage(file: &Path, run_dir: &Path, max: u64) -> Result<(PathBuf, Vec<u8>), DocumentError> {
    let shown = one_line(&file.display().to_string(), 200);
    let src = std::fs::File::open(file)
        .map_err(|e| DocumentError::io(format!("cannot open {shown}"), e))?;
    let meta = src
        .metadata()
        .map_err(|e| DocumentError::io(format!("cannot stat {shown}"), e))?;
    if !meta.is_file() {
        return Err(DocumentError::NotAFile(shown));
    }
    if meta.len() == 0 {
        return Err(DocumentError::EmptyFile);
    }
    if meta.len() > max {
        return Err(DocumentError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    std::fs::create_dir_all(run_dir)
        .map_err(|e| DocumentError::io(format!("cannot create {}", run_dir.display()), e))?;
    let staged = run_dir.join(STAGED_NAME);
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&staged)
        .map_err(|e| DocumentError::io(format!("cannot create {}", staged.display()), e))?;
    let copied = std::io::copy(&mut (&src).take(max + 1), &mut dst)
        .map_err(|e| DocumentError::io(format!("cannot copy {shown}"), e))?;
    // The file may have changed since the stat: the copy is what counts.
    if copied > max {
        return Err(DocumentError::TooLarge { size: copied, max });
    }
    if copied == 0 {
        return Err(DocumentError::EmptyFile);
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    std::fs::File::open(&staged)
        .and_then(|f| f.take(SNIFF_BYTES as u64).read_to_end(&mut head))
        .map_err(|e| DocumentError::io("cannot read the staged copy", e))?;
    Ok((staged, head))
}

/// The group's own plan, tightened: the extractor instead of the agent, every mount read-only
/// (nothing to write), the runner binary and the staged document bound read-only, a lower
/// memory limit, few processes, and the wall clock of `[documents]`.
fn document_plan(
    input: PlanInput,
    sandbox: &SandboxConfig,
    allowlist: &MountAllowlist,
    cfg: &DocumentsConfig,
    args: &ExtractArgs,
    runner: PathBuf,
    staged: PathBuf,
) -> Result<RunPlan, DocumentError> {
    let mut input = input.with_init_from(sandbox);
    let mut argv = vec![sandbox_paths::RUNNER_BIN.to_owned()];
    argv.extend(args.to_argv());
    input.command = Some(argv);
    let mut plan = cambot_sandbox::build_plan(input, sandbox, allowlist)?;
    for (mount, why) in &plan.rejected_mounts {
        tracing::debug!(host_path = %mount.host_path, reason = %why, "extra mount refused for a document extraction");
    }
    for m in &mut plan.mounts {
        m.mode = MountMode::ReadOnly;
    }
    plan.writable = vec!["/tmp".to_owned()];
    for (src, dst) in [(runner, sandbox_paths::RUNNER_BIN), (staged, DOCUMENT_PATH)] {
        plan.mounts.push(PlanMount {
            src,
            dst: dst.to_owned(),
            mode: MountMode::ReadOnly,
            optional: false,
            create: false,
        });
    }
    let memory = cfg.memory_mb.saturating_mul(MIB);
    plan.limits.memory_bytes = plan.limits.memory_bytes.min(memory.max(16 * MIB));
    plan.limits.pids = plan.limits.pids.min(MAX_PIDS);
    plan.limits.output_cap_bytes = cfg.max_output_bytes + 4096;
    let wall = Duration::from_secs(cfg.wall_secs.max(1));
    plan.timeouts = TimeoutPolicy {
        hard: wall,
        lifetime: wall,
    };
    Ok(plan)
}

async fn run_plan(
    backend: &dyn SandboxBackend,
    plan: &RunPlan,
    cfg: &DocumentsConfig,
) -> Result<Extracted, DocumentError> {
    let mut child = backend.spawn(plan).await?;
    drop(child.take_stdin());
    let stdout = std::mem::replace(&mut child.stdout, Box::new(tokio::io::empty()));
    let stderr = std::mem::replace(&mut child.stderr, Box::new(tokio::io::empty()));
    let out_cap = usize::try_from(cfg.max_output_bytes + 4096).unwrap_or(usize::MAX);
    let wall = plan.timeouts.hard;
    let finished = tokio::time::timeout(wall, async {
        let (out, err) = tokio::join!(read_head(stdout, out_cap), read_tail(stderr, STDERR_KEEP));
        let info = child.wait().await;
        (out, err, info)
    })
    .await;
    let (out, err, info) = match finished {
        Ok(r) => r,
        Err(_) => {
            child.kill().await?;
            let _ = child.wait().await;
            return Err(DocumentError::Timeout(wall.as_secs()));
        }
    };
    let info = info?;
    let (stdout, overflow) =
        out.map_err(|e| DocumentError::io("reading the extractor's output", e))?;
    let stderr = err.map_err(|e| DocumentError::io("reading the extractor's status", e))?;
    let stderr = String::from_utf8_lossy(&stderr);
    if overflow {
        return Err(DocumentError::Internal(
            "the extractor wrote more than its output cap".to_owned(),
        ));
    }
    let status = StatusLine::find_in(&stderr);
    let code = info.code;
    if info.oom_killed {
        return Err(DocumentError::OutOfMemory(cfg.memory_mb));
    }
    match (code, status) {
        (Some(0), Some(s)) if s.status == ExtractStatus::Ok => Ok(Extracted {
            text: String::from_utf8_lossy(&stdout).into_owned(),
            format: s.format,
            parts: s.parts,
            truncated: s
                .truncated
                .then(|| one_line(s.detail.as_deref().unwrap_or("cut short"), 300)),
        }),
        (Some(c), Some(s)) if i32::from(s.status.exit_code()) == c => {
            let detail = one_line(s.detail.as_deref().unwrap_or("no detail"), 300);
            Err(match s.status {
                ExtractStatus::Ok => DocumentError::Internal("inconsistent status".to_owned()),
                ExtractStatus::Unsupported => DocumentError::Unsupported(detail),
                ExtractStatus::Encrypted => DocumentError::Encrypted,
                ExtractStatus::Malformed => DocumentError::Malformed(detail),
                ExtractStatus::Limit => DocumentError::Limit(detail),
                ExtractStatus::Empty => DocumentError::NoText,
                ExtractStatus::Internal => DocumentError::Internal(detail),
            })
        }
        // No (matching) status: the extractor did not finish. Signals come back as 128 + n.
        (Some(134), _) => Err(DocumentError::OutOfMemory(cfg.memory_mb)),
        (Some(152), _) => Err(DocumentError::CpuLimit(cfg.cpu_secs)),
        (Some(c @ (101 | 139)), _) => Err(DocumentError::ExtractorCrashed(c)),
        (c, _) => {
            let tail = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no message");
            Err(DocumentError::SandboxFailed(format!(
                "{} before the extractor reported: {}",
                match (c, info.signal) {
                    (Some(c), _) => format!("exit code {c}"),
                    (None, Some(s)) => format!("signal {s}"),
                    (None, None) => "no exit status".to_owned(),
                },
                one_line(tail, 200)
            )))
        }
    }
}
