//! Configuration: the TOML file (every key optional, documented in `cambot.example.toml`),
//! environment overrides, and the resolved, validated [`Config`]. Each crate owns its section's
//! type (`[channels]`, `[scheduler]`, `[sandbox]`, `[providers.*]`); this file assembles them.
//!
//! Precedence, lowest to highest: built-in defaults, the config file, environment variables,
//! command-line flags.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use cambot_channels::ChannelsConfig;
use cambot_scheduler::SchedulerConfig;
use serde::Deserialize;

use crate::model_config::AgentSection;
use crate::model_config::LocalModelSection;
use crate::model_config::ModelSection;

/// Every environment variable cambot reads, in one place.
pub mod env {
    /// Path of the config file (same as `--config`).
    pub const CONFIG: &str = "CAMBOT_CONFIG";
    /// Where all state lives (same as `--data-dir`).
    pub const DATA_DIR: &str = "CAMBOT_DATA_DIR";
    /// Overrides `assistant_name`.
    pub const ASSISTANT_NAME: &str = "CAMBOT_ASSISTANT_NAME";
    /// Overrides `max_concurrent_runs`.
    pub const MAX_CONCURRENT_RUNS: &str = "CAMBOT_MAX_CONCURRENT_RUNS";
    /// Overrides `log.format` (`human` or `json`).
    pub const LOG_FORMAT: &str = "CAMBOT_LOG_FORMAT";
    /// Log filter (`info`, `cambot_agent=debug`, ...); overrides `log.level`.
    pub const LOG: &str = "CAMBOT_LOG";
    /// Overrides `timezone`.
    pub const TZ: &str = "TZ";
}

/// A bad configuration, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `cambot_agent=debug,info`. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// `[router]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Close a live run this long after its last reply (ms). Default 1 800 000 (30 min).
    pub idle_timeout_ms: u64,
    /// Most messages put into one prompt. Default 500.
    pub max_batch_messages: usize,
    /// Seconds between crash-recovery sweeps (0 = only at start). Default 60.
    pub recovery_sweep_secs: u64,
    /// Seconds between retries of undelivered replies. Default 5.
    pub delivery_retry_secs: u64,
    /// Seconds a shutdown lets live runs finish before killing them. Default 30.
    pub shutdown_grace_secs: u64,
    /// Deprecated and ignored: messages go straight into SQLite through the group-commit
    /// writer. Accepted so that an old config file still starts, with a warning.
    pub ingest_journal: Option<bool>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 1_800_000,
            max_batch_messages: 500,
            recovery_sweep_secs: 60,
            delivery_retry_secs: 5,
            shutdown_grace_secs: 30,
            ingest_journal: None,
        }
    }
}

/// The config file as written: everything optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub assistant_name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub timezone: Option<String>,
    pub max_concurrent_runs: Option<usize>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub router: RouterConfig,
    #[serde(default)]
    pub channels: ChannelsConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, cambot_providers::ProviderConfig>,
    #[serde(default)]
    pub local_model: LocalModelSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub sandbox: cambot_sandbox::SandboxConfig,
    #[serde(default)]
    pub documents: crate::documents::DocumentsConfig,
    /// `[tenants.<id>]`: per-tenant settings (fetch credentials).
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, crate::tenant_config::TenantSection>,
    #[serde(default)]
    pub uploads: crate::uploads::UploadsConfig,
}

impl ConfigFile {
    /// Parses the file's text (no defaults applied, no validation: see [`Config::resolve`]).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub assistant_name: String,
    pub data_dir: PathBuf,
    pub timezone: String,
    pub max_concurrent_runs: usize,
    pub log: LogConfig,
    pub router: RouterConfig,
    pub channels: ChannelsConfig,
    pub scheduler: SchedulerConfig,
    /// `[model]` as written; [`crate::model_config::resolve_model`] turns it (with
    /// `providers` and `local_model`) into upstreams when agents are started.
    pub model: ModelSection,
    pub providers: std::collections::BTreeMap<String, cambot_providers::ProviderConfig>,
    pub local_model: LocalModelSection,
    pub agent: AgentSection,
    /// `[sandbox]`: backend, limits, timeouts, uid for root-owned group folders.
    pub sandbox: cambot_sandbox::SandboxConfig,
    /// `[documents]`: limits of sandboxed document extraction.
    pub documents: crate::documents::DocumentsConfig,
    /// Each tenant's fetch credentials (`[[tenants.<id>.fetch_credentials]]`), checked.
    pub fetch_credentials: crate::tenant_config::TenantFetchCredentials,
    /// `[uploads]`: per-file and per-group limits of stored attachments.
    pub uploads: crate::uploads::UploadsConfig,
    /// The file this came from, if any.
    pub source: Option<PathBuf>,
    /// Where the vault's master key is (from `CAMBOT_MASTER_KEY_FILE`, systemd's credential,
    /// or the default file); `None` when no source applies (no `HOME`).
    pub master_key: Option<crate::vault::KeyLocation>,
    /// Keys that were accepted but should be changed (deprecated ones), one line each; the
    /// binary logs them once logging is set up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the config file (when given and present) and applies environment overrides through
    /// `env_lookup` (the process environment in production; a map in tests).
    pub fn load(
        path: Option<&Path>,
        data_dir_flag: Option<&Path>,
        env_lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => Some((p.to_owned(), read_file(p)?)),
            None => None,
        };
        let (source, raw) = match file {
            Some((p, raw)) => (Some(p), raw),
            None => (None, ConfigFile::default()),
        };
        Self::resolve(raw, source, data_dir_flag, env_lookup)
    }

    /// Applies defaults and overrides to a parsed file and validates the result.
    pub fn resolve(
        raw: ConfigFile,
        source: Option<PathBuf>,
        data_dir_flag: Option<&Path>,
        env_lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let assistant_name = env_lookup(env::ASSISTANT_NAME)
            .or(raw.assistant_name)
            .unwrap_or_else(|| "Andy".to_owned());
        if assistant_name.trim().is_empty()
            || assistant_name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "assistant_name",
                format!("{assistant_name:?} must be one word without spaces"),
            ));
        }
        let data_dir = data_dir_flag
            .map(Path::to_owned)
            .or_else(|| env_lookup(env::DATA_DIR).map(PathBuf::from))
            .or(raw.data_dir)
            .unwrap_or_else(|| default_data_dir(env_lookup));
        let timezone = env_lookup(env::TZ)
            .filter(|s| !s.is_empty())
            .or(raw.timezone)
            .unwrap_or_else(system_timezone);
        if timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(
                "timezone",
                format!("{timezone:?} is not an IANA zone name (like Europe/Paris or UTC)"),
            ));
        }
        let max_concurrent_runs = match env_lookup(env::MAX_CONCURRENT_RUNS) {
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                invalid(
                    env::MAX_CONCURRENT_RUNS,
                    format!("{v:?} is not a positive number"),
                )
            })?,
            None => raw.max_concurrent_runs.unwrap_or(5),
        };
        if max_concurrent_runs == 0 {
            return Err(invalid(
                "max_concurrent_runs",
                "must be at least 1".to_owned(),
            ));
        }
        let mut log = raw.log;
        if let Some(format) = env_lookup(env::LOG_FORMAT) {
            log.format = match format.as_str() {
                "json" => LogFormat::Json,
                "human" => LogFormat::Human,
                other => {
                    return Err(invalid(
                        env::LOG_FORMAT,
                        format!("{other:?}: use human or json"),
                    ));
                }
            };
        }
        if let Some(level) = env_lookup(env::LOG) {
            log.level = level;
        }
        if raw.router.max_batch_messages == 0 {
            return Err(invalid(
                "router.max_batch_messages",
                "must be at least 1".to_owned(),
            ));
        }
        raw.model.validate().map_err(|e| match e {
            crate::model_config::ModelConfigError::Invalid { key, message } => {
                ConfigError::Invalid { key, message }
            }
            other => invalid("model", other.to_string()),
        })?;
        if let Err((key, message)) = raw.agent.validate() {
            return Err(invalid(key, message));
        }
        crate::model_config::check_provider_keys(&raw.providers).map_err(|e| match e {
            crate::model_config::ModelConfigError::Invalid { key, message } => {
                ConfigError::Invalid { key, message }
            }
            other => invalid("providers", other.to_string()),
        })?;
        let fetch_credentials =
            crate::tenant_config::check_tenants(&raw.tenants, &raw.model.fetch_allow_hosts)
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        raw.channels
            .web
            .validate()
            .map_err(|m| invalid("channels.web", m))?;
        let mut warnings = raw.channels.web.warnings();
        if raw.router.ingest_journal.is_some() {
            warnings.push(
                "router.ingest_journal is deprecated and ignored: messages are stored straight \
                 into SQLite; remove the key"
                    .to_owned(),
            );
        }
        Ok(Self {
            warnings,
            assistant_name,
            data_dir,
            timezone,
            max_concurrent_runs,
            log,
            router: raw.router,
            channels: raw.channels,
            scheduler: raw.scheduler,
            model: raw.model,
            providers: raw.providers,
            local_model: raw.local_model,
            agent: raw.agent,
            sandbox: raw.sandbox,
            documents: raw.documents,
            fetch_credentials,
            uploads: raw.uploads,
            source,
            master_key: crate::vault::master_key::locate(
                env_lookup,
                nix::unistd::geteuid().as_raw(),
            )
            .ok(),
        })
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.router.idle_timeout_ms)
    }
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message,
    }
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    ConfigFile::from_toml(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// `/var/lib/cambot` for root, else `$XDG_DATA_HOME/cambot` or `~/.local/share/cambot`.
fn default_data_dir(env_lookup: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if nix_is_root() {
        return PathBuf::from("/var/lib/cambot");
    }
    if let Some(xdg) = env_lookup("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(xdg).join("cambot");
    }
    match env_lookup("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/cambot"),
        None => PathBuf::from("cambot-data"),
    }
}

fn nix_is_root() -> bool {
    // SAFETY-free: geteuid has no preconditions; read through std's metadata of /proc/self.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// The system's zone from `/etc/timezone` or the `/etc/localtime` link, else `UTC`.
fn system_timezone() -> String {
    if let Ok(s) = std::fs::read_to_string("/etc/timezone") {
        let s = s.trim();
        if s.parse::<chrono_tz::Tz>().is_ok() {
            return s.to_owned();
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let t = target.to_string_lossy();
        if let Some(idx) = t.find("zoneinfo/") {
            let zone = &t[idx + "zoneinfo/".len()..];
            if zone.parse::<chrono_tz::Tz>().is_ok() {
                return zone.to_owned();
            }
        }
    }
    "UTC".to_owned()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
