//! Pure helpers for the host gateway, which holds the keys: which headers carry a credential
//! for a dialect, which upstream paths a dialect uses, and how a path joins a base URL.
//! The runner inside the sandbox never calls these with a key.

use http::HeaderName;
use http::HeaderValue;

use crate::config::AuthStyle;
use crate::config::Dialect;
use crate::error::ProviderError;

/// The `anthropic-version` every Anthropic request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The headers that authenticate a request of `dialect` with `key`, sent the `auth` way.
/// Anthropic additionally gets `anthropic-version` (the gateway should keep a value the
/// runner already sent). Values are marked sensitive so they never show in logs.
///
/// - Anthropic + `x-api-key`: `x-api-key: <key>`, `anthropic-version: 2023-06-01`
/// - `bearer`: `authorization: Bearer <key>` (+ `anthropic-version` for Anthropic)
/// - `none` (Ollama's default): nothing but Anthropic's version header
pub fn auth_headers(
    dialect: Dialect,
    auth: AuthStyle,
    key: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, ProviderError> {
    let mut out = Vec::with_capacity(2);
    let invalid = || ProviderError::Config("the API key is not a valid header value".to_owned());
    match auth {
        AuthStyle::XApiKey => {
            let mut v = HeaderValue::try_from(key).map_err(|_| invalid())?;
            v.set_sensitive(true);
            out.push((HeaderName::from_static("x-api-key"), v));
        }
        AuthStyle::Bearer => {
            let mut v = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| invalid())?;
            v.set_sensitive(true);
            out.push((http::header::AUTHORIZATION, v));
        }
        AuthStyle::None => {}
    }
    if dialect == Dialect::Anthropic {
        out.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ));
    }
    Ok(out)
}

/// The paths, relative to the provider's base URL, that a dialect's client calls. The gateway
/// forwards `/v1/model/<provider>/<path>` to `<base_url>/<path>` and may refuse any other path.
///
/// | dialect | base URL (example) | paths |
/// |---|---|---|
/// | anthropic | `https://api.anthropic.com` | `v1/messages` |
/// | openai | `https://api.openai.com/v1` | `chat/completions` |
/// | ollama | `http://localhost:11434` | `api/chat` |
pub fn upstream_paths(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Anthropic => &["v1/messages"],
        Dialect::OpenAi => &["chat/completions"],
        Dialect::Ollama => &["api/chat"],
    }
}

/// The path one streamed chat call uses (the first of [`upstream_paths`]).
pub fn chat_path(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Anthropic => "v1/messages",
        Dialect::OpenAi => "chat/completions",
        Dialect::Ollama => "api/chat",
    }
}

/// Joins a base URL (with or without a trailing `/`) and a relative path (with or without a
/// leading `/`, optionally carrying a query string): `upstream_url("http://h/v1/", "/chat")`
/// is `http://h/v1/chat`.
pub fn upstream_url(base_url: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base_url.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_key_goes_in_x_api_key_with_version() -> Result<(), ProviderError> {
        let h = auth_headers(Dialect::Anthropic, AuthStyle::XApiKey, "sk-ant-1")?;
        let names: Vec<_> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().ok()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("x-api-key", Some("sk-ant-1")),
                ("anthropic-version", Some(ANTHROPIC_VERSION))
            ]
        );
        assert!(h[0].1.is_sensitive());
        Ok(())
    }

    #[test]
    fn openai_key_is_a_bearer_token_and_ollama_sends_none() -> Result<(), ProviderError> {
        let h = auth_headers(Dialect::OpenAi, AuthStyle::Bearer, "sk-1")?;
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].0, http::header::AUTHORIZATION);
        assert_eq!(h[0].1.to_str().ok(), Some("Bearer sk-1"));
        assert!(h[0].1.is_sensitive());
        assert!(auth_headers(Dialect::Ollama, AuthStyle::None, "x")?.is_empty());
        Ok(())
    }

    #[test]
    fn a_key_with_a_newline_is_refused() {
        assert!(auth_headers(Dialect::OpenAi, AuthStyle::Bearer, "a\nb").is_err());
    }

    #[test]
    fn paths_join_base_urls() {
        assert_eq!(
            upstream_url("https://api.openai.com/v1/", chat_path(Dialect::OpenAi)),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            upstream_url("https://api.anthropic.com", "/v1/messages?beta=true"),
            "https://api.anthropic.com/v1/messages?beta=true"
        );
        for d in Dialect::ALL {
            assert!(upstream_paths(d).contains(&chat_path(d)));
        }
    }
}
