use std::collections::HashMap;

use super::*;

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn providers(toml_text: &str) -> BTreeMap<String, ProviderConfig> {
    toml::from_str(toml_text).unwrap()
}

fn local_files(dir: &Path) -> LocalModelSection {
    let server = dir.join("llama-server");
    let model = dir.join("m.gguf");
    std::fs::write(&server, b"").unwrap();
    std::fs::write(&model, b"").unwrap();
    LocalModelSection {
        llama_server: Some(server),
        model_file: Some(model),
        ..LocalModelSection::default()
    }
}

#[test]
fn anthropic_key_in_env_selects_anthropic_with_env_model_and_key() {
    let env = lookup(&[
        ("ANTHROPIC_API_KEY", "sk-test"),
        ("ANTHROPIC_MODEL", "claude-x"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/"),
    ]);
    let r = resolve_model(
        &ModelSection::default(),
        &BTreeMap::new(),
        &LocalModelSection::default(),
        Path::new("/data"),
        &env,
    )
    .unwrap();
    assert_eq!(r.choice.dialect, "anthropic");
    assert_eq!(r.choice.model, "claude-x");
    assert!(r.local.is_none());
    let up = &r.upstreams[0];
    assert_eq!(up.base_url, "http://127.0.0.1:9/");
    let cred = up.credential.as_ref().unwrap();
    assert_eq!(cred.secret, up.name);
    assert_eq!(cred.legacy.as_ref().unwrap().expose(), "sk-test");
}

#[test]
fn config_file_entry_wins_over_env() {
    let env = lookup(&[("ANTHROPIC_API_KEY", "sk-a"), ("OPENAI_API_KEY", "sk-o")]);
    let p = providers(
        r#"
        [fast]
        dialect = "openai"
        base_url = "http://127.0.0.1:8081/v1"
        model = "gpt-4.1"
    "#,
    );
    let r = resolve_model(
        &ModelSection::default(),
        &p,
        &LocalModelSection::default(),
        Path::new("/data"),
        &env,
    )
    .unwrap();
    assert_eq!(r.choice.provider, "fast");
    assert_eq!(r.choice.model, "gpt-4.1");
    assert_eq!(r.upstreams.len(), 1);
    let cred = r.upstreams[0].credential.as_ref().unwrap();
    assert_eq!(cred.secret, "fast");
    assert_eq!(cred.legacy.as_ref().unwrap().expose(), "sk-o");
}

#[test]
fn several_entries_need_a_choice_and_a_wrong_choice_is_named() {
    let p = providers(
        r#"
        [a]
        dialect = "openai"
        model = "x"
        [b]
        dialect = "ollama"
        model = "y"
    "#,
    );
    let env = lookup(&[]);
    let err = resolve_model(
        &ModelSection::default(),
        &p,
        &LocalModelSection::default(),
        Path::new("/d"),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("model.provider") && err.contains("a, b"),
        "{err}"
    );
    let section = ModelSection {
        provider: Some("c".into()),
        ..ModelSection::default()
    };
    let err = resolve_model(
        &section,
        &p,
        &LocalModelSection::default(),
        Path::new("/d"),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("[providers.c]"), "{err}");
}

#[test]
fn no_key_falls_back_to_the_local_model_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let env = lookup(&[]);
    let r = resolve_model(
        &ModelSection::default(),
        &BTreeMap::new(),
        &local_files(dir.path()),
        Path::new("/data"),
        &env,
    )
    .unwrap();
    assert_eq!(r.choice.provider, LOCAL_PROVIDER);
    assert_eq!(r.upstreams[0].base_url, "unix:/data/models/local.sock");
    assert!(r.upstreams[0].credential.is_none());
    assert_eq!(
        r.local.unwrap().socket,
        Path::new("/data/models/local.sock")
    );
}

#[test]
fn missing_local_model_explains_how_to_get_it() {
    let env = lookup(&[("HOME", "/nonexistent-home")]);
    let err = resolve_model(
        &ModelSection::default(),
        &BTreeMap::new(),
        &LocalModelSection::default(),
        Path::new("/data"),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("local-model.sh"), "{err}");
}

#[test]
fn air_gapped_refuses_a_remote_provider_and_names_it() {
    let env = lookup(&[("ANTHROPIC_API_KEY", "k"), ("ANTHROPIC_MODEL", "m")]);
    let section = ModelSection {
        air_gapped: true,
        ..ModelSection::default()
    };
    let err = resolve_model(
        &section,
        &BTreeMap::new(),
        &LocalModelSection::default(),
        Path::new("/d"),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("anthropic") && err.contains("api.anthropic.com"),
        "{err}"
    );
}

#[test]
fn air_gapped_accepts_the_local_model() {
    let dir = tempfile::tempdir().unwrap();
    let section = ModelSection {
        air_gapped: true,
        ..ModelSection::default()
    };
    let env = lookup(&[]);
    let r = resolve_model(
        &section,
        &BTreeMap::new(),
        &local_files(dir.path()),
        Path::new("/d"),
        &env,
    );
    assert!(r.is_ok());
}

#[test]
fn provider_without_a_model_names_the_variable() {
    let env = lookup(&[("OPENAI_API_KEY", "k")]);
    let err = resolve_model(
        &ModelSection::default(),
        &BTreeMap::new(),
        &LocalModelSection::default(),
        Path::new("/d"),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("OPENAI_MODEL"), "{err}");
}

#[test]
fn agent_section_maps_to_run_limits() {
    let a: AgentSection = toml::from_str("max_iterations = 3\ntools = \"readonly\"").unwrap();
    assert_eq!(a.limits().max_iterations, 3);
    assert_eq!(a.tools, ToolPolicy::Readonly);
    assert_eq!(a.limits().token_budget, RunLimits::default().token_budget);
}

#[test]
fn the_gateways_run_budget_derives_from_the_turn_limits_unless_set() {
    let d = AgentSection::default();
    assert_eq!(d.run_budget(), cambot_gateway::RunBudget::default());
    let a: AgentSection =
        toml::from_str("max_iterations = 3\ntoken_budget = 1000\nwall_clock_secs = 60").unwrap();
    let b = a.run_budget();
    assert_eq!(
        (b.model_requests, b.tokens, b.wall_clock.as_secs()),
        (12, 4000, 60)
    );
    let a: AgentSection =
        toml::from_str("run_model_requests = 5\nrun_token_budget = 70\nrun_wall_clock_secs = 9")
            .unwrap();
    let b = a.run_budget();
    assert_eq!(
        (b.model_requests, b.tokens, b.wall_clock.as_secs()),
        (5, 70, 9)
    );
}

#[test]
fn every_entry_is_an_upstream_and_a_choice_whichever_is_global() {
    let dir = tempfile::tempdir().unwrap();
    let p = providers(
        r#"
        [first]
        dialect = "anthropic"
        base_url = "http://127.0.0.1:9001"
        model = "one"
        [second]
        dialect = "openai"
        base_url = "http://127.0.0.1:9002/v1"
        model = "two"
        [bare]
        dialect = "ollama"
        base_url = "http://127.0.0.1:9003"
    "#,
    );
    let section = ModelSection {
        provider: Some("first".into()),
        ..ModelSection::default()
    };
    let r = resolve_model(
        &section,
        &p,
        &local_files(dir.path()),
        Path::new("/data"),
        &lookup(&[]),
    )
    .unwrap();
    assert_eq!(r.choice.provider, "first");
    assert!(!r.uses_local());
    let names: Vec<&str> = r.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["bare", "first", "second", LOCAL_PROVIDER]);
    // An entry without a model is reachable but no tenant can run on it.
    let choices: Vec<&str> = r.choices.keys().map(String::as_str).collect();
    assert_eq!(choices, ["first", LOCAL_PROVIDER, "second"]);
    assert_eq!(r.choices["second"].model, "two");
    assert_eq!(r.choices["second"].dialect, "openai");
    assert_eq!(r.choices[LOCAL_PROVIDER].model, "smollm2");
    // Not installed: no local choice, and no error while a remote provider is global.
    let r = resolve_model(
        &section,
        &p,
        &LocalModelSection::default(),
        Path::new("/data"),
        &lookup(&[("HOME", "/nonexistent-home")]),
    )
    .unwrap();
    assert!(r.local.is_none());
    assert!(!r.choices.contains_key(LOCAL_PROVIDER));
}
