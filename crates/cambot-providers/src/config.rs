//! A provider is data: one [`ProviderConfig`] per `[providers.<name>]` table in cambot's TOML.
//! Code differences between providers live behind [`Dialect`]; adding an OpenAI-compatible
//! server needs configuration only.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::error::ProviderError;

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Anthropic Messages (`POST {base}/v1/messages`, SSE with `event:` lines).
    Anthropic,
    /// OpenAI Chat Completions (`POST {base}/chat/completions`; base usually ends in `/v1`).
    /// Also every OpenAI-compatible server: vLLM, llama.cpp, xAI, OpenRouter, Ollama `/v1`.
    #[serde(rename = "openai")]
    OpenAi,
    /// Ollama native (`POST {base}/api/chat`, NDJSON).
    Ollama,
}

impl Dialect {
    pub const ALL: [Self; 3] = [Self::Anthropic, Self::OpenAi, Self::Ollama];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Ollama => "ollama",
        }
    }

    /// Where the public service lives when nothing else is configured.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Anthropic => "https://api.anthropic.com",
            Self::OpenAi => "https://api.openai.com/v1",
            Self::Ollama => "http://localhost:11434",
        }
    }

    /// How the key is sent when the config does not say.
    pub fn default_auth(self) -> AuthStyle {
        match self {
            Self::Anthropic => AuthStyle::XApiKey,
            Self::OpenAi => AuthStyle::Bearer,
            Self::Ollama => AuthStyle::None,
        }
    }

    /// The environment variable holding the key when the config does not say.
    pub fn default_api_key_env(self) -> Option<&'static str> {
        match self {
            Self::Anthropic => Some(env::ANTHROPIC_API_KEY),
            Self::OpenAi => Some(env::OPENAI_API_KEY),
            Self::Ollama => None,
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dialect {
    type Err = ProviderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "anthropic" => Ok(Self::Anthropic),
            "openai" => Ok(Self::OpenAi),
            "ollama" => Ok(Self::Ollama),
            other => Err(ProviderError::Config(format!(
                "unknown dialect {other:?} (expected anthropic, openai or ollama)"
            ))),
        }
    }
}

/// How the credential travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthStyle {
    /// `x-api-key: <key>` (Anthropic API keys).
    #[serde(rename = "x-api-key")]
    XApiKey,
    /// `Authorization: Bearer <key>` (OpenAI and compatibles, Anthropic OAuth tokens).
    #[serde(rename = "bearer")]
    Bearer,
    /// No credential (Ollama, local servers).
    #[serde(rename = "none")]
    None,
}

/// The ecosystem's environment variables, as documented constants.
pub mod env {
    pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
    pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
    pub const ANTHROPIC_MODEL: &str = "ANTHROPIC_MODEL";
    pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
    pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
    pub const OPENAI_MODEL: &str = "OPENAI_MODEL";
    pub const OLLAMA_HOST: &str = "OLLAMA_HOST";
    pub const OLLAMA_MODEL: &str = "OLLAMA_MODEL";
}

/// A provider entry's `api_key` as written: meant to be `secret:NAME`. Its `Debug` shows only
/// such a reference, so a key pasted here by mistake does not reach a log before it is refused.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyRef(String);

impl KeyRef {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.strip_prefix("secret:") {
            Some(name)
                if name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                write!(f, "{:?}", self.0)
            }
            _ => f.write_str("<not a secret:NAME reference; not shown>"),
        }
    }
}

/// Hard caps the getters clamp to, whatever the file says.
pub const MAX_RETRIES_CAP: u32 = 10;

/// One provider entry (`[providers.<name>]`). Every field but `dialect` has a default.
///
/// ```toml
/// [providers.claude]
/// dialect = "anthropic"
/// model = "claude-sonnet-4-5"
///
/// [providers.local]
/// dialect = "openai"
/// base_url = "http://127.0.0.1:8081/v1"
/// auth = "none"
/// model = "smollm2"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The entry's name, used in `/v1/model/<name>/...`; the config loader usually fills it
    /// from the table key. Default: the dialect's name.
    #[serde(default)]
    pub name: String,
    pub dialect: Dialect,
    /// `http(s)://host[:port][/prefix]`. Default: the env var of the dialect
    /// (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`, `OLLAMA_HOST`), then
    /// [`Dialect::default_base_url`]. For `openai` the base includes `/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Default: [`Dialect::default_auth`].
    #[serde(default)]
    pub auth: Option<AuthStyle>,
    /// Environment variable holding the key. Default: [`Dialect::default_api_key_env`].
    /// Serves the `default` tenant only (the host's legacy key).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `secret:NAME`: the name of the secret each tenant's vault holds the key under. Default:
    /// the entry's name. A literal key is refused by the host's config check.
    #[serde(default)]
    pub api_key: Option<KeyRef>,
    /// Model name sent upstream. Default: `ANTHROPIC_MODEL` / `OPENAI_MODEL` / `OLLAMA_MODEL`.
    #[serde(default)]
    pub model: Option<String>,
    /// Output token limit when the request does not set one. Default 4096.
    #[serde(default = "defaults::max_tokens")]
    pub max_tokens: u32,
    /// Retries after the first attempt (capped at [`MAX_RETRIES_CAP`]). Default 2.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// Base backoff in ms, doubled per retry. Default 500.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest backoff in ms. Default 8000.
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Connect timeout in ms. Default 10000.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest silence (no byte) while waiting for the response head or the next chunk of the
    /// body, in ms. Default 300000.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Ollama `options.num_ctx`, always sent (Ollama's default silently truncates).
    /// Default 8192.
    #[serde(default = "defaults::num_ctx")]
    pub num_ctx: u32,
    /// Extra request headers (`anthropic-beta`, `OpenAI-Organization`…).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

mod defaults {
    pub(super) fn max_tokens() -> u32 {
        4096
    }
    pub(super) fn max_retries() -> u32 {
        2
    }
    pub(super) fn initial_backoff_ms() -> u64 {
        500
    }
    pub(super) fn max_backoff_ms() -> u64 {
        8_000
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn idle_timeout_ms() -> u64 {
        300_000
    }
    pub(super) fn num_ctx() -> u32 {
        8192
    }
}

impl ProviderConfig {
    /// An entry with every default.
    pub fn new(name: impl Into<String>, dialect: Dialect) -> Self {
        Self {
            name: name.into(),
            dialect,
            base_url: None,
            auth: None,
            api_key_env: None,
            api_key: None,
            model: None,
            max_tokens: defaults::max_tokens(),
            max_retries: defaults::max_retries(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            idle_timeout_ms: defaults::idle_timeout_ms(),
            num_ctx: defaults::num_ctx(),
            headers: BTreeMap::new(),
        }
    }

    /// The entry a run inside the sandbox uses for its [`cambot_protocol::ModelChoice`]: name,
    /// dialect, model and max tokens from the choice, defaults for the rest (the gateway owns
    /// the upstream address and the key).
    pub fn for_model_choice(choice: &cambot_protocol::ModelChoice) -> Result<Self, ProviderError> {
        let dialect: Dialect = choice.dialect.parse()?;
        let mut config = Self::new(choice.provider.clone(), dialect);
        config.model = Some(choice.model.clone());
        config.max_tokens = choice.max_tokens;
        config.auth = Some(AuthStyle::None);
        config.validate()?;
        Ok(config)
    }

    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Fills what the file left unset from the ecosystem's environment variables (read
    /// through `lookup`, never from the process directly): `ANTHROPIC_BASE_URL`,
    /// `ANTHROPIC_MODEL`, `OPENAI_BASE_URL`, `OPENAI_MODEL`, `OLLAMA_HOST`, `OLLAMA_MODEL`.
    /// Keys are not copied: [`ProviderConfig::api_key`] reads them when needed.
    pub fn with_env_defaults(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let (url_var, model_var) = match self.dialect {
            Dialect::Anthropic => (env::ANTHROPIC_BASE_URL, env::ANTHROPIC_MODEL),
            Dialect::OpenAi => (env::OPENAI_BASE_URL, env::OPENAI_MODEL),
            Dialect::Ollama => (env::OLLAMA_HOST, env::OLLAMA_MODEL),
        };
        if self.base_url.is_none() {
            self.base_url = get(url_var).map(|v| match self.dialect {
                Dialect::Ollama => normalise_ollama_host(&v),
                _ => v.trim().to_owned(),
            });
        }
        if self.model.is_none() {
            self.model = get(model_var);
        }
        if self.name.is_empty() {
            self.name = self.dialect.as_str().to_owned();
        }
        self
    }

    /// The base URL in force.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or_else(|| self.dialect.default_base_url())
    }

    pub fn auth_style(&self) -> AuthStyle {
        self.auth.unwrap_or_else(|| self.dialect.default_auth())
    }

    /// The variable the key is read from, if this entry uses one.
    pub fn api_key_env(&self) -> Option<&str> {
        match self.auth_style() {
            AuthStyle::None => None,
            _ => self
                .api_key_env
                .as_deref()
                .or_else(|| self.dialect.default_api_key_env()),
        }
    }

    /// The key, read through `lookup` from [`ProviderConfig::api_key_env`].
    pub fn api_key(&self, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
        self.api_key_env()
            .and_then(lookup)
            .filter(|k| !k.trim().is_empty())
    }

    pub fn max_retries(&self) -> u32 {
        self.max_retries.min(MAX_RETRIES_CAP)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1))
    }

    /// Checks what a typo would otherwise turn into a confusing runtime failure.
    pub fn validate(&self) -> Result<(), ProviderError> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return Err(ProviderError::Config(format!(
                "provider name {:?} must be non-empty ASCII letters, digits, '-', '_' or '.'",
                self.name
            )));
        }
        let url = self.base_url();
        if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("unix:"))
        {
            return Err(ProviderError::Config(format!(
                "provider {}: base_url {url:?} must start with http://, https:// or unix:",
                self.name
            )));
        }
        for (k, v) in &self.headers {
            if http::HeaderName::try_from(k.as_str()).is_err()
                || http::HeaderValue::try_from(v.as_str()).is_err()
            {
                return Err(ProviderError::Config(format!(
                    "provider {}: invalid header {k:?}",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

/// `OLLAMA_HOST` may be `host`, `host:port` or a URL; Ollama's own client adds `http://` and
/// port 11434 when missing.
fn normalise_ollama_host(value: &str) -> String {
    let value = value.trim().trim_end_matches('/');
    let (scheme, rest) = match value.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("http", value),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let has_port = match hostport.rfind(':') {
        Some(i) => hostport[i + 1..].parse::<u16>().is_ok(),
        None => false,
    };
    let host = if hostport.is_empty() {
        "localhost"
    } else {
        hostport
    };
    if has_port {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}:11434{path}")
    }
}

/// The provider to use when the config file names none: the first of Anthropic
/// (`ANTHROPIC_API_KEY`), OpenAI (`OPENAI_API_KEY`) and Ollama (`OLLAMA_HOST`) whose variable
/// is set, with the other variables applied. `None` means: use the embedded local model.
pub fn provider_from_env(lookup: impl Fn(&str) -> Option<String>) -> Option<ProviderConfig> {
    let set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
    let dialect = if set(env::ANTHROPIC_API_KEY) {
        Dialect::Anthropic
    } else if set(env::OPENAI_API_KEY) {
        Dialect::OpenAi
    } else if set(env::OLLAMA_HOST) {
        Dialect::Ollama
    } else {
        return None;
    };
    Some(ProviderConfig::new(dialect.as_str(), dialect).with_env_defaults(lookup))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
