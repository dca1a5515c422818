use pretty_assertions::assert_eq;

use super::*;

fn spec(host: &str, header: &str, value: &str) -> FetchCredentialSpec {
    FetchCredentialSpec {
        host: host.into(),
        header: header.into(),
        value: value.into(),
        oauth: None,
    }
}

fn oauth(token_url: &str, refresh: &str) -> OAuthSpec {
    OAuthSpec {
        token_url: token_url.into(),
        client_id: "client-1".into(),
        client_secret: Some("secret:gh-client".into()),
        refresh_token: refresh.into(),
    }
}

#[test]
fn a_rule_names_origin_header_and_one_secret() {
    let rule = FetchCredential::parse(&spec(
        "api.github.com",
        "Authorization",
        "Bearer secret:github",
    ))
    .unwrap();
    assert_eq!(rule.origin().to_string(), "https://api.github.com:443");
    assert_eq!(rule.header(), "authorization");
    assert_eq!(rule.secret(), "github");
    let value = rule.header_value(&Secret::new("tok-123")).unwrap();
    assert_eq!(value.to_str().unwrap(), "Bearer tok-123");
    assert!(value.is_sensitive());

    let rule = FetchCredential::parse(&spec(
        "http://127.0.0.1:8080",
        "x-api-key",
        "secret:svc.key-1",
    ))
    .unwrap();
    assert_eq!(rule.origin().to_string(), "http://127.0.0.1:8080");
    assert_eq!(rule.secret(), "svc.key-1");
    assert_eq!(
        rule.header_value(&Secret::new("k"))
            .unwrap()
            .to_str()
            .unwrap(),
        "k"
    );
    // A value that cannot travel in a header is refused, not sent cut.
    assert!(rule.header_value(&Secret::new("a\nb")).is_none());
}

#[test]
fn bad_rules_are_refused_with_the_reason() {
    for (s, wanted) in [
        (
            spec("api.x.com/path", "authorization", "Bearer secret:x"),
            "no user, path or query",
        ),
        (
            spec("ftp://x.com", "authorization", "secret:x"),
            "only http and https",
        ),
        (
            spec("x.com", "bad header", "secret:x"),
            "not an HTTP header name",
        ),
        (
            spec("x.com", "Host", "secret:x"),
            "cannot carry a credential",
        ),
        (
            spec("x.com", "content-length", "secret:x"),
            "cannot carry a credential",
        ),
        (
            spec("x.com", "authorization", "Bearer abc"),
            "holds 0 `secret:NAME`",
        ),
        (
            spec("x.com", "authorization", "secret:a secret:b"),
            "holds 2 `secret:NAME`",
        ),
        (spec("x.com", "authorization", "Bearer secret:"), "1 to 64"),
        (
            spec("x.com", "authorization", "Bearer\tsecret:x"),
            "printable ASCII",
        ),
    ] {
        let err = FetchCredential::parse(&s).unwrap_err().to_string();
        assert!(err.contains(wanted), "{s:?}: {err}");
        assert!(err.starts_with("fetch credential for "), "{err}");
    }
}

#[test]
fn oauth_settings_are_checked() {
    let mut s = spec("api.x.com", "authorization", "Bearer secret:x");
    s.oauth = Some(oauth("https://auth.x.com/token", "secret:x-refresh"));
    let rule = FetchCredential::parse(&s).unwrap();
    let o = rule.oauth.as_ref().unwrap();
    assert_eq!(o.token_origin.to_string(), "https://auth.x.com:443");
    assert_eq!(o.refresh_token, "x-refresh");
    assert_eq!(o.client_secret.as_deref(), Some("gh-client"));

    for (o, wanted) in [
        (oauth("ftp://auth.x.com/t", "secret:r"), "http(s) URL"),
        (oauth("https://u:p@auth.x.com/t", "secret:r"), "http(s) URL"),
        (oauth("http://2130706433/t", "secret:r"), "non-canonical"),
        (oauth("not a url", "secret:r"), "oauth.token_url"),
        (
            oauth("https://auth.x.com/t", "raw-refresh-token-value"),
            "expected secret:NAME",
        ),
    ] {
        let mut s = s.clone();
        s.oauth = Some(o);
        let err = FetchCredential::parse(&s).unwrap_err().to_string();
        assert!(err.contains(wanted), "{err}");
        assert!(
            !err.contains("raw-refresh-token-value"),
            "never quoted: {err}"
        );
    }
}

#[test]
fn rules_deserialize_from_the_config_shape() {
    let rules: Vec<FetchCredential> = serde_json::from_value(serde_json::json!([
        {"host": "api.github.com", "header": "authorization", "value": "Bearer secret:github",
         "oauth": {"token_url": "https://github.com/login/oauth/access_token",
                   "client_id": "Iv1", "refresh_token": "secret:github-refresh"}}
    ]))
    .unwrap();
    assert_eq!(rules[0].secret(), "github");
    let err = serde_json::from_value::<FetchCredential>(serde_json::json!(
        {"host": "x.com", "header": "authorization", "value": "nope"}
    ))
    .unwrap_err();
    assert!(err.to_string().contains("secret:NAME"), "{err}");
}
