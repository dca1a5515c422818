//! The agent's tools. [`TOOLS`] is the one table: name, description, who may use it and its
//! JSON Schema. The model sees exactly these definitions (filtered by the run's
//! [`ToolPolicy`] and main-group status), and the dispatcher below is keyed by the same names.

mod bash;
mod document;
mod files;
pub mod glob;
pub mod host;
pub mod pages;
pub mod paths;

use cambot_protocol::RunLimits;
use cambot_protocol::ToolPolicy;
use cambot_providers::ToolDefinition;
use cambot_providers::ToolResult;
use cambot_providers::ToolUse;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use document::DocumentCache;
pub use host::HostClient;
pub use paths::Confinement;
pub use paths::PathError;

/// What a tool touches; decides which policies offer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads workspace files.
    Read,
    /// Writes workspace files.
    Write,
    /// Runs programs.
    Exec,
    /// A host tool every group has.
    Host,
    /// A host tool offered under the read-only policy too.
    HostReadonly,
    /// A host tool only the main group is offered.
    HostMain,
}

/// One tool: the single source of truth for its name, description and argument schema.
#[derive(Debug)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub access: Access,
    /// JSON Schema of the arguments (an object schema), as JSON text.
    pub schema: &'static str,
}

impl ToolSpec {
    pub fn offered(&self, policy: ToolPolicy, is_main: bool) -> bool {
        match policy {
            ToolPolicy::None => false,
            ToolPolicy::Readonly => matches!(self.access, Access::Read | Access::HostReadonly),
            ToolPolicy::Full => self.access != Access::HostMain || is_main,
        }
    }

    pub fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
            input_schema: serde_json::from_str(self.schema)
                .unwrap_or_else(|_| serde_json::json!({"type": "object"})),
        }
    }
}

/// Every tool the runner knows.
pub const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "bash",
        description: "Run a shell command with bash in /workspace/group. Output (stdout, then stderr) is capped; the command is killed with its whole process group when it exceeds the timeout. Background processes do not survive the call.",
        access: Access::Exec,
        schema: r#"{"type":"object","properties":{"command":{"type":"string","description":"The command line, run with bash -c"},"timeout_secs":{"type":"integer","minimum":1,"description":"Seconds before the command is killed (at most the run's limit)"}},"required":["command"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "read_file",
        description: "Read a text file under /workspace. Relative paths start at /workspace/group. Optionally a 1-based line range.",
        access: Access::Read,
        schema: r#"{"type":"object","properties":{"path":{"type":"string"},"offset":{"type":"integer","minimum":1,"description":"First line to return (1-based)"},"limit":{"type":"integer","minimum":1,"description":"Number of lines to return"}},"required":["path"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "read_document",
        description: "Read the text of a document under /workspace (uploads are in /workspace/uploads): PDF, DOCX, XLSX, PPTX, HTML, Markdown, CSV or plain text. Returns Markdown-ish text with '## Page N' / '## Sheet: name' / '## Slide N' markers and tables, a window at a time (default 20000 characters): the answer says which part it holds and the exact arguments for the next one. `page` selects one page (PDF), sheet (XLSX) or slide (PPTX), 1-based; `offset` skips characters of the selected text.",
        access: Access::Read,
        schema: r#"{"type":"object","properties":{"path":{"type":"string","description":"e.g. /workspace/uploads/<id>/file.pdf"},"page":{"type":"integer","minimum":1,"description":"1-based page, sheet or slide"},"offset":{"type":"integer","minimum":0,"description":"Characters to skip"},"max_chars":{"type":"integer","minimum":1,"maximum":50000,"description":"Characters to return (default 20000)"}},"required":["path"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "write_file",
        description: "Create or overwrite a file under /workspace/group (parent directories are created). /workspace/global is read-only.",
        access: Access::Write,
        schema: r#"{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "edit_file",
        description: "Replace exactly one occurrence of old_string with new_string in a file. Fails when old_string occurs zero times or more than once; include more context to make it unique.",
        access: Access::Write,
        schema: r#"{"type":"object","properties":{"path":{"type":"string"},"old_string":{"type":"string"},"new_string":{"type":"string"}},"required":["path","old_string","new_string"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "list_files",
        description: "List the entries of a directory under /workspace (default /workspace/group); directories end with '/'.",
        access: Access::Read,
        schema: r#"{"type":"object","properties":{"path":{"type":"string"}},"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "glob",
        description: "Find files whose path (relative to the search directory) matches a glob pattern: '*' and '?' within a name, '**' across directories, '[abc]' sets.",
        access: Access::Read,
        schema: r#"{"type":"object","properties":{"pattern":{"type":"string"},"path":{"type":"string","description":"Directory to search (default /workspace/group)"}},"required":["pattern"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "grep",
        description: "Search file contents with a regular expression (Rust regex syntax). Prints path:line:text for each match.",
        access: Access::Read,
        schema: r#"{"type":"object","properties":{"pattern":{"type":"string"},"path":{"type":"string","description":"File or directory to search (default /workspace/group)"},"glob":{"type":"string","description":"Only files whose relative path matches this glob"},"case_insensitive":{"type":"boolean"}},"required":["pattern"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "send_message",
        description: "Send a message to the chat right away, while you keep working. Without chat_jid it goes to the current chat.",
        access: Access::HostReadonly,
        schema: r#"{"type":"object","properties":{"text":{"type":"string"},"chat_jid":{"type":"string","description":"Another chat of this group (main group: any chat of the tenant)"}},"required":["text"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "schedule_task",
        description: "Schedule a prompt to run later as this group. schedule_type cron (a 5-field cron expression in the group's timezone), interval (milliseconds) or once (local date-time without offset, e.g. 2026-02-01T09:00:00). context_mode group reuses the group's conversation, isolated starts fresh.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{"prompt":{"type":"string"},"schedule_type":{"type":"string","enum":["cron","interval","once"]},"schedule_value":{"type":"string"},"context_mode":{"type":"string","enum":["group","isolated"]},"target_group_jid":{"type":"string","description":"Main group only: schedule for another group"}},"required":["prompt","schedule_type","schedule_value"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "list_tasks",
        description: "List the scheduled tasks this group may see.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{},"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "pause_task",
        description: "Pause a scheduled task.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{"task_id":{"type":"string"}},"required":["task_id"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "resume_task",
        description: "Resume a paused scheduled task.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{"task_id":{"type":"string"}},"required":["task_id"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "cancel_task",
        description: "Delete a scheduled task.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{"task_id":{"type":"string"}},"required":["task_id"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "run_workflow",
        description: "Start a run of one of the stored workflows (see list_workflows) with its inputs. Returns the run id at once; the run goes on in the background and its steps post their results themselves.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{"name":{"type":"string"},"inputs":{"type":"object","additionalProperties":{"type":"string"},"description":"Input name to value; inputs with a default may be left out"}},"required":["name"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "list_workflows",
        description: "List the workflows this group may run, with their inputs (and defaults) and the groups their steps run in.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{},"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "fetch",
        description: "HTTP GET a URL through the host; only hosts allowed by the host's policy can be reached. Returns status, content type and the (possibly truncated) body.",
        access: Access::Host,
        schema: r#"{"type":"object","properties":{"url":{"type":"string"}},"required":["url"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "register_group",
        description: "Main group only: register a chat as a group with its own folder and trigger.",
        access: Access::HostMain,
        schema: r#"{"type":"object","properties":{"jid":{"type":"string"},"name":{"type":"string"},"folder":{"type":"string","description":"Folder name: letters, digits, '-' and '_'"},"trigger":{"type":"string","description":"e.g. @Andy"},"requires_trigger":{"type":"boolean"}},"required":["jid","name","folder","trigger"],"additionalProperties":false}"#,
    },
    ToolSpec {
        name: "list_groups",
        description: "Main group only: list the known chats and which are registered.",
        access: Access::HostMain,
        schema: r#"{"type":"object","properties":{},"additionalProperties":false}"#,
    },
];

/// This binary (the extractor is its `extract` subcommand): where `/proc/self/exe` points,
/// else where the sandbox binds it.
pub fn extractor_path() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| {
        std::path::PathBuf::from(cambot_protocol::layout::sandbox_paths::RUNNER_BIN)
    })
}

/// Looks a tool up by name.
pub fn spec(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}

/// What tools run against.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub fs: Confinement,
    pub limits: RunLimits,
    pub host: HostClient,
    /// The `cambot-runner` binary that `read_document` runs as `extract` (this binary).
    pub extractor: std::path::PathBuf,
    /// The last document `read_document` extracted, for paging through it.
    pub documents: DocumentCache,
}

/// The tools of one run.
#[derive(Debug, Clone)]
pub struct Toolbox {
    ctx: ToolContext,
    enabled: Vec<&'static ToolSpec>,
}

/// A tool's answer before it becomes a [`ToolResult`].
pub(crate) type Outcome = Result<String, String>;

impl Toolbox {
    pub fn new(ctx: ToolContext, policy: ToolPolicy, is_main: bool) -> Self {
        let enabled = TOOLS
            .iter()
            .filter(|t| t.offered(policy, is_main))
            .collect();
        Self { ctx, enabled }
    }

    pub fn definitions(&self) -> Vec<ToolDefinition> {
        self.enabled.iter().map(|t| t.definition()).collect()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|t| t.name).collect()
    }

    pub fn context(&self) -> &ToolContext {
        &self.ctx
    }

    /// Runs one call. Never fails: every problem becomes an error result the model can read.
    pub async fn call(&self, call: &ToolUse) -> ToolResult {
        if let Some(bad) = call.invalid_input_result() {
            return bad;
        }
        let outcome = if !self.enabled.iter().any(|t| t.name == call.name) {
            Err(format!(
                "unknown tool {:?}; available: {}",
                call.name,
                self.names().join(", ")
            ))
        } else if !call.input.is_object() {
            Err(format!(
                "the arguments of {} must be a JSON object, got {}",
                call.name, call.input
            ))
        } else {
            self.dispatch(&call.name, &call.input).await
        };
        let cap = self.ctx.limits.tool_output_bytes;
        match outcome {
            Ok(text) => ToolResult::ok(&call.id, cap_text(text, cap)),
            Err(text) => ToolResult::error(&call.id, cap_text(text, cap)),
        }
    }

    async fn dispatch(&self, name: &str, input: &Value) -> Outcome {
        let ctx = &self.ctx;
        match name {
            "bash" => bash::run(ctx, args(name, input)?).await,
            "read_file" => files::read_file(ctx, args(name, input)?).await,
            "read_document" => document::read_document(ctx, args(name, input)?).await,
            "write_file" => files::write_file(ctx, args(name, input)?).await,
            "edit_file" => files::edit_file(ctx, args(name, input)?).await,
            "list_files" => files::list_files(ctx, args(name, input)?).await,
            "glob" => files::glob(ctx, args(name, input)?).await,
            "grep" => files::grep(ctx, args(name, input)?).await,
            other => host::call(&ctx.host, other, input).await,
        }
    }
}

/// Parses a call's arguments into the tool's argument type.
pub(crate) fn args<T: DeserializeOwned>(tool: &str, input: &Value) -> Result<T, String> {
    serde_json::from_value(input.clone()).map_err(|e| format!("invalid arguments for {tool}: {e}"))
}

/// Cuts `text` to at most `cap` bytes on a char boundary, saying so.
pub fn cap_text(mut text: String, cap: usize) -> String {
    if text.len() <= cap {
        return text;
    }
    let total = text.len();
    let mut cut = cap;
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "\n[output truncated: {total} bytes, first {cut} shown]"
    ));
    text
}

#[cfg(test)]
#[path = "tools_tests.rs"]
mod tests;
