use std::collections::HashMap;

use pretty_assertions::assert_eq;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn from_toml(text: &str) -> Result<ProviderConfig, toml::de::Error> {
    toml::from_str(text)
}

#[test]
fn no_variables_means_the_embedded_local_model() {
    assert_eq!(provider_from_env(env(&[])), None);
    assert_eq!(provider_from_env(env(&[("ANTHROPIC_API_KEY", "  ")])), None);
    assert_eq!(provider_from_env(env(&[("ANTHROPIC_MODEL", "x")])), None);
}

#[test]
fn anthropic_variables_configure_the_anthropic_provider() {
    let lookup = env(&[
        ("ANTHROPIC_API_KEY", "sk-ant"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/"),
        ("ANTHROPIC_MODEL", "claude-sonnet-4-5"),
        ("OPENAI_API_KEY", "sk-oai"),
        ("OPENAI_BASE_URL", "http://elsewhere/v1"),
    ]);
    let c = provider_from_env(&lookup).expect("anthropic");
    assert_eq!(c.name, "anthropic");
    assert_eq!(c.dialect, Dialect::Anthropic);
    assert_eq!(c.base_url(), "http://127.0.0.1:9/");
    assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(c.auth_style(), AuthStyle::XApiKey);
    assert_eq!(c.api_key_env(), Some("ANTHROPIC_API_KEY"));
    assert_eq!(c.api_key(&lookup).as_deref(), Some("sk-ant"));
    assert!(c.validate().is_ok());
}

#[test]
fn openai_variables_apply_when_no_anthropic_key() {
    let lookup = env(&[
        ("OPENAI_API_KEY", "sk-oai"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:8081/v1"),
        ("OPENAI_MODEL", "gpt-4.1"),
        ("ANTHROPIC_BASE_URL", "http://ignored"),
    ]);
    let c = provider_from_env(&lookup).expect("openai");
    assert_eq!(c.dialect, Dialect::OpenAi);
    assert_eq!(c.base_url(), "http://127.0.0.1:8081/v1");
    assert_eq!(c.model.as_deref(), Some("gpt-4.1"));
    assert_eq!(c.auth_style(), AuthStyle::Bearer);
    assert_eq!(c.api_key(&lookup).as_deref(), Some("sk-oai"));
    // Without a base URL: the public endpoint.
    let c = provider_from_env(env(&[("OPENAI_API_KEY", "k")])).expect("openai");
    assert_eq!(c.base_url(), "https://api.openai.com/v1");
}

#[test]
fn ollama_host_is_normalised_like_ollamas_own_client() {
    for (value, want) in [
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://gpu-box", "http://gpu-box:11434"),
        (
            "https://ollama.internal:443/",
            "https://ollama.internal:443",
        ),
        ("0.0.0.0:11434", "http://0.0.0.0:11434"),
        ("http://h:1/prefix", "http://h:1/prefix"),
    ] {
        let c = provider_from_env(env(&[("OLLAMA_HOST", value)])).expect("ollama");
        assert_eq!(c.dialect, Dialect::Ollama);
        assert_eq!(c.base_url(), want, "{value}");
        assert_eq!(c.auth_style(), AuthStyle::None);
        assert_eq!(c.api_key_env(), None);
    }
}

#[test]
fn the_config_file_wins_over_the_environment() -> Result<(), toml::de::Error> {
    let lookup = env(&[
        ("ANTHROPIC_BASE_URL", "http://from-env"),
        ("ANTHROPIC_MODEL", "env-model"),
        ("OPENAI_BASE_URL", "http://from-env/v1"),
        ("OLLAMA_HOST", "env-host"),
    ]);
    let c = from_toml(
        r#"
        dialect = "anthropic"
        base_url = "http://from-file"
        model = "file-model"
        "#,
    )?
    .with_env_defaults(&lookup);
    assert_eq!(c.base_url(), "http://from-file");
    assert_eq!(c.model.as_deref(), Some("file-model"));
    assert_eq!(c.name, "anthropic");
    // Unset fields are filled from the environment.
    let c = from_toml("dialect = \"anthropic\"")?.with_env_defaults(&lookup);
    assert_eq!(c.base_url(), "http://from-env");
    assert_eq!(c.model.as_deref(), Some("env-model"));
    let c =
        from_toml("dialect = \"ollama\"\nbase_url = \"http://file:1\"")?.with_env_defaults(&lookup);
    assert_eq!(c.base_url(), "http://file:1");
    let c = from_toml("dialect = \"ollama\"")?.with_env_defaults(&lookup);
    assert_eq!(c.base_url(), "http://env-host:11434");
    // A key variable named in the file wins over the dialect's default variable.
    let c = from_toml("dialect = \"openai\"\napi_key_env = \"XAI_API_KEY\"")?;
    let keys = env(&[("XAI_API_KEY", "xai"), ("OPENAI_API_KEY", "oai")]);
    assert_eq!(c.api_key(&keys).as_deref(), Some("xai"));
    Ok(())
}

#[test]
fn file_entries_have_defaults_and_reject_unknown_fields() -> Result<(), toml::de::Error> {
    let c = from_toml(
        r#"
        name = "local"
        dialect = "openai"
        base_url = "http://127.0.0.1:8081/v1"
        auth = "none"
        model = "smollm2"
        max_retries = 99
        headers = { "OpenAI-Organization" = "org-1" }
        "#,
    )?;
    assert_eq!(c.auth_style(), AuthStyle::None);
    assert_eq!(c.api_key_env(), None);
    assert_eq!(c.max_tokens, 4096);
    assert_eq!(c.max_retries(), MAX_RETRIES_CAP);
    assert_eq!(c.idle_timeout(), Duration::from_secs(300));
    assert_eq!(c.num_ctx, 8192);
    assert_eq!(
        c.headers.get("OpenAI-Organization").map(String::as_str),
        Some("org-1")
    );
    assert!(from_toml("dialect = \"anthropic\"\nbase_ulr = \"x\"").is_err());
    assert!(from_toml("dialect = \"gemini\"").is_err());
    Ok(())
}

#[test]
fn validation_catches_typos() {
    let ok = ProviderConfig::new("claude", Dialect::Anthropic);
    assert!(ok.validate().is_ok());
    assert!(
        ProviderConfig::new("", Dialect::Anthropic)
            .validate()
            .is_err()
    );
    assert!(
        ProviderConfig::new("a/b", Dialect::Anthropic)
            .validate()
            .is_err()
    );
    assert!(
        ok.clone()
            .with_base_url("api.anthropic.com")
            .validate()
            .is_err()
    );
    assert!(
        ok.clone()
            .with_base_url("unix:/run/x.sock")
            .validate()
            .is_ok()
    );
    let mut bad_header = ok;
    bad_header.headers.insert("bad header".into(), "x".into());
    assert!(bad_header.validate().is_err());
}

#[test]
fn dialect_names_parse_and_print() {
    for d in Dialect::ALL {
        assert_eq!(d.as_str().parse::<Dialect>().ok(), Some(d));
        assert_eq!(d.to_string(), d.as_str());
    }
    assert!("gpt".parse::<Dialect>().is_err());
}

#[test]
fn a_model_choice_becomes_a_keyless_gateway_entry() -> Result<(), ProviderError> {
    let choice: cambot_protocol::ModelChoice = serde_json::from_value(serde_json::json!({
        "provider": "claude", "dialect": "anthropic", "model": "claude-x", "max_tokens": 1000
    }))
    .map_err(|e| ProviderError::Config(e.to_string()))?;
    let c = ProviderConfig::for_model_choice(&choice)?;
    assert_eq!(c.name, "claude");
    assert_eq!(c.model.as_deref(), Some("claude-x"));
    assert_eq!(c.max_tokens, 1000);
    assert_eq!(c.auth_style(), AuthStyle::None);
    Ok(())
}
