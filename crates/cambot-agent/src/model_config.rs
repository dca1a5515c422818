//! Which model agents talk to, and the stop rules of a run: the `[model]`, `[providers.<name>]`,
//! `[local_model]` and `[agent]` sections, resolved into what the gateway and the runner need.
//!
//! Resolution order for the provider: `[model] provider` names a `[providers.<name>]` entry;
//! else a single `[providers.*]` entry is used; else the ecosystem's variables
//! (`ANTHROPIC_API_KEY`, then `OPENAI_API_KEY`, then `OLLAMA_HOST`); else the embedded local
//! model (llama-server + SmolLM2, in its own sandbox, reached over a Unix socket). Keys are read
//! from the environment by the host only and handed to the gateway as a [`Secret`]: they never
//! reach a sandbox.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::ModelChoice;
use cambot_protocol::RunLimits;
use cambot_protocol::ToolPolicy;
use cambot_providers::Dialect;
use cambot_providers::ProviderConfig;
use serde::Deserialize;

use cambot_gateway::FetchAllow;
use cambot_gateway::FetchPolicy;
use cambot_gateway::GatewayPolicy;
use cambot_gateway::ModelCredential;
use cambot_gateway::ModelUpstream;
use cambot_gateway::RunBudget;
use cambot_gateway::Secret;

use crate::reply_caps::ReplyCaps;
use cambot_gateway::is_local_url;

/// A model setting that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
    /// A provider entry its crate refuses.
    #[error("invalid setting {key}: {source}")]
    Provider {
        key: String,
        #[source]
        source: cambot_providers::ProviderError,
    },
    /// The built-in model manifest has no usable default model.
    #[error("invalid setting local_model: {0}")]
    Manifest(#[source] cambot_providers::models::ModelError),
}

/// Name of the provider entry the embedded local model gets.
pub const LOCAL_PROVIDER: &str = "local";

/// Environment variables naming the local model's files (set by `scripts/setup/local-model.sh`).
pub mod env {
    pub const LLAMA_SERVER: &str = "CAMBOT_LLAMA_SERVER";
    pub const MODEL_FILE: &str = "CAMBOT_SMOLLM2_GGUF";
    pub const CHAT_TEMPLATE: &str = "CAMBOT_CHAT_TEMPLATE";
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Name of the `[providers.<name>]` entry agents use. Default: see the module docs.
    pub provider: Option<String>,
    /// Refuse every non-local upstream at start, every non-local connection of the gateway,
    /// and the agent's fetch tool. Model files are verified before a model server loads them.
    pub air_gapped: bool,
    /// What the agent's fetch tool may reach: `host` (https on 443), `host:port` (https) or
    /// `scheme://host:port`, parsed when the config is read. A name entry reaches only public
    /// addresses; an entry naming an address literally opts in exactly that address and port.
    /// Default: none (fetch refused).
    pub fetch_allow_hosts: Vec<FetchAllow>,
    /// Largest fetched body handed to the agent, in bytes (1 B to 8 MiB). Default 2 MiB.
    pub fetch_max_bytes: usize,
    /// Deadline of one whole fetch (resolution, connections, redirects, body). Default 20 s.
    pub fetch_timeout_secs: u64,
}

/// Upper bound of `fetch_max_bytes`: the JSON answer to the runner stays under its own cap.
const MAX_FETCH_BYTES: usize = 8 * 1024 * 1024;

impl Default for ModelSection {
    fn default() -> Self {
        let fetch = FetchPolicy::default();
        Self {
            provider: None,
            air_gapped: false,
            fetch_allow_hosts: Vec::new(),
            fetch_max_bytes: fetch.max_bytes,
            fetch_timeout_secs: fetch.timeout.as_secs(),
        }
    }
}

impl ModelSection {
    /// The fetch limits are usable (the allowlist entries were checked when read).
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        if !(1..=MAX_FETCH_BYTES).contains(&self.fetch_max_bytes) {
            return Err(invalid(
                "model.fetch_max_bytes",
                format!("{} is outside 1..={MAX_FETCH_BYTES}", self.fetch_max_bytes),
            ));
        }
        if !(1..=600).contains(&self.fetch_timeout_secs) {
            return Err(invalid(
                "model.fetch_timeout_secs",
                format!("{} is outside 1..=600", self.fetch_timeout_secs),
            ));
        }
        Ok(())
    }

    /// The gateway's policy for this section: air-gapped mode also refuses every fetch.
    pub fn gateway_policy(&self) -> GatewayPolicy {
        GatewayPolicy {
            air_gapped: self.air_gapped,
            fetch: FetchPolicy {
                allow: if self.air_gapped {
                    Vec::new()
                } else {
                    self.fetch_allow_hosts.clone()
                },
                max_bytes: self.fetch_max_bytes,
                timeout: std::time::Duration::from_secs(self.fetch_timeout_secs),
            },
            ..GatewayPolicy::standard()
        }
    }
}

/// `[local_model]`: the embedded default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalModelSection {
    /// The `llama-server` binary. Default: `CAMBOT_LLAMA_SERVER`, then the setup script's cache.
    pub llama_server: Option<PathBuf>,
    /// The GGUF model file. Default: `CAMBOT_SMOLLM2_GGUF`, then the setup script's cache.
    pub model_file: Option<PathBuf>,
    /// A Jinja chat template with tool support. Default: `CAMBOT_CHAT_TEMPLATE`, then the cache.
    pub chat_template: Option<PathBuf>,
    /// Context size in tokens. Default 4096.
    pub context_tokens: u32,
    /// Threads. Default 2.
    pub threads: u32,
}

impl Default for LocalModelSection {
    fn default() -> Self {
        Self {
            llama_server: None,
            model_file: None,
            chat_template: None,
            context_tokens: 4096,
            threads: 2,
        }
    }
}

/// `[agent]`: stop rules of every run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// `full` (default), `readonly` or `none`.
    pub tools: ToolPolicy,
    pub max_iterations: u32,
    pub token_budget: u64,
    pub wall_clock_secs: u64,
    pub bash_timeout_secs: u64,
    pub tool_output_bytes: usize,
    pub compact_after_tokens: u64,
    /// Most `result` replies one run may send in any minute (host-enforced).
    pub max_replies_per_minute: u32,
    /// Most bytes of `result` replies one run may send in any minute (host-enforced).
    pub max_reply_bytes_per_minute: usize,
    /// Model requests one run may send, enforced by the gateway whatever the runner does.
    /// Default: 4 × `max_iterations` (a run may answer several turns).
    pub run_model_requests: Option<u32>,
    /// Tokens one run may use, counted by the gateway from the upstream's usage reports.
    /// Default: 4 × `token_budget`.
    pub run_token_budget: Option<u64>,
    /// Seconds after a run starts past which the gateway refuses its model calls.
    /// Default: `wall_clock_secs`.
    pub run_wall_clock_secs: Option<u64>,
}

impl Default for AgentSection {
    fn default() -> Self {
        let limits = RunLimits::default();
        Self {
            tools: ToolPolicy::Full,
            max_iterations: limits.max_iterations,
            token_budget: limits.token_budget,
            wall_clock_secs: limits.wall_clock_secs,
            bash_timeout_secs: limits.bash_timeout_secs,
            tool_output_bytes: limits.tool_output_bytes,
            compact_after_tokens: limits.compact_after_tokens,
            max_replies_per_minute: ReplyCaps::default().per_minute,
            max_reply_bytes_per_minute: ReplyCaps::default().bytes_per_minute,
            run_model_requests: None,
            run_token_budget: None,
            run_wall_clock_secs: None,
        }
    }
}

impl AgentSection {
    pub fn reply_caps(&self) -> ReplyCaps {
        ReplyCaps {
            per_minute: self.max_replies_per_minute,
            bytes_per_minute: self.max_reply_bytes_per_minute,
        }
    }

    /// The budget the gateway enforces on every run; see the `run_*` keys.
    pub fn run_budget(&self) -> RunBudget {
        RunBudget {
            model_requests: self
                .run_model_requests
                .unwrap_or_else(|| self.max_iterations.saturating_mul(4)),
            tokens: self
                .run_token_budget
                .unwrap_or_else(|| self.token_budget.saturating_mul(4)),
            wall_clock: std::time::Duration::from_secs(
                self.run_wall_clock_secs.unwrap_or(self.wall_clock_secs),
            ),
        }
    }

    /// Refuses a run budget that would stop every run before its first model call: the key
    /// and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let budget = self.run_budget();
        for (key, zero) in [
            ("agent.run_model_requests", budget.model_requests == 0),
            ("agent.run_token_budget", budget.tokens == 0),
            ("agent.run_wall_clock_secs", budget.wall_clock.is_zero()),
        ] {
            if zero {
                return Err((
                    key,
                    "must be at least 1 (the gateway enforces it per run)".to_owned(),
                ));
            }
        }
        Ok(())
    }

    pub fn limits(&self) -> RunLimits {
        RunLimits {
            max_iterations: self.max_iterations,
            token_budget: self.token_budget,
            wall_clock_secs: self.wall_clock_secs,
            bash_timeout_secs: self.bash_timeout_secs,
            tool_output_bytes: self.tool_output_bytes,
            compact_after_tokens: self.compact_after_tokens,
        }
    }
}

/// The local model server to start (files checked to exist at resolution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelSpec {
    pub llama_server: PathBuf,
    pub model_file: PathBuf,
    pub chat_template: Option<PathBuf>,
    pub context_tokens: u32,
    pub threads: u32,
    /// Where the server listens, on the host (a Unix socket in the data dir).
    pub socket: PathBuf,
}

/// The resolved model setup.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// What a run is told to use when its tenant chose no provider.
    pub choice: ModelChoice,
    /// What a run is told to use per provider a tenant may choose: every `[providers.*]`
    /// entry that names a model, and [`LOCAL_PROVIDER`] when the embedded model is installed.
    pub choices: BTreeMap<String, ModelChoice>,
    /// Every upstream the gateway may forward to: one per entry of `choices` (and per entry
    /// without a model), whichever is the global choice.
    pub upstreams: Vec<ModelUpstream>,
    /// The embedded local model, when it is the global choice or installed (a tenant may
    /// choose it).
    pub local: Option<LocalModelSpec>,
}

impl ResolvedModel {
    /// Whether the global choice is the embedded local model (started with the daemon).
    pub fn uses_local(&self) -> bool {
        self.choice.provider == LOCAL_PROVIDER
    }
}

/// Resolves the model sections. `data_dir` places the local model's socket; `cache_dir` is
/// where `scripts/setup/local-model.sh` caches its build (`~/.cache/cambot`).
pub fn resolve_model(
    model: &ModelSection,
    providers: &BTreeMap<String, ProviderConfig>,
    local: &LocalModelSection,
    data_dir: &Path,
    env_lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedModel, ModelConfigError> {
    let mut entries: Vec<ProviderConfig> = Vec::new();
    for (name, entry) in providers {
        provider_secret_name(name, entry)?;
        let mut entry = entry.clone();
        entry.name = name.clone();
        let entry = entry.with_env_defaults(env_lookup);
        entry
            .validate()
            .map_err(|source| ModelConfigError::Provider {
                key: format!("providers.{name}"),
                source,
            })?;
        entries.push(entry);
    }
    let chosen = match &model.provider {
        Some(name) => Some(
            entries
                .iter()
                .find(|e| &e.name == name)
                .cloned()
                .ok_or_else(|| {
                    invalid(
                        "model.provider",
                        format!("{name:?} names no [providers.{name}] entry"),
                    )
                })?,
        ),
        None if entries.len() == 1 => entries.first().cloned(),
        None if entries.len() > 1 => {
            return Err(invalid(
                "model.provider",
                format!(
                    "{} providers are configured ({}); say which one agents use",
                    entries.len(),
                    entries
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        None => cambot_providers::provider_from_env(env_lookup).inspect(|e| {
            entries.push(e.clone());
        }),
    };

    let mut upstreams: Vec<ModelUpstream> = entries
        .iter()
        .map(|e| ModelUpstream {
            name: e.name.clone(),
            dialect: e.dialect.as_str().to_owned(),
            base_url: e.base_url().to_owned(),
            // Every tenant's key is the vault's secret `api_key` names (default: the entry's
            // name); the environment's key serves the default tenant only.
            credential: (e.auth_style() != cambot_providers::AuthStyle::None).then(|| {
                ModelCredential::with_legacy(
                    provider_secret_name(&e.name, e).unwrap_or_else(|_| e.name.clone()),
                    e.api_key(env_lookup).map(Secret::new),
                )
            }),
        })
        .collect();
    let mut choices: BTreeMap<String, ModelChoice> = entries
        .iter()
        .filter_map(|e| Some((e.name.clone(), entry_choice(e, e.model.clone()?))))
        .collect();

    let choice = match &chosen {
        Some(entry) => choices.get(&entry.name).cloned().ok_or_else(|| {
            invalid(
                &format!("providers.{}.model", entry.name),
                format!(
                    "no model named (set it in the file or {})",
                    model_env_var(entry.dialect)
                ),
            )
        })?,
        None => local_choice(),
    };
    // The embedded model is the fallback, and a choice for tenants when it is installed (an
    // entry named `local` takes its name).
    let local_spec = match chosen {
        None => Some(local_model_spec(local, data_dir, env_lookup)?),
        Some(_) if choices.contains_key(LOCAL_PROVIDER) => None,
        Some(_) => local_model_spec(local, data_dir, env_lookup).ok(),
    };
    if let Some(spec) = &local_spec {
        upstreams.push(ModelUpstream {
            name: LOCAL_PROVIDER.to_owned(),
            dialect: Dialect::OpenAi.as_str().to_owned(),
            base_url: format!("unix:{}", spec.socket.display()),
            credential: None,
        });
        choices.insert(LOCAL_PROVIDER.to_owned(), local_choice());
    }

    if model.air_gapped
        && let Some(bad) = upstreams.iter().find(|u| !is_local_url(&u.base_url))
    {
        return Err(invalid(
            "model.air_gapped",
            format!(
                "air-gapped mode refuses provider {}: its upstream {} is not a local address",
                bad.name, bad.base_url
            ),
        ));
    }
    Ok(ResolvedModel {
        choice,
        choices,
        upstreams,
        local: local_spec,
    })
}

/// The vault secret each tenant holds `entry`'s key under: the `NAME` of its
/// `api_key = "secret:NAME"`, else the entry's name. A literal key is refused (without quoting
/// it): keys live in the vault, per tenant.
pub fn provider_secret_name(
    name: &str,
    entry: &ProviderConfig,
) -> Result<String, ModelConfigError> {
    let Some(written) = &entry.api_key else {
        return Ok(name.to_owned());
    };
    cambot_gateway::parse_secret_ref(written.as_str())
        .map(str::to_owned)
        .map_err(|e| {
            invalid(
                &format!("providers.{name}.api_key"),
                format!(
                    "{e}. A key is not written in the config file: store it in the vault with \
                     `cambot secrets set --tenant <TENANT> NAME` (value on stdin) and write \
                     api_key = \"secret:NAME\""
                ),
            )
        })
}

/// Checks every `[providers.<name>] api_key` (see [`provider_secret_name`]).
pub fn check_provider_keys(
    providers: &BTreeMap<String, ProviderConfig>,
) -> Result<(), ModelConfigError> {
    for (name, entry) in providers {
        provider_secret_name(name, entry)?;
    }
    Ok(())
}

fn entry_choice(entry: &ProviderConfig, model: String) -> ModelChoice {
    ModelChoice {
        provider: entry.name.clone(),
        dialect: entry.dialect.as_str().to_owned(),
        model,
        max_tokens: entry.max_tokens,
    }
}

fn local_choice() -> ModelChoice {
    ModelChoice {
        provider: LOCAL_PROVIDER.to_owned(),
        dialect: Dialect::OpenAi.as_str().to_owned(),
        model: "smollm2".to_owned(),
        max_tokens: 512,
    }
}

fn model_env_var(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Anthropic => cambot_providers::config::env::ANTHROPIC_MODEL,
        Dialect::OpenAi => cambot_providers::config::env::OPENAI_MODEL,
        Dialect::Ollama => cambot_providers::config::env::OLLAMA_MODEL,
    }
}

/// The cache directory `scripts/setup/local-model.sh` fills, keyed by the pinned versions.
fn setup_cache_dir(env_lookup: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let root = env_lookup("CAMBOT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| env_lookup("HOME").map(|h| PathBuf::from(h).join(".cache/cambot")))?;
    Some(cambot_providers::models::builtin_dir(&root))
}

fn local_model_spec(
    local: &LocalModelSection,
    data_dir: &Path,
    env_lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<LocalModelSpec, ModelConfigError> {
    let cache = setup_cache_dir(env_lookup);
    // File names come from the pinned manifest, the same one the server is verified against.
    let manifest = cambot_providers::models::Manifest::builtin();
    let default_model = manifest
        .default_model()
        .map_err(ModelConfigError::Manifest)?;
    let cached_name = |file: Option<&cambot_providers::models::PinnedFile>| {
        file.map(|f| f.file_name.clone()).unwrap_or_default()
    };
    let weights_name = cached_name(default_model.weights());
    let template_name = cached_name(default_model.chat_template());
    let pick = |configured: &Option<PathBuf>, var: &str, cached: &str| -> Option<PathBuf> {
        configured
            .clone()
            .or_else(|| env_lookup(var).filter(|v| !v.is_empty()).map(PathBuf::from))
            .or_else(|| cache.as_ref().map(|c| c.join(cached)))
    };
    let hint = "no provider key is configured, so cambot uses its embedded local model; \
                build it with scripts/setup/local-model.sh (or set [providers.*] / ANTHROPIC_API_KEY)";
    let llama_server = pick(&local.llama_server, env::LLAMA_SERVER, "bin/llama-server")
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            invalid(
                "local_model.llama_server",
                format!("llama-server not found: {hint}"),
            )
        })?;
    let model_file = pick(&local.model_file, env::MODEL_FILE, &weights_name)
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            invalid(
                "local_model.model_file",
                format!("model file not found: {hint}"),
            )
        })?;
    let chat_template =
        pick(&local.chat_template, env::CHAT_TEMPLATE, &template_name).filter(|p| p.is_file());
    Ok(LocalModelSpec {
        llama_server,
        model_file,
        chat_template,
        context_tokens: local.context_tokens.max(512),
        threads: local.threads.max(1),
        socket: data_dir.join("models").join("local.sock"),
    })
}

fn invalid(key: &str, message: String) -> ModelConfigError {
    ModelConfigError::Invalid {
        key: key.to_owned(),
        message,
    }
}

#[cfg(test)]
#[path = "model_config_tests.rs"]
mod tests;
