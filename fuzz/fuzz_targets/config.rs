//! The config loader: the TOML text (`ConfigFile::from_toml`, what `Config::load` reads), then
//! `Config::resolve` (defaults, environment overrides, validation) and `resolve_model` (the
//! `[model]`, `[providers.*]` and `[local_model]` sections), as the daemon does at start.
//!
//! Input: the file's text, optionally followed by a NUL byte and `KEY=value` lines that stand
//! for the environment (TZ, CAMBOT_*, ANTHROPIC_API_KEY, OLLAMA_HOST, ...).
//!
//! Properties: a resolved config holds what validation promises (a one-word assistant name, an
//! IANA zone, at least one run, at least one message per batch, the data dir flag wins); the
//! chosen provider has an upstream; an air-gapped model setup has only local upstreams.

#![no_main]

use std::collections::HashMap;
use std::path::Path;

use cambot_agent::config::Config;
use cambot_agent::config::ConfigFile;
use cambot_agent::model_config::resolve_model;
use cambot_gateway::is_local_url;
use libfuzzer_sys::fuzz_target;

const DATA_DIR: &str = "/nonexistent/cambot-fuzz-data";

fuzz_target!(|data: &[u8]| {
    let (text, env_text) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env: HashMap<String, String> = String::from_utf8_lossy(env_text)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // HOME points nowhere, so the local-model lookup never finds files of this machine.
    let lookup = |k: &str| match k {
        "HOME" => Some("/nonexistent/home".to_owned()),
        _ => env.get(k).cloned(),
    };
    let Ok(raw) = ConfigFile::from_toml(text) else {
        return;
    };
    let Ok(config) = Config::resolve(raw, None, Some(Path::new(DATA_DIR)), &lookup) else {
        return;
    };
    let name = &config.assistant_name;
    assert!(!name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control()));
    assert!(config.timezone.parse::<chrono_tz::Tz>().is_ok());
    assert!(config.max_concurrent_runs >= 1);
    assert!(config.router.max_batch_messages >= 1);
    assert_eq!(config.data_dir, Path::new(DATA_DIR));
    let _ = config.idle_timeout();
    let _ = config.scheduler.settings();
    let _ = config.sandbox.idle_timeout();
    let _ = config.agent.limits();

    let _ = config.model.gateway_policy();
    if let Ok(model) = resolve_model(
        &config.model,
        &config.providers,
        &config.local_model,
        &config.data_dir,
        &lookup,
    ) {
        assert!(
            model
                .upstreams
                .iter()
                .any(|u| u.name == model.choice.provider),
            "the chosen provider has no upstream"
        );
        if config.model.air_gapped {
            assert!(model.upstreams.iter().all(|u| is_local_url(&u.base_url)));
        }
    }
});
