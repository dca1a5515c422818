//! `cambot documents extract`: a document's text through exactly the sandboxed path a run uses.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use cambot_agent::config::Config;
use cambot_agent::documents::DocumentJob;
use cambot_agent::documents::extract_document;
use cambot_agent::documents::one_line;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use cambot_protocol::documents::DocKind;
use clap::Args;
use clap::Subcommand;

use crate::sandbox_cmd::BackendFlag;

#[derive(Debug, Subcommand)]
pub(crate) enum DocumentsCommand {
    /// Print a document's text (PDF, DOCX, XLSX, PPTX, HTML, text, Markdown, CSV), extracted in
    /// the group's sandbox. On failure: one line on stderr and exit code 10 (unsupported or
    /// refused type), 11 (password-protected), 12 (malformed or empty file), 13 (over a limit),
    /// 14 (no text in it) or 70 (internal or sandbox error).
    Extract(ExtractArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ExtractArgs {
    #[arg(long, default_value = TenantId::DEFAULT)]
    tenant: String,
    #[arg(long, default_value = GroupFolder::MAIN)]
    group: String,
    /// Declared type (`pdf`, `docx`, ... or a MIME type); default: the file name's extension.
    /// The bytes must agree with it.
    #[arg(long = "type")]
    declared: Option<String>,
    /// Backend (default: the config's `[sandbox] backend`).
    #[arg(long, value_enum)]
    backend: Option<BackendFlag>,
    file: PathBuf,
}

pub(crate) async fn run(config: &Config, cmd: DocumentsCommand) -> Result<ExitCode> {
    let DocumentsCommand::Extract(args) = cmd;
    let declared = match &args.declared {
        Some(t) => Some(
            DocKind::parse(t)
                .or_else(|| DocKind::from_mime(t))
                .ok_or_else(|| anyhow::anyhow!("unknown --type {:?}", one_line(t, 80)))?,
        ),
        None => args
            .file
            .extension()
            .and_then(|e| e.to_str())
            .and_then(DocKind::from_extension),
    };
    let (input, cfg, allowlist) = crate::sandbox_cmd::group_plan_input(
        config,
        &args.tenant,
        &args.group,
        false,
        args.backend,
    )
    .await?;
    let backend = cambot_sandbox::select_backend(&cfg).await?;
    let job = DocumentJob {
        plan: input,
        file: args.file,
        declared,
    };
    match extract_document(backend.as_ref(), &cfg, &allowlist, &config.documents, job).await {
        Ok(doc) => {
            let mut out = std::io::stdout().lock();
            out.write_all(doc.text.as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string(), 600));
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}
