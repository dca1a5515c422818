use pretty_assertions::assert_eq;

use super::*;

fn parse(toml_text: &str) -> Result<WebConfig, String> {
    let config: WebConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    config.validate()?;
    Ok(config)
}

const ENTRY: &str =
    "[[issuers]]\nissuer = \"https://idp.example\"\naudience = \"cambot\"\ntenant = \"acme\"\n";

#[test]
fn an_issuer_entry_is_read_with_its_defaults() {
    let c = parse(&format!(
        "{ENTRY}jwks_url = \"https://idp.example/jwks.json\"\n"
    ))
    .unwrap();
    let entry = &c.issuers[0];
    assert_eq!(entry.tenant.as_str(), "acme");
    assert_eq!(
        entry.accepted_algorithms(),
        vec![
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::ES256
        ]
    );
    assert_eq!(
        (entry.jwks_min_refresh_secs, entry.jwks_max_age_secs),
        (60, 3600)
    );
    assert!(c.warnings().is_empty());
}

#[test]
fn bad_issuer_entries_are_refused_at_load_with_the_rule() {
    let second = "[[issuers]]\nissuer = \"https://idp.example\"\naudience = \"x\"\ntenant = \"beta\"\nkey_file = \"/k.pem\"\n";
    let cases = [
        (
            format!("{ENTRY}jwks_url = \"https://idp.example/j\"\n{second}"),
            "configured twice",
        ),
        (format!("{ENTRY}jwks_url = \"http://idp.example/j\"\n"), "must be https"),
        (format!("{ENTRY}jwks_url = \"http://10.0.0.1/j\"\n"), "must be https"),
        (format!("{ENTRY}jwks_url = \"ftp://idp.example/j\"\n"), "must be https"),
        (format!("{ENTRY}jwks_url = \"not a url\"\n"), "jwks_url"),
        (ENTRY.to_owned(), "exactly one of"),
        (
            format!("{ENTRY}jwks_url = \"https://i/j\"\nkey_file = \"/k.pem\"\n"),
            "exactly one of",
        ),
        (
            format!("{ENTRY}jwks_url = \"https://i/j\"\nalgorithms = [\"HS256\"]\n"),
            "needs shared_secret_file",
        ),
        (
            format!("{ENTRY}shared_secret_file = \"/s\"\nalgorithms = [\"RS256\"]\n"),
            "needs a public key",
        ),
        (
            format!("{ENTRY}jwks_url = \"https://i/j\"\njwks_min_refresh_secs = 0\n"),
            "at least 1",
        ),
        (
            "[[issuers]]\nissuer = \"a|b\"\naudience = \"c\"\ntenant = \"acme\"\nkey_file = \"/k\"\n"
                .to_owned(),
            "`|`",
        ),
        (
            "[[issuers]]\nissuer = \"cambot\"\naudience = \"c\"\ntenant = \"acme\"\nkey_file = \"/k\"\n"
                .to_owned(),
            "cambot's own",
        ),
        (
            format!("{ENTRY}jwks_url = \"https://i/j\"\nalgorithms = [\"none\"]\n"),
            "unknown variant",
        ),
        (
            "[[issuers]]\nissuer = \"i\"\naudience = \"c\"\nkey_file = \"/k\"\n".to_owned(),
            "missing field `tenant`",
        ),
    ];
    for (text, rule) in cases {
        let err = parse(&text).expect_err(&text);
        assert!(err.contains(rule), "{text}\n=> {err}");
    }
}

#[test]
fn a_jwks_url_is_https_or_loopback_http() {
    for ok in [
        "https://idp.example/.well-known/jwks.json",
        "http://127.0.0.1:8080/jwks",
        "http://[::1]:9/jwks",
        "http://localhost/jwks",
    ] {
        assert_eq!(check_jwks_url(ok), Ok(()), "{ok}");
    }
    for bad in [
        "http://idp.example/jwks",
        "http://169.254.169.254/jwks",
        "http://192.168.1.1/jwks",
        "file:///etc/jwks.json",
        "https://",
    ] {
        assert!(check_jwks_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_deprecated_external_table_is_read_as_an_issuer_with_a_warning() {
    let c = parse(
        "[external]\nissuer = \"https://idp.example\"\naudience = \"cambot\"\njwks_file = \"/j.json\"\n",
    )
    .unwrap();
    let all = c.all_issuers();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tenant.as_str(), "default");
    assert_eq!(
        all[0].jwks_file.as_deref(),
        Some(std::path::Path::new("/j.json"))
    );
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("deprecated"), "{}", warnings[0]);
    assert!(warnings[0].contains("tid"), "{}", warnings[0]);
    // It counts as an issuer for the duplicate check too.
    let err = parse(&format!(
        "{ENTRY}key_file = \"/k.pem\"\n[external]\nissuer = \"https://idp.example\"\naudience = \"c\"\njwks_file = \"/j\"\n"
    ))
    .unwrap_err();
    assert!(err.contains("configured twice"), "{err}");
}
