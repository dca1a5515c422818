//! The file tools: read, write, edit (one exact match), list, glob, grep. Every path goes
//! through [`Confinement::resolve`]; directory walks never follow symlinks.

use std::path::Path;
use std::path::PathBuf;

use serde::Deserialize;

use super::Outcome;
use super::ToolContext;
use super::glob;

/// Largest file the read, edit and grep tools load.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Entries a directory walk visits before it stops.
const MAX_WALK_ENTRIES: usize = 20_000;
/// Matches reported by one glob or grep call.
const MAX_MATCHES: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadArgs {
    path: String,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditArgs {
    path: String,
    old_string: String,
    new_string: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListArgs {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GlobArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrepArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
}

fn resolve(ctx: &ToolContext, path: &str) -> Result<PathBuf, String> {
    ctx.fs.resolve(path).map_err(|e| e.to_string())
}

fn io_err(ctx: &ToolContext, path: &Path, e: &std::io::Error) -> String {
    format!("{}: {e}", ctx.fs.display(path))
}

async fn load_text(ctx: &ToolContext, path: &Path) -> Result<String, String> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| io_err(ctx, path, &e))?;
    if meta.is_dir() {
        return Err(format!(
            "{} is a directory; use list_files",
            ctx.fs.display(path)
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes, over the {MAX_FILE_BYTES}-byte limit of this tool",
            ctx.fs.display(path),
            meta.len()
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| io_err(ctx, path, &e))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", ctx.fs.display(path)))
}

pub(super) async fn read_file(ctx: &ToolContext, a: ReadArgs) -> Outcome {
    let path = resolve(ctx, &a.path)?;
    let text = load_text(ctx, &path).await?;
    if a.offset.is_none() && a.limit.is_none() {
        return Ok(text);
    }
    let first = a.offset.unwrap_or(1).max(1);
    let take = a.limit.unwrap_or(usize::MAX);
    let lines: Vec<&str> = text.lines().skip(first - 1).take(take).collect();
    Ok(lines.join("\n"))
}

pub(super) async fn write_file(ctx: &ToolContext, a: WriteArgs) -> Outcome {
    let path = resolve(ctx, &a.path)?;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_err(ctx, parent, &e))?;
    }
    tokio::fs::write(&path, a.content.as_bytes())
        .await
        .map_err(|e| io_err(ctx, &path, &e))?;
    Ok(format!(
        "wrote {} bytes to {}",
        a.content.len(),
        ctx.fs.display(&path)
    ))
}

pub(super) async fn edit_file(ctx: &ToolContext, a: EditArgs) -> Outcome {
    if a.old_string.is_empty() {
        return Err("old_string must not be empty".into());
    }
    let path = resolve(ctx, &a.path)?;
    let text = load_text(ctx, &path).await?;
    let count = text.matches(a.old_string.as_str()).count();
    match count {
        0 => Err(format!(
            "old_string was not found in {}; nothing changed",
            ctx.fs.display(&path)
        )),
        1 => {
            let updated = text.replacen(a.old_string.as_str(), &a.new_string, 1);
            tokio::fs::write(&path, updated.as_bytes())
                .await
                .map_err(|e| io_err(ctx, &path, &e))?;
            Ok(format!("edited {}", ctx.fs.display(&path)))
        }
        n => Err(format!(
            "old_string occurs {n} times in {}; include more context so it matches exactly once. Nothing changed",
            ctx.fs.display(&path)
        )),
    }
}

pub(super) async fn list_files(ctx: &ToolContext, a: ListArgs) -> Outcome {
    let path = resolve(ctx, a.path.as_deref().unwrap_or("."))?;
    let mut dir = tokio::fs::read_dir(&path)
        .await
        .map_err(|e| io_err(ctx, &path, &e))?;
    let mut names = Vec::new();
    while let Some(entry) = dir.next_entry().await.map_err(|e| io_err(ctx, &path, &e))? {
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            name.push('/');
        }
        names.push(name);
        if names.len() >= MAX_WALK_ENTRIES {
            break;
        }
    }
    names.sort();
    if names.is_empty() {
        return Ok(format!("{} is empty", ctx.fs.display(&path)));
    }
    Ok(names.join("\n"))
}

/// Every regular file below `dir` (symlinks are not followed), as (real path, relative path).
fn walk(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries.into_iter().rev() {
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                return out;
            }
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let rel = p
                    .strip_prefix(dir)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push((p, rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

pub(super) async fn glob(ctx: &ToolContext, a: GlobArgs) -> Outcome {
    let dir = resolve(ctx, a.path.as_deref().unwrap_or("."))?;
    let fs = ctx.fs.clone();
    let pattern = a.pattern;
    tokio::task::spawn_blocking(move || {
        let hits: Vec<String> = walk(&dir)
            .into_iter()
            .filter(|(_, rel)| glob::matches(&pattern, rel))
            .take(MAX_MATCHES)
            .map(|(p, _)| fs.display(&p))
            .collect();
        if hits.is_empty() {
            Ok(format!("no files match {pattern:?}"))
        } else {
            Ok(hits.join("\n"))
        }
    })
    .await
    .map_err(|e| format!("glob failed: {e}"))?
}

pub(super) async fn grep(ctx: &ToolContext, a: GrepArgs) -> Outcome {
    let re = regex::RegexBuilder::new(&a.pattern)
        .case_insensitive(a.case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex: {e}"))?;
    let target = resolve(ctx, a.path.as_deref().unwrap_or("."))?;
    let fs = ctx.fs.clone();
    let filter = a.glob;
    let cap = ctx.limits.tool_output_bytes;
    tokio::task::spawn_blocking(move || {
        let files = if target.is_file() {
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            vec![(target.clone(), name)]
        } else {
            walk(&target)
        };
        let mut out = String::new();
        let mut count = 0usize;
        'files: for (path, rel) in files {
            if filter.as_deref().is_some_and(|g| !glob::matches(g, &rel)) {
                continue;
            }
            if std::fs::metadata(&path).map_or(true, |m| m.len() > MAX_FILE_BYTES) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if bytes.iter().take(8192).any(|b| *b == 0) {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            for (i, line) in text.lines().enumerate() {
                if re.is_match(line) {
                    count += 1;
                    out.push_str(&format!("{}:{}:{line}\n", fs.display(&path), i + 1));
                    if count >= MAX_MATCHES || out.len() > cap {
                        break 'files;
                    }
                }
            }
        }
        if count == 0 {
            Ok("no matches".to_owned())
        } else {
            Ok(out)
        }
    })
    .await
    .map_err(|e| format!("grep failed: {e}"))?
}
