use std::collections::HashMap;

use pretty_assertions::assert_eq;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn defaults_without_a_file() {
    let c = Config::load(None, Some(Path::new("/tmp/d")), &env(&[("TZ", "UTC")])).unwrap();
    assert_eq!(c.assistant_name, "Andy");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
    assert_eq!(c.max_concurrent_runs, 5);
    assert_eq!(c.idle_timeout(), Duration::from_secs(1800));
    assert_eq!(c.log.format, LogFormat::Human);
    assert!(c.channels.cli.enabled);
}

#[test]
fn the_example_file_parses_and_documents_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cambot.example.toml");
    let c = Config::load(Some(&path), None, &env(&[])).unwrap();
    let d = Config::load(
        None,
        Some(&c.data_dir),
        &env(&[("TZ", c.timezone.as_str())]),
    )
    .unwrap();
    assert_eq!(c.assistant_name, d.assistant_name);
    assert_eq!(c.max_concurrent_runs, d.max_concurrent_runs);
    assert_eq!(c.router, d.router);
    assert_eq!(c.log, d.log);
    assert_eq!(c.channels, d.channels);
    assert_eq!(c.scheduler, d.scheduler);
    assert_eq!(c.model, d.model);
    assert_eq!(c.local_model, d.local_model);
    assert_eq!(c.agent, d.agent);
    assert_eq!(c.sandbox, d.sandbox);
    assert_eq!(c.uploads, d.uploads);
    assert!(c.providers.is_empty());
}

#[test]
fn environment_overrides_the_file() {
    let raw: ConfigFile =
        toml::from_str("assistant_name = \"Bob\"\nmax_concurrent_runs = 3\n").unwrap();
    let c = Config::resolve(
        raw,
        None,
        None,
        &env(&[
            ("CAMBOT_ASSISTANT_NAME", "Zed"),
            ("CAMBOT_MAX_CONCURRENT_RUNS", "7"),
            ("CAMBOT_DATA_DIR", "/srv/cambot"),
            ("CAMBOT_LOG_FORMAT", "json"),
            ("TZ", "Europe/Paris"),
        ]),
    )
    .unwrap();
    assert_eq!(c.assistant_name, "Zed");
    assert_eq!(c.max_concurrent_runs, 7);
    assert_eq!(c.data_dir, PathBuf::from("/srv/cambot"));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.timezone, "Europe/Paris");
}

#[test]
fn the_flag_beats_the_environment_for_the_data_dir() {
    let c = Config::load(
        None,
        Some(Path::new("/flag")),
        &env(&[("CAMBOT_DATA_DIR", "/env"), ("TZ", "UTC")]),
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/flag"));
}

#[test]
fn bad_values_name_the_key() {
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("timezone = \"Mars/Olympus\"", vec![], "timezone"),
        (
            "max_concurrent_runs = 0",
            vec![("TZ", "UTC")],
            "max_concurrent_runs",
        ),
        (
            "assistant_name = \"two words\"",
            vec![("TZ", "UTC")],
            "assistant_name",
        ),
        (
            "",
            vec![("CAMBOT_MAX_CONCURRENT_RUNS", "lots"), ("TZ", "UTC")],
            "CAMBOT_MAX_CONCURRENT_RUNS",
        ),
        (
            "",
            vec![("CAMBOT_LOG_FORMAT", "xml"), ("TZ", "UTC")],
            "CAMBOT_LOG_FORMAT",
        ),
    ];
    for (toml_text, vars, key) in cases {
        let raw: ConfigFile = toml::from_str(toml_text).unwrap();
        let err = Config::resolve(raw, None, Some(Path::new("/d")), &env(&vars)).unwrap_err();
        assert!(err.to_string().contains(key), "{err} should name {key}");
    }
}

#[test]
fn unknown_keys_and_bad_toml_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "assistant_nam = \"typo\"\n").unwrap();
    let err = Config::load(Some(&path), None, &env(&[])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("c.toml") && text.contains("assistant_nam"),
        "{text}"
    );
    std::fs::write(&path, "[router\n").unwrap();
    assert!(Config::load(Some(&path), None, &env(&[])).is_err());
    let missing = dir.path().join("nope.toml");
    let err = Config::load(Some(&missing), None, &env(&[])).unwrap_err();
    assert!(err.to_string().contains("nope.toml"));
}

#[test]
fn the_retired_ingest_journal_key_is_accepted_with_a_deprecation_warning() {
    for value in ["true", "false"] {
        let raw: ConfigFile =
            toml::from_str(&format!("[router]\ningest_journal = {value}\n")).unwrap();
        let c =
            Config::resolve(raw, None, Some(Path::new("/tmp/d")), &env(&[("TZ", "UTC")])).unwrap();
        assert_eq!(c.warnings.len(), 1, "{value}");
        assert!(
            c.warnings[0].contains("router.ingest_journal is deprecated"),
            "{}",
            c.warnings[0]
        );
    }
    let c = Config::load(None, Some(Path::new("/tmp/d")), &env(&[("TZ", "UTC")])).unwrap();
    assert!(c.warnings.is_empty());
}

#[test]
fn fetch_settings_are_parsed_at_load_and_a_bad_entry_or_limit_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[model]\nfetch_allow_hosts = [\"example.com\", \"http://10.1.2.3:8080\"]\n\
         fetch_max_bytes = 4096\nfetch_timeout_secs = 5\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), None, &env(&[("TZ", "UTC")])).unwrap();
    let policy = c.model.gateway_policy().fetch;
    let allow: Vec<String> = policy.allow.iter().map(ToString::to_string).collect();
    assert_eq!(allow, ["https://example.com:443", "http://10.1.2.3:8080"]);
    assert_eq!(policy.max_bytes, 4096);
    assert_eq!(policy.timeout, Duration::from_secs(5));
    let defaults = Config::load(None, Some(dir.path()), &env(&[("TZ", "UTC")]))
        .unwrap()
        .model
        .gateway_policy()
        .fetch;
    assert_eq!(defaults.max_bytes, 2 * 1024 * 1024);
    assert_eq!(defaults.timeout, Duration::from_secs(20));

    let bad = [
        (
            "fetch_allow_hosts = [\"http://0x7f.1:80\"]",
            "fetch_allow_hosts entry \"http://0x7f.1:80\": 0x7f.1 is a non-canonical spelling",
        ),
        (
            "fetch_allow_hosts = [\"ftp://example.com\"]",
            "fetch_allow_hosts entry \"ftp://example.com\": only http and https",
        ),
        (
            "fetch_allow_hosts = [\"example.com/path\"]",
            "scheme, host and port only",
        ),
        ("fetch_max_bytes = 0", "model.fetch_max_bytes"),
        ("fetch_max_bytes = 9000000000", "model.fetch_max_bytes"),
        ("fetch_timeout_secs = 0", "model.fetch_timeout_secs"),
    ];
    for (line, want) in bad {
        std::fs::write(&path, format!("[model]\n{line}\n")).unwrap();
        let err = Config::load(Some(&path), None, &env(&[("TZ", "UTC")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[test]
fn a_zero_run_budget_is_refused_with_its_key() {
    for key in [
        "run_model_requests",
        "run_token_budget",
        "run_wall_clock_secs",
    ] {
        let raw: ConfigFile = toml::from_str(&format!("[agent]\n{key} = 0\n")).unwrap();
        let err = Config::resolve(raw, None, Some(Path::new("/tmp/d")), &env(&[("TZ", "UTC")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("agent.{key}")), "{err}");
        assert!(err.contains("at least 1"), "{err}");
    }
}

#[test]
fn web_issuers_are_checked_at_load_and_the_old_external_table_warns() {
    let load = |text: &str| {
        let raw: ConfigFile = toml::from_str(text).unwrap();
        Config::resolve(raw, None, Some(Path::new("/tmp/d")), &env(&[("TZ", "UTC")]))
    };
    let entry = "[[channels.web.issuers]]\nissuer = \"https://idp.example\"\naudience = \"a\"\n\
                 tenant = \"acme\"\njwks_url = \"https://idp.example/jwks.json\"\n";
    let c = load(entry).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let err = load(&format!("{entry}{entry}")).unwrap_err().to_string();
    assert!(err.contains("configured twice"), "{err}");
    let err = load(&entry.replace("https://idp.example/jwks", "http://idp.example/jwks"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be https"), "{err}");
    let c = load(
        "[channels.web.external]\nissuer = \"https://idp.example\"\naudience = \"a\"\n\
         shared_secret_file = \"/s\"\n",
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains("[channels.web.external] is deprecated"),
        "{}",
        c.warnings[0]
    );
}

#[test]
fn a_provider_key_is_a_secret_reference_and_a_literal_key_is_refused_unquoted() {
    let load = |text: &str| {
        Config::resolve(
            ConfigFile::from_toml(text).unwrap(),
            None,
            Some(Path::new("/tmp/d")),
            &env(&[("TZ", "UTC")]),
        )
    };
    let ok =
        load("[providers.claude]\ndialect = \"anthropic\"\napi_key = \"secret:anthropic-prod\"\n")
            .unwrap();
    let entry = &ok.providers["claude"];
    assert_eq!(
        crate::model_config::provider_secret_name("claude", entry).unwrap(),
        "anthropic-prod"
    );
    let literal = "sk-ant-literal-key-value-0123456789";
    let err = load(&format!(
        "[providers.claude]\ndialect = \"anthropic\"\napi_key = \"{literal}\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("providers.claude.api_key"), "{err}");
    assert!(
        err.contains("cambot secrets set --tenant <TENANT> NAME") && err.contains("secret:NAME"),
        "{err}"
    );
    assert!(!err.contains(literal), "{err}");
    let parsed = ConfigFile::from_toml(&format!(
        "[providers.claude]\ndialect = \"anthropic\"\napi_key = \"{literal}\"\n"
    ))
    .unwrap();
    assert!(!format!("{parsed:?}").contains(literal));
}

#[test]
fn tenant_fetch_credentials_are_checked_against_the_allowlist_at_load() {
    let load = |text: &str| {
        Config::resolve(
            ConfigFile::from_toml(text).unwrap(),
            None,
            Some(Path::new("/tmp/d")),
            &env(&[("TZ", "UTC")]),
        )
    };
    let rule = "[[tenants.acme.fetch_credentials]]\nhost = \"api.github.com\"\n\
                header = \"authorization\"\nvalue = \"Bearer secret:github\"\n";
    let c = load(&format!(
        "[model]\nfetch_allow_hosts = [\"api.github.com\"]\n{rule}"
    ))
    .unwrap();
    let acme = cambot_protocol::TenantId::new("acme").unwrap();
    assert_eq!(c.fetch_credentials[&acme][0].secret(), "github");
    let err = load(rule).unwrap_err().to_string();
    assert!(
        err.contains("tenants.acme.fetch_credentials[0]") && err.contains("fetch_allow_hosts"),
        "{err}"
    );
}
